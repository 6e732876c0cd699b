//! Labelled image samples of a dataset, with the dedupe index that concurrent scrapers share.
//!
//! ```text
//! datasets/<name>/images/YYYY/MM/DD/<uuid>.jpg   the normalised image, create-only
//! datasets/<name>/meta/YYYY/MM/DD/<uuid>.json    its metadata (seed 001's schema), create-only
//! datasets/<name>/index.json                     every sample's hashes and label, compare-and-swap
//! datasets/<name>/cursors/<source>/<query>.json  where each source's paging stopped
//! datasets/<name>/pending/<uuid>.{bin,json}      uploads waiting for ingestion
//! ```
//!
//! Adding samples writes their files first, then the index by compare-and-swap: a sample exists
//! once the index lists it. Before each index write the candidates are checked against the index
//! just read (same original bytes, same normalised pixels, a perceptual hash within the threshold,
//! the same source id), so two scrapers racing with the same image store it once; a candidate that
//! turns out to be a duplicate after a lost race has its files removed. A candidate the index
//! already lists by its own id is this writer's: an earlier index write of it was applied though
//! its answer was lost, and its files are never removed.

use std::collections::BTreeSet;

use bytes::Bytes;
use chrono::{DateTime, Datelike, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::datasets::{Snapshot, SnapshotEntry, SnapshotLayout};
use crate::digest::Digest;
use crate::error::Error;
use crate::layout::{self, DatasetName, Key};
use crate::registry::{BACKEND_ATTEMPTS, MAX_CAS_ATTEMPTS, Registry, parse};
use crate::store::{ETag, PutMode, StoreError};

/// Perceptual hashes at most this many bits apart are near duplicates: ingestion keeps one of
/// them, and no such pair may straddle a model's train/test split.
pub const NEAR_DUPLICATE_BITS: u32 = 6;

/// The label of an image sample: what the detector learns to tell apart. The one mapping from
/// text, shared by ingestion, uploads and the counts `/status` shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SampleLabel {
    /// A photograph.
    Real,
    /// Made by an image generator (`ai` accepted when parsing).
    #[serde(alias = "ai")]
    AiGenerated,
}

impl SampleLabel {
    /// Both labels, in the order a detector's classes are sorted.
    pub const ALL: [Self; 2] = [Self::AiGenerated, Self::Real];

    /// Parses `real`, `ai_generated` or `ai`; the error says what is accepted.
    pub fn parse(text: &str) -> Result<Self, crate::names::NameError> {
        match text {
            "real" => Ok(Self::Real),
            "ai" | "ai_generated" => Ok(Self::AiGenerated),
            other => Err(crate::names::NameError::new(
                "sample label",
                other,
                "must be real or ai_generated (or ai)",
            )),
        }
    }

    /// The label as stored: `real` or `ai_generated`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Real => "real",
            Self::AiGenerated => "ai_generated",
        }
    }
}

impl std::fmt::Display for SampleLabel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One sample in the index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SampleRecord {
    /// The sample's id (also its file name).
    pub id: Uuid,
    /// Path of the image within the dataset (`images/YYYY/MM/DD/<id>.jpg`).
    pub path: String,
    /// Digest of the stored (normalised) image.
    pub digest: Digest,
    /// Its size in bytes.
    pub size: u64,
    /// The label.
    pub label: SampleLabel,
    /// Where it came from (`unsplash`, `upload`, `local`, …).
    pub source: String,
    /// The source's own id of the image, if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_id: Option<String>,
    /// SHA-256 of the original file, hex.
    pub original_sha256: String,
    /// SHA-256 of the normalised pixels, hex.
    pub pixels_sha256: String,
    /// 64-bit perceptual hash of the normalised pixels, hex.
    pub phash: String,
    /// When it was added.
    pub added_at: DateTime<Utc>,
}

impl SampleRecord {
    /// Path of its metadata document within the dataset (`meta/YYYY/MM/DD/<id>.json`).
    pub fn meta_path(&self) -> String {
        self.path
            .replacen("images/", "meta/", 1)
            .replace(".jpg", ".json")
    }

