//! [`FaultStore`]: wraps any [`Store`] and injects the faults real S3 produces, driven by a seed.
//!
//! Per call, the [`FaultPlan`]'s rules (by operation kind and key prefix) may fail it before it
//! reaches the store, **apply it and then report it failed** (a 5xx or a timeout, or the 412 /
//! "already exists" that a client's retry of its own applied write gets), or delay it. Clock skew
//! is the other half of what real deployments do to the registry; it lives in each actor's
//! [`Clock`]. Calls on the conditional-write probe's scratch keys pass untouched, so a registry
//! can be opened through the wrapper.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use serde::Serialize;

use crate::clock::{Clock, Sleep, SystemClock};
use crate::layout::Key;
use crate::store::{ETag, Object, ObjectMeta, PutMode, Store, StoreError};

/// The kinds of store call a rule can aim at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum OpKind {
    /// A read.
    Get,
    /// A listing (with or without sizes and ages).
    List,
    /// A plain put.
    PutOverwrite,
    /// A create-only put.
    PutCreate,
    /// A compare-and-swap put.
    PutIfMatch,
    /// A delete.
    Delete,
}

impl OpKind {
    /// Every kind.
    pub const ALL: [OpKind; 6] = [
        Self::Get,
        Self::List,
        Self::PutOverwrite,
        Self::PutCreate,
        Self::PutIfMatch,
        Self::Delete,
    ];

    fn of(mode: &PutMode) -> Self {
        match mode {
            PutMode::Overwrite => Self::PutOverwrite,
            PutMode::Create => Self::PutCreate,
            PutMode::IfMatch(_) => Self::PutIfMatch,
        }
    }

    /// True for calls that change the store.
    pub fn writes(self) -> bool {
        !matches!(self, Self::Get | Self::List)
    }
}

/// What was done to a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum FaultKind {
    /// Failed before it reached the store (a 503, a reset): nothing applied.
    FailBefore,
    /// Applied, then reported as a 5xx or a timeout.
    AppliedThenError,
    /// Applied, then reported as the 412 or "already exists" that a retry of it gets.
    AppliedThenConflict,
    /// Held back for a while before it reached the store.
    Delay,
}

/// One rule: for calls of `ops` on keys starting with `key_prefix`, the chance of each fault.
#[derive(Debug, Clone, PartialEq)]
pub struct FaultRule {
    /// The calls it aims at.
    pub ops: Vec<OpKind>,
    /// The keys it aims at (`""`: all).
    pub key_prefix: String,
    /// Chance of [`FaultKind::FailBefore`].
    pub fail_before: f64,
    /// Chance of [`FaultKind::AppliedThenError`] (writes only).
    pub applied_then_error: f64,
    /// Chance of [`FaultKind::AppliedThenConflict`] (conditional writes only).
    pub applied_then_conflict: f64,
    /// Chance of [`FaultKind::Delay`].
    pub delay: f64,
}

/// The faults a [`FaultStore`] injects.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FaultPlan {
    /// The rules; the first that draws a fault for a call decides it.
    pub rules: Vec<FaultRule>,
    /// The longest delay.
    pub max_delay: Duration,
}

/// Key folders the random plans aim at: every object kind the registry writes.
const FOLDERS: [&str; 9] = [
    "",
    "blobs/",
    "models/",
    "jobs/",
    "jobs/pending/",
    "datasets/",
    "schedule.json",
    "runs/",
    "catalog/",
];

impl FaultPlan {
    /// No faults.
    pub fn none() -> Self {
        Self::default()
    }

    /// Every write applied and then reported failed with chance `p` (half as a timeout, half
    /// as the conflict its retry would get), and every call failed before it is sent with
    /// chance `p / 4`.
    pub fn applied_then_failed(p: f64) -> Self {
        Self {
            rules: vec![FaultRule {
                ops: OpKind::ALL.to_vec(),
                key_prefix: String::new(),
                fail_before: p / 4.0,
                applied_then_error: p / 2.0,
                applied_then_conflict: p / 2.0,
                delay: 0.0,
            }],
            max_delay: Duration::ZERO,
        }
    }

    /// One to four rules drawn from `rng`, over random call kinds and key folders, each with a
    /// chance of up to 30% per fault kind: some seeds hammer one object kind, some all of them.
    pub fn random(rng: &mut fastrand::Rng) -> Self {
        let rules = (0..rng.usize(1..=4))
            .map(|_| {
                let mut ops: Vec<OpKind> = OpKind::ALL.into_iter().filter(|_| rng.bool()).collect();
                if ops.is_empty() {
                    ops.push(OpKind::ALL[rng.usize(..OpKind::ALL.len())]);
                }
                let chance = |rng: &mut fastrand::Rng| {
                    if rng.u8(..3) == 0 {
                        0.0
                    } else {
                        rng.f64() * 0.3
                    }
                };
                FaultRule {
                    ops,
                    key_prefix: FOLDERS[rng.usize(..FOLDERS.len())].to_owned(),
                    fail_before: chance(rng),
                    applied_then_error: chance(rng),
                    applied_then_conflict: chance(rng),
                    delay: chance(rng) / 2.0,
                }
            })
            .collect();
        Self {
            rules,
            max_delay: Duration::from_secs(rng.u64(1..=30)),
        }
    }

