//! Image collection: search pages from the photo APIs, download, validate and normalise every
//! image the same way, dedupe against the dataset's index, store it with seed 001's metadata, and
//! remember where paging stopped, so a killed scrape resumes without fetching again what it
//! stored. Local folders and uploads go through the same steps.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use anyhow::Context;
use bytes::Bytes;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use registry::Registry;
use registry::layout::DatasetName;
use registry::samples::{Duplicate, NEAR_DUPLICATE_BITS, NewSample, SampleLabel};
use serde::Serialize;
use serde_json::{Value, json};
use vision::{Limits, Normalized};

use super::PhotoSource;
use super::fetch::{self, Attribution, Candidate, Endpoint};
use super::guard::Guard;
use super::http::{Polite, Politeness};

/// Per-source counts, for the summary table and the job result.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Tally {
    /// The source.
    pub source: String,
    /// Candidates the API listed.
    pub listed: u64,
    /// Images downloaded.
    pub fetched: u64,
    /// Stored as new samples.
    pub new: u64,
    /// Not stored: already in the dataset (by source id, bytes, pixels or perceptual hash).
    pub duplicates: u64,
    /// Not stored, by reason (too_small, corrupt, download, …).
    pub rejected: BTreeMap<String, u64>,
    /// Waits for rate limits, and their seconds.
    pub rate_limit_waits: u32,
    /// Seconds spent waiting for rate limits.
    pub rate_limit_seconds: f64,
    /// Retries after errors.
    pub retries: u32,
}

impl Tally {
    fn reject(&mut self, reason: &str) {
        *self.rejected.entry(reason.to_owned()).or_default() += 1;
    }
}

/// The label a source or folder is collected under.
fn label(text: &str) -> anyhow::Result<SampleLabel> {
    Ok(SampleLabel::parse(text)?)
}

/// Seed 001's metadata document for a sample.
fn metadata(
    sample: &NewSample,
    n: &Normalized,
    attribution: &Attribution,
    api_data: &Value,
) -> Value {
    json!({
        "id": sample.record.id,
        "source": sample.record.source,
        "label": sample.record.label,
        "confidence": null,
        "timestamp": sample.record.added_at,
        "hash": n.original.sha256,
        "attribution": attribution,
        "api_data": api_data,
        "original": n.original,
        "normalized": {
            "digest": sample.record.digest, "pixels_sha256": n.pixels_sha256,
            "phash": sample.record.phash, "pipeline": vision::normalize::PIPELINE.name,
            "pipeline_version": vision::normalize::PIPELINE.version,
        },
    })
}

/// Normalises `bytes` into a sample, or says why not.
pub fn prepare(
    bytes: &[u8],
    limits: &Limits,
    label: SampleLabel,
    source: &str,
    source_id: Option<String>,
    attribution: &Attribution,
    api_data: &Value,
) -> Result<NewSample, vision::Rejected> {
    let n = vision::normalize(bytes, limits)?;
    let mut sample = NewSample::new(
        Bytes::from(n.jpeg.clone()),
        label,
        source,
        source_id,
        n.original.sha256.clone(),
        n.pixels_sha256.clone(),
        n.phash,
        Value::Null,
    );
    sample.meta = metadata(&sample, &n, attribution, api_data);
    Ok(sample)
}

/// Adds prepared samples and counts them into `tally`; returns the ids stored.
async fn commit(
    reg: &Registry,
    dataset: &DatasetName,
    batch: Vec<NewSample>,
    tally: &mut Tally,
) -> anyhow::Result<BTreeSet<uuid::Uuid>> {
    if batch.is_empty() {
        return Ok(BTreeSet::new());
    }
    let added = reg
        .add_samples(dataset, batch, NEAR_DUPLICATE_BITS)
        .await
        .with_context(|| format!("storing samples in dataset {dataset}"))?;
    let mut stored = BTreeSet::new();
    for outcome in added.outcomes {
        match outcome {
            Ok(id) => {
                tally.new += 1;
                stored.insert(id);
            }
            Err(
                Duplicate::Near { .. }
                | Duplicate::Pixels { .. }
                | Duplicate::Original { .. }
                | Duplicate::SourceId { .. },
            ) => tally.duplicates += 1,
        }
    }
    Ok(stored)
}

/// How a scrape runs.
pub struct ScrapeOptions<'a> {
    /// The dataset images go to.
    pub dataset: &'a DatasetName,
    /// Override of each query's `limit_per_query`.
    pub limit: Option<u64>,
    /// Image checks.
    pub limits: Limits,
    /// Retry and timeout rules (pace comes from each source's config).
    pub politeness: Politeness,
    /// Whether fetches may reach private and loopback addresses (`allow_private_addresses`).
    pub allow_private: bool,
    /// Progress bars (hidden when not a terminal).
    pub progress: &'a MultiProgress,
}

