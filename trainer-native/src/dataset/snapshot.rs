//! Turning a registry snapshot into data to train on: the CSV and schema of a tabular snapshot,
//! or the cached features of an image snapshot with its format-only reference set and the
//! perceptual hashes the leakage check needs.

use anyhow::Context;
use registry::Registry;
use registry::datasets::Snapshot;
use registry::manifest::PipelineId;

use super::{Dataset, Schema, TABULAR_PIPELINE, images};

/// File name of a tabular snapshot's CSV entry.
pub const CSV_ENTRY: &str = "dataset.csv";
/// File name of a tabular snapshot's schema entry.
pub const SCHEMA_ENTRY: &str = "schema.json";

/// The CSV bytes, schema and parsed dataset of a tabular snapshot.
pub async fn load_tabular(
    reg: &Registry,
    snapshot: &Snapshot,
) -> anyhow::Result<(Dataset, Vec<(String, Vec<u8>)>)> {
    let entry = |path: &str| {
        snapshot.entry(path).with_context(|| {
            format!(
                "snapshot {} of {} has no {path}: it is not a tabular dataset",
                snapshot.id, snapshot.dataset
            )
        })
    };
    let csv = reg.blob(&entry(CSV_ENTRY)?.digest).await?.to_vec();
    let schema_bytes = reg.blob(&entry(SCHEMA_ENTRY)?.digest).await?.to_vec();
    let source = format!("{}@{}", snapshot.dataset, snapshot.id);
    let schema = Schema::parse(&format!("{source} schema"), &schema_bytes)?;
    let data = Dataset::from_csv(&source, &csv, &schema, &schema_bytes)?;
    Ok((
        data,
        vec![(CSV_ENTRY.into(), csv), (SCHEMA_ENTRY.into(), schema_bytes)],
    ))
}

/// A snapshot made ready to train on: the data, the raw files to keep in the run folder, the
/// feature pipeline, and for images the format-only reference set and each row's perceptual hash.
pub struct TrainingSet {
    /// The data.
    pub data: Dataset,
    /// Raw dataset files for the run folder (tabular only).
    pub files: Vec<(String, Vec<u8>)>,
    /// The feature pipeline that computed the data's columns.
    pub pipeline: PipelineId,
    /// The same samples described by their file format alone (images), which must score at
    /// chance: a model that beats it learned more than the format.
    pub format_only: Option<Dataset>,
    /// Each row's perceptual hash (images).
    pub phashes: Option<Vec<Option<u64>>>,
    /// One line on where the features came from (images).
    pub note: Option<String>,
}

/// Loads any snapshot (tabular files, or image samples with their cached features).
pub async fn training_set(reg: &Registry, snapshot: &Snapshot) -> anyhow::Result<TrainingSet> {
    if !images::is_image_snapshot(snapshot) {
        let (data, files) = load_tabular(reg, snapshot).await?;
        return Ok(TrainingSet {
            data,
            files,
            pipeline: TABULAR_PIPELINE,
            format_only: None,
            phashes: None,
            note: None,
        });
    }
    let (data, report) = images::load(reg, snapshot).await?;
    let format_only = images::format_only(reg, snapshot, &data).await?;
    let note = format!(
        "features of {} samples ({} cached, {} computed)",
        data.len(),
        report.cached,
        report.computed
    );
    Ok(TrainingSet {
        data,
        files: Vec::new(),
        pipeline: vision::features::PIPELINE,
        format_only: Some(format_only),
        phashes: Some(report.phashes),
        note: Some(note),
    })
}