    fn draw(&self, rng: &mut fastrand::Rng, op: OpKind, key: &str) -> Option<FaultKind> {
        for rule in &self.rules {
            if !rule.ops.contains(&op) || !key.starts_with(&rule.key_prefix) {
                continue;
            }
            if rng.f64() < rule.fail_before {
                return Some(FaultKind::FailBefore);
            }
            if op.writes() && rng.f64() < rule.applied_then_error {
                return Some(FaultKind::AppliedThenError);
            }
            if matches!(op, OpKind::PutCreate | OpKind::PutIfMatch)
                && rng.f64() < rule.applied_then_conflict
            {
                return Some(FaultKind::AppliedThenConflict);
            }
            if rng.f64() < rule.delay {
                return Some(FaultKind::Delay);
            }
        }
        None
    }
}

/// What a simulation sees of the calls through a [`FaultStore`].
pub trait Observer: Send + Sync + fmt::Debug {
    /// Awaited before every call: the simulation's scheduler decides when the caller goes on.
    fn turn(&self) -> Sleep;

    /// A write that took effect (whatever the caller was told), with the object before and
    /// after (`None`: absent). Called at the moment it took effect.
    fn wrote(&self, op: OpKind, key: &Key, before: Option<&Bytes>, after: Option<&Bytes>);

    /// A call that reached the store or was failed, for the trace.
    fn called(&self, _op: OpKind, _key: &str, _fault: Option<FaultKind>) {}
}

/// A store wrapper that injects faults; see the module docs.
pub struct FaultStore {
    inner: Arc<dyn Store>,
    plan: FaultPlan,
    rng: Mutex<fastrand::Rng>,
    clock: Arc<dyn Clock>,
    counts: Mutex<BTreeMap<FaultKind, u64>>,
    calls: AtomicU64,
    active: AtomicBool,
    observer: Option<Arc<dyn Observer>>,
    /// When each key was last written, by this wrapper's clock: listings report these ages, so
    /// that a simulation's garbage collector sees virtual time.
    written_at: Mutex<BTreeMap<Key, chrono::DateTime<chrono::Utc>>>,
}

impl fmt::Debug for FaultStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultStore")
            .field("inner", &self.inner)
            .field("plan", &self.plan)
            .finish_non_exhaustive()
    }
}

impl FaultStore {
    /// Wraps `inner`; faults are drawn from `seed`, delays waited on the system clock.
    pub fn new(inner: Arc<dyn Store>, plan: FaultPlan, seed: u64) -> Self {
        Self {
            inner,
            plan,
            rng: Mutex::new(fastrand::Rng::with_seed(seed)),
            clock: Arc::new(SystemClock),
            counts: Mutex::new(BTreeMap::new()),
            calls: AtomicU64::new(0),
            active: AtomicBool::new(true),
            observer: None,
            written_at: Mutex::new(BTreeMap::new()),
        }
    }

    /// Waits delays on `clock` instead.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Reports every call and applied write to `observer`.
    pub fn with_observer(mut self, observer: Arc<dyn Observer>) -> Self {
        self.observer = Some(observer);
        self
    }

    /// Turns fault injection on or off (calls still pass through).
    pub fn set_active(&self, active: bool) {
        self.active.store(active, Ordering::SeqCst);
    }

    /// Faults injected so far, by kind.
    pub fn injected(&self) -> BTreeMap<FaultKind, u64> {
        self.counts.lock().expect("fault counts").clone()
    }

