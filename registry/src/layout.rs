//! The registry's layout as pure key math: every object the registry reads or writes has its key
//! built here, from checked types only, so no key can escape its folder.
//!
//! ```text
//! blobs/sha256/<hex>                      immutable artifacts, create-only
//! models/<name>/versions/<version>.json   immutable manifests, create-only
//! models/<name>/index.json                versions + aliases, compare-and-swap on its ETag
//! datasets/<dataset>/...                  samples, dedupe index, snapshots
//! jobs/<id>.json                          job requests and their state
//! runs/<run-id>/...                       logs, metrics, reports
//! ```

use std::fmt;

use crate::digest::Digest;
use crate::names::{ModelName, NameError, Version};

/// A storage key: `/`-separated segments, relative to the registry root.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key(String);

impl Key {
    /// The key's text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Wraps a key that came back from the store itself (a listing).
    pub(crate) fn from_store(raw: String) -> Self {
        Self(raw)
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key({:?})", self.0)
    }
}

/// Top-level folder of content-addressed blobs.
pub const BLOBS: &str = "blobs/sha256/";
/// Top-level folder of models.
pub const MODELS: &str = "models/";
const INDEX_FILE: &str = "index.json";

/// `blobs/sha256/<hex>`.
pub fn blob(digest: &Digest) -> Key {
    Key(format!("{BLOBS}{}", digest.hex()))
}

/// `models/<name>/index.json`.
pub fn model_index(name: &ModelName) -> Key {
    Key(format!("{MODELS}{name}/{INDEX_FILE}"))
}

/// `models/<name>/versions/<version>.json`.
pub fn manifest(name: &ModelName, version: &Version) -> Key {
    Key(format!("{MODELS}{name}/versions/{version}.json"))
}

/// The model whose index lives at `key`, if `key` is a model index key.
pub fn model_of_index_key(key: &Key) -> Option<ModelName> {
    let name = key
        .as_str()
        .strip_prefix(MODELS)?
        .strip_suffix(INDEX_FILE)?;
    ModelName::new(name.strip_suffix('/')?).ok()
}

/// A dataset's name: the same rules as a model's.
pub type DatasetName = ModelName;

/// `datasets/<dataset>/<rest>`, where every segment of `rest` is checked like a name.
pub fn dataset_object(dataset: &DatasetName, rest: &[&str]) -> Result<Key, NameError> {
    segments(format!("datasets/{dataset}"), rest)
}

/// `jobs/<id>.json`.
pub fn job(id: &uuid::Uuid) -> Key {
    Key(format!("jobs/{}.json", id.as_hyphenated()))
}

/// The job a `jobs/<id>.json` key holds (`None` for the pending markers and anything else).
pub fn job_of_key(key: &Key) -> Option<uuid::Uuid> {
    let id = key.as_str().strip_prefix("jobs/")?.strip_suffix(".json")?;
    uuid::Uuid::try_parse(id).ok()
}

/// Folder of the markers of jobs not yet finished, so that a worker lists only those.
pub const PENDING_JOBS: &str = "jobs/pending/";

/// `jobs/pending/<id>`: an empty marker that exists while job `id` is queued or running.
pub fn pending_job(id: &uuid::Uuid) -> Key {
    Key(format!("{PENDING_JOBS}{}", id.as_hyphenated()))
}

/// The job a pending marker stands for.
pub fn job_of_pending_key(key: &Key) -> Option<uuid::Uuid> {
    uuid::Uuid::try_parse(key.as_str().strip_prefix(PENDING_JOBS)?).ok()
}

/// `schedule.json`: what the workers enqueue on their own, and how often.
pub fn schedule() -> Key {
    Key("schedule.json".to_owned())
}

/// Folder of a model's performance history: one object per training run.
pub fn history_prefix(name: &ModelName) -> String {
    format!("{MODELS}{name}/history/")
}

/// `models/<name>/history/<time>_<run-id>.json`, the time as `YYYYmmddTHHMMSS.fffZ`, so that keys
/// sort by time.
pub fn history_entry(
    name: &ModelName,
    at: chrono::DateTime<chrono::Utc>,
    run_id: &str,
) -> Result<Key, NameError> {
    let run = Version::new(run_id)?;
    Ok(Key(format!(
        "{}{}_{run}.json",
        history_prefix(name),
        at.format(HISTORY_TIME)
    )))
}

const HISTORY_TIME: &str = "%Y%m%dT%H%M%S%.3fZ";

/// True for a history key that starts with its entry's time (not one from before that layout).
pub fn history_key_is_timed(name: &ModelName, key: &Key) -> bool {
    key.as_str()
        .strip_prefix(&history_prefix(name))
        .and_then(|rest| rest.split_once('_'))
        .is_some_and(|(time, _)| chrono::NaiveDateTime::parse_from_str(time, HISTORY_TIME).is_ok())
}

/// Folder of the dataset catalog: an empty object per dataset that has a snapshot, so finding
/// the datasets does not list every sample.
pub const DATASET_CATALOG: &str = "catalog/datasets/";

