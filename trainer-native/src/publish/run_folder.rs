//! The local run folder, written once the version is published, from the manifest as the
//! registry stored it (so `manifest.json` and `meta.json` carry the real version):
//!
//! ```text
//! <runs>/<run-id>/data/           the raw dataset files (tabular)
//!                 output/         model.onnx, model.int8.onnx, labels.json, golden.json,
//!                                 manifest.json, meta.json (CrowdMind's)
//!                 logs/epochs.jsonl
//!                 metrics.json, config.yaml, split.json, record.json
//! ```

use std::path::{Path, PathBuf};

use anyhow::Context;
use registry::Manifest;
use serde_json::json;

use super::record::RunRecord;
use crate::export::artifacts::Artifacts;
use crate::job::TrainJob;
use crate::train::Outcome;
use crate::validate::Checked;

/// The output files a CrowdMind upload carries.
pub const UPLOADED: [&str; 5] = [
    "model.onnx",
    "model.int8.onnx",
    "labels.json",
    "meta.json",
    "manifest.json",
];

/// The files of `output/`, rendered from the published manifest.
pub fn output_files(
    published: &Manifest,
    a: &Artifacts,
    checked: &Checked,
) -> anyhow::Result<Vec<(&'static str, Vec<u8>)>> {
    let meta = registry::render::crowdmind_meta(published);
    Ok(vec![
        ("model.onnx", a.float.clone()),
        ("model.int8.onnx", a.int8.clone()),
        ("labels.json", a.labels.clone()),
        ("golden.json", serde_json::to_vec(&checked.crosscheck)?),
        ("manifest.json", published.to_bytes()),
        ("meta.json", serde_json::to_vec_pretty(&meta)?),
    ])
}

/// Writes the whole folder; returns its path.
pub fn write(
    job: &TrainJob,
    outcome: &Outcome,
    outputs: &[(&'static str, Vec<u8>)],
    record: &RunRecord<'_>,
) -> anyhow::Result<PathBuf> {
    let dir = job.runs_dir.join(record.run_id.as_str());
    for (file, bytes) in &job.lineage.files {
        put(&dir.join("data"), file, bytes)?;
    }
    for (file, bytes) in outputs {
        put(&dir.join("output"), file, bytes)?;
    }
    put(
        &dir,
        "metrics.json",
        &serde_json::to_vec_pretty(&record.metrics)?,
    )?;
    put(
        &dir,
        "config.yaml",
        serde_norway::to_string(&job.config)?.as_bytes(),
    )?;
    let split = json!({
        "train": outcome.split.train, "val": outcome.split.val, "test": outcome.split.test,
    });
    put(&dir, "split.json", &serde_json::to_vec(&split)?)?;
    let mut log = String::new();
    for e in &outcome.history.epochs {
        log.push_str(&serde_json::to_string(e)?);
        log.push('\n');
    }
    put(&dir.join("logs"), "epochs.jsonl", log.as_bytes())?;
    put(&dir, "record.json", &serde_json::to_vec_pretty(record)?)?;
    Ok(dir)
}

fn put(dir: &Path, name: &str, bytes: &[u8]) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::write(dir.join(name), bytes)
        .with_context(|| format!("writing {}", dir.join(name).display()))
}
