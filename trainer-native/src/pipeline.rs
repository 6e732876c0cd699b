//! The training pipeline: one [`TrainJob`] through each step, data flowing one way.
//!
//! leakage check -> train -> export -> validate (tract, the validator component) -> gate and
//! publish -> run record, history and run folder, from the manifest as published.
//!
//! Every refusal comes before the publish, which is the first write: a run that fails leaves
//! nothing behind, and one that publishes leaves a record that names the real version.

use std::path::PathBuf;
use std::time::Instant;

use bytes::Bytes;
use chrono::Utc;
use registry::manifest::GateDecision;
use registry::{Registry, RunId};
use serde::Serialize;

use crate::dataset::leakage;
use crate::export::artifacts::{self, Artifacts};
use crate::job::TrainJob;
use crate::publish::gate::Candidate;
use crate::publish::record::{self, DatasetRef, RunRecord, Timings};
use crate::publish::{self, manifest::Measured, run_folder};
use crate::train::{self, Observer};
use crate::validate;

/// What a run produced, for the summary and for callers.
#[derive(Debug, Serialize)]
pub struct RunSummary {
    /// Run id (the run folder's name).
    pub run_id: RunId,
    /// The run folder.
    pub run_dir: PathBuf,
    /// Model name.
    pub name: String,
    /// Published version.
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

/// A finished run: its summary, and the output files rendered from the manifest as published
/// (what a CrowdMind upload sends).
pub struct Trained {
    /// The summary.
    pub summary: RunSummary,
    /// `output/` of the run folder: (file name, bytes).
    pub outputs: Vec<(&'static str, Vec<u8>)>,
}

/// Runs `job`: checks, trains, exports, validates, gates, publishes and records.
pub async fn run(
    reg: &Registry,
    job: &TrainJob,
    observer: &mut dyn Observer,
) -> anyhow::Result<Trained> {
    let started = Instant::now();
    let (data, cfg) = (&job.data, &job.config);
    if let Some(hashes) = &job.phashes {
        leakage::check_split(hashes, &train::split_of(data, cfg)?)?;
    }
    let outcome = train::run(data, cfg, observer)?;
    let fit_seconds = started.elapsed().as_secs_f64();
    let artifacts = artifacts::export(data, &outcome, cfg, job.pipeline)?;
    let checked = validate::check(data, &outcome, &artifacts)?;
    let format_only = job
        .format_only
        .as_ref()
        .map(|reference| train::format_only::score(reference, cfg))
        .transpose()?;
    let candidate = Candidate {
        accuracy: outcome.test.accuracy,
        int8_drop: outcome.test.accuracy - checked.int8_accuracy,
    };
    let measured = Measured {
        checked: &checked,
        int8_drop: candidate.int8_drop,
        format_only: format_only.as_ref(),
    };
    let run_id = RunId::training(Utc::now());
    let manifest_for = |gate: &GateDecision| {
        publish::manifest::build(job, &outcome, &artifacts, &measured, gate, &run_id)
    };
    // The validator component checks the files against the manifest as the functions will;
    // what it refuses is not published.
    let draft = manifest_for(&publish::gate::decide(cfg, job.force, candidate, None))?;
    let validation = validate::component::check_artifacts(&draft, &artifacts).await?;

    let blobs = blobs_of(&artifacts);
    let (published, gate) =
        publish::gate_and_publish(reg, job, &outcome, candidate, &blobs, manifest_for).await?;
    let manifest = published.manifest;
    let total_seconds = started.elapsed().as_secs_f64();
    let record = RunRecord {
        run_id: &run_id,
        model: &job.name,
        version: &manifest.version,
        config: cfg,
        fit: &outcome.fit,
        metrics: record::metrics(&outcome, checked.int8_accuracy),
        history: &outcome.history,
        timings: Timings {
            fit_seconds,
            total_seconds,
        },
        gate: &gate,
        dataset: DatasetRef {
            id: job.lineage.id.clone(),
            digest: data.digest,
        },
        validation,
    };
    record::store(reg, job, &manifest, &record).await?;
    let outputs = run_folder::output_files(&manifest, &artifacts, &checked)?;
    let run_dir = run_folder::write(job, &outcome, &outputs, &record)?;
    let summary = RunSummary {
        run_id,
        run_dir,
        name: job.name.to_string(),
        version: Some(manifest.version.to_string()),
        test_accuracy: outcome.test.accuracy,
        int8_accuracy: checked.int8_accuracy,
        f1_macro: outcome.test.f1_macro,
        roc_auc: outcome.test.roc_auc,
        float_bytes: artifacts.float.len(),
        int8_bytes: artifacts.int8.len(),
        epochs: (outcome.history.epochs.len(), outcome.history.best_epoch),
        fit_seconds,
        total_seconds,
        gate,
    };
    Ok(Trained { summary, outputs })
}

fn blobs_of(a: &Artifacts) -> [Bytes; 3] {
    [a.float.clone(), a.int8.clone(), a.labels.clone()].map(Bytes::from)
}
