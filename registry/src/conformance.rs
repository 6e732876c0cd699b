//! The store conformance suite: one set of checks, run against every backend (in-memory, a
//! temporary directory, and real S3 servers), plus the store wrappers it uses to inject faults,
//! count round trips and imitate stores that ignore conditional writes.
//!
//! Each check takes a factory that returns a fresh, empty store each time it is called.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use bytes::Bytes;

use crate::layout::{self, Key};
use crate::manifest::{self, Artifact, Manifest};
use crate::names::{Alias, ModelName, Version};
use crate::store::{
    ConditionalWrites, ETag, Object, ObjectMeta, PutMode, Store, StoreError, probe,
};

pub use crate::sim::fault::{FaultKind, FaultPlan, FaultRule, FaultStore, OpKind};
use crate::{ArtifactCheck, Error, Registry, VersionChoice, WritePolicy};

/// Something that makes fresh, empty stores.
pub trait StoreFactory: Fn() -> Arc<dyn Store> + Send + Sync {}
impl<F: Fn() -> Arc<dyn Store> + Send + Sync> StoreFactory for F {}

/// Counts the calls made to a store (probe calls excluded).
#[derive(Debug)]
pub struct Counting {
    inner: Arc<dyn Store>,
    calls: AtomicUsize,
}

