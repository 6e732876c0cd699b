//! The version manifest: everything a consumer needs to fetch, check and run one model version.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::names::{Alias, Label, ModelName, Version};

/// The manifest format this crate writes.
pub const SCHEMA_VERSION: u32 = 1;

/// An immutable description of one published model version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Manifest format version ([`SCHEMA_VERSION`]).
    pub schema_version: u32,
    /// The model.
    pub name: ModelName,
    /// This version; assigned by the registry when it numbers versions.
    pub version: Version,
    /// When the version was built.
    pub created_at: DateTime<Utc>,
    /// Model family and architecture, e.g. `{"family": "mlp", "hidden_layers": [64, 32]}`.
    pub model: ModelInfo,
    /// The files of this version, each stored as a blob under its digest.
    pub artifacts: Vec<Artifact>,
    /// Input and output tensors of the primary artifact.
    pub signature: Signature,
    /// The feature pipeline the inputs come from.
    pub features: FeaturePipeline,
    /// Class labels; a class's index is its output position.
    pub labels: Vec<Label>,
    /// Preprocessing parameters (already folded into ONNX graphs; listed for other runtimes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preprocessing: Option<Preprocessing>,
    /// Evaluation results.
    pub metrics: Metrics,
    /// The data the model was trained on.
    pub dataset: DatasetLineage,
    /// How it was trained.
    pub training: TrainingRecord,
    /// Inputs with the outputs the trainer computed, for validators to reproduce.
    #[serde(default)]
    pub golden: Vec<GoldenCase>,
    /// The same inputs with the int8 artifact's expected outputs, if there is one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub golden_int8: Vec<GoldenCase>,
    /// The version this one was trained to replace, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<Version>,
    /// The quality gate's decision, if one was taken.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gate: Option<GateDecision>,
    /// Free-form tags, e.g. `user_id` and `modality` for per-user models.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

/// Model family and architecture.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelInfo {
    /// `mlp`, `logistic_regression`, ….
    pub family: String,
    /// Family-specific settings (layers, activation, …).
    #[serde(default)]
    pub architecture: serde_json::Value,
}

/// One file of a version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Artifact {
    /// What the file is: `onnx`, `onnx_int8`, `tflite_int8`, `labels`, ….
    pub role: String,
    /// A file name for downloads (not a storage key).
    pub file_name: String,
    /// IANA media type, e.g. `application/onnx`.
    pub media_type: String,
    /// Digest of the bytes.
    pub digest: Digest,
    /// Size in bytes.
    pub size: u64,
}

impl Artifact {
    /// Describes `bytes` as an artifact.
    pub fn describe(
        role: impl Into<String>,
        file_name: impl Into<String>,
        media_type: impl Into<String>,
        bytes: &[u8],
    ) -> Self {
        Self {
            role: role.into(),
            file_name: file_name.into(),
            media_type: media_type.into(),
            digest: Digest::of(bytes),
            size: bytes.len() as u64,
        }
    }
}

/// Input and output tensors.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signature {
    /// Inputs, in order.
    pub inputs: Vec<TensorSpec>,
    /// Outputs, in order.
    pub outputs: Vec<TensorSpec>,
}

/// One tensor: name, element type and shape (`null` for a symbolic dimension such as the batch).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TensorSpec {
    /// Tensor name in the graph.
    pub name: String,
    /// Element type: `float32`, `int8`, `uint8`, `int64`.
    pub dtype: String,
    /// Dimensions; `None` is symbolic.
    pub shape: Vec<Option<u64>>,
}

/// Which feature pipeline computes a model's inputs: a name and a version. The code that
/// implements a pipeline owns its id as a constant; a manifest records it in [`FeaturePipeline`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PipelineId {
    /// Pipeline name, e.g. `tabular` or `image-forensics`.
    pub name: &'static str,
    /// Pipeline version: a change to what the features mean is a new version.
    pub version: u32,
}

impl PipelineId {
    /// The id `name` v`version`.
    pub const fn new(name: &'static str, version: u32) -> Self {
        Self { name, version }
    }

    /// The manifest's record of this pipeline with its input names.
    pub fn describe(self, feature_names: Vec<String>) -> FeaturePipeline {
        FeaturePipeline {
            name: self.name.to_owned(),
            version: self.version,
            feature_names,
        }
    }
}

impl std::fmt::Display for PipelineId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} v{}", self.name, self.version)
    }
}

/// A named, versioned feature pipeline, as a manifest records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeaturePipeline {
    /// Pipeline name, e.g. `tabular` or `image-forensics`.
    pub name: String,
    /// Pipeline version; a consumer refuses versions it does not implement.
    pub version: u32,
    /// Input feature names, in order.
    #[serde(default)]
    pub feature_names: Vec<String>,
}

