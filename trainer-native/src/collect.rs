//! Collection: turning the sources of `config/sources.yaml` into dataset snapshots in the
//! registry. Tabular sources (a CSV file and its schema) are read, checked against the schema, and
//! snapshotted when their content changed; a snapshot is the lineage a model records.
//!
//! ```yaml
//! sources:            # seed 001's photo APIs (name, enabled, label, queries, ...)
//!   - name: unsplash
//!     enabled: true
//!     label: real
//! datasets:           # tabular data sets, paths relative to this file
//!   - name: iris
//!     csv: data/iris.csv
//!     schema: data/iris.schema.json
//! ```

use std::path::{Path, PathBuf};

use anyhow::Context;
use bytes::Bytes;
use registry::Registry;
use registry::datasets::{NewFile, Snapshot};
use registry::layout::DatasetName;
use serde::{Deserialize, Serialize};

use crate::dataset::{Dataset, Schema};

/// File names of a tabular snapshot's entries.
pub const CSV_ENTRY: &str = "dataset.csv";
/// See [`CSV_ENTRY`].
pub const SCHEMA_ENTRY: &str = "schema.json";

/// `config/sources.yaml`. Keys this build does not use (the seed's `reddit`, a photo source's
/// queries and limits) are accepted and ignored.
#[derive(Debug, Default, Deserialize)]
pub struct SourcesConfig {
    /// Photo API sources (seed 001's shape).
    #[serde(default)]
    pub sources: Vec<PhotoSource>,
    /// Tabular data sets.
    #[serde(default)]
    pub datasets: Vec<TabularSource>,
}

/// A photo API source, as seed 001 configures it.
#[derive(Debug, Deserialize)]
pub struct PhotoSource {
    /// The API (unsplash, pexels, wikimedia, civitai).
    pub name: String,
    /// Whether to collect from it.
    #[serde(default = "yes")]
    pub enabled: bool,
}

/// A CSV file with its schema, collected into the dataset `name`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TabularSource {
    /// The dataset (a path-safe slug).
    pub name: String,
    /// Whether to collect it.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// The CSV file.
    pub csv: PathBuf,
    /// Its schema.json.
    pub schema: PathBuf,
}

fn yes() -> bool {
    true
}

impl SourcesConfig {
    /// Reads the file; relative paths in it are taken from the file's folder.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let mut config: Self =
            serde_norway::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        for d in &mut config.datasets {
            d.csv = base.join(&d.csv);
            d.schema = base.join(&d.schema);
        }
        Ok(config)
    }
}

/// What collecting one source did.
#[derive(Debug, Serialize)]
pub struct Collected {
    /// The dataset.
    pub dataset: String,
    /// The snapshot in force afterwards.
    pub snapshot: String,
    /// Its digest.
    pub digest: String,
    /// Rows or samples in it.
    pub rows: usize,
    /// False when the content had not changed.
    pub created: bool,
}

/// Checks a CSV against its schema and snapshots both in the registry unless unchanged.
pub async fn ingest_tabular(
    reg: &Registry,
    name: &DatasetName,
    csv: &Path,
    schema: &Path,
) -> anyhow::Result<Collected> {
    let csv_bytes = std::fs::read(csv).with_context(|| format!("reading {}", csv.display()))?;
    let schema_bytes =
        std::fs::read(schema).with_context(|| format!("reading {}", schema.display()))?;
    let parsed = Schema::parse(&schema.display().to_string(), &schema_bytes)?;
    // Only data that trains goes in: a snapshot that fails its schema would fail every run.
    let data = Dataset::from_csv(
        &csv.display().to_string(),
        &csv_bytes,
        &parsed,
        &schema_bytes,
    )?;
    let files = vec![
        NewFile {
            path: CSV_ENTRY.into(),
            bytes: Bytes::from(csv_bytes),
            label: None,
        },
        NewFile {
            path: SCHEMA_ENTRY.into(),
            bytes: Bytes::from(schema_bytes),
            label: None,
        },
    ];
    let (snapshot, created) = reg
        .snapshot_files(name, files, Some(csv.display().to_string()))
        .await
        .with_context(|| format!("storing a snapshot of dataset {name}"))?;
    Ok(Collected {
        dataset: name.to_string(),
        snapshot: snapshot.id,
        digest: snapshot.digest.to_string(),
        rows: data.len(),
        created,
    })
}

/// Collects every enabled source (or only `only`), logging each through `log`.
pub async fn scrape(
    reg: &Registry,
    config: &SourcesConfig,
    only: Option<&str>,
    log: &mut dyn FnMut(String),
) -> anyhow::Result<Vec<Collected>> {
    let mut out = Vec::new();
    let wanted = |name: &str| only.is_none_or(|o| o == name);
    let photo: Vec<&str> = config
        .sources
        .iter()
        .filter(|s| s.enabled && wanted(&s.name))
        .map(|s| s.name.as_str())
        .collect();
    let tabular: Vec<&TabularSource> = config
        .datasets
        .iter()
        .filter(|d| d.enabled && wanted(&d.name))
        .collect();
    anyhow::ensure!(
        !tabular.is_empty() || !photo.is_empty(),
        "no enabled source to collect{}",
        only.map(|o| format!(" named {o}")).unwrap_or_default()
    );
    for d in tabular {
        let name = DatasetName::new(&d.name)
            .with_context(|| format!("dataset name {:?} in the sources config", d.name))?;
        let c = ingest_tabular(reg, &name, &d.csv, &d.schema).await?;
        log(format!(
            "{}: {} rows, snapshot {} ({})",
            c.dataset,
            c.rows,
            c.snapshot,
            if c.created { "new" } else { "unchanged" }
        ));
        out.push(c);
    }
    anyhow::ensure!(
        photo.is_empty(),
        "photo sources {} are configured, but this build does not collect from photo APIs",
        photo.join(", ")
    );
    Ok(out)
}

/// The CSV bytes, schema and parsed dataset of a tabular snapshot.
pub async fn load_snapshot(
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