impl Counting {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn Store>) -> Arc<Self> {
        Arc::new(Self {
            inner,
            calls: AtomicUsize::new(0),
        })
    }

    /// Calls so far.
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    fn tick(&self, key: &str) {
        if !key.starts_with("_probe/") {
            self.calls.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// Fails the `n`th call (0-based; probe calls excluded) and every call after it with a backend
/// error, as a crash at that point would (a single failure is retried by the registry).
#[derive(Debug)]
pub struct FailNth {
    inner: Arc<dyn Store>,
    calls: AtomicUsize,
    n: usize,
}

impl FailNth {
    /// Wraps `inner`, failing call `n`.
    pub fn new(inner: Arc<dyn Store>, n: usize) -> Arc<Self> {
        Arc::new(Self {
            inner,
            calls: AtomicUsize::new(0),
            n,
        })
    }

    fn check(&self, op: &'static str, key: &str) -> Result<(), StoreError> {
        if key.starts_with("_probe/") {
            return Ok(());
        }
        if self.calls.fetch_add(1, Ordering::SeqCst) >= self.n {
            return Err(StoreError::backend(
                op,
                &Key::from_store(key.to_owned()),
                "injected fault",
            ));
        }
        Ok(())
    }
}

/// Turns every conditional write into a plain overwrite, as some S3 servers silently do.
#[derive(Debug)]
pub struct IgnoreConditions(pub Arc<dyn Store>);

#[async_trait]
impl Store for Counting {
    async fn get(&self, key: &Key) -> Result<Option<Object>, StoreError> {
        self.tick(key.as_str());
        self.inner.get(key).await
    }
    async fn put(&self, key: &Key, bytes: Bytes, mode: PutMode) -> Result<ETag, StoreError> {
        self.tick(key.as_str());
        self.inner.put(key, bytes, mode).await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<Key>, StoreError> {
        self.tick(prefix);
        self.inner.list(prefix).await
    }
    async fn list_meta(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StoreError> {
        self.tick(prefix);
        self.inner.list_meta(prefix).await
    }
    async fn delete(&self, key: &Key) -> Result<(), StoreError> {
        self.tick(key.as_str());
        self.inner.delete(key).await
    }
    fn describe(&self) -> String {
        self.inner.describe()
    }
}

#[async_trait]
impl Store for FailNth {
    async fn get(&self, key: &Key) -> Result<Option<Object>, StoreError> {
        self.check("get", key.as_str())?;
        self.inner.get(key).await
    }
    async fn put(&self, key: &Key, bytes: Bytes, mode: PutMode) -> Result<ETag, StoreError> {
        self.check("put", key.as_str())?;
        self.inner.put(key, bytes, mode).await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<Key>, StoreError> {
        self.check("list", prefix)?;
        self.inner.list(prefix).await
    }
    async fn list_meta(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StoreError> {
        self.check("list", prefix)?;
        self.inner.list_meta(prefix).await
    }
    async fn delete(&self, key: &Key) -> Result<(), StoreError> {
        self.check("delete", key.as_str())?;
        self.inner.delete(key).await
    }
    fn describe(&self) -> String {
        self.inner.describe()
    }
}

#[async_trait]
impl Store for IgnoreConditions {
    async fn get(&self, key: &Key) -> Result<Option<Object>, StoreError> {
        self.0.get(key).await
    }
    async fn put(&self, key: &Key, bytes: Bytes, _mode: PutMode) -> Result<ETag, StoreError> {
        self.0.put(key, bytes, PutMode::Overwrite).await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<Key>, StoreError> {
        self.0.list(prefix).await
    }
    async fn list_meta(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StoreError> {
        self.0.list_meta(prefix).await
    }
    async fn delete(&self, key: &Key) -> Result<(), StoreError> {
        self.0.delete(key).await
    }
    fn describe(&self) -> String {
        self.0.describe()
    }
}

/// How many cases each fuzz test runs: `EXPOSR_FUZZ_CASES`, else 100,000 (the suite's short
/// mode; the README gives the long run).
pub fn fuzz_cases() -> u32 {
    std::env::var("EXPOSR_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000)
}

/// `seed` with up to eight random edits chosen by `rng`: a byte replaced, inserted or removed,
/// a span duplicated, the tail cut. Inputs near a valid document reach deeper into a parser than
/// random bytes do. (A hand-written mutator: proptest drives the cases and reports the failing
/// `rng`, and the libFuzzer-style crates need a nightly toolchain or their own harness.)
pub fn mutate(seed: &[u8], rng: u64) -> Vec<u8> {
    // Bytes that change a JSON, YAML or CSV document's structure rather than one value.
    const INTERESTING: &[u8] = b"{}[]\":,-.0123456789eE\\ntuf#\n\r\t'\xff\x00";
    let mut r = fastrand::Rng::with_seed(rng);
    let mut b = seed.to_vec();
    for _ in 0..r.usize(1..=8) {
        let at = r.usize(..=b.len());
        match r.u8(..5) {
            0 if at < b.len() => b[at] = r.u8(..),
            1 => b.insert(at, INTERESTING[r.usize(..INTERESTING.len())]),
            2 if at < b.len() => {
                b.remove(at);
            }
            3 if at < b.len() => {
                let end = (at + r.usize(1..=64)).min(b.len());
                let span = b[at..end].to_vec();
                b.splice(at..at, span);
            }
            4 => b.truncate(at),
            _ => b.insert(at, r.u8(..)),
        }
    }
    b
}

/// Fuzz inputs near `seed`: random bytes (one in five), or `seed` with [`mutate`]'s edits.
pub fn fuzz_inputs(seed: Vec<u8>) -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
    use proptest::prelude::*;
    prop_oneof![
        1 => proptest::collection::vec(any::<u8>(), 0..512),
        4 => any::<u64>().prop_map(move |rng| mutate(&seed, rng)),
    ]
}

/// Runs `check` on `cases` inputs from `inputs`, panicking with proptest's minimal failing input
/// if one fails or panics; prints how many `check` accepted (returned `true` for), per second.
pub fn fuzz<S: proptest::strategy::Strategy>(
    what: &str,
    cases: u32,
    inputs: S,
    check: impl Fn(S::Value) -> Result<bool, proptest::test_runner::TestCaseError>,
) {
    use proptest::test_runner::{Config, TestRunner};
    let accepted = std::cell::Cell::new(0u32);
    let started = std::time::Instant::now();
    TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    })
    .run(&inputs, |input| {
        if check(input)? {
            accepted.set(accepted.get() + 1);
        }
        Ok(())
    })
    .unwrap_or_else(|e| panic!("{what}: {e}"));
    eprintln!(
        "fuzz {what}: {cases} cases ({} accepted) at {:.0} cases/s",
        accepted.get(),
        f64::from(cases) / started.elapsed().as_secs_f64()
    );
}

/// A valid manifest for `name` whose artifacts are `files` (role `file{i}`), and the files.
pub fn sample(name: &str, files: &[&[u8]]) -> (Manifest, Vec<Bytes>) {
    let mut m = manifest::tests_support::base(name);
    m.artifacts = files
        .iter()
        .enumerate()
        .map(|(i, b)| {
            Artifact::describe(
                format!("file{i}"),
                format!("file{i}.bin"),
                "application/octet-stream",
                b,
            )
        })
        .collect();
    (m, files.iter().map(|b| Bytes::copy_from_slice(b)).collect())
}

async fn writer(store: Arc<dyn Store>) -> Registry {
    Registry::open(store, WritePolicy::Concurrent)
        .await
        .expect("open registry")
}

fn model(name: &str) -> ModelName {
    ModelName::new(name).unwrap()
}

/// Plain get, put, list and delete behave as documented.
pub async fn basic_operations(make: &dyn StoreFactory) {
    let store = make();
    let a = Key::from_store("t/a/x.json".into());
    let b = Key::from_store("t/b.json".into());
    assert!(store.get(&a).await.unwrap().is_none());
    let etag = store
        .put(&a, Bytes::from_static(b"one"), PutMode::Overwrite)
        .await
        .unwrap();
    let got = store.get(&a).await.unwrap().expect("object just written");
    assert_eq!(&got.bytes[..], b"one");
    if !etag.as_str().is_empty() {
        assert_eq!(got.etag, etag, "put and get report the same ETag");
    }
    store
        .put(&b, Bytes::from_static(b"two"), PutMode::Overwrite)
        .await
        .unwrap();
    store
        .put(&a, Bytes::from_static(b"three"), PutMode::Overwrite)
        .await
        .unwrap();
    assert_eq!(&store.get(&a).await.unwrap().unwrap().bytes[..], b"three");
    assert_eq!(store.list("t/").await.unwrap(), vec![a.clone(), b.clone()]);
    assert_eq!(store.list("t/a/").await.unwrap(), vec![a.clone()]);
    assert!(store.list("nothing/").await.unwrap().is_empty());
    store.delete(&a).await.unwrap();
    store.delete(&a).await.unwrap();
    assert!(store.get(&a).await.unwrap().is_none());
    assert_eq!(store.list("t/").await.unwrap(), vec![b]);
}

/// A registry in single-writer mode works on any store: publish, list, promote, resolve, verify.
pub async fn single_writer_round_trip(make: &dyn StoreFactory) {
    let reg = Registry::open(make(), WritePolicy::SingleWriter)
        .await
        .unwrap();
    let name = model("roundtrip");
    let (m, files) = sample("roundtrip", &[b"weights", b"labels"]);
    let v1 = reg
        .publish(m.clone(), &files, VersionChoice::Next)
        .await
        .unwrap();
    assert_eq!(v1.manifest.version, Version::numbered(1));
    let (m2, files2) = sample("roundtrip", &[b"weights-2"]);
    let v2 = reg.publish(m2, &files2, VersionChoice::Next).await.unwrap();
    assert_eq!(v2.manifest.version, Version::numbered(2));
    assert_eq!(reg.models().await.unwrap(), vec![name.clone()]);
    let index = reg.index(&name).await.unwrap();
    assert_eq!(index.versions.len(), 2);
    assert_eq!(index.alias(&Alias::latest()), Some(&Version::numbered(2)));
    let prod = Alias::production();
    assert_eq!(
        reg.promote(&name, &prod, &Version::numbered(1))
            .await
            .unwrap(),
        None
    );
    assert_eq!(reg.resolve(&name, "production").await.unwrap(), v1.manifest);
    assert_eq!(reg.resolve(&name, "v2").await.unwrap(), v2.manifest);
    assert!(matches!(
        reg.resolve(&name, "v9").await,
        Err(Error::VersionNotFound { .. })
    ));
    assert!(matches!(
        reg.promote(&name, &prod, &Version::numbered(9)).await,
        Err(Error::VersionNotFound { .. })
    ));
    let report = reg.verify(&name, &Version::numbered(1)).await.unwrap();
    assert!(report.is_ok());
    assert_eq!(report.artifacts.len(), 2);
    assert_eq!(
        &reg.blob(&m.artifacts[1].digest).await.unwrap()[..],
        b"labels"
    );
}

/// Create-only puts refuse an existing key; compare-and-swap refuses a stale ETag and never
/// overwrites; the probe says so.
pub async fn conditional_writes_are_enforced(make: &dyn StoreFactory) {
    let store = make();
    assert_eq!(
        probe(store.as_ref()).await.unwrap(),
        ConditionalWrites::Honoured
    );
    let key = Key::from_store("t/cas.json".into());
    let first = store
        .put(&key, Bytes::from_static(b"1"), PutMode::Create)
        .await
        .unwrap();
    let again = store
        .put(&key, Bytes::from_static(b"2"), PutMode::Create)
        .await;
    assert!(
        matches!(again, Err(StoreError::AlreadyExists { .. })),
        "{again:?}"
    );
    let read = store.get(&key).await.unwrap().unwrap();
    assert_eq!(&read.bytes[..], b"1");
    if !first.as_str().is_empty() {
        assert_eq!(read.etag, first);
    }
    store
        .put(
            &key,
            Bytes::from_static(b"3"),
            PutMode::IfMatch(read.etag.clone()),
        )
        .await
        .unwrap();
    let stale = store
        .put(&key, Bytes::from_static(b"4"), PutMode::IfMatch(read.etag))
        .await;
    assert!(
        matches!(stale, Err(StoreError::PreconditionFailed { .. })),
        "{stale:?}"
    );
    let now = store.get(&key).await.unwrap().unwrap();
    assert_eq!(&now.bytes[..], b"3", "a stale writer must never overwrite");
    store
        .put(&key, Bytes::from_static(b"5"), PutMode::IfMatch(now.etag))
        .await
        .expect("a retry with the fresh ETag succeeds");
}

/// A second writer holding a stale index ETag gets a conflict, never an overwrite, and the
/// registry's own retry (reread, reapply) then succeeds with both versions kept.
pub async fn stale_index_writer_conflicts_then_retries(make: &dyn StoreFactory) {
    let store = make();
    let reg = writer(store.clone()).await;
    let name = model("stale");
    let (m, f) = sample("stale", &[b"a"]);
    reg.publish(m, &f, VersionChoice::Next).await.unwrap();
    let key = layout::model_index(&name);
    let stale = store.get(&key).await.unwrap().unwrap();
    let (m, f) = sample("stale", &[b"b"]);
    reg.publish(m, &f, VersionChoice::Next).await.unwrap();
    let blind = store
        .put(&key, stale.bytes.clone(), PutMode::IfMatch(stale.etag))
        .await;
    assert!(
        matches!(blind, Err(StoreError::PreconditionFailed { .. })),
        "{blind:?}"
    );
    assert_eq!(reg.index(&name).await.unwrap().versions.len(), 2);
    let (m, f) = sample("stale", &[b"c"]);
    let third = reg.publish(m, &f, VersionChoice::Next).await.unwrap();
    assert_eq!(third.manifest.version, Version::numbered(3));
}

/// A version is invisible until the index compare-and-swap succeeds: with the index write
/// failing, blobs and manifest are stored but no reader sees the version; a rerun publishes it.
pub async fn publish_is_invisible_until_index_cas_succeeds(make: &dyn StoreFactory) {
    let store = make();
    let (m, files) = sample("invisible", &[b"w1", b"w2", b"w3"]);
    // Calls of a first publish: index get, 3 blobs, manifest, index put: the last is #5.
    let failing = writer(FailNth::new(store.clone(), 5)).await;
    let err = failing
        .publish(m.clone(), &files, VersionChoice::Next)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Store(_)), "{err:?}");
    let name = model("invisible");
    let manifest_key = layout::manifest(&name, &Version::numbered(1));
    assert!(
        store.get(&manifest_key).await.unwrap().is_some(),
        "manifest written first"
    );
    let reader = Registry::read_only(store.clone());
    assert!(matches!(
        reader.index(&name).await,
        Err(Error::ModelNotFound { .. })
    ));
    assert!(reader.models().await.unwrap().is_empty());
    let published = writer(store)
        .await
        .publish(m, &files, VersionChoice::Next)
        .await
        .unwrap();
    assert_eq!(
        published.manifest.version,
        Version::numbered(1),
        "rerun adopts its manifest"
    );
    assert!(
        reader
            .verify(&name, &Version::numbered(1))
            .await
            .unwrap()
            .is_ok()
    );
}

/// `writers` concurrent publishers of `each` numbered versions: none is lost or duplicated.
pub async fn concurrent_publishers_lose_nothing(
    make: &dyn StoreFactory,
    writers: usize,
    each: usize,
) {
    let store = make();
    let name = model("race");
    let mut tasks = Vec::new();
    for w in 0..writers {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let reg = writer(store).await;
            let mut mine = Vec::new();
            for i in 0..each {
                let payload = format!("writer {w} version {i}");
                let (mut m, f) = sample("race", &[payload.as_bytes()]);
                m.tags.insert("writer".into(), w.to_string());
                let p = reg.publish(m, &f, VersionChoice::Next).await.unwrap();
                mine.push((p.manifest.version, p.manifest.artifacts[0].digest));
            }
            mine
        }));
    }
    let mut published = Vec::new();
    for task in tasks {
        published.extend(task.await.expect("publisher task"));
    }
    let reader = Registry::read_only(store);
    let index = reader.index(&name).await.unwrap();
    assert_eq!(
        index.versions.len(),
        writers * each,
        "every version in the index"
    );
    let listed: BTreeSet<_> = index.versions.iter().map(|e| e.version.clone()).collect();
    assert_eq!(listed.len(), writers * each, "no version listed twice");
    for (version, digest) in published {
        assert!(listed.contains(&version), "{version} lost");
        let m = reader.manifest(&name, &version).await.unwrap();
        assert_eq!(
            m.artifacts[0].digest, digest,
            "{version} holds its publisher's artifact"
        );
    }
}

/// `workers` concurrent claimers over `jobs` queued jobs: every job is claimed and completed
/// exactly once, and `workers` schedulers racing on one period enqueue one job.
pub async fn concurrent_workers_claim_each_job_once(
    make: &dyn StoreFactory,
    workers: usize,
    jobs: usize,
) {
    use crate::jobs::{ClaimOptions, ClaimStats, JobKind, JobState};
    use crate::schedule::Schedule;

    let store = make();
    let reg = writer(store.clone()).await;
    let mut queued = BTreeSet::new();
    for i in 0..jobs {
        let params = [("n".to_owned(), serde_json::json!(i))].into();
        queued.insert(
            reg.enqueue(JobKind::Scrape, params, "test")
                .await
                .unwrap()
                .id,
        );
    }
    let mut tasks = Vec::new();
    for w in 0..workers {
        let reg = reg.clone();
        tasks.push(tokio::spawn(async move {
            let opts = ClaimOptions {
                owner: format!("w{w}"),
                lease: std::time::Duration::from_secs(300),
                max_attempts: 3,
            };
            let mut stats = ClaimStats::default();
            let mut ran = Vec::new();
            while let Some(claimed) = reg.claim_next(&opts, &mut stats).await.unwrap() {
                ran.push(claimed.job.id);
                reg.complete(claimed, serde_json::json!({ "by": w }))
                    .await
                    .unwrap();
            }
            ran
        }));
    }
    let mut ran = Vec::new();
    for task in tasks {
        ran.extend(task.await.expect("worker task"));
    }
    assert_eq!(ran.len(), jobs, "jobs run, counting repeats");
    let distinct: BTreeSet<_> = ran.iter().copied().collect();
    assert_eq!(distinct, queued, "every job ran, none twice");
    for id in &queued {
        let job = reg.job(id).await.unwrap().unwrap();
        assert_eq!(job.attempts, 1, "{id} claimed once");
        assert!(matches!(job.state, JobState::Done { .. }), "{id}: {job:?}");
    }
    assert!(reg.pending_jobs().await.unwrap().is_empty());

    let schedule = Schedule::defaults();
    let now = chrono::Utc::now();
    let mut tasks = Vec::new();
    for _ in 0..workers {
        let (reg, schedule) = (reg.clone(), schedule.clone());
        tasks.push(tokio::spawn(async move {
            reg.enqueue_due(&schedule, now).await.unwrap()
        }));
    }
    let mut created = 0;
    for task in tasks {
        created += task
            .await
            .expect("scheduler task")
            .iter()
            .filter(|d| d.enqueued.is_some())
            .count();
    }
    assert_eq!(created, schedule.entries.len(), "one job per entry");
    assert_eq!(
        reg.pending_jobs().await.unwrap().len(),
        schedule.entries.len()
    );
}

/// A blob whose bytes do not match its digest is refused on read, and `verify` reports it.
pub async fn tampered_blob_is_refused(make: &dyn StoreFactory) {
    let store = make();
    let reg = writer(store.clone()).await;
    let (m, f) = sample("tamper", &[b"genuine", b"other"]);
    let p = reg.publish(m, &f, VersionChoice::Next).await.unwrap();
    let digest = p.manifest.artifacts[0].digest;
    store
        .put(
            &layout::blob(&digest),
            Bytes::from_static(b"forged!"),
            PutMode::Overwrite,
        )
        .await
        .unwrap();
    assert!(matches!(
        reg.blob(&digest).await,
        Err(Error::DigestMismatch { .. })
    ));
    let report = reg
        .verify(&model("tamper"), &p.manifest.version)
        .await
        .unwrap();
    assert!(!report.is_ok());
    assert!(matches!(
        report.artifacts[0].2,
        ArtifactCheck::Corrupt { .. }
    ));
    assert_eq!(report.artifacts[1].2, ArtifactCheck::Ok);
    store.delete(&layout::blob(&digest)).await.unwrap();
    let report = reg
        .verify(&model("tamper"), &p.manifest.version)
        .await
        .unwrap();
    assert_eq!(report.artifacts[0].2, ArtifactCheck::Missing);
}

/// A fault at each store call of a publish leaves no visible half-published version and no
/// corrupt index; a rerun then completes.
pub async fn a_fault_at_any_call_leaves_no_half_version(make: &dyn StoreFactory) {
    let name = model("faults");
    // Count the calls of a second publish (the index exists by then: the harder case).
    let count_calls = {
        let counting = Counting::new(make());
        let reg = writer(counting.clone()).await;
        let (m, f) = sample("faults", &[b"base"]);
        reg.publish(m, &f, VersionChoice::Next).await.unwrap();
        let before = counting.calls();
        let (m, f) = sample("faults", &[b"x1", b"x2", b"x3"]);
        reg.publish(m, &f, VersionChoice::Next).await.unwrap();
        counting.calls() - before
    };
    assert!(
        count_calls >= 6,
        "expected at least 6 calls, saw {count_calls}"
    );
    for n in 0..count_calls {
        let store = make();
        let reg = writer(store.clone()).await;
        let (m, f) = sample("faults", &[b"base"]);
        reg.publish(m, &f, VersionChoice::Next).await.unwrap();
        let (m, f) = sample("faults", &[b"x1", b"x2", b"x3"]);
        let faulty = writer(FailNth::new(store.clone(), n)).await;
        assert!(
            faulty
                .publish(m.clone(), &f, VersionChoice::Next)
                .await
                .is_err(),
            "fault at call {n} must surface"
        );
        let index = reg.index(&name).await.expect("index still readable");
        assert_eq!(
            index.versions.len(),
            1,
            "fault at call {n}: no half version visible"
        );
        assert!(
            reg.verify(&name, &Version::numbered(1))
                .await
                .unwrap()
                .is_ok()
        );
        let rerun = reg.publish(m, &f, VersionChoice::Next).await.unwrap();
        assert_eq!(
            rerun.manifest.version,
            Version::numbered(2),
            "fault at call {n}"
        );
        assert!(
            reg.verify(&name, &Version::numbered(2))
                .await
                .unwrap()
                .is_ok()
        );
        assert_eq!(reg.index(&name).await.unwrap().versions.len(), 2);
    }
}

/// On a store that ignores conditional writes, the probe says so, concurrent-mode writes are
/// refused with an error naming single-writer mode, and single-writer mode works.
pub async fn ignored_conditions_are_detected(make: &dyn StoreFactory) {
    let store = make();
    assert!(matches!(
        probe(store.as_ref()).await.unwrap(),
        ConditionalWrites::Ignored(_)
    ));
    let reg = Registry::open(store.clone(), WritePolicy::Concurrent)
        .await
        .unwrap();
    let (m, f) = sample("unsafe", &[b"w"]);
    let err = reg
        .publish(m.clone(), &f, VersionChoice::Next)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::UnsafeStore { .. }), "{err:?}");
    assert!(err.to_string().contains("single-writer"), "{err}");
    assert!(
        store.list(layout::MODELS).await.unwrap().is_empty(),
        "nothing written"
    );
    let single = Registry::open(store, WritePolicy::SingleWriter)
        .await
        .unwrap();
    single.publish(m, &f, VersionChoice::Next).await.unwrap();
}