impl FeaturePipeline {
    /// Whether these features are computed by pipeline `id`.
    pub fn is(&self, id: PipelineId) -> bool {
        self.name == id.name && self.version == id.version
    }
}

/// Scaler parameters and the like.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Preprocessing {
    /// Per-feature mean subtracted before the model.
    pub scaler_mean: Vec<f64>,
    /// Per-feature scale divided by before the model.
    pub scaler_scale: Vec<f64>,
}

/// Evaluation results on the held-out split.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// Which split these were measured on (`test`, `val`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split: Option<String>,
    /// Accuracy in [0, 1].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accuracy: Option<f64>,
    /// ROC AUC (one-vs-rest macro for multi-class) in [0, 1].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roc_auc: Option<f64>,
    /// Log loss.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss: Option<f64>,
    /// Macro precision in [0, 1].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub precision: Option<f64>,
    /// Macro recall in [0, 1].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recall: Option<f64>,
    /// Macro F1 in [0, 1].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub f1: Option<f64>,
    /// Rows: true class; columns: predicted class.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confusion_matrix: Option<Vec<Vec<u64>>>,
    /// Anything else (per-class scores, int8 accuracy drop, CV results, …).
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

/// Where the training data came from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatasetLineage {
    /// Dataset id or name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Digest of the dataset snapshot (sorted sample digests and labels).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<Digest>,
    /// Digest of the test split's row ids, so gates compare like with like.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_split: Option<Digest>,
    /// Number of samples in all.
    pub size: u64,
    /// Samples used for training.
    pub train_size: u64,
    /// Samples used for validation (early stopping, model choice).
    pub val_size: u64,
    /// Samples held out for the reported metrics.
    pub test_size: u64,
}

/// Training configuration and seed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TrainingRecord {
    /// The seed every random choice was drawn from.
    pub seed: u64,
    /// The configuration as given.
    #[serde(default)]
    pub config: serde_json::Value,
    /// The run that produced this version (`runs/<run-id>/`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
}

/// One golden input and the output the trainer computed for it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GoldenCase {
    /// Raw input features.
    pub input: Vec<f32>,
    /// Expected output (probabilities).
    pub expected: Vec<f32>,
}

/// The quality gate's decision and its evidence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateDecision {
    /// Whether the version was promoted.
    pub promoted: bool,
    /// The alias it was (or would have been) promoted to.
    pub alias: Alias,
    /// Promoted with `--force`, whatever the gate said.
    pub forced: bool,
    /// Why, in words.
    pub reason: String,
    /// The minimum accuracy required.
    pub min_accuracy: f64,
    /// The minimum gain over the baseline required.
    pub min_gain: f64,
    /// The version it was compared with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<Version>,
    /// The baseline's accuracy on the same test split.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline_accuracy: Option<f64>,
}

/// A manifest that breaks its rules; lists every problem, each with the field it is in.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("invalid manifest: {}", problems.join("; "))]
pub struct ManifestError {
    /// One entry per problem, `field: what is wrong`.
    pub problems: Vec<String>,
}

/// Whether `name` is safe as a file name anywhere it goes: a path joined on disk by `download`, a
/// `Content-Disposition` header, a run folder. No separators, no leading dot, no quotes or
/// control characters.
pub fn is_plain_file_name(name: &str) -> bool {
    (1..=128).contains(&name.len())
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
}

