//! Per-user, per-modality labelled sessions (A3CP), laid out as
//! `<dir>/<modality>/<user_id>/<label>/<sample>`: a gesture sample is JSON (`{"frames": [[…], …]}`
//! or the bare list of frames), a sound sample is a WAV file. Loading extracts features into a
//! [`Dataset`]; too little data is refused with a message that says what is missing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use ndarray::Array2;
use registry::{Digest, Label};
use serde::Deserialize;

use super::Dataset;
use crate::features::{Modality, gesture, sound};

/// Largest sample file read.
const MAX_SAMPLE_BYTES: u64 = 16 * 1024 * 1024;

/// Too few samples to train a model worth having.
#[derive(Debug, thiserror::Error)]
#[error(
    "{who} has too few {modality} samples to train: {detail}; lookups fall back to the {modality} default model"
)]
pub struct TooFewSamples {
    /// Whose data (a user, or all users).
    pub who: String,
    /// The modality.
    pub modality: &'static str,
    /// What is missing.
    pub detail: String,
}

/// Rules for enough data.
#[derive(Debug, Clone, Copy)]
pub struct Minimum {
    /// Samples each class needs.
    pub per_class: usize,
    /// Classes needed.
    pub classes: usize,
}

impl Default for Minimum {
    fn default() -> Self {
        Self {
            per_class: 5,
            classes: 2,
        }
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum GestureFile {
    Framed { frames: Vec<Vec<f32>> },
    Bare(Vec<Vec<f32>>),
}

/// The features of a gesture sample file: JSON frames (`{"frames": [[…], …]}` or the bare list).
pub fn gesture_features(bytes: &[u8]) -> anyhow::Result<Vec<f32>> {
    let parsed: GestureFile =
        serde_json::from_slice(bytes).context("not a gesture sample (JSON frames)")?;
    let frames = match parsed {
        GestureFile::Framed { frames } | GestureFile::Bare(frames) => frames,
    };
    gesture::extract(&frames)
}

/// A user id as it appears in folders and model names: `a-z`, `0-9`, `-`, `_`, at most 64.
pub fn check_user_id(user: &str) -> anyhow::Result<()> {
    if user.is_empty()
        || user.len() > 64
        || !user
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
    {
        bail!("invalid user id {user:?}: use lowercase a-z, 0-9, '-' and '_' (at most 64)");
    }
    Ok(())
}

fn sorted_dirs(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with('.') {
            out.push(entry.path());
        }
    }
    out.sort();
    Ok(out)
}

/// Loads the samples of `user` (or of every user) for `modality` under `root`.
pub fn load(
    root: &Path,
    modality: Modality,
    user: Option<&str>,
    minimum: Minimum,
) -> anyhow::Result<Dataset> {
    let base = root.join(modality.as_str());
    let users: Vec<PathBuf> = match user {
        Some(u) => {
            check_user_id(u)?;
            vec![base.join(u)]
        }
        None => sorted_dirs(&base)?
            .into_iter()
            .filter(|p| p.is_dir())
            .collect(),
    };
    let who = user.map_or_else(|| "all users together".to_owned(), |u| format!("user {u}"));
    let mut by_label: BTreeMap<String, Vec<(PathBuf, Vec<f32>)>> = BTreeMap::new();
    let mut hasher = registry::digest::Hasher::default();
    for user_dir in &users {
        if !user_dir.is_dir() {
            return Err(TooFewSamples {
                who,
                modality: modality.as_str(),
                detail: format!("no folder {}", user_dir.display()),
            }
            .into());
        }
        for label_dir in sorted_dirs(user_dir)?.into_iter().filter(|p| p.is_dir()) {
            let label = label_dir
                .file_name()
                .expect("a folder has a name")
                .to_string_lossy()
                .into_owned();
            Label::new(label.clone()).with_context(|| format!("folder {}", label_dir.display()))?;
            for file in sorted_dirs(&label_dir)?.into_iter().filter(|p| p.is_file()) {
                let size = file.metadata()?.len();
                if size > MAX_SAMPLE_BYTES {
                    bail!(
                        "{}: {size} bytes, more than the {MAX_SAMPLE_BYTES} a sample may have",
                        file.display()
                    );
                }
                let bytes =
                    std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
                let features = match modality {
                    Modality::Gesture => gesture_features(&bytes),
                    Modality::Sound => sound::extract_wav(&bytes),
                }
                .with_context(|| format!("extracting features from {}", file.display()))?;
                let rel = file
                    .strip_prefix(root)
                    .unwrap_or(&file)
                    .to_string_lossy()
                    .into_owned();
                hasher.update(rel.as_bytes());
                hasher.update(Digest::of(&bytes).as_bytes());
                by_label
                    .entry(label.clone())
                    .or_default()
                    .push((file, features));
            }
        }
    }
    let counts: Vec<String> = by_label
        .iter()
        .map(|(l, s)| format!("{l}: {}", s.len()))
        .collect();
    let short: Vec<&String> = by_label
        .iter()
        .filter(|(_, s)| s.len() < minimum.per_class)
        .map(|(l, _)| l)
        .collect();
    if by_label.len() < minimum.classes || !short.is_empty() {
        let detail = if by_label.is_empty() {
            "no samples found".to_owned()
        } else {
            format!(
                "found {} (need at least {} classes with {} samples each)",
                counts.join(", "),
                minimum.classes,
                minimum.per_class
            )
        };
        return Err(TooFewSamples {
            who,
            modality: modality.as_str(),
            detail,
        }
        .into());
    }
    let width = by_label
        .values()
        .next()
        .and_then(|s| s.first())
        .map_or(0, |(_, f)| f.len());
    let mut values = Vec::new();
    let mut y = Vec::new();
    for (class, samples) in by_label.values().enumerate() {
        for (path, f) in samples {
            if f.len() != width {
                bail!(
                    "{}: {} features, other samples have {width} (gesture samples of one model need the same channels)",
                    path.display(),
                    f.len()
                );
            }
            values.extend_from_slice(f);
            y.push(class);
        }
    }
    let feature_names = match modality {
        Modality::Gesture => gesture::feature_names(width / (gesture::KEYFRAMES + 5)),
        Modality::Sound => sound::feature_names(),
    };
    Ok(Dataset {
        feature_names,
        classes: by_label
            .keys()
            .map(|l| Label::new(l.clone()).expect("checked above"))
            .collect(),
        x: Array2::from_shape_vec((y.len(), width), values).expect("one row per sample"),
        y,
        digest: hasher.finish(),
    })
}