    fn phash_bits(&self) -> Option<u64> {
        u64::from_str_radix(&self.phash, 16).ok()
    }
}

/// `datasets/<name>/index.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SampleIndex {
    /// The samples, in the order they were added.
    pub samples: Vec<SampleRecord>,
}

/// Why a candidate was not added.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Duplicate {
    /// The same source already gave this image.
    SourceId {
        /// The sample that has it.
        of: Uuid,
    },
    /// Byte-identical original.
    Original {
        /// The sample that has it.
        of: Uuid,
    },
    /// Identical normalised pixels.
    Pixels {
        /// The sample that has it.
        of: Uuid,
    },
    /// A perceptual hash within the threshold.
    Near {
        /// The sample that has it.
        of: Uuid,
        /// Bits that differ.
        distance: u32,
    },
}

/// A sample to add: its index record (id, path and digests filled in by [`NewSample::new`]), the
/// image and its metadata document.
#[derive(Debug, Clone)]
pub struct NewSample {
    /// The record the index will hold.
    pub record: SampleRecord,
    /// The normalised image.
    pub image: Bytes,
    /// The metadata JSON (seed 001's schema).
    pub meta: serde_json::Value,
}

impl NewSample {
    /// A sample with a fresh id and its path under today's date.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        image: Bytes,
        label: SampleLabel,
        source: &str,
        source_id: Option<String>,
        original_sha256: String,
        pixels_sha256: String,
        phash: u64,
        meta: serde_json::Value,
    ) -> Self {
        let mut sample = Self::with_id(Uuid::now_v7(), Utc::now(), image, meta);
        sample.record.label = label;
        sample.record.source = source.to_owned();
        sample.record.source_id = source_id;
        sample.record.original_sha256 = original_sha256;
        sample.record.pixels_sha256 = pixels_sha256;
        sample.record.phash = format!("{phash:016x}");
        sample
    }

    /// A sample with the given id and time, its digests and source left for the caller to fill
    /// in (the simulation picks ids from its seed).
    pub fn with_id(id: Uuid, now: DateTime<Utc>, image: Bytes, meta: serde_json::Value) -> Self {
        let path = format!(
            "images/{:04}/{:02}/{:02}/{id}.jpg",
            now.year(),
            now.month(),
            now.day()
        );
        Self {
            record: SampleRecord {
                id,
                path,
                digest: Digest::of(&image),
                size: image.len() as u64,
                label: SampleLabel::Real,
                source: String::new(),
                source_id: None,
                original_sha256: String::new(),
                pixels_sha256: String::new(),
                phash: String::new(),
                added_at: now,
            },
            image,
            meta,
        }
    }

    fn meta_path(&self) -> String {
        self.record.meta_path()
    }
}

/// What [`Registry::add_samples`] did with each candidate, in order.
#[derive(Debug, Clone)]
pub struct Added {
    /// `Ok(id)` if stored, else why it was a duplicate.
    pub outcomes: Vec<Result<Uuid, Duplicate>>,
    /// Index writes lost to concurrent writers (and retried).
    pub lost_races: u32,
}

/// Checks `candidate` against `known` records.
pub fn find_duplicate<'a>(
    candidate: &SampleRecord,
    known: impl IntoIterator<Item = &'a SampleRecord>,
    near: u32,
) -> Option<Duplicate> {
    let bits = candidate.phash_bits();
    for k in known {
        if candidate.source_id.is_some()
            && k.source == candidate.source
            && k.source_id == candidate.source_id
        {
            return Some(Duplicate::SourceId { of: k.id });
        }
        if k.original_sha256 == candidate.original_sha256 {
            return Some(Duplicate::Original { of: k.id });
        }
        if k.pixels_sha256 == candidate.pixels_sha256 {
            return Some(Duplicate::Pixels { of: k.id });
        }
        if let (Some(a), Some(b)) = (bits, k.phash_bits()) {
            let distance = (a ^ b).count_ones();
            if distance <= near {
                return Some(Duplicate::Near { of: k.id, distance });
            }
        }
    }
    None
}

