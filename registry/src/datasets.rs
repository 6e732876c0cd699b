//! Dataset snapshots (`datasets/<name>/snapshots/<id>.json`): an immutable, sorted list of the
//! files (or samples) of a dataset at one moment, each by digest, with a digest of its own. The
//! bytes live in `blobs/`; a model's manifest names the snapshot digest it was trained on.
//! Snapshot ids sort by time, so the newest is the last one listed.

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::error::Error;
use crate::layout::{self, DatasetName};
use crate::registry::{Registry, parse};
use crate::store::PutMode;

/// One file or sample of a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotEntry {
    /// Its path within the dataset (e.g. `dataset.csv`, `images/2026/11/26/<uuid>.jpg`).
    pub path: String,
    /// The bytes' digest (the blob's key).
    pub digest: Digest,
    /// Size in bytes.
    pub size: u64,
    /// The sample's label, for labelled samples.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
}

/// Where a snapshot's bytes live.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SnapshotLayout {
    /// In `blobs/sha256/<digest>` (tabular files).
    #[default]
    Blobs,
    /// At `datasets/<name>/<path>` (image samples).
    DatasetFiles,
}

/// `datasets/<name>/snapshots/<id>.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// The dataset.
    pub dataset: DatasetName,
    /// Time-ordered id.
    pub id: String,
    /// When it was taken.
    pub created_at: DateTime<Utc>,
    /// Digest of the sorted entries ([`Snapshot::digest_of`]): equal content, equal digest.
    pub digest: Digest,
    /// Where the data came from (a file, an API), for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Where the entries' bytes live.
    #[serde(default)]
    pub layout: SnapshotLayout,
    /// The entries, sorted by path.
    pub entries: Vec<SnapshotEntry>,
}

impl Snapshot {
    /// The digest of entries: SHA-256 over one `digest<TAB>label<TAB>path` line per entry, in
    /// path order.
    pub fn digest_of(entries: &[SnapshotEntry]) -> Digest {
        let mut sorted: Vec<&SnapshotEntry> = entries.iter().collect();
        sorted.sort_by(|a, b| a.path.cmp(&b.path));
        let text: String = sorted
            .iter()
            .map(|e| {
                format!(
                    "{}\t{}\t{}\n",
                    e.digest,
                    e.label.as_deref().unwrap_or(""),
                    e.path
                )
            })
            .collect();
        Digest::of(text.as_bytes())
    }

    /// The entry at `path`.
    pub fn entry(&self, path: &str) -> Option<&SnapshotEntry> {
        self.entries.iter().find(|e| e.path == path)
    }
}

/// A file to put in a snapshot.
#[derive(Debug, Clone)]
pub struct NewFile {
    /// Its path within the dataset.
    pub path: String,
    /// Its bytes.
    pub bytes: Bytes,
    /// Its label, if it is a labelled sample.
    pub label: Option<String>,
}

impl Registry {
    /// Stores `files` and a snapshot of them, unless the newest snapshot already has exactly this
    /// content; returns the snapshot in force and whether this call created it.
    pub async fn snapshot_files(
        &self,
        dataset: &DatasetName,
        files: Vec<NewFile>,
        source: Option<String>,
    ) -> Result<(Snapshot, bool), Error> {
        self.check_writable()?;
        let entries: Vec<SnapshotEntry> = files
            .iter()
            .map(|f| SnapshotEntry {
                path: f.path.clone(),
                digest: Digest::of(&f.bytes),
                size: f.bytes.len() as u64,
                label: f.label.clone(),
            })
            .collect();
        if let Some(latest) = self.latest_snapshot(dataset).await?
            && latest.digest == Snapshot::digest_of(&entries)
        {
            return Ok((latest, false));
        }
        let reused = self
            .put_blobs(files.into_iter().map(|f| (Digest::of(&f.bytes), f.bytes)))
            .await?;
        let intent = self
            .protect_reused(
                reused
                    .into_iter()
                    .map(|(d, b)| (layout::blob(&d), b))
                    .collect(),
            )
            .await?;
        let snapshot = self
            .snapshot_entries(dataset, entries, SnapshotLayout::Blobs, source)
            .await;
        self.release(intent).await;
        snapshot
    }

