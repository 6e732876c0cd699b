//! The training pipeline, step by step: train, calibrate and export, check with tract, decide
//! the gate, write the run folder, publish, promote.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use bytes::Bytes;
use chrono::Utc;
use ndarray::Array2;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use registry::history::{Decision, HistoryEntry};
use registry::manifest::{
    Artifact, DatasetLineage, FeaturePipeline, GateDecision, GoldenCase, Metrics, ModelInfo,
    Preprocessing, SCHEMA_VERSION, Signature, TensorSpec, TrainingRecord,
};
use registry::{Alias, Label, Manifest, ModelName, Promotion, Registry, Version, VersionChoice};
use serde::Serialize;
use serde_json::json;

use crate::dataset::Dataset;
use crate::export::{onnx, quantize, verify};
use crate::train::config::{Family, TrainConfig};
use crate::train::{self, Observer, Outcome};

/// Golden rows stored in the manifest for later validators.
const GOLDEN_ROWS: usize = 8;
/// Test rows written to `golden.json` for cross-checks with other runtimes.
const CROSSCHECK_ROWS: usize = 64;
/// The feature pipeline of tabular models.
pub const TABULAR_PIPELINE: (&str, u32) = ("tabular", 1);

/// What the caller wants done with a trained model.
pub struct Request<'a> {
    /// The model's registry name.
    pub name: ModelName,
    /// The dataset.
    pub data: &'a Dataset,
    /// Where the data came from (dataset id or file), for lineage.
    pub dataset_id: String,
    /// Raw dataset files to keep in the run folder: (file name, bytes).
    pub dataset_files: Vec<(String, Vec<u8>)>,
    /// Training configuration.
    pub config: TrainConfig,
    /// Run folders go here.
    pub runs_dir: PathBuf,
    /// Promote whatever the gate says.
    pub force: bool,
    /// Tags for the manifest (user_id, modality, …).
    pub tags: BTreeMap<String, String>,
    /// Feature pipeline (name, version).
    pub pipeline: (&'static str, u32),
    /// The registry snapshot the data came from, if it did (lineage and history).
    pub snapshot: Option<registry::Digest>,
    /// The worker job running this, if one is.
    pub job: Option<uuid::Uuid>,
    /// A baseline training set whose score the report shows next to the model's (images: the
    /// format-only features, which must score at chance).
    pub baseline: Option<Dataset>,
    /// Each row's perceptual hash (image samples): no near-duplicate pair may straddle the
    /// split between training and test rows.
    pub phashes: Option<Vec<Option<u64>>>,
    /// Called right before publishing: a worker renews its job's lease there, so that a worker
    /// whose lease was taken over cannot publish.
    pub fence: Option<std::sync::Arc<dyn Fence>>,
}

/// A check made right before the publish: fails if this run must not publish any more.
pub trait Fence: Send + Sync {
    /// Ok while the run may publish.
    fn check(&self) -> futures::future::BoxFuture<'_, anyhow::Result<()>>;
}

/// Everything a run produced, for the summary and for callers.
#[derive(Debug, Serialize)]
pub struct RunSummary {
    /// Run id (the run folder's name).
    pub run_id: String,
    /// The run folder.
    pub run_dir: PathBuf,
    /// Model name.
    pub name: String,
    /// Published version, if published.
    pub version: Option<String>,
    /// Test metrics of the float model.
    pub test_accuracy: f64,
    /// Test accuracy of the int8 file, as tract runs it.
    pub int8_accuracy: f64,
    /// Macro F1 on test.
    pub f1_macro: f64,
    /// ROC AUC on test.
    pub roc_auc: Option<f64>,
    /// Float file size in bytes.
    pub float_bytes: usize,
    /// Int8 file size in bytes.
    pub int8_bytes: usize,
    /// Epochs run, and the epoch kept.
    pub epochs: (usize, usize),
    /// Seconds spent fitting (CV included).
    pub fit_seconds: f64,
    /// Seconds for the whole run.
    pub total_seconds: f64,
    /// The gate's decision.
    pub gate: GateDecision,
}

