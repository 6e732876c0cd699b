//! Collection: turning the sources of `config/sources.yaml` into dataset snapshots in the
//! registry. Photo sources are searched, downloaded, checked, normalised and deduplicated into
//! the image dataset (`images.rs`); tabular sources (a CSV file and its schema) are read, checked
//! against the schema, and snapshotted when their content changed. A snapshot is the lineage a
//! model records.
//!
//! ```yaml
//! dataset: authenticity   # the image dataset (default)
//! sources:            # seed 001's photo APIs (name, enabled, label, queries, ...)
//!   - name: unsplash
//!     enabled: true
//!     label: real
//! datasets:           # tabular data sets, paths relative to this file
//!   - name: iris
//!     csv: data/iris.csv
//!     schema: data/iris.schema.json
//! ```

pub mod fetch;
pub mod guard;
pub mod http;
pub mod images;

use std::path::{Path, PathBuf};

use anyhow::Context;
use bytes::Bytes;
use registry::Registry;
use registry::datasets::NewFile;
use registry::layout::DatasetName;
use serde::{Deserialize, Serialize};

use crate::dataset::snapshot::{CSV_ENTRY, SCHEMA_ENTRY};
use crate::dataset::{Dataset, Schema};

/// `config/sources.yaml`. Keys this build does not use (the seed's `reddit`, a photo source's
/// queries and limits) are accepted and ignored.
#[derive(Debug, Default, Deserialize)]
pub struct SourcesConfig {
    /// The dataset photo sources and uploads go to.
    #[serde(default = "default_image_dataset")]
    pub dataset: String,
    /// Photo API sources (seed 001's shape).
    #[serde(default)]
    pub sources: Vec<PhotoSource>,
    /// Tabular data sets.
    #[serde(default)]
    pub datasets: Vec<TabularSource>,
    /// Let fetches reach private, loopback and link-local addresses (off: a source's API or a
    /// listed image URL pointing inside the network is refused). For tests against local fakes.
    #[serde(default)]
    pub allow_private_addresses: bool,
}

/// A photo API source, as seed 001 configures it.
#[derive(Debug, Deserialize)]
pub struct PhotoSource {
    /// The API (unsplash, pexels, wikimedia, civitai).
    pub name: String,
    /// Whether to collect from it.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// The label of its images: real, or ai (ai_generated).
    pub label: Option<String>,
    /// Search queries (for CivitAI, filters as `key=value&…`).
    #[serde(default)]
    pub queries: Vec<String>,
    /// Images per query at most.
    pub limit_per_query: Option<u64>,
    /// API requests per hour at most.
    pub rate_limit_per_hour: Option<u32>,
    /// Results per page asked of the API (default: the most it serves).
    pub per_page: Option<u32>,
    /// The API's base URL, if not the public one (also from `<NAME>_API_URL`).
    pub base_url: Option<String>,
}

impl PhotoSource {
    /// The API endpoint: base URL from config, else the environment; key from the environment.
    pub fn endpoint(&self) -> fetch::Endpoint {
        let mut e = images::endpoint_from_env(&self.name);
        if self.base_url.is_some() {
            e.base_url = self.base_url.clone();
        }
        e
    }
}

fn default_image_dataset() -> String {
    "authenticity".into()
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
    /// Parses the YAML text of a sources config.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        Ok(serde_norway::from_str(text)?)
    }

    /// Reads the file; relative paths in it are taken from the file's folder.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let mut config =
            Self::parse(&text).with_context(|| format!("parsing {}", path.display()))?;
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

/// What a scrape did.
#[derive(Debug, Default, Serialize)]
pub struct ScrapeReport {
    /// Tabular datasets collected.
    pub datasets: Vec<Collected>,
    /// Photo sources (and uploads) collected.
    pub sources: Vec<images::Tally>,
    /// The image dataset's snapshot after the scrape, if photo sources or uploads ran.
    pub snapshot: Option<Collected>,
}

/// Collects every enabled source (or only `only`), then pending uploads, then snapshots the
/// image dataset; logs each step through `log`.
pub async fn scrape(
    reg: &Registry,
    config: &SourcesConfig,
    only: Option<&str>,
    limit: Option<u64>,
    log: &mut dyn FnMut(String),
) -> anyhow::Result<ScrapeReport> {
    let mut report = ScrapeReport::default();
    let wanted = |name: &str| only.is_none_or(|o| o == name);
    let photo: Vec<&PhotoSource> = config
        .sources
        .iter()
        .filter(|s| s.enabled && wanted(&s.name))
        .collect();
    let tabular: Vec<&TabularSource> = config
        .datasets
        .iter()
        .filter(|d| d.enabled && wanted(&d.name))
        .collect();
    anyhow::ensure!(
        !tabular.is_empty() || !photo.is_empty() || only == Some("uploads"),
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
        report.datasets.push(c);
    }
    let images_ds = DatasetName::new(&config.dataset)
        .with_context(|| format!("dataset name {:?} in the sources config", config.dataset))?;
    let progress = indicatif::MultiProgress::new();
    let opts = images::ScrapeOptions {
        dataset: &images_ds,
        limit,
        limits: vision::Limits::default(),
        politeness: http::Politeness::default(),
        allow_private: config.allow_private_addresses,
        progress: &progress,
    };
    let mut failures = Vec::new();
    for source in &photo {
        // One source failing (a key missing, an API down) does not stop the others.
        match images::scrape_source(reg, source, &opts, log).await {
            Ok(t) => {
                log(format!(
                    "{}: {} listed, {} new, {} duplicates, {} rejected",
                    t.source,
                    t.listed,
                    t.new,
                    t.duplicates,
                    t.rejected.values().sum::<u64>()
                ));
                report.sources.push(t);
            }
            Err(e) => {
                log(format!("{}: failed: {e:#}", source.name));
                failures.push(format!("{}: {e:#}", source.name));
            }
        }
    }
    if only.is_none() || only == Some("uploads") {
        let t = images::ingest_pending(reg, &images_ds, &opts.limits).await?;
        if t.listed > 0 {
            log(format!(
                "uploads: {} new, {} duplicates",
                t.new, t.duplicates
            ));
            report.sources.push(t);
        }
    }
    if !report.sources.is_empty() {
        let (snap, created) = reg
            .snapshot_samples(&images_ds, Some("scrape".into()))
            .await?;
        report.snapshot = Some(Collected {
            dataset: images_ds.to_string(),
            snapshot: snap.id,
            digest: snap.digest.to_string(),
            rows: snap.entries.len(),
            created,
        });
    }
    anyhow::ensure!(
        failures.is_empty(),
        "{} of {} photo sources failed: {}",
        failures.len(),
        photo.len(),
        failures.join("; ")
    );
    Ok(report)
}