/// Per-user lookup finds the user's model, and falls back to the modality default when the user
/// has none or it lacks the alias.
pub async fn user_lookup_falls_back_to_the_default(make: &dyn StoreFactory) {
    let reg = writer(make()).await;
    let latest = Alias::latest();
    let missing = reg.lookup_user("gesture", "u1", &latest).await;
    assert!(
        matches!(missing, Err(Error::ModelNotFound { .. })),
        "{missing:?}"
    );
    let (mut m, f) = sample("gesture-default", &[b"default"]);
    m.tags.insert("modality".into(), "gesture".into());
    reg.publish(m, &f, VersionChoice::Next).await.unwrap();
    let (mut m, f) = sample("gesture-user-u1", &[b"u1"]);
    m.tags.insert("user_id".into(), "u1".into());
    reg.publish(m, &f, VersionChoice::Next).await.unwrap();
    let own = reg.lookup_user("gesture", "u1", &latest).await.unwrap();
    assert!(!own.fell_back);
    assert_eq!(own.manifest.name.as_str(), "gesture-user-u1");
    let other = reg.lookup_user("gesture", "u2", &latest).await.unwrap();
    assert!(other.fell_back);
    assert_eq!(other.manifest.name.as_str(), "gesture-default");
    assert!(
        reg.lookup_user("gesture", "u1", &Alias::production())
            .await
            .is_err()
    );
}

