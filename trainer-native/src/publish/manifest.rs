//! The version manifest of a trained model, built once from what the run produced; the registry
//! fills in the version number when it publishes.

use std::collections::BTreeMap;

use chrono::Utc;
use registry::manifest::{
    Artifact, DatasetLineage, GateDecision, Metrics, ModelInfo, Preprocessing, SCHEMA_VERSION,
    Signature, TensorSpec, TrainingRecord,
};
use registry::{Label, Manifest, RunId, Version};
use serde_json::json;

use crate::export::artifacts::Artifacts;
use crate::export::onnx;
use crate::job::TrainJob;
use crate::train::Outcome;
use crate::train::config::Family;
use crate::validate::Checked;

/// What the run measured besides the model's own test metrics.
pub struct Measured<'a> {
    /// The tract checks.
    pub checked: &'a Checked,
    /// Float test accuracy minus int8 test accuracy.
    pub int8_drop: f64,
    /// The format-only reference set's score (images), if one was trained.
    pub format_only: Option<&'a serde_json::Value>,
}

/// The manifest of `job`'s model, to publish with `gate`'s decision.
pub fn build(
    job: &TrainJob,
    outcome: &Outcome,
    a: &Artifacts,
    measured: &Measured<'_>,
    gate: &GateDecision,
    run: &RunId,
) -> anyhow::Result<Manifest> {
    let model = &outcome.model;
    let t = &outcome.test;
    let (n_in, n_out) = (model.net.inputs(), model.net.classes());
    let spec = |name: &str, w: usize| TensorSpec {
        name: name.into(),
        dtype: "float32".into(),
        shape: vec![None, Some(w as u64)],
    };
    let mut extra = BTreeMap::new();
    extra.insert("precision_weighted".into(), json!(t.precision_weighted));
    extra.insert("recall_weighted".into(), json!(t.recall_weighted));
    extra.insert("f1_weighted".into(), json!(t.f1_weighted));
    extra.insert("per_class".into(), json!(t.per_class));
    if let Some(curve) = &t.roc_curve {
        extra.insert("roc_curve".into(), json!(curve));
    }
    extra.insert(
        "int8_accuracy".into(),
        json!(measured.checked.int8_accuracy),
    );
    extra.insert("int8_accuracy_drop".into(), json!(measured.int8_drop));
    extra.insert(
        "tract_float_max_abs_diff".into(),
        json!(measured.checked.float_max_diff),
    );
    if let Some(v) = &outcome.val {
        extra.insert("val_accuracy".into(), json!(v.accuracy));
        extra.insert("val_loss".into(), json!(v.log_loss));
    }
    if let Some(best) = outcome.cv.first() {
        extra.insert("cv_mean_accuracy".into(), json!(best.mean_accuracy));
        extra.insert("cv_std_accuracy".into(), json!(best.std_accuracy));
        extra.insert("cv_folds".into(), json!(best.fold_accuracy.len()));
    }
    if job.phashes.is_some() {
        // The leakage check ran before training, and refuses any pair.
        extra.insert("near_duplicates_across_split".into(), json!(0));
    }
    if let Some(score) = measured.format_only {
        extra.insert("format_only_baseline".into(), score.clone());
    }
    let family = match job.config.model.family {
        Family::Mlp => "mlp",
        Family::LogisticRegression => "logistic_regression",
    };
    let labels = model
        .classes
        .iter()
        .map(|c| Label::new(c.clone()))
        .collect::<Result<Vec<_>, _>>()?;
    let data = &job.data;
    Ok(Manifest {
        schema_version: SCHEMA_VERSION,
        name: job.name.clone(),
        // The registry numbers the version when it publishes.
        version: Version::numbered(0),
        created_at: Utc::now(),
        model: ModelInfo {
            family: family.into(),
            architecture: json!({
                "hidden_layers": outcome.fit.hidden_layers, "activation": "relu",
                "dropout_rate": outcome.fit.dropout, "inputs": n_in, "classes": n_out,
                "opset": 13,
            }),
        },
        artifacts: vec![
            Artifact::describe("onnx", "model.onnx", "application/onnx", &a.float),
            Artifact::describe("onnx_int8", "model.int8.onnx", "application/onnx", &a.int8),
            Artifact::describe("labels", "labels.json", "application/json", &a.labels),
        ],
        signature: Signature {
            inputs: vec![spec(onnx::INPUT, n_in)],
            outputs: vec![spec(onnx::OUTPUT, n_out)],
        },
        features: job.pipeline.describe(model.feature_names.clone()),
        labels,
        preprocessing: Some(Preprocessing {
            scaler_mean: model.scaler.mean.iter().map(|&v| v as f64).collect(),
            scaler_scale: model.scaler.scale.iter().map(|&v| v as f64).collect(),
        }),
        metrics: Metrics {
            split: Some("test".into()),
            accuracy: Some(t.accuracy),
            roc_auc: t.roc_auc,
            loss: Some(t.log_loss),
            precision: Some(t.precision_macro),
            recall: Some(t.recall_macro),
            f1: Some(t.f1_macro),
            confusion_matrix: Some(t.confusion_matrix.clone()),
            extra,
        },
        dataset: DatasetLineage {
            id: Some(job.lineage.id.clone()),
            snapshot: Some(job.lineage.snapshot_or(data)),
            test_split: Some(outcome.split.test_digest(&data.digest)),
            size: data.len() as u64,
            train_size: outcome.split.train.len() as u64,
            val_size: outcome.split.val.len() as u64,
            test_size: outcome.split.test.len() as u64,
        },
        training: TrainingRecord {
            seed: job.config.random_seed,
            config: serde_json::to_value(&job.config)?,
            run_id: Some(run.to_string()),
        },
        golden: a.golden.clone(),
        golden_int8: a.golden_int8.clone(),
        parent: gate.baseline.clone(),
        gate: Some(gate.clone()),
        tags: job.tags.clone(),
    })
}