/// Pairs of near duplicates (perceptual hashes within `near` bits) that `side` puts on different
/// sides of a split: these would leak a test image into training.
pub fn straddling_pairs(
    samples: &[SampleRecord],
    side: impl Fn(&SampleRecord) -> bool,
    near: u32,
) -> Vec<(Uuid, Uuid, u32)> {
    let mut out = Vec::new();
    for (i, a) in samples.iter().enumerate() {
        for b in &samples[i + 1..] {
            if side(a) == side(b) {
                continue;
            }
            if let (Some(x), Some(y)) = (a.phash_bits(), b.phash_bits()) {
                let d = (x ^ y).count_ones();
                if d <= near {
                    out.push((a.id, b.id, d));
                }
            }
        }
    }
    out
}

fn dataset_key(dataset: &DatasetName, path: &str) -> Result<Key, Error> {
    let parts: Vec<&str> = path.split('/').collect();
    Ok(layout::dataset_object(dataset, &parts)?)
}

/// Most uploads a dataset holds waiting for ingestion (`POST /uploads` answers 429 past it).
pub const MAX_PENDING_UPLOADS: usize = 1000;

impl Registry {
    /// A file of the dataset by its path inside it (a sample's `path` or `meta_path()`), if there.
    pub async fn sample_file(
        &self,
        dataset: &DatasetName,
        path: &str,
    ) -> Result<Option<Bytes>, Error> {
        let key = dataset_key(dataset, path)?;
        Ok(self.get_retrying(&key).await?.map(|o| o.bytes))
    }

    /// The dataset's sample index and the ETag it was read at (empty and `None` if none yet).
    pub async fn sample_index(
        &self,
        dataset: &DatasetName,
    ) -> Result<(SampleIndex, Option<ETag>), Error> {
        let key = dataset_key(dataset, "index.json")?;
        match self.get_retrying(&key).await? {
            Some(o) => Ok((parse(&key, &o.bytes)?, Some(o.etag))),
            None => Ok((SampleIndex::default(), None)),
        }
    }

    /// Adds the candidates that are not duplicates of the index (or of each other), as one index
    /// update.
    pub async fn add_samples(
        &self,
        dataset: &DatasetName,
        candidates: Vec<NewSample>,
        near: u32,
    ) -> Result<Added, Error> {
        self.check_writable()?;
        let key = dataset_key(dataset, "index.json")?;
        let mut written: BTreeSet<Uuid> = BTreeSet::new();
        let mut lost_races = 0;
        let mut backend_failures = 0;
        for attempt in 0..MAX_CAS_ATTEMPTS {
            let (mut index, etag) = self.sample_index(dataset).await?;
            let listed: BTreeSet<Uuid> = index.samples.iter().map(|s| s.id).collect();
            let mut outcomes = Vec::with_capacity(candidates.len());
            let mut accepted: Vec<&NewSample> = Vec::new();
            for c in &candidates {
                if listed.contains(&c.record.id) {
                    // Ours, from an index write whose answer was lost.
                    outcomes.push(Ok(c.record.id));
                    continue;
                }
                let known = index
                    .samples
                    .iter()
                    .chain(accepted.iter().map(|a| &a.record));
                match find_duplicate(&c.record, known, near) {
                    Some(dup) => outcomes.push(Err(dup)),
                    None => {
                        outcomes.push(Ok(c.record.id));
                        accepted.push(c);
                    }
                }
            }
            // Files first, create-only: the index must never list a sample without them.
            for c in &accepted {
                if !written.contains(&c.record.id) {
                    self.put_sample_files(dataset, c).await?;
                    written.insert(c.record.id);
                }
            }
            let kept: BTreeSet<Uuid> = accepted
                .iter()
                .map(|c| c.record.id)
                .chain(listed.iter().copied())
                .collect();
            let done = if accepted.is_empty() {
                true
            } else {
                index
                    .samples
                    .extend(accepted.iter().map(|c| c.record.clone()));
                let bytes = Bytes::from(serde_json::to_vec(&index).expect("serializes"));
                let mode = match &etag {
                    Some(e) => PutMode::IfMatch(e.clone()),
                    None => PutMode::Create,
                };
                match self.store().put(&key, bytes, mode).await {
                    Ok(_) => true,
                    Err(
                        StoreError::PreconditionFailed { .. } | StoreError::AlreadyExists { .. },
                    ) => {
                        lost_races += 1;
                        false
                    }
                    Err(e @ StoreError::Backend { .. }) => {
                        backend_failures += 1;
                        if backend_failures < BACKEND_ATTEMPTS {
                            false
                        } else {
                            // Every try failed; the last may have been applied.
                            let (now, _) = self.sample_index(dataset).await?;
                            let listed: BTreeSet<Uuid> = now.samples.iter().map(|s| s.id).collect();
                            if !accepted.iter().all(|c| listed.contains(&c.record.id)) {
                                return Err(e.into());
                            }
                            true
                        }
                    }
                }
            };
            if done {
                // Files of candidates that a concurrent writer's samples made duplicates; never
                // those of a sample the index lists.
                for c in candidates
                    .iter()
                    .filter(|c| written.contains(&c.record.id) && !kept.contains(&c.record.id))
                {
                    self.delete_sample_files(dataset, c).await?;
                }
                return Ok(Added {
                    outcomes,
                    lost_races,
                });
            }
            self.backoff(attempt).await;
        }
        Err(Error::Conflict {
            key,
            attempts: MAX_CAS_ATTEMPTS,
        })
    }