/// On a store that ignores conditional writes, every write path of a registry opened for
/// concurrent writers is refused with the same error, and nothing reaches the store.
pub async fn every_write_path_refuses_an_unsafe_store(make: &dyn StoreFactory) {
    use crate::jobs::JobKind;
    use crate::layout::DatasetName;
    use crate::schedule::Schedule;

    let store = make();
    let reg = Registry::open(store.clone(), WritePolicy::Concurrent)
        .await
        .unwrap();
    let ds = DatasetName::new("photos").unwrap();
    let name = model("unsafe");
    let unsafe_error = |what: &str, r: Result<(), Error>| match r {
        Err(Error::UnsafeStore { .. }) => {}
        other => panic!("{what}: expected the unsafe-store refusal, got {other:?}"),
    };
    let (m, f) = sample("unsafe", &[b"w"]);
    unsafe_error(
        "publish",
        reg.publish(m, &f, VersionChoice::Next).await.map(drop),
    );
    unsafe_error(
        "enqueue",
        reg.enqueue(JobKind::Train, Default::default(), "t")
            .await
            .map(drop),
    );
    unsafe_error(
        "claim",
        reg.claim_next(
            &crate::jobs::ClaimOptions {
                owner: "w".into(),
                lease: std::time::Duration::from_secs(60),
                max_attempts: 1,
            },
            &mut Default::default(),
        )
        .await
        .map(drop),
    );
    unsafe_error(
        "schedule",
        reg.init_schedule(&Schedule::defaults()).await.map(drop),
    );
    unsafe_error(
        "enqueue_due",
        reg.enqueue_due(&Schedule::defaults(), chrono::Utc::now())
            .await
            .map(drop),
    );
    unsafe_error(
        "add_samples",
        reg.add_samples(&ds, Vec::new(), 6).await.map(drop),
    );
    unsafe_error(
        "put_pending",
        reg.put_pending(&ds, Bytes::from_static(b"x"), &serde_json::json!({}))
            .await
            .map(drop),
    );
    unsafe_error("snapshot", reg.snapshot_samples(&ds, None).await.map(drop));
    let entry = crate::history::HistoryEntry::new(
        "run_1",
        chrono::Utc::now(),
        name.clone(),
        crate::history::Decision::Skipped,
        "",
    );
    unsafe_error("history", reg.append_history(&entry).await);
    unsafe_error(
        "run record",
        reg.put_run_record(
            &crate::RunId::training(chrono::Utc::now()),
            "record.json",
            Bytes::from_static(b"{}"),
        )
        .await
        .map(drop),
    );
    unsafe_error(
        "gc",
        reg.collect_garbage(&crate::gc::GcOptions::default())
            .await
            .map(drop),
    );
    let written: Vec<Key> = store
        .list("")
        .await
        .unwrap()
        .into_iter()
        .filter(|k| !k.as_str().starts_with("_probe/"))
        .collect();
    assert!(written.is_empty(), "nothing written: {written:?}");
}

