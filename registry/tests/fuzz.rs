//! Property-based fuzzing of every registry document a store hands back, since a store is only as
//! trustworthy as whoever can write to it: manifests, model indexes, job records, snapshots and
//! names. Inputs are random bytes, or real documents (written by the registry itself) with random
//! edits. No input may panic, and whatever parses must survive a round trip unchanged, so that a
//! document the registry accepts means the same after it is written back.
//!
//! `EXPOSR_FUZZ_CASES` sets the cases per parser (100,000 by default; the README's long run uses
//! 10,000,000).

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use proptest::prelude::*;
use registry::conformance::{fuzz, fuzz_cases, fuzz_inputs, sample};
use registry::datasets::{NewFile, Snapshot};
use registry::index::ModelIndex;
use registry::jobs::{Job, JobKind};
use registry::layout::{self, DatasetName};
use registry::manifest::Manifest;
use registry::store::{ObjectStoreBackend, Store};
use registry::{ModelName, Registry, VersionChoice, WritePolicy};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Real documents, as the registry writes them.
struct Seeds {
    manifest: Vec<u8>,
    index: Vec<u8>,
    job: Vec<u8>,
    snapshot: Vec<u8>,
}

fn seeds() -> Seeds {
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let store: Arc<dyn Store> = Arc::new(ObjectStoreBackend::in_memory());
        let reg = Registry::open(store.clone(), WritePolicy::Concurrent)
            .await
            .unwrap();
        let (m, files) = sample("fuzz", &[b"weights", b"labels"]);
        let published = reg.publish(m, &files, VersionChoice::Next).await.unwrap();
        let name = ModelName::new("fuzz").unwrap();
        let mut params = BTreeMap::new();
        params.insert("dataset".into(), serde_json::json!("iris"));
        params.insert(
            "config".into(),
            serde_json::json!({"training": {"epochs": 5}}),
        );
        let job = reg.enqueue(JobKind::Train, params, "fuzz").await.unwrap();
        let ds = DatasetName::new("iris").unwrap();
        let file = |path: &str, bytes: &'static [u8], label: Option<&str>| NewFile {
            path: path.into(),
            bytes: Bytes::from_static(bytes),
            label: label.map(str::to_owned),
        };
        let files = vec![
            file("data.csv", b"a,b\n1,2\n", None),
            file("images/x.jpg", b"jpeg", Some("real")),
        ];
        let (snapshot, _) = reg
            .snapshot_files(&ds, files, Some("fuzz".into()))
            .await
            .unwrap();
        let get = |key: layout::Key| {
            let store = store.clone();
            async move { store.get(&key).await.unwrap().unwrap().bytes.to_vec() }
        };
        Seeds {
            manifest: get(layout::manifest(&name, &published.manifest.version)).await,
            index: get(layout::model_index(&name)).await,
            job: get(layout::job(&job.id)).await,
            snapshot: get(layout::snapshot(&ds, &snapshot.id).unwrap()).await,
        }
    })
}

/// Parses `bytes` as `T`; what parses must serialise and parse back to the same document.
fn round_trips<T: DeserializeOwned + Serialize>(bytes: &[u8]) -> Result<Option<T>, TestCaseError> {
    let Ok(parsed) = serde_json::from_slice::<T>(bytes) else {
        return Ok(None);
    };
    let first = serde_json::to_value(&parsed).unwrap();
    let again: T = serde_json::from_slice(&serde_json::to_vec(&parsed).unwrap())
        .map_err(|e| TestCaseError::fail(format!("written back, it no longer parses: {e}")))?;
    prop_assert_eq!(first, serde_json::to_value(&again).unwrap());
    Ok(Some(parsed))
}

fn check_all(what: &str, seed: Vec<u8>, check: impl Fn(&[u8]) -> Result<bool, TestCaseError>) {
    fuzz(what, fuzz_cases(), fuzz_inputs(seed), |b| check(&b));
}

#[test]
fn stored_documents_never_panic_and_round_trip() {
    let seeds = seeds();
    check_all("manifest", seeds.manifest, |b| {
        let Some(m) = round_trips::<Manifest>(b)? else {
            return Ok(false);
        };
        // Validation judges any parsed manifest without panicking; an accepted one keeps
        // artifact file names that are safe on disk and in headers.
        if m.validate().is_ok() {
            for a in &m.artifacts {
                prop_assert!(registry::manifest::is_plain_file_name(&a.file_name));
            }
        }
        Ok(true)
    });
    check_all("model index", seeds.index, |b| {
        Ok(round_trips::<ModelIndex>(b)?.is_some())
    });
    check_all("job record", seeds.job, |b| {
        Ok(round_trips::<Job>(b)?.is_some())
    });
    check_all("snapshot", seeds.snapshot, |b| {
        Ok(round_trips::<Snapshot>(b)?.is_some())
    });
}

#[test]
fn names_that_pass_their_checks_are_safe_key_segments() {
    check_all("names", b"iris-v2.1_model".to_vec(), |b| {
        let text = String::from_utf8_lossy(b).into_owned();
        let mut any = false;
        if let Ok(name) = ModelName::new(text.as_str()) {
            any = true;
            let key = layout::model_index(&name);
            prop_assert!(!name.as_str().contains(['/', '\\']) && !name.as_str().starts_with('.'));
            prop_assert_eq!(key.as_str(), format!("models/{}/index.json", name.as_str()));
        }
        if let Ok(d) = registry::Digest::parse(&text) {
            any = true;
            prop_assert_eq!(registry::Digest::parse(&d.to_string()).unwrap(), d);
        }
        Ok(any)
    });
}