    async fn put_sample_files(&self, dataset: &DatasetName, c: &NewSample) -> Result<(), Error> {
        let image = dataset_key(dataset, &c.record.path)?;
        let meta = dataset_key(dataset, &c.meta_path())?;
        let meta_bytes = Bytes::from(serde_json::to_vec_pretty(&c.meta).expect("serializes"));
        for (key, bytes) in [(image, c.image.clone()), (meta, meta_bytes)] {
            self.create_or_adopt(&key, bytes).await?;
        }
        Ok(())
    }

    async fn delete_sample_files(&self, dataset: &DatasetName, c: &NewSample) -> Result<(), Error> {
        self.delete_retrying(&dataset_key(dataset, &c.record.path)?)
            .await?;
        self.delete_retrying(&dataset_key(dataset, &c.meta_path())?)
            .await?;
        Ok(())
    }

    /// A snapshot of the samples in the index (unless the newest snapshot has the same content).
    pub async fn snapshot_samples(
        &self,
        dataset: &DatasetName,
        source: Option<String>,
    ) -> Result<(Snapshot, bool), Error> {
        let (index, _) = self.sample_index(dataset).await?;
        let entries = index
            .samples
            .iter()
            .map(|s| SnapshotEntry {
                path: s.path.clone(),
                digest: s.digest,
                size: s.size,
                label: Some(s.label.to_string()),
            })
            .collect();
        self.snapshot_entries(dataset, entries, SnapshotLayout::DatasetFiles, source)
            .await
    }

    /// The bytes of a snapshot entry, checked against its digest.
    pub async fn entry_bytes(
        &self,
        snapshot: &Snapshot,
        entry: &SnapshotEntry,
    ) -> Result<Bytes, Error> {
        match snapshot.layout {
            SnapshotLayout::Blobs => self.blob(&entry.digest).await,
            SnapshotLayout::DatasetFiles => {
                let key = dataset_key(&snapshot.dataset, &entry.path)?;
                let object = self
                    .store()
                    .get(&key)
                    .await?
                    .ok_or_else(|| Error::Corrupt {
                        key: key.clone(),
                        reason: "listed in the snapshot but missing".into(),
                    })?;
                let actual = Digest::of(&object.bytes);
                if actual != entry.digest {
                    return Err(Error::DigestMismatch {
                        key,
                        expected: entry.digest,
                        actual,
                    });
                }
                Ok(object.bytes)
            }
        }
    }