/// A collection with retention frees exactly what nothing references: blobs of retired
/// versions and unreferenced blobs, orphan manifests, sample files no index lists; it keeps
/// aliased versions, the newest N, snapshots' blobs and indexed samples; a dry run changes
/// nothing; a second run finds nothing.
pub async fn garbage_collection_frees_only_the_unreachable(make: &dyn StoreFactory) {
    use crate::gc::GcOptions;
    use crate::layout::DatasetName;

    let store = make();
    let reg = writer(store.clone()).await;
    let name = model("gc");
    for i in 0..5 {
        let payload = format!("weights {i}");
        let (m, f) = sample("gc", &[payload.as_bytes(), b"shared labels"]);
        reg.publish(m, &f, VersionChoice::Next).await.unwrap();
    }
    reg.promote(&name, &Alias::production(), &Version::numbered(1))
        .await
        .unwrap();
    // Unreferenced: a blob nobody lists, and an orphan manifest (a publish that died).
    let stray = Bytes::from_static(b"stray blob");
    store
        .put(
            &layout::blob(&crate::Digest::of(&stray)),
            stray,
            PutMode::Create,
        )
        .await
        .unwrap();
    let (mut orphan, _) = sample("gc", &[b"never indexed"]);
    orphan.version = Version::numbered(9);
    store
        .put(
            &layout::manifest(&name, &orphan.version),
            orphan.to_bytes().into(),
            PutMode::Create,
        )
        .await
        .unwrap();
    let ds = DatasetName::new("files").unwrap();
    reg.snapshot_files(
        &ds,
        vec![crate::datasets::NewFile {
            path: "data.csv".into(),
            bytes: Bytes::from_static(b"a,b\n1,2\n"),
            label: None,
        }],
        None,
    )
    .await
    .unwrap();
    let stray_sample = Key::from_store("datasets/photos/images/2026/01/01/x.jpg".into());
    store
        .put(&stray_sample, Bytes::from_static(b"jpeg"), PutMode::Create)
        .await
        .unwrap();
    let before = store.list("").await.unwrap();

    let opts = GcOptions {
        keep_last: Some(2),
        grace: std::time::Duration::ZERO,
        dry_run: true,
    };
    let dry = reg.collect_garbage(&opts).await.unwrap();
    assert_eq!(
        store.list("").await.unwrap(),
        before,
        "a dry run changes nothing"
    );
    assert_eq!(
        dry.retired,
        vec!["gc v2", "gc v3"],
        "v1 is aliased, v4 and v5 newest"
    );
    let report = reg
        .collect_garbage(&GcOptions {
            dry_run: false,
            ..opts
        })
        .await
        .unwrap();
    assert_eq!(
        report.total(),
        dry.total(),
        "the dry run said what would go"
    );
    let freed = |kind: &str| report.freed.get(kind).map_or(0, |f| f.objects);
    assert_eq!(
        freed("blobs"),
        3,
        "v2's and v3's weights and the stray blob"
    );
    assert_eq!(freed("manifests"), 3, "v2, v3 and the orphan v9");
    assert_eq!(freed("samples"), 1);
    let index = reg.index(&name).await.unwrap();
    let kept: Vec<String> = index
        .versions
        .iter()
        .map(|e| e.version.to_string())
        .collect();
    assert_eq!(kept, ["v1", "v4", "v5"]);
    for v in [1, 4, 5] {
        assert!(
            reg.verify(&name, &Version::numbered(v))
                .await
                .unwrap()
                .is_ok()
        );
    }
    let snapshot = reg.latest_snapshot(&ds).await.unwrap().unwrap();
    assert!(
        reg.blob(&snapshot.entries[0].digest).await.is_ok(),
        "snapshot blobs kept"
    );
    let (m, f) = sample("gc", &[b"after retention"]);
    let next = reg.publish(m, &f, VersionChoice::Next).await.unwrap();
    assert_eq!(
        next.manifest.version,
        Version::numbered(6),
        "after v5 (v2 and v3 retired, v9 never published)"
    );
    let (m, f) = sample("gc", &[b"exact retired"]);
    assert!(matches!(
        reg.publish(m, &f, VersionChoice::Exact(Version::numbered(2)))
            .await,
        Err(Error::VersionExists { .. })
    ));
    let again = reg
        .collect_garbage(&GcOptions {
            keep_last: None,
            grace: std::time::Duration::ZERO,
            dry_run: false,
        })
        .await
        .unwrap();
    assert_eq!(again.total().objects, 0, "nothing left to free: {again:?}");
    assert!(
        store.list(layout::GC_LOCKS).await.unwrap().is_empty(),
        "lock removed"
    );
}