/// `catalog/datasets/<dataset>`.
pub fn dataset_catalog_entry(dataset: &DatasetName) -> Key {
    Key(format!("{DATASET_CATALOG}{dataset}"))
}

/// `catalog/last-run/<kind>`: the id of the newest run of a kind (`run`, `train`, `scrape`), so
/// that `/status` reads one object instead of listing every run.
pub fn last_run_pointer(kind_prefix: &str) -> Key {
    Key(format!("catalog/last-run/{kind_prefix}"))
}

/// Folder of a dataset's snapshots.
pub fn snapshots_prefix(dataset: &DatasetName) -> String {
    format!("datasets/{dataset}/snapshots/")
}

/// `datasets/<dataset>/snapshots/<id>.json`.
pub fn snapshot(dataset: &DatasetName, id: &str) -> Result<Key, NameError> {
    let id = Version::new(id)?;
    Ok(Key(format!("{}{id}.json", snapshots_prefix(dataset))))
}

/// Top-level folder of run records.
pub const RUNS: &str = "runs/";

/// `runs/<run-id>/<rest>`, where every segment is checked like a version string.
pub fn run_object(run_id: &str, rest: &[&str]) -> Result<Key, NameError> {
    segments(format!("{RUNS}{}", Version::new(run_id)?), rest)
}

/// Folder of the locks of running garbage collections.
pub const GC_LOCKS: &str = "gc/locks/";
/// Folder of reference intents: objects a writer reuses (found already stored) and is about to
/// reference, which a garbage collection must not delete.
pub const GC_INTENTS: &str = "gc/intents/";

/// `gc/locks/<id>.json`.
pub fn gc_lock(id: &uuid::Uuid) -> Key {
    Key(format!("{GC_LOCKS}{}.json", id.as_simple()))
}

/// `gc/intents/<id>.json`.
pub fn gc_intent(id: &uuid::Uuid) -> Key {
    Key(format!("{GC_INTENTS}{}.json", id.as_simple()))
}

/// `_probe/<id>`: scratch objects of the conditional-write probe.
pub(crate) fn probe(id: &uuid::Uuid) -> Key {
    Key(format!("_probe/{}", id.as_simple()))
}

fn segments(mut key: String, rest: &[&str]) -> Result<Key, NameError> {
    for segment in rest {
        // File names such as `meta.json` or `2025` follow the version rules: no separators, no
        // `..`, no control characters, a letter or digit first.
        Version::new(*segment)?;
        key.push('/');
        key.push_str(segment);
    }
    Ok(Key(key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_the_documented_layout() {
        let name = ModelName::new("detector").unwrap();
        let v = Version::numbered(3);
        let d = Digest::of(b"abc");
        assert_eq!(
            blob(&d).as_str(),
            "blobs/sha256/ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(model_index(&name).as_str(), "models/detector/index.json");
        assert_eq!(
            manifest(&name, &v).as_str(),
            "models/detector/versions/v3.json"
        );
        assert_eq!(model_of_index_key(&model_index(&name)), Some(name.clone()));
        assert_eq!(model_of_index_key(&manifest(&name, &v)), None);
        let id = uuid::Uuid::nil();
        assert_eq!(
            job(&id).as_str(),
            "jobs/00000000-0000-0000-0000-000000000000.json"
        );
        assert_eq!(
            pending_job(&id).as_str(),
            "jobs/pending/00000000-0000-0000-0000-000000000000"
        );
        assert_eq!(job_of_pending_key(&pending_job(&id)), Some(id));
        assert_eq!(job_of_pending_key(&job(&id)), None);
        let at = chrono::DateTime::parse_from_rfc3339("2026-12-02T10:11:12.345Z")
            .unwrap()
            .to_utc();
        let timed = history_entry(&name, at, "run_1").unwrap();
        assert_eq!(
            timed.as_str(),
            "models/detector/history/20261202T101112.345Z_run_1.json"
        );
        assert!(history_key_is_timed(&name, &timed));
        assert!(!history_key_is_timed(
            &name,
            &Key("models/detector/history/run_1.json".into())
        ));
        assert!(history_entry(&name, at, "../x").is_err());
        let ds = DatasetName::new("iris").unwrap();
        assert_eq!(
            snapshot(&ds, "20261126T000000Z-ab").unwrap().as_str(),
            "datasets/iris/snapshots/20261126T000000Z-ab.json"
        );
    }

    #[test]
    fn nested_keys_check_every_segment() {
        let ds = DatasetName::new("photos").unwrap();
        assert_eq!(
            dataset_object(&ds, &["images", "2025", "a.jpg"])
                .unwrap()
                .as_str(),
            "datasets/photos/images/2025/a.jpg"
        );
        assert!(dataset_object(&ds, &["..", "x"]).is_err());
        assert!(dataset_object(&ds, &["a/b"]).is_err());
        assert!(run_object("run-1", &["metrics.json"]).is_ok());
        assert!(run_object("../x", &["metrics.json"]).is_err());
    }
}