/// Artifacts of a trained model, ready to publish.
pub struct Artifacts {
    /// The float32 ONNX file.
    pub float: Vec<u8>,
    /// The int8 ONNX file.
    pub int8: Vec<u8>,
    /// `labels.json`: index -> label.
    pub labels: Vec<u8>,
    /// Golden rows with the float model's outputs.
    pub golden: Vec<GoldenCase>,
    /// The same rows with the int8 model's outputs.
    pub golden_int8: Vec<GoldenCase>,
    /// Int8 test accuracy measured by running the int8 file in tract.
    pub int8_accuracy: f64,
    /// Max |tract - trainer| on golden rows, float file.
    pub float_max_diff: f32,
    /// Cross-check rows for other runtimes: inputs, and the trainer's and tract's outputs for
    /// both files (`golden.json` in the run folder).
    pub crosscheck: serde_json::Value,
}

/// Calibrates, exports both files, and checks them in tract against the trainer's outputs.
pub fn export_and_check(
    data: &Dataset,
    outcome: &Outcome,
    cfg: &TrainConfig,
    pipeline: (&str, u32),
) -> anyhow::Result<Artifacts> {
    let model = &outcome.model;
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.random_seed ^ 0x5eed_ca1b);
    let mut calibration_rows = outcome.split.train.clone();
    calibration_rows.shuffle(&mut rng);
    calibration_rows.truncate(cfg.quantization.calibration_samples);
    calibration_rows.sort_unstable();
    let calibration = train::select_rows(data, &calibration_rows);
    let q = quantize::calibrate(model, calibration.view());

    let meta = onnx::Metadata {
        feature_names: &model.feature_names,
        labels: &model.classes,
        pipeline,
    };
    let float = onnx::float_model(model, &meta);
    let int8 = onnx::int8_model(model, &q, &meta);

    let golden_rows: Vec<usize> = outcome
        .split
        .test
        .iter()
        .copied()
        .take(GOLDEN_ROWS)
        .collect();
    let gx = train::select_rows(data, &golden_rows);
    let expected = model.predict_proba(gx.view());
    let float_max_diff = verify::check_float(&float, gx.view(), expected.view())
        .context("checking the float ONNX file in tract")?;
    let expected_int8 = q.predict_proba(model, gx.view());
    verify::check_int8(&int8, gx.view(), expected_int8.view())
        .context("checking the int8 ONNX file in tract")?;

    let tx = train::select_rows(data, &outcome.split.test);
    let int8_out = verify::run(&int8, tx.view())?;
    let truth: Vec<usize> = outcome.split.test.iter().map(|&i| data.y[i]).collect();
    let int8_accuracy = accuracy(&int8_out, &truth);

    let check_rows: Vec<usize> = outcome
        .split
        .test
        .iter()
        .copied()
        .take(CROSSCHECK_ROWS)
        .collect();
    let cx = train::select_rows(data, &check_rows);
    let crosscheck = json!({
        "inputs": cx.outer_iter().map(|r| r.to_vec()).collect::<Vec<_>>(),
        "float": {
            "trainer": rows_of(&model.predict_proba(cx.view())),
            "tract": rows_of(&verify::run(&float, cx.view())?),
        },
        "int8": {
            "trainer": rows_of(&q.predict_proba(model, cx.view())),
            "tract": rows_of(&verify::run(&int8, cx.view())?),
        },
    });
    let cases = |outputs: &Array2<f32>| -> Vec<GoldenCase> {
        gx.rows()
            .into_iter()
            .zip(outputs.rows())
            .map(|(i, e)| GoldenCase {
                input: i.to_vec(),
                expected: e.to_vec(),
            })
            .collect()
    };
    let golden = cases(&expected);
    let golden_int8 = cases(&expected_int8);
    let labels: BTreeMap<String, &String> = model
        .classes
        .iter()
        .enumerate()
        .map(|(i, l)| (i.to_string(), l))
        .collect();
    Ok(Artifacts {
        float,
        int8,
        labels: serde_json::to_vec_pretty(&labels)?,
        golden,
        golden_int8,
        int8_accuracy,
        float_max_diff,
        crosscheck,
    })
}

