//! An image dataset snapshot as a training set: the forensic features of every sample (the
//! `vision` crate, shared with the functions), cached per sample digest and pipeline version in
//! the dataset store, so retraining computes only new samples and workers share the work.

use anyhow::Context;
use bytes::Bytes;
use indicatif::{ProgressBar, ProgressStyle};
use ndarray::Array2;
use registry::Label;
use registry::Registry;
use registry::datasets::{Snapshot, SnapshotLayout};
use registry::layout;

use super::Dataset;

/// What loading did.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct FeatureReport {
    /// Samples whose features came from the cache.
    pub cached: usize,
    /// Samples whose features were computed now (and cached).
    pub computed: usize,
    /// Each row's perceptual hash, from the sample index, to check the split.
    #[serde(skip)]
    pub phashes: Vec<Option<u64>>,
}

/// True for a snapshot of image samples.
pub fn is_image_snapshot(snapshot: &Snapshot) -> bool {
    snapshot.layout == SnapshotLayout::DatasetFiles
}

/// `features/<pipeline>-v<n>/<first half of the hex digest>/<second half>.json` (a key segment
/// may have at most 64 bytes).
fn cache_key(snapshot: &Snapshot, digest: &registry::Digest) -> anyhow::Result<layout::Key> {
    Ok(registry::samples::feature_cache_key(
        &snapshot.dataset,
        vision::features::PIPELINE,
        digest,
    )?)
}

/// The feature matrix and labels of an image snapshot.
pub async fn load(reg: &Registry, snapshot: &Snapshot) -> anyhow::Result<(Dataset, FeatureReport)> {
    let mut labels: Vec<String> = snapshot
        .entries
        .iter()
        .map(|e| {
            e.label
                .clone()
                .with_context(|| format!("sample {} has no label", e.path))
        })
        .collect::<anyhow::Result<_>>()?;
    labels.sort();
    labels.dedup();
    anyhow::ensure!(
        labels.len() >= 2,
        "snapshot {} of {} has one label only ({:?}): a classifier needs two",
        snapshot.id,
        snapshot.dataset,
        labels
    );
    let names = vision::features::names();
    let (index, _) = reg.sample_index(&snapshot.dataset).await?;
    let phash_of: std::collections::BTreeMap<&str, u64> = index
        .samples
        .iter()
        .filter_map(|s| Some((s.path.as_str(), u64::from_str_radix(&s.phash, 16).ok()?)))
        .collect();
    let mut x = Array2::<f32>::zeros((snapshot.entries.len(), names.len()));
    let mut y = Vec::with_capacity(snapshot.entries.len());
    let mut report = FeatureReport::default();
    let bar = ProgressBar::new(snapshot.entries.len() as u64);
    bar.set_style(
        ProgressStyle::with_template("features {bar:30} {pos}/{len} {msg}")
            .expect("valid template"),
    );
    for (row, entry) in snapshot.entries.iter().enumerate() {
        bar.inc(1);
        let key = cache_key(snapshot, &entry.digest)?;
        let cached: Option<Vec<f32>> = match reg.cached_features(&key).await? {
            Some(bytes) => serde_json::from_slice(&bytes)
                .ok()
                .filter(|v: &Vec<f32>| v.len() == names.len()),
            None => None,
        };
        let features = match cached {
            Some(v) => {
                report.cached += 1;
                v
            }
            None => {
                let bytes = reg.entry_bytes(snapshot, entry).await?;
                let v = vision::features_of_sample(&bytes)
                    .with_context(|| format!("features of {}", entry.path))?;
                let json = Bytes::from(serde_json::to_vec(&v)?);
                reg.cache_features(&key, json).await?;
                report.computed += 1;
                v
            }
        };
        x.row_mut(row).assign(&ndarray::ArrayView1::from(&features));
        report
            .phashes
            .push(phash_of.get(entry.path.as_str()).copied());
        let label = entry.label.as_deref().unwrap_or_default();
        y.push(
            labels
                .iter()
                .position(|l| l == label)
                .expect("collected above"),
        );
    }
    bar.finish_and_clear();
    let classes = labels
        .iter()
        .map(|l| Label::new(l.clone()))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((
        Dataset {
            feature_names: names,
            classes,
            x,
            y,
            digest: snapshot.digest,
        },
        report,
    ))
}

/// The format-only baseline's training set: what a classifier could learn from the stored
/// files' container alone (format, width, height). After normalisation these are the same for
/// every sample, so a model on them must score at chance; the report shows that it does.
pub async fn format_only(
    reg: &Registry,
    snapshot: &Snapshot,
    labels_of: &Dataset,
) -> anyhow::Result<Dataset> {
    let mut x = Array2::<f32>::zeros((snapshot.entries.len(), 3));
    for (row, entry) in snapshot.entries.iter().enumerate() {
        let bytes = reg.entry_bytes(snapshot, entry).await?;
        let format = image::guess_format(&bytes).ok();
        let (w, h) = image::ImageReader::new(std::io::Cursor::new(&bytes))
            .with_guessed_format()?
            .into_dimensions()
            .unwrap_or((0, 0));
        x[[row, 0]] = f32::from(u8::from(format == Some(image::ImageFormat::Jpeg)));
        x[[row, 1]] = w as f32;
        x[[row, 2]] = h as f32;
    }
    Ok(Dataset {
        feature_names: vec!["is_jpeg".into(), "width".into(), "height".into()],
        classes: labels_of.classes.clone(),
        x,
        y: labels_of.y.clone(),
        digest: labels_of.digest,
    })
}