    /// Calls made so far (probe calls excluded).
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::SeqCst)
    }

    /// The store underneath.
    pub fn inner(&self) -> &Arc<dyn Store> {
        &self.inner
    }

    /// Waits for the turn, draws the fault and waits out a delay. `None` for untouched calls.
    async fn enter(&self, op: OpKind, key: &str) -> Option<Option<FaultKind>> {
        if key.starts_with("_probe/") {
            return None;
        }
        if let Some(o) = &self.observer {
            o.turn().await;
        }
        self.calls.fetch_add(1, Ordering::SeqCst);
        let fault = if self.active.load(Ordering::SeqCst) {
            let (fault, pause) = {
                let mut rng = self.rng.lock().expect("fault rng");
                let fault = self.plan.draw(&mut rng, op, key);
                let pause = match fault {
                    Some(FaultKind::Delay) => self.plan.max_delay.mul_f64(rng.f64()),
                    _ => Duration::ZERO,
                };
                (fault, pause)
            };
            if let Some(kind) = fault {
                *self
                    .counts
                    .lock()
                    .expect("fault counts")
                    .entry(kind)
                    .or_default() += 1;
            }
            if !pause.is_zero() {
                self.clock.sleep(pause).await;
            }
            fault
        } else {
            None
        };
        if let Some(o) = &self.observer {
            o.called(op, key, fault);
        }
        Some(fault)
    }

    async fn peek(&self, key: &Key) -> Option<Bytes> {
        self.observer.as_ref()?;
        self.inner.get(key).await.ok().flatten().map(|o| o.bytes)
    }

    fn wrote(&self, op: OpKind, key: &Key, before: Option<&Bytes>, after: Option<&Bytes>) {
        let mut times = self.written_at.lock().expect("write times");
        match after {
            Some(_) => {
                times.insert(key.clone(), self.clock.now());
            }
            None => {
                times.remove(key);
            }
        }
        drop(times);
        if let Some(o) = &self.observer {
            o.wrote(op, key, before, after);
        }
    }
}

fn injected(op: &'static str, key: &Key, what: &str) -> StoreError {
    StoreError::backend(op, key, format!("injected fault: {what}"))
}

#[async_trait]
impl Store for FaultStore {
    async fn get(&self, key: &Key) -> Result<Option<Object>, StoreError> {
        match self.enter(OpKind::Get, key.as_str()).await {
            Some(Some(FaultKind::FailBefore)) => Err(injected("get", key, "503 Slow Down")),
            _ => self.inner.get(key).await,
        }
    }

    async fn put(&self, key: &Key, bytes: Bytes, mode: PutMode) -> Result<ETag, StoreError> {
        let op = OpKind::of(&mode);
        let Some(fault) = self.enter(op, key.as_str()).await else {
            return self.inner.put(key, bytes, mode).await;
        };
        if fault == Some(FaultKind::FailBefore) {
            return Err(injected("put", key, "503 before the write"));
        }
        let before = self.peek(key).await;
        let result = self.inner.put(key, bytes.clone(), mode).await;
        if result.is_ok() {
            self.wrote(op, key, before.as_ref(), Some(&bytes));
        }
        match (fault, result) {
            (Some(FaultKind::AppliedThenError), Ok(_)) => Err(injected(
                "put",
                key,
                "timed out after the write was applied",
            )),
            (Some(FaultKind::AppliedThenConflict), Ok(_)) => Err(match op {
                OpKind::PutCreate => StoreError::AlreadyExists { key: key.clone() },
                _ => StoreError::PreconditionFailed { key: key.clone() },
            }),
            (_, result) => result,
        }
    }

    async fn exists(&self, key: &Key) -> Result<bool, StoreError> {
        match self.enter(OpKind::Get, key.as_str()).await {
            Some(Some(FaultKind::FailBefore)) => Err(injected("head", key, "503 Slow Down")),
            _ => self.inner.exists(key).await,
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<Key>, StoreError> {
        match self.enter(OpKind::List, prefix).await {
            Some(Some(FaultKind::FailBefore)) => Err(injected(
                "list",
                &Key::from_store(prefix.to_owned()),
                "503 Slow Down",
            )),
            _ => self.inner.list(prefix).await,
        }
    }

    async fn list_meta(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StoreError> {
        match self.enter(OpKind::List, prefix).await {
            Some(Some(FaultKind::FailBefore)) => Err(injected(
                "list",
                &Key::from_store(prefix.to_owned()),
                "503 Slow Down",
            )),
            _ => {
                let mut listed = self.inner.list_meta(prefix).await?;
                let times = self.written_at.lock().expect("write times");
                for meta in &mut listed {
                    if let Some(t) = times.get(&meta.key) {
                        meta.last_modified = *t;
                    }
                }
                Ok(listed)
            }
        }
    }

    async fn delete(&self, key: &Key) -> Result<(), StoreError> {
        let Some(fault) = self.enter(OpKind::Delete, key.as_str()).await else {
            return self.inner.delete(key).await;
        };
        if fault == Some(FaultKind::FailBefore) {
            return Err(injected("delete", key, "503 before the delete"));
        }
        let before = self.peek(key).await;
        self.inner.delete(key).await?;
        self.wrote(OpKind::Delete, key, before.as_ref(), None);
        match fault {
            Some(FaultKind::AppliedThenError) => Err(injected(
                "delete",
                key,
                "timed out after the delete was applied",
            )),
            _ => Ok(()),
        }
    }

    fn describe(&self) -> String {
        self.inner.describe()
    }

    async fn clean_scratch(
        &self,
        older_than: chrono::DateTime<chrono::Utc>,
        dry_run: bool,
    ) -> Result<crate::store::Scratch, StoreError> {
        self.inner.clean_scratch(older_than, dry_run).await
    }
}