fn rows_of(a: &Array2<f32>) -> Vec<Vec<f32>> {
    a.outer_iter().map(|r| r.to_vec()).collect()
}

fn accuracy(proba: &Array2<f32>, truth: &[usize]) -> f64 {
    let pred = train::mlp::argmax_rows(proba.view());
    pred.iter().zip(truth).filter(|(a, b)| a == b).count() as f64 / truth.len().max(1) as f64
}

/// The accuracy of the current `production` version on this run's test rows, evaluated by
/// running its float ONNX file in tract. `None` when there is no production version.
async fn baseline(
    reg: &Registry,
    req: &Request<'_>,
    outcome: &Outcome,
) -> anyhow::Result<Option<(Version, f64)>> {
    let prod = match reg.by_alias(&req.name, &Alias::production()).await {
        Ok(m) => m,
        Err(registry::Error::ModelNotFound { .. } | registry::Error::AliasNotFound { .. }) => {
            return Ok(None);
        }
        Err(e) => return Err(e.into()),
    };
    let artifact = prod
        .artifact("onnx")
        .context("production version has no onnx artifact")?;
    let bytes = reg.blob(&artifact.digest).await?;
    let same_inputs = prod.features.feature_names == req.data.feature_names
        && prod
            .labels
            .iter()
            .map(ToString::to_string)
            .eq(outcome.model.classes.iter().cloned());
    anyhow::ensure!(
        same_inputs,
        "production version {} has different features or labels; it cannot be compared on this \
         test split (use --force to replace it)",
        prod.version
    );
    let tx = train::select_rows(req.data, &outcome.split.test);
    let out = verify::run(&bytes, tx.view()).context("running the production model")?;
    let truth: Vec<usize> = outcome.split.test.iter().map(|&i| req.data.y[i]).collect();
    Ok(Some((prod.version, accuracy(&out, &truth))))
}

fn decide(
    cfg: &TrainConfig,
    force: bool,
    accuracy: f64,
    drop: f64,
    baseline: Option<(Version, f64)>,
) -> GateDecision {
    let g = &cfg.gate;
    let mut reasons = Vec::new();
    if accuracy < g.min_accuracy {
        reasons.push(format!(
            "accuracy {accuracy:.4} is below the minimum {:.4}",
            g.min_accuracy
        ));
    }
    if let Some((v, b)) = &baseline
        && accuracy < b + g.min_gain
    {
        reasons.push(format!(
            "accuracy {accuracy:.4} does not beat production {v} ({b:.4}) by {:.4}",
            g.min_gain
        ));
    }
    if drop > cfg.quantization.max_accuracy_drop {
        reasons.push(format!(
            "int8 accuracy drop {drop:.4} exceeds {:.4}",
            cfg.quantization.max_accuracy_drop
        ));
    }
    let passed = reasons.is_empty();
    let reason = match (passed, force) {
        (true, _) => match &baseline {
            Some((v, b)) => format!(
                "accuracy {accuracy:.4} beats production {v} ({b:.4}) by at least {:.4}",
                g.min_gain
            ),
            None => format!(
                "accuracy {accuracy:.4} meets the minimum {:.4}; no production version yet",
                g.min_accuracy
            ),
        },
        (false, true) => format!("forced despite: {}", reasons.join("; ")),
        (false, false) => reasons.join("; "),
    };
    GateDecision {
        promoted: passed || force,
        alias: Alias::production(),
        forced: force && !passed,
        reason,
        min_accuracy: g.min_accuracy,
        min_gain: g.min_gain,
        baseline: baseline.as_ref().map(|(v, _)| v.clone()),
        baseline_accuracy: baseline.map(|(_, a)| a),
    }
}

/// Pairs (test row, training or validation row) whose perceptual hashes are within the
/// near-duplicate threshold of ingestion.
fn near_duplicates_across(
    hashes: &[Option<u64>],
    split: &crate::dataset::split::Split,
) -> Vec<(usize, usize)> {
    let near = crate::collect::images::NEAR_DUPLICATE_BITS;
    let mut out = Vec::new();
    for &t in &split.test {
        let Some(a) = hashes.get(t).copied().flatten() else {
            continue;
        };
        for &o in split.train.iter().chain(&split.val) {
            if let Some(b) = hashes.get(o).copied().flatten()
                && (a ^ b).count_ones() <= near
            {
                out.push((t, o));
            }
        }
    }
    out
}