    /// Writes a snapshot of entries whose bytes are already stored, unless the newest snapshot
    /// has exactly this content; returns the snapshot in force and whether this call created it.
    pub async fn snapshot_entries(
        &self,
        dataset: &DatasetName,
        mut entries: Vec<SnapshotEntry>,
        storage: SnapshotLayout,
        source: Option<String>,
    ) -> Result<(Snapshot, bool), Error> {
        self.check_writable()?;
        entries.sort_by(|a, b| a.path.cmp(&b.path));
        let digest = Snapshot::digest_of(&entries);
        if let Some(latest) = self.latest_snapshot(dataset).await?
            && latest.digest == digest
        {
            return Ok((latest, false));
        }
        let created_at = self.now();
        let id = format!(
            "{}-{}",
            created_at.format("%Y%m%dT%H%M%S%3fZ"),
            &digest.hex()[..12]
        );
        let snapshot = Snapshot {
            dataset: dataset.clone(),
            id: id.clone(),
            created_at,
            digest,
            source,
            layout: storage,
            entries,
        };
        let bytes = serde_json::to_vec_pretty(&snapshot).expect("serializes");
        // The catalog entry first: a dataset with a snapshot is always in the catalog. A
        // registry from before the catalog gets its existing datasets entered once.
        let catalog = self
            .retrying(|| self.store().list(layout::DATASET_CATALOG))
            .await?;
        let mut names = if catalog.is_empty() {
            self.scan_datasets().await?
        } else {
            Vec::new()
        };
        names.push(dataset.clone());
        for name in names {
            let key = layout::dataset_catalog_entry(&name);
            self.retrying(|| self.store().put(&key, Bytes::new(), PutMode::Overwrite))
                .await?;
        }
        self.create_or_adopt(&layout::snapshot(dataset, &id)?, Bytes::from(bytes))
            .await?;
        Ok((snapshot, true))
    }

    /// The newest snapshot of `dataset`, if any.
    pub async fn latest_snapshot(&self, dataset: &DatasetName) -> Result<Option<Snapshot>, Error> {
        let prefix = layout::snapshots_prefix(dataset);
        let keys = self.retrying(|| self.store().list(&prefix)).await?;
        let Some(key) = keys.iter().rfind(|k| k.as_str().ends_with(".json")) else {
            return Ok(None);
        };
        let Some(object) = self.get_retrying(key).await? else {
            return Ok(None);
        };
        parse(key, &object.bytes).map(Some)
    }

    /// Datasets that have at least one snapshot, sorted: from the catalog, or for a registry
    /// written before it existed, by listing every dataset object.
    pub async fn datasets(&self) -> Result<Vec<DatasetName>, Error> {
        let catalog = self.store().list(layout::DATASET_CATALOG).await?;
        if !catalog.is_empty() {
            let mut names: Vec<DatasetName> = catalog
                .iter()
                .filter_map(|k| k.as_str().strip_prefix(layout::DATASET_CATALOG))
                .filter_map(|n| DatasetName::new(n).ok())
                .collect();
            names.sort();
            return Ok(names);
        }
        self.scan_datasets().await
    }

    /// Datasets with a snapshot, found by listing every dataset object.
    async fn scan_datasets(&self) -> Result<Vec<DatasetName>, Error> {
        let keys = self.store().list("datasets/").await?;
        let mut names: Vec<DatasetName> = keys
            .iter()
            .filter_map(|k| {
                let rest = k.as_str().strip_prefix("datasets/")?;
                let (name, tail) = rest.split_once('/')?;
                tail.starts_with("snapshots/")
                    .then(|| DatasetName::new(name).ok())
                    .flatten()
            })
            .collect();
        names.dedup();
        Ok(names)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, bytes: &'static [u8]) -> NewFile {
        NewFile {
            path: path.into(),
            bytes: Bytes::from_static(bytes),
            label: None,
        }
    }

    #[tokio::test]
    async fn a_snapshot_is_taken_only_when_content_changes() {
        let reg = Registry::in_memory_writer().await;
        let ds = DatasetName::new("iris").unwrap();
        assert!(reg.latest_snapshot(&ds).await.unwrap().is_none());
        let (a, created) = reg
            .snapshot_files(&ds, vec![file("b.csv", b"2"), file("a.csv", b"1")], None)
            .await
            .unwrap();
        assert!(created);
        assert_eq!(a.entries[0].path, "a.csv", "sorted by path");
        assert_eq!(reg.blob(&a.entries[1].digest).await.unwrap(), &b"2"[..]);
        let (same, created) = reg
            .snapshot_files(&ds, vec![file("a.csv", b"1"), file("b.csv", b"2")], None)
            .await
            .unwrap();
        assert!(!created);
        assert_eq!(same, a);
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        let (b, created) = reg
            .snapshot_files(&ds, vec![file("a.csv", b"1"), file("b.csv", b"3")], None)
            .await
            .unwrap();
        assert!(created);
        assert_ne!(b.digest, a.digest);
        assert_eq!(reg.latest_snapshot(&ds).await.unwrap().unwrap(), b);
        assert_eq!(reg.datasets().await.unwrap(), vec![ds.clone()]);
        assert_eq!(
            reg.store()
                .list(layout::DATASET_CATALOG)
                .await
                .unwrap()
                .len(),
            1,
            "found through the catalog"
        );
    }
}
