//! Train jobs: automated retraining on the newest dataset snapshot, through the quality gate.
//!
//! Parameters (all optional): `dataset` (default: every dataset with a snapshot), `model`
//! (default: the dataset's name), `family`, `seed`, `config` (a training config object, the shape
//! of `configs/train.yaml`), `force` (train even without new data, and promote whatever the gate
//! says). A model whose last published run used the same snapshot is skipped, and the skip is
//! recorded in its performance history.

use anyhow::Context as _;
use chrono::Utc;
use registry::ModelName;
use registry::history::{Decision, HistoryEntry};
use registry::layout::DatasetName;
use serde::Deserialize;
use serde_json::{Value, json};

use super::Context;
use crate::job::{self, DataSource, JobSpec};
use crate::pipeline;
use crate::train::config::{Family, TrainConfig};
use crate::train::{Observer, mlp::Epoch};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    dataset: Option<String>,
    model: Option<String>,
    family: Option<Family>,
    seed: Option<u64>,
    config: Option<TrainConfig>,
    #[serde(default)]
    force: bool,
    /// Set by the schedule: the period the job belongs to.
    #[allow(dead_code)]
    period_start: Option<String>,
}

/// Logs epochs sparsely to the job log.
struct LogObserver<'a>(&'a super::JobLog);

impl Observer for LogObserver<'_> {
    fn fold(&mut self, done: usize, total: usize) {
        if done == total {
            self.0.line(format!("cross-validation: {total} fits done"));
        }
    }
    fn final_fit(&mut self, max_epochs: usize) {
        self.0.line(format!("final fit: up to {max_epochs} epochs"));
    }
    fn epoch(&mut self, e: &Epoch) {
        if e.epoch.is_multiple_of(50) {
            self.0
                .line(format!("epoch {}: loss {:.4}", e.epoch, e.train_loss));
        }
    }
}

pub async fn run(ctx: &Context) -> anyhow::Result<Value> {
    let map: serde_json::Map<String, Value> = ctx.job.params.clone().into_iter().collect();
    let params: Params = serde_json::from_value(Value::Object(map))
        .context("bad train parameters (known: dataset, model, family, seed, config, force)")?;
    let reg = &ctx.reg;
    let datasets = match &params.dataset {
        Some(d) => vec![DatasetName::new(d).with_context(|| format!("dataset {d:?}"))?],
        None => reg.datasets().await?,
    };
    anyhow::ensure!(
        !datasets.is_empty(),
        "no dataset in the registry has a snapshot: ingest one (exposr-trainer ingest) or \
         configure a scrape source"
    );
    anyhow::ensure!(
        params.model.is_none() || datasets.len() == 1,
        "parameter model needs parameter dataset when several datasets exist"
    );
    let mut results = Vec::new();
    for dataset in datasets {
        let name = ModelName::new(params.model.clone().unwrap_or_else(|| dataset.to_string()))?;
        match train_one(ctx, &params, &dataset, &name).await {
            Ok(r) => results.push(r),
            Err(e) => {
                let mut entry = HistoryEntry::new(
                    format!("failed-{}-{}", ctx.job.id, ctx.job.attempts),
                    Utc::now(),
                    name.clone(),
                    Decision::Failed,
                    format!("{e:#}"),
                );
                entry.dataset = Some(dataset.to_string());
                entry.job = Some(ctx.job.id);
                if let Err(h) = reg.append_history(&entry).await {
                    tracing::warn!("recording the failed run in the history: {h}");
                }
                return Err(e.context(format!("training {name} on {dataset}")));
            }
        }
    }
    Ok(json!({ "models": results }))
}

async fn train_one(
    ctx: &Context,
    params: &Params,
    dataset: &DatasetName,
    name: &ModelName,
) -> anyhow::Result<Value> {
    let reg = &ctx.reg;
    let snapshot = job::latest_snapshot(reg, dataset).await?;
    // The newest version's lineage, not a window of the history: however many skips were
    // recorded since, an unchanged snapshot is seen as unchanged.
    if !params.force
        && let Some((version, trained_on)) = reg.last_trained_snapshot(name).await?
        && trained_on == snapshot.digest
    {
        let reason = format!(
            "no new data since {version}: snapshot {} is unchanged",
            snapshot.id
        );
        ctx.log.line(format!("{name}: skipped, {reason}"));
        let mut entry = HistoryEntry::new(
            format!("skip-{}-{}", ctx.job.id, ctx.job.attempts),
            Utc::now(),
            name.clone(),
            Decision::Skipped,
            reason.clone(),
        );
        entry.dataset = Some(format!("{dataset}@{}", snapshot.id));
        entry.snapshot = Some(snapshot.digest);
        entry.job = Some(ctx.job.id);
        reg.append_history(&entry).await?;
        return Ok(json!({ "model": name, "decision": "skipped", "reason": reason }));
    }
    ctx.log.line(format!(
        "{name}: training on {dataset}@{} ({} entries)",
        snapshot.id,
        snapshot.entries.len()
    ));
    let mut config = params.config.clone().unwrap_or_default();
    if let Some(f) = params.family {
        config.model.family = f;
    }
    if let Some(s) = params.seed {
        config.random_seed = s;
    }
    let spec = JobSpec {
        source: DataSource::Snapshot(snapshot),
        model: Some(name.to_string()),
        config,
        force: params.force,
        runs_dir: ctx.runs_dir.clone(),
        job: Some(ctx.job.id),
        fence: Some(ctx.fence.clone()),
    };
    let train_job = job::prepare(reg, spec).await?;
    if let Some(note) = &train_job.note {
        ctx.log.line(format!("{name}: {note}"));
    }
    let summary = pipeline::run(reg, &train_job, &mut LogObserver(&ctx.log))
        .await?
        .summary;
    ctx.log.line(format!(
        "{name}: published {} (test accuracy {:.4}); {}",
        summary.version.as_deref().unwrap_or("-"),
        summary.test_accuracy,
        summary.gate.reason
    ));
    Ok(json!({
        "model": name, "version": summary.version, "run_id": summary.run_id,
        "decision": if summary.gate.promoted { "promoted" } else { "kept" },
        "test_accuracy": summary.test_accuracy, "gate": summary.gate.reason,
    }))
}