/// Collects one photo source: every query up to its limit, resuming where the last run stopped.
pub async fn scrape_source(
    reg: &Registry,
    source: &PhotoSource,
    opts: &ScrapeOptions<'_>,
    log: &mut dyn FnMut(String),
) -> anyhow::Result<Tally> {
    let label = label(source.label.as_deref().with_context(|| {
        format!(
            "source {} needs a label (real or ai_generated)",
            source.name
        )
    })?)?;
    let fetcher = fetch::fetcher(&source.name, source.endpoint())?;
    // The API key goes only to the API's host; images only from the source's image hosts.
    let hosts = fetcher.hosts();
    let api = Polite::new(Politeness {
        per_hour: source.rate_limit_per_hour.unwrap_or(0),
        guard: Guard::hosts(hosts.api, opts.allow_private),
        ..opts.politeness.clone()
    })?;
    // Image downloads come from CDNs, not the API: not paced, but retried the same way.
    let images = Polite::new(Politeness {
        per_hour: 0,
        max_bytes: opts.limits.max_bytes,
        guard: Guard::hosts(hosts.images, opts.allow_private),
        ..opts.politeness.clone()
    })?;
    let mut tally = Tally {
        source: source.name.clone(),
        ..Tally::default()
    };
    let limit = opts.limit.or(source.limit_per_query).unwrap_or(10);
    let bar = opts
        .progress
        .add(ProgressBar::new(limit * source.queries.len() as u64));
    bar.set_style(
        ProgressStyle::with_template("{prefix:>10} {bar:30} {pos}/{len} {msg}")
            .expect("valid template"),
    );
    bar.set_prefix(source.name.clone());
    for query in &source.queries {
        let saved = reg.cursor(opts.dataset, &source.name, query).await?;
        let mut state = saved.unwrap_or_else(|| json!({ "seen": 0, "next": null, "done": false }));
        let mut seen = state["seen"].as_u64().unwrap_or(0);
        bar.inc(seen.min(limit));
        while seen < limit && state["done"] != true {
            let page_size = source
                .per_page
                .unwrap_or(u32::MAX)
                .clamp(1, fetcher.max_per_page());
            let per_page = (limit - seen).min(u64::from(page_size)) as u32;
            let cursor = (!state["next"].is_null()).then(|| state["next"].clone());
            let page = fetcher
                .page(&api, query, cursor.as_ref(), per_page)
                .await
                .with_context(|| format!("{} search {query:?}", source.name))?;
            let (index, _) = reg.sample_index(opts.dataset).await?;
            let known: BTreeSet<&str> = index
                .samples
                .iter()
                .filter(|s| s.source == source.name)
                .filter_map(|s| s.source_id.as_deref())
                .collect();
            let mut batch = Vec::new();
            let mut used: Vec<Candidate> = Vec::new();
            for c in page.candidates.iter().take((limit - seen) as usize) {
                tally.listed += 1;
                bar.inc(1);
                if known.contains(c.source_id.as_str()) {
                    // Stored by an earlier (perhaps killed) run: not downloaded again.
                    tally.duplicates += 1;
                    continue;
                }
                let url = match reqwest::Url::parse(&c.image_url) {
                    Ok(u) => u,
                    Err(_) => {
                        tally.reject("bad_url");
                        continue;
                    }
                };
                let bytes = match images.get(&url, &fetcher.image_headers()).await {
                    Ok(f) => f.body,
                    Err(e) => {
                        log(format!(
                            "{}: download of {} failed: {e:#}",
                            source.name, c.source_id
                        ));
                        tally.reject("download");
                        continue;
                    }
                };
                tally.fetched += 1;
                match prepare(
                    &bytes,
                    &opts.limits,
                    label,
                    &source.name,
                    Some(c.source_id.clone()),
                    &c.attribution,
                    &c.api_data,
                ) {
                    Ok(sample) => {
                        batch.push(sample);
                        used.push(c.clone());
                    }
                    Err(why) => {
                        log(format!("{}: {} rejected: {why}", source.name, c.source_id));
                        tally.reject(why.code());
                    }
                }
            }
            seen += page.candidates.len().min((limit - seen) as usize) as u64;
            let ids: Vec<uuid::Uuid> = batch.iter().map(|s| s.record.id).collect();
            let stored = commit(reg, opts.dataset, batch, &mut tally).await?;
            for (c, id) in used.iter().zip(ids) {
                if stored.contains(&id)
                    && let Err(e) = fetcher.track(&api, c).await
                {
                    log(format!(
                        "{}: download tracking of {} failed: {e:#}",
                        source.name, c.source_id
                    ));
                }
            }
            state = json!({
                "seen": seen,
                "next": page.next.clone().unwrap_or(Value::Null),
                "done": page.next.is_none(),
            });
            // Saved after the page's samples are committed: a run killed before this point
            // fetches the page again and skips what it stored, by source id.
            reg.save_cursor(opts.dataset, &source.name, query, &state)
                .await?;
        }
    }
    let w = api.waits();
    let wi = images.waits();
    tally.rate_limit_waits = w.rate_limit_waits + wi.rate_limit_waits;
    tally.rate_limit_seconds = w.rate_limit_seconds + wi.rate_limit_seconds;
    tally.retries = w.retries + wi.retries;
    bar.finish_with_message(format!(
        "{} new, {} duplicates",
        tally.new, tally.duplicates
    ));
    Ok(tally)
}