/// A promotion whose index write is applied but answered with a conflict reports the version
/// the alias pointed at before, not the one it moved to.
pub async fn promote_reports_the_previous_version_after_a_lost_answer(make: &dyn StoreFactory) {
    use crate::sim::fault::{FaultPlan, FaultRule, FaultStore, OpKind};

    let store = make();
    let reg = writer(store.clone()).await;
    let name = model("promote");
    for i in 0..2 {
        let payload = format!("w{i}");
        let (m, f) = sample("promote", &[payload.as_bytes()]);
        reg.publish(m, &f, VersionChoice::Next).await.unwrap();
    }
    reg.promote(&name, &Alias::production(), &Version::numbered(1))
        .await
        .unwrap();
    let plan = FaultPlan {
        rules: vec![FaultRule {
            ops: vec![OpKind::PutIfMatch],
            key_prefix: "models/".into(),
            fail_before: 0.0,
            applied_then_error: 0.0,
            applied_then_conflict: 1.0,
            delay: 0.0,
        }],
        max_delay: std::time::Duration::ZERO,
    };
    let faulty = Arc::new(FaultStore::new(store, plan, 7));
    let reg = writer(faulty.clone()).await;
    let previous = reg
        .promote(&name, &Alias::production(), &Version::numbered(2))
        .await
        .unwrap();
    assert_eq!(previous, Some(Version::numbered(1)));
    assert_eq!(faulty.injected().values().sum::<u64>(), 1);
    assert_eq!(
        reg.index(&name).await.unwrap().alias(&Alias::production()),
        Some(&Version::numbered(2))
    );
}
