//! The run record (`runs/<run-id>/record.json` in the registry and in the run folder) and the
//! model's performance-history entry, both written from the manifest as published.

use anyhow::Context;
use chrono::Utc;
use registry::history::{Decision, HistoryEntry};
use registry::manifest::GateDecision;
use registry::{Manifest, ModelName, Registry, RunId};
use serde::Serialize;
use serde_json::Value;

use crate::job::TrainJob;
use crate::train::Outcome;
use crate::train::config::TrainConfig;
use crate::train::mlp::{FitConfig, History};

/// How long the run took.
#[derive(Debug, Clone, Serialize)]
pub struct Timings {
    /// Seconds spent fitting (cross-validation included).
    pub fit_seconds: f64,
    /// Seconds for the whole run up to the publish.
    pub total_seconds: f64,
}

/// The data a run trained on.
#[derive(Debug, Clone, Serialize)]
pub struct DatasetRef {
    /// Dataset id or file name.
    pub id: String,
    /// Digest of the data as loaded.
    pub digest: registry::Digest,
}

/// Everything a run did, for `record.json`.
#[derive(Debug, Clone, Serialize)]
pub struct RunRecord<'a> {
    /// The run.
    pub run_id: &'a RunId,
    /// The model.
    pub model: &'a ModelName,
    /// The version published, as the registry numbered it.
    pub version: &'a registry::Version,
    /// The configuration, as the user wrote it (defaults filled in).
    pub config: &'a TrainConfig,
    /// The settings of the final fit (the search's winner, if one ran).
    pub fit: &'a FitConfig,
    /// Test, validation, int8 and cross-validation figures (`metrics.json`).
    pub metrics: Value,
    /// The final fit's epochs.
    pub history: &'a History,
    /// How long it took.
    pub timings: Timings,
    /// The gate's decision.
    pub gate: &'a GateDecision,
    /// The data.
    pub dataset: DatasetRef,
    /// The validator component's reports (or why it did not run).
    pub validation: Value,
}

/// The figures of `metrics.json`.
pub fn metrics(outcome: &Outcome, int8_accuracy: f64) -> Value {
    serde_json::json!({
        "test": outcome.test, "val": outcome.val,
        "int8_test_accuracy": int8_accuracy, "cv": outcome.cv,
    })
}

/// Stores the record in the registry, then appends the history entry of the published version.
pub async fn store(
    reg: &Registry,
    job: &TrainJob,
    published: &Manifest,
    record: &RunRecord<'_>,
) -> anyhow::Result<()> {
    reg.put_run_record(
        record.run_id,
        "record.json",
        serde_json::to_vec_pretty(record)?.into(),
    )
    .await
    .context("storing the run record")?;
    let decision = match record.gate.promoted {
        true => Decision::Promoted,
        false => Decision::Kept,
    };
    let mut entry = HistoryEntry::new(
        record.run_id.as_str(),
        Utc::now(),
        job.name.clone(),
        decision,
        record.gate.reason.clone(),
    );
    let m = &published.metrics;
    entry.version = Some(published.version.to_string());
    entry.dataset = Some(job.lineage.id.clone());
    entry.snapshot = Some(job.lineage.snapshot_or(&job.data));
    entry.accuracy = m.accuracy;
    entry.f1_macro = m.f1;
    entry.roc_auc = m.roc_auc;
    entry.int8_accuracy = m.extra.get("int8_accuracy").and_then(Value::as_f64);
    entry.job = job.job;
    reg.append_history(&entry)
        .await
        .context("appending to the performance history")
}