/// Ingests the image files under `dir` (recursively) with `label`.
pub async fn ingest_dir(
    reg: &Registry,
    dataset: &DatasetName,
    dir: &Path,
    label_text: &str,
    license: &str,
    limits: &Limits,
) -> anyhow::Result<Tally> {
    let label = label(label_text)?;
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).with_context(|| format!("reading {}", d.display()))? {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files.sort();
    let mut tally = Tally {
        source: "local".into(),
        ..Tally::default()
    };
    let bar = ProgressBar::new(files.len() as u64);
    bar.set_style(
        ProgressStyle::with_template("ingest {bar:30} {pos}/{len} {msg}").expect("valid template"),
    );
    let mut batch = Vec::new();
    for path in &files {
        bar.inc(1);
        tally.listed += 1;
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        tally.fetched += 1;
        let rel = path.strip_prefix(dir).unwrap_or(path).display().to_string();
        let attribution = Attribution {
            platform: "local".into(),
            photographer: None,
            license: license.to_owned(),
            url: format!("file://{}", path.display()),
        };
        match prepare(
            &bytes,
            limits,
            label,
            "local",
            None,
            &attribution,
            &json!({ "file": rel }),
        ) {
            Ok(sample) => batch.push(sample),
            Err(why) => {
                tracing::warn!("{}: rejected: {why}", path.display());
                tally.reject(why.code());
            }
        }
        if batch.len() >= 64 {
            commit(reg, dataset, std::mem::take(&mut batch), &mut tally).await?;
        }
    }
    commit(reg, dataset, batch, &mut tally).await?;
    bar.finish_and_clear();
    Ok(tally)
}

/// Ingests the uploads waiting in the dataset (`POST /uploads`), removing each once handled.
pub async fn ingest_pending(
    reg: &Registry,
    dataset: &DatasetName,
    limits: &Limits,
) -> anyhow::Result<Tally> {
    let mut tally = Tally {
        source: "upload".into(),
        ..Tally::default()
    };
    for id in reg.pending_ids(dataset).await? {
        let Some((doc, bytes)) = reg.pending_upload(dataset, &id).await? else {
            continue;
        };
        tally.listed += 1;
        tally.fetched += 1;
        let attribution = Attribution {
            platform: "upload".into(),
            photographer: doc["uploader"].as_str().map(str::to_owned),
            license: doc["license"]
                .as_str()
                .unwrap_or("uploaded by an API client")
                .to_owned(),
            url: format!("upload:{id}"),
        };
        let label = doc["label"].as_str().map(label).transpose();
        match label {
            Ok(Some(label)) => match prepare(
                &bytes,
                limits,
                label,
                "upload",
                Some(id.to_string()),
                &attribution,
                &doc,
            ) {
                Ok(sample) => {
                    commit(reg, dataset, vec![sample], &mut tally).await?;
                }
                Err(why) => tally.reject(why.code()),
            },
            _ => tally.reject("label"),
        }
        reg.remove_pending(dataset, &id).await?;
    }
    Ok(tally)
}

/// Keys of a source from the seed's environment names.
pub fn endpoint_from_env(name: &str) -> Endpoint {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    match name {
        "unsplash" => Endpoint {
            base_url: var("UNSPLASH_API_URL"),
            key: var("UNSPLASH_ACCESS_KEY"),
        },
        "pexels" => Endpoint {
            base_url: var("PEXELS_API_URL"),
            key: var("PEXELS_API_KEY"),
        },
        "civitai" => Endpoint {
            base_url: var("CIVITAI_API_URL"),
            key: var("CIVITAI_API_KEY"),
        },
        "wikimedia" => Endpoint {
            base_url: var("WIKIMEDIA_API_URL"),
            key: None,
        },
        _ => Endpoint::default(),
    }
}