    /// Where a source's paging stopped for a query, if it was saved.
    pub async fn cursor(
        &self,
        dataset: &DatasetName,
        source: &str,
        query: &str,
    ) -> Result<Option<serde_json::Value>, Error> {
        let key = cursor_key(dataset, source, query)?;
        match self.store().get(&key).await? {
            Some(o) => Ok(Some(parse(&key, &o.bytes)?)),
            None => Ok(None),
        }
    }

    /// Saves where a source's paging stopped for a query.
    pub async fn save_cursor(
        &self,
        dataset: &DatasetName,
        source: &str,
        query: &str,
        state: &serde_json::Value,
    ) -> Result<(), Error> {
        self.check_writable()?;
        let key = cursor_key(dataset, source, query)?;
        let bytes = Bytes::from(serde_json::to_vec(state).expect("serializes"));
        self.retrying(|| self.store().put(&key, bytes.clone(), PutMode::Overwrite))
            .await?;
        Ok(())
    }

    /// Stores an upload waiting for ingestion: its bytes and a small JSON description. Refused
    /// with [`Error::QuotaExceeded`] once the dataset holds [`MAX_PENDING_UPLOADS`] (counted
    /// before the write, so racing uploads may pass it by as many as race).
    pub async fn put_pending(
        &self,
        dataset: &DatasetName,
        bytes: Bytes,
        description: &serde_json::Value,
    ) -> Result<Uuid, Error> {
        self.check_fresh_writes()?;
        if self.pending_ids(dataset).await?.len() >= MAX_PENDING_UPLOADS {
            return Err(Error::QuotaExceeded {
                dataset: dataset.to_string(),
                limit: MAX_PENDING_UPLOADS,
            });
        }
        let id = self.new_id();
        let doc = Bytes::from(serde_json::to_vec(description).expect("serializes"));
        // The bytes first: a description always has its upload.
        self.create_or_adopt(&dataset_key(dataset, &format!("pending/{id}.bin"))?, bytes)
            .await?;
        self.create_or_adopt(&dataset_key(dataset, &format!("pending/{id}.json"))?, doc)
            .await?;
        Ok(id)
    }

    /// Ids of the uploads waiting for ingestion (those with a description), oldest first: read
    /// them one at a time with [`Registry::pending_upload`], so that a full queue is never in
    /// memory at once.
    pub async fn pending_ids(&self, dataset: &DatasetName) -> Result<Vec<Uuid>, Error> {
        let prefix = format!("datasets/{dataset}/pending/");
        let keys = self.retrying(|| self.store().list(&prefix)).await?;
        let mut ids: Vec<Uuid> = keys
            .iter()
            .filter_map(|key| {
                let id = key.as_str().strip_prefix(&prefix)?.strip_suffix(".json")?;
                Uuid::try_parse(id).ok()
            })
            .collect();
        ids.sort();
        Ok(ids)
    }

    /// One pending upload: its description and bytes (`None` if it was taken meanwhile).
    pub async fn pending_upload(
        &self,
        dataset: &DatasetName,
        id: &Uuid,
    ) -> Result<Option<(serde_json::Value, Bytes)>, Error> {
        let key = dataset_key(dataset, &format!("pending/{id}.json"))?;
        let Some(doc) = self.get_retrying(&key).await? else {
            return Ok(None);
        };
        let bin = dataset_key(dataset, &format!("pending/{id}.bin"))?;
        let Some(bytes) = self.get_retrying(&bin).await? else {
            return Ok(None);
        };
        Ok(Some((parse(&key, &doc.bytes)?, bytes.bytes)))
    }

    /// Removes an upload once it was ingested or rejected.
    pub async fn remove_pending(&self, dataset: &DatasetName, id: &Uuid) -> Result<(), Error> {
        self.check_writable()?;
        for ext in ["json", "bin"] {
            self.delete_retrying(&dataset_key(dataset, &format!("pending/{id}.{ext}"))?)
                .await?;
        }
        Ok(())
    }
}