impl Manifest {
    /// Checks the manifest's internal consistency and says exactly what is wrong.
    pub fn validate(&self) -> Result<(), ManifestError> {
        let mut problems = Vec::new();
        let mut problem = |field: String, what: &str| problems.push(format!("{field}: {what}"));

        if self.schema_version != SCHEMA_VERSION {
            problem(
                "schema_version".into(),
                &format!("must be {SCHEMA_VERSION}, got {}", self.schema_version),
            );
        }
        if self.model.family.trim().is_empty() {
            problem("model.family".into(), "must not be empty");
        }
        if self.artifacts.is_empty() {
            problem("artifacts".into(), "at least one artifact is required");
        }
        let mut roles = BTreeSet::new();
        for (i, a) in self.artifacts.iter().enumerate() {
            if a.role.trim().is_empty() {
                problem(format!("artifacts[{i}].role"), "must not be empty");
            } else if !roles.insert(a.role.as_str()) {
                problem(format!("artifacts[{i}].role"), "duplicate role");
            }
            if a.size == 0 {
                problem(format!("artifacts[{i}].size"), "must be greater than 0");
            }
            if !a.media_type.contains('/') {
                problem(
                    format!("artifacts[{i}].media_type"),
                    "must be a media type such as application/onnx",
                );
            }
            if !is_plain_file_name(&a.file_name) {
                problem(
                    format!("artifacts[{i}].file_name"),
                    "must be a plain file name: 1 to 128 of a-z, A-Z, 0-9, '.', '_', '-', not starting with '.'",
                );
            }
        }
        for (side, specs) in [
            ("inputs", &self.signature.inputs),
            ("outputs", &self.signature.outputs),
        ] {
            if specs.is_empty() {
                problem(
                    format!("signature.{side}"),
                    "at least one tensor is required",
                );
            }
            for (i, t) in specs.iter().enumerate() {
                if t.name.is_empty() {
                    problem(format!("signature.{side}[{i}].name"), "must not be empty");
                }
                if !["float32", "int8", "uint8", "int64"].contains(&t.dtype.as_str()) {
                    problem(
                        format!("signature.{side}[{i}].dtype"),
                        "must be float32, int8, uint8 or int64",
                    );
                }
            }
        }
        if self.labels.is_empty() {
            problem("labels".into(), "at least one label is required");
        }
        let unique: BTreeSet<_> = self.labels.iter().collect();
        if unique.len() != self.labels.len() {
            problem("labels".into(), "labels must be unique");
        }
        let width = |specs: &[TensorSpec]| specs.first().and_then(|t| t.shape.last().copied()?);
        if let Some(outputs) = width(&self.signature.outputs)
            && outputs as usize != self.labels.len()
        {
            problem(
                "signature.outputs[0].shape".into(),
                &format!(
                    "has {outputs} classes but there are {} labels",
                    self.labels.len()
                ),
            );
        }
        if self.features.name.trim().is_empty() {
            problem("features.name".into(), "must not be empty");
        }
        let inputs = width(&self.signature.inputs);
        if let Some(n) = inputs
            && !self.features.feature_names.is_empty()
            && self.features.feature_names.len() != n as usize
        {
            problem(
                "features.feature_names".into(),
                &format!(
                    "has {} names but the input has {n} features",
                    self.features.feature_names.len()
                ),
            );
        }
        if let Some(p) = &self.preprocessing {
            if p.scaler_mean.len() != p.scaler_scale.len() {
                problem(
                    "preprocessing".into(),
                    "scaler_mean and scaler_scale differ in length",
                );
            }
            if p.scaler_scale.iter().any(|s| !s.is_finite() || *s == 0.0) {
                problem(
                    "preprocessing.scaler_scale".into(),
                    "every scale must be finite and non-zero",
                );
            }
        }
        let m = &self.metrics;
        for (field, value) in [
            ("accuracy", m.accuracy),
            ("roc_auc", m.roc_auc),
            ("precision", m.precision),
            ("recall", m.recall),
            ("f1", m.f1),
        ] {
            if let Some(v) = value
                && !(0.0..=1.0).contains(&v)
            {
                problem(format!("metrics.{field}"), "must be between 0 and 1");
            }
        }
        if let Some(loss) = m.loss
            && !(loss.is_finite() && loss >= 0.0)
        {
            problem("metrics.loss".into(), "must be finite and non-negative");
        }
        if let Some(cm) = &m.confusion_matrix
            && (cm.len() != self.labels.len() || cm.iter().any(|r| r.len() != self.labels.len()))
        {
            problem(
                "metrics.confusion_matrix".into(),
                "must be a square matrix with one row and column per label",
            );
        }
        let d = &self.dataset;
        if d.train_size + d.val_size + d.test_size > d.size {
            problem(
                "dataset".into(),
                "train_size + val_size + test_size exceeds size",
            );
        }
        for (field, i, g) in self
            .golden
            .iter()
            .enumerate()
            .map(|(i, g)| ("golden", i, g))
            .chain(
                self.golden_int8
                    .iter()
                    .enumerate()
                    .map(|(i, g)| ("golden_int8", i, g)),
            )
        {
            if let Some(n) = inputs
                && g.input.len() != n as usize
            {
                problem(
                    format!("{field}[{i}].input"),
                    &format!("has {} values, the input has {n}", g.input.len()),
                );
            }
            if g.expected.len() != self.labels.len() {
                problem(
                    format!("{field}[{i}].expected"),
                    &format!(
                        "has {} values, there are {} labels",
                        g.expected.len(),
                        self.labels.len()
                    ),
                );
            }
            if g.input.iter().chain(&g.expected).any(|v| !v.is_finite()) {
                problem(format!("{field}[{i}]"), "values must be finite");
            }
        }
        if let Some(gate) = &self.gate
            && gate.forced
            && !gate.promoted
        {
            problem("gate".into(), "a forced decision must promote");
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ManifestError { problems })
        }
    }

    /// The artifact with `role`, if any.
    pub fn artifact(&self, role: &str) -> Option<&Artifact> {
        self.artifacts.iter().find(|a| a.role == role)
    }

    /// Canonical bytes: pretty JSON with a trailing newline. The manifest's digest is taken over
    /// exactly these bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = serde_json::to_vec_pretty(self).expect("a manifest always serializes");
        bytes.push(b'\n');
        bytes
    }
}