/// Logistic regression on the baseline features, same split and seed: test accuracy and AUC,
/// and the majority class's share of the test rows (what "chance" means here).
fn baseline_score(b: &Dataset, cfg: &TrainConfig) -> anyhow::Result<serde_json::Value> {
    struct Quiet;
    impl Observer for Quiet {}
    let mut c = cfg.clone();
    c.model.family = Family::LogisticRegression;
    c.search = Default::default();
    let o = train::run(b, &c, &mut Quiet).context("training the format-only baseline")?;
    let mut counts = vec![0usize; b.classes.len()];
    for &i in &o.split.test {
        counts[b.y[i]] += 1;
    }
    let majority = *counts.iter().max().unwrap_or(&0) as f64 / o.split.test.len().max(1) as f64;
    Ok(json!({
        "features": b.feature_names, "test_accuracy": o.test.accuracy,
        "roc_auc": o.test.roc_auc, "majority_share": majority,
    }))
}

fn run_id() -> String {
    let now = Utc::now();
    let unique = uuid::Uuid::new_v4().simple().to_string();
    format!("run_{}_{}", now.format("%Y%m%d_%H%M%S"), &unique[..8])
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::write(dir.join(name), bytes)
        .with_context(|| format!("writing {}", dir.join(name).display()))
}