/// `datasets/<dataset>/features/<pipeline>-v<version>/<hex[..32]>/<hex[32..]>.json`: the cached
/// feature vector of the sample whose stored bytes hash to `digest`.
pub fn feature_cache_key(
    dataset: &DatasetName,
    pipeline: crate::manifest::PipelineId,
    digest: &Digest,
) -> Result<Key, Error> {
    let hex = digest.hex();
    Ok(layout::dataset_object(
        dataset,
        &[
            "features",
            &format!("{}-v{}", pipeline.name, pipeline.version),
            &hex[..32],
            &format!("{}.json", &hex[32..]),
        ],
    )?)
}

impl Registry {
    /// The cached feature vector at `key` ([`feature_cache_key`]), if one was stored.
    pub async fn cached_features(&self, key: &Key) -> Result<Option<Bytes>, Error> {
        Ok(self.get_retrying(key).await?.map(|o| o.bytes))
    }

    /// Caches a feature vector, create-only (content-addressed: whoever writes it first writes
    /// the same vector). A read-only registry caches nothing; that is not an error.
    pub async fn cache_features(&self, key: &Key, bytes: Bytes) -> Result<(), Error> {
        if self.check_writable().is_err() {
            return Ok(());
        }
        match self
            .retrying(|| self.store().put(key, bytes.clone(), PutMode::Create))
            .await
        {
            Ok(_) | Err(StoreError::AlreadyExists { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

/// `datasets/<name>/cursors/<source>/<query-digest>.json`: the query goes in as a digest, so
/// any text is a safe key.
fn cursor_key(dataset: &DatasetName, source: &str, query: &str) -> Result<Key, Error> {
    let q = &Digest::of(query.as_bytes()).hex()[..16];
    Ok(layout::dataset_object(
        dataset,
        &["cursors", source, &format!("{q}.json")],
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn writer() -> Registry {
        Registry::in_memory_writer().await
    }

    fn sample(orig: &str, pixels: &str, phash: u64, source_id: Option<&str>) -> NewSample {
        NewSample::new(
            Bytes::from(format!("jpeg of {pixels}")),
            SampleLabel::Real,
            "unsplash",
            source_id.map(str::to_owned),
            orig.into(),
            pixels.into(),
            phash,
            serde_json::json!({"source": "unsplash"}),
        )
    }

    #[tokio::test]
    async fn duplicates_of_every_kind_are_refused_and_snapshots_list_the_rest() {
        let reg = writer().await;
        let ds = DatasetName::new("photos").unwrap();
        let first = reg
            .add_samples(
                &ds,
                vec![
                    sample("o1", "p1", 0xffff_0000_ffff_0000, Some("a")),
                    sample("o2", "p2", 0x0000_ffff_0000_ffff, Some("b")),
                ],
                6,
            )
            .await
            .unwrap();
        assert!(first.outcomes.iter().all(Result::is_ok));
        let again = reg
            .add_samples(
                &ds,
                vec![
                    sample("o9", "p9", 0x1234, Some("a")),
                    sample("o1", "p8", 0x5678, None),
                    sample("o7", "p2", 0x9abc, None),
                    sample("o6", "p6", 0xffff_0000_ffff_0007, None),
                    sample("o5", "p5", 0x0f0f_0f0f_0f0f_0f0f, None),
                    sample("o4", "p4", 0x0f0f_0f0f_0f0f_0f0e, None),
                ],
                6,
            )
            .await
            .unwrap();
        let kinds: Vec<&str> = again
            .outcomes
            .iter()
            .map(|o| match o {
                Ok(_) => "new",
                Err(Duplicate::SourceId { .. }) => "source",
                Err(Duplicate::Original { .. }) => "original",
                Err(Duplicate::Pixels { .. }) => "pixels",
                Err(Duplicate::Near { .. }) => "near",
            })
            .collect();
        assert_eq!(
            kinds,
            ["source", "original", "pixels", "near", "new", "near"]
        );
        let (index, _) = reg.sample_index(&ds).await.unwrap();
        assert_eq!(index.samples.len(), 3);
        let (snap, created) = reg.snapshot_samples(&ds, None).await.unwrap();
        assert!(created);
        assert_eq!(snap.entries.len(), 3);
        for e in &snap.entries {
            let bytes = reg.entry_bytes(&snap, e).await.unwrap();
            assert_eq!(Digest::of(&bytes), e.digest);
        }
        let meta_keys = reg.store().list("datasets/photos/meta/").await.unwrap();
        assert_eq!(meta_keys.len(), 3, "no files left behind for duplicates");
        let pairs = straddling_pairs(&index.samples, |s| s.original_sha256 == "o1", 6);
        assert!(pairs.is_empty(), "{pairs:?}");
        let pairs = straddling_pairs(&index.samples, |s| s.original_sha256 == "o1", 64);
        assert_eq!(pairs.len(), 2);
    }

    #[tokio::test]
    async fn racing_writers_store_one_copy() {
        let reg = writer().await;
        let ds = DatasetName::new("photos").unwrap();
        let tasks: Vec<_> = (0..8)
            .map(|i| {
                let (reg, ds) = (reg.clone(), ds.clone());
                tokio::spawn(async move {
                    let mine = sample(
                        &format!("o{i}"),
                        &format!("p{i}"),
                        fastrand::Rng::with_seed(i).u64(..),
                        None,
                    );
                    let shared = sample("same", "same", 0xdead_beef_dead_beef, None);
                    reg.add_samples(&ds, vec![shared, mine], 2).await.unwrap()
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        let (index, _) = reg.sample_index(&ds).await.unwrap();
        let shared = index
            .samples
            .iter()
            .filter(|s| s.original_sha256 == "same")
            .count();
        assert_eq!(shared, 1);
        assert_eq!(index.samples.len(), 9);
        let images = reg.store().list("datasets/photos/images/").await.unwrap();
        assert_eq!(images.len(), 9, "losers' files removed");
    }

    #[tokio::test]
    async fn cursors_and_pending_uploads_round_trip() {
        let reg = writer().await;
        let ds = DatasetName::new("photos").unwrap();
        assert!(reg.cursor(&ds, "pexels", "a b/c").await.unwrap().is_none());
        let state = serde_json::json!({"page": 3});
        reg.save_cursor(&ds, "pexels", "a b/c", &state)
            .await
            .unwrap();
        assert_eq!(
            reg.cursor(&ds, "pexels", "a b/c").await.unwrap(),
            Some(state)
        );
        let id = reg
            .put_pending(
                &ds,
                Bytes::from_static(b"img"),
                &serde_json::json!({"label": "real"}),
            )
            .await
            .unwrap();
        assert_eq!(reg.pending_ids(&ds).await.unwrap(), [id]);
        let (doc, bytes) = reg.pending_upload(&ds, &id).await.unwrap().unwrap();
        assert_eq!(
            (doc["label"].as_str(), &bytes[..]),
            (Some("real"), &b"img"[..])
        );
        reg.remove_pending(&ds, &id).await.unwrap();
        assert!(reg.pending_ids(&ds).await.unwrap().is_empty());
        assert!(reg.pending_upload(&ds, &id).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn uploads_stop_at_the_quota_until_ingestion_takes_some() {
        let reg = Registry::in_memory_writer().await;
        let ds = DatasetName::new("photos").unwrap();
        let doc = serde_json::json!({"label": "real"});
        let mut first = None;
        for _ in 0..MAX_PENDING_UPLOADS {
            let id = reg
                .put_pending(&ds, Bytes::from_static(b"i"), &doc)
                .await
                .unwrap();
            first.get_or_insert(id);
        }
        let refused = reg.put_pending(&ds, Bytes::from_static(b"i"), &doc).await;
        assert!(matches!(
            refused,
            Err(Error::QuotaExceeded {
                limit: MAX_PENDING_UPLOADS,
                ..
            })
        ));
        reg.remove_pending(&ds, &first.unwrap()).await.unwrap();
        reg.put_pending(&ds, Bytes::from_static(b"i"), &doc)
            .await
            .unwrap();
    }
}