/// Builders for tests, here and in other crates.
#[cfg(any(test, feature = "conformance"))]
pub mod tests_support {
    use super::*;

    /// A small valid manifest: a 4-feature, 3-class model with one artifact, `model.onnx`.
    pub fn base(name: &str) -> Manifest {
        Manifest {
            schema_version: SCHEMA_VERSION,
            name: ModelName::new(name).unwrap(),
            version: Version::numbered(1),
            created_at: "2025-10-29T00:59:08Z".parse().unwrap(),
            model: ModelInfo {
                family: "mlp".into(),
                architecture: serde_json::json!({"hidden_layers": [64, 32]}),
            },
            artifacts: vec![Artifact::describe(
                "onnx",
                "model.onnx",
                "application/onnx",
                b"onnx bytes",
            )],
            signature: Signature {
                inputs: vec![TensorSpec {
                    name: "features".into(),
                    dtype: "float32".into(),
                    shape: vec![None, Some(4)],
                }],
                outputs: vec![TensorSpec {
                    name: "probabilities".into(),
                    dtype: "float32".into(),
                    shape: vec![None, Some(3)],
                }],
            },
            features: FeaturePipeline {
                name: "tabular".into(),
                version: 1,
                feature_names: vec!["a".into(), "b".into(), "c".into(), "d".into()],
            },
            labels: ["setosa", "versicolor", "virginica"]
                .map(|l| Label::new(l).unwrap())
                .to_vec(),
            preprocessing: None,
            metrics: Metrics {
                accuracy: Some(0.95),
                ..Default::default()
            },
            dataset: DatasetLineage {
                size: 150,
                train_size: 105,
                val_size: 22,
                test_size: 23,
                ..Default::default()
            },
            training: TrainingRecord {
                seed: 42,
                ..Default::default()
            },
            golden: vec![GoldenCase {
                input: vec![5.1, 3.5, 1.4, 0.2],
                expected: vec![0.9, 0.05, 0.05],
            }],
            golden_int8: vec![],
            parent: None,
            gate: None,
            tags: BTreeMap::new(),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// [`tests_support::base`] with one artifact of `artifact_bytes`.
    pub(crate) fn sample(name: &str, artifact_bytes: &[u8]) -> Manifest {
        let mut m = tests_support::base(name);
        m.artifacts = vec![Artifact::describe(
            "onnx",
            "model.onnx",
            "application/onnx",
            artifact_bytes,
        )];
        m
    }

    #[test]
    fn sample_is_valid_and_round_trips() {
        let m = sample("iris", b"bytes");
        m.validate().unwrap();
        let back: Manifest = serde_json::from_slice(&m.to_bytes()).unwrap();
        assert_eq!(back, m);
    }

    #[test]
    fn validate_names_every_problem() {
        let mut m = sample("iris", b"bytes");
        m.artifacts[0].size = 0;
        m.labels.pop();
        m.metrics.accuracy = Some(1.5);
        m.golden[0].input.pop();
        let err = m.validate().unwrap_err();
        let text = err.to_string();
        for needle in [
            "artifacts[0].size",
            "signature.outputs[0].shape: has 3 classes but there are 2 labels",
            "metrics.accuracy",
            "golden[0].input: has 3 values, the input has 4",
            "golden[0].expected",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in {text}");
        }
    }

    #[test]
    fn unknown_fields_and_bad_names_are_refused_on_parse() {
        let mut json = serde_json::to_value(sample("iris", b"x")).unwrap();
        json["surprise"] = 1.into();
        assert!(serde_json::from_value::<Manifest>(json.clone()).is_err());
        json.as_object_mut().unwrap().remove("surprise");
        json["name"] = "../etc".into();
        let err = serde_json::from_value::<Manifest>(json).unwrap_err();
        assert!(err.to_string().contains("path separator"), "{err}");
    }
}