/// Trains, exports, checks, gates, writes the run folder, publishes and promotes.
pub async fn train_and_publish(
    reg: &Registry,
    req: Request<'_>,
    observer: &mut dyn Observer,
) -> anyhow::Result<RunSummary> {
    let started = Instant::now();
    let cfg = &req.config;
    let data = req.data;
    let outcome = train::run(data, cfg, observer)?;
    let fit_seconds = started.elapsed().as_secs_f64();
    let artifacts = export_and_check(data, &outcome, cfg, req.pipeline)?;
    let drop = outcome.test.accuracy - artifacts.int8_accuracy;
    let base = baseline(reg, &req, &outcome).await;
    let base = match base {
        Ok(b) => b,
        Err(e) if req.force => {
            tracing::warn!("no comparable production baseline: {e:#}");
            None
        }
        Err(e) => return Err(e),
    };
    let mut gate = decide(cfg, req.force, outcome.test.accuracy, drop, base);

    let run_id = run_id();
    let run_dir = req.runs_dir.join(&run_id);
    for (file, bytes) in &req.dataset_files {
        write(&run_dir.join("data"), file, bytes)?;
    }
    let out = run_dir.join("output");
    write(&out, "model.onnx", &artifacts.float)?;
    write(&out, "model.int8.onnx", &artifacts.int8)?;
    write(&out, "labels.json", &artifacts.labels)?;
    write(
        &out,
        "golden.json",
        &serde_json::to_vec(&artifacts.crosscheck)?,
    )?;

    if let Some(hashes) = &req.phashes {
        let straddling = near_duplicates_across(hashes, &outcome.split);
        anyhow::ensure!(
            straddling.is_empty(),
            "{} near-duplicate pairs straddle the train/test split (rows {:?}): the test score \
             would be inflated",
            straddling.len(),
            &straddling[..straddling.len().min(5)]
        );
    }
    let format_only = req
        .baseline
        .as_ref()
        .map(|b| baseline_score(b, cfg))
        .transpose()?;
    let manifest_for = |gate: &GateDecision| -> anyhow::Result<Manifest> {
        let mut manifest = build_manifest(&req, &outcome, &artifacts, gate, &run_id, drop)?;
        if req.phashes.is_some() {
            manifest
                .metrics
                .extra
                .insert("near_duplicates_across_split".into(), json!(0));
        }
        if let Some(score) = &format_only {
            manifest
                .metrics
                .extra
                .insert("format_only_baseline".into(), score.clone());
        }
        Ok(manifest)
    };
    let mut manifest = manifest_for(&gate)?;
    let metrics = json!({ "test": outcome.test, "val": outcome.val, "int8_test_accuracy": artifacts.int8_accuracy, "cv": outcome.cv });
    write(
        &run_dir,
        "metrics.json",
        &serde_json::to_vec_pretty(&metrics)?,
    )?;
    write(
        &run_dir,
        "config.yaml",
        serde_norway::to_string(cfg)?.as_bytes(),
    )?;
    let split = json!({ "train": outcome.split.train, "val": outcome.split.val, "test": outcome.split.test });
    write(&run_dir, "split.json", &serde_json::to_vec(&split)?)?;
    let log: Vec<String> = outcome
        .history
        .epochs
        .iter()
        .map(|e| serde_json::to_string(e).expect("serializes"))
        .collect();
    write(
        &run_dir.join("logs"),
        "epochs.jsonl",
        (log.join("\n") + "\n").as_bytes(),
    )?;

    let validation = validate_in_wasm(&manifest, &artifacts).await?;
    let blobs = [
        artifacts.float.clone(),
        artifacts.int8.clone(),
        artifacts.labels.clone(),
    ]
    .map(Bytes::from);
    // Publish and promote in one index write, conditional on production still being the
    // version the gate compared with; if another run moved it meanwhile, decide again.
    let mut regated = 0;
    let published = loop {
        if let Some(fence) = &req.fence {
            fence
                .check()
                .await
                .context("checking the job's lease before publishing")?;
        }
        let result = match gate.promoted {
            true => {
                let promotion = Promotion {
                    alias: Alias::production(),
                    expected: gate.baseline.clone(),
                };
                reg.publish_promoted(manifest.clone(), &blobs, VersionChoice::Next, promotion)
                    .await
            }
            false => {
                reg.publish(manifest.clone(), &blobs, VersionChoice::Next)
                    .await
            }
        };
        match result {
            Err(e @ registry::Error::AliasMoved { .. }) if regated < 3 => {
                regated += 1;
                tracing::warn!("{e}");
                let base = match baseline(reg, &req, &outcome).await {
                    Ok(b) => b,
                    Err(e) if req.force => {
                        tracing::warn!("no comparable production baseline: {e:#}");
                        None
                    }
                    Err(e) => return Err(e),
                };
                gate = decide(cfg, req.force, outcome.test.accuracy, drop, base);
                manifest = manifest_for(&gate)?;
            }
            other => break other.with_context(|| format!("publishing {}", req.name))?,
        }
    };
    let version = published.manifest.version.clone();
    // The run folder shows the manifest as published: its real version.
    write(&out, "manifest.json", &published.manifest.to_bytes())?;
    write(
        &out,
        "meta.json",
        &serde_json::to_vec_pretty(&registry::render::crowdmind_meta(&published.manifest))?,
    )?;
    let summary = RunSummary {
        run_id: run_id.clone(),
        run_dir: run_dir.clone(),
        name: req.name.to_string(),
        version: Some(version.to_string()),
        test_accuracy: outcome.test.accuracy,
        int8_accuracy: artifacts.int8_accuracy,
        f1_macro: outcome.test.f1_macro,
        roc_auc: outcome.test.roc_auc,
        float_bytes: artifacts.float.len(),
        int8_bytes: artifacts.int8.len(),
        epochs: (outcome.history.epochs.len(), outcome.history.best_epoch),
        fit_seconds,
        total_seconds: started.elapsed().as_secs_f64(),
        gate,
    };
    let record = json!({
        "run_id": run_id, "model": req.name, "version": version, "config": cfg,
        "fit": outcome.fit, "metrics": metrics, "history": outcome.history,
        "timings": { "fit_seconds": fit_seconds, "total_seconds": summary.total_seconds },
        "gate": summary.gate, "dataset": { "id": req.dataset_id, "digest": data.digest },
        "validation": validation,
    });
    reg.put_run_file(
        &run_id,
        "record.json",
        serde_json::to_vec_pretty(&record)?.into(),
    )
    .await
    .context("storing the run record")?;
    write(
        &run_dir,
        "record.json",
        &serde_json::to_vec_pretty(&record)?,
    )?;
    let decision = if summary.gate.promoted {
        Decision::Promoted
    } else {
        Decision::Kept
    };
    reg.append_history(&HistoryEntry {
        run_id,
        at: Utc::now(),
        model: req.name.clone(),
        version: summary.version.clone(),
        dataset: Some(req.dataset_id.clone()),
        snapshot: Some(req.snapshot.unwrap_or(data.digest)),
        accuracy: Some(summary.test_accuracy),
        f1_macro: Some(summary.f1_macro),
        roc_auc: summary.roc_auc,
        int8_accuracy: Some(summary.int8_accuracy),
        decision,
        reason: summary.gate.reason.clone(),
        job: req.job,
    })
    .await
    .context("appending to the performance history")?;
    Ok(summary)
}

/// Runs the validator component on both ONNX files with the final manifest. Without a built
/// component (scripts/build-functions) the native tract checks above stand, and the record says so.
async fn validate_in_wasm(manifest: &Manifest, a: &Artifacts) -> anyhow::Result<serde_json::Value> {
    let Some(path) = crate::validator::locate() else {
        tracing::warn!(
            "validator component not built (scripts/build-functions): checked with native tract only"
        );
        return Ok(
            json!({ "component": null, "reason": "validator component not built; checked with native tract only" }),
        );
    };
    let (m, float, int8) = (manifest.clone(), a.float.clone(), a.int8.clone());
    let (source, reports) = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
        let validator = crate::validator::WasmValidator::load(&path)?;
        let reports = validator.validate_all(&m, &[("onnx", &float), ("onnx_int8", &int8)])?;
        Ok((validator.source, reports))
    })
    .await
    .context("validator task")??;
    Ok(json!({ "component": source.0, "component_digest": source.1, "reports": reports }))
}

fn build_manifest(
    req: &Request<'_>,
    outcome: &Outcome,
    a: &Artifacts,
    gate: &GateDecision,
    run_id: &str,
    drop: f64,
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
    extra.insert("int8_accuracy".into(), json!(a.int8_accuracy));
    extra.insert("int8_accuracy_drop".into(), json!(drop));
    extra.insert("tract_float_max_abs_diff".into(), json!(a.float_max_diff));
    if let Some(v) = &outcome.val {
        extra.insert("val_accuracy".into(), json!(v.accuracy));
        extra.insert("val_loss".into(), json!(v.log_loss));
    }
    if let Some(best) = outcome.cv.first() {
        extra.insert("cv_mean_accuracy".into(), json!(best.mean_accuracy));
        extra.insert("cv_std_accuracy".into(), json!(best.std_accuracy));
        extra.insert("cv_folds".into(), json!(best.fold_accuracy.len()));
    }
    let family = match req.config.model.family {
        Family::Mlp => "mlp",
        Family::LogisticRegression => "logistic_regression",
    };
    let labels = model
        .classes
        .iter()
        .map(|c| Label::new(c.clone()))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Manifest {
        schema_version: SCHEMA_VERSION,
        name: req.name.clone(),
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
        features: FeaturePipeline {
            name: req.pipeline.0.into(),
            version: req.pipeline.1,
            feature_names: model.feature_names.clone(),
        },
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
            id: Some(req.dataset_id.clone()),
            snapshot: Some(req.snapshot.unwrap_or(req.data.digest)),
            test_split: Some(outcome.split.test_digest(&req.data.digest)),
            size: req.data.len() as u64,
            train_size: outcome.split.train.len() as u64,
            val_size: outcome.split.val.len() as u64,
            test_size: outcome.split.test.len() as u64,
        },
        training: TrainingRecord {
            seed: req.config.random_seed,
            config: serde_json::to_value(&req.config)?,
            run_id: Some(run_id.into()),
        },
        golden: a.golden.clone(),
        golden_int8: a.golden_int8.clone(),
        parent: gate.baseline.clone(),
        gate: Some(gate.clone()),
        tags: req.tags.clone(),
    })
}
