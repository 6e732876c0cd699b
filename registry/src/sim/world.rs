//! What the simulation knows and checks: it watches every write as it takes effect (through the
//! [`Observer`] of the fault store) and checks the registry's invariants then, and once more over
//! the whole store when the run has drained.

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::FutureExt;
use uuid::Uuid;

use super::exec::{SimTime, turn};
use super::fault::{FaultKind, Observer, OpKind};
use crate::clock::Sleep;
use crate::datasets::{Snapshot, SnapshotLayout};
use crate::digest::Digest;
use crate::index::ModelIndex;
use crate::jobs::{Job, JobState};
use crate::layout::{self, Key};
use crate::manifest::Manifest;
use crate::names::Alias;
use crate::samples::SampleIndex;
use crate::store::Store;

/// What an actor is, for the checks that depend on who wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Publishes versions (through the gate or not).
    Publisher,
    /// Claims and runs jobs; train jobs publish through the gate.
    Worker,
    /// Enqueues jobs through the API path.
    Enqueuer,
    /// Enqueues the schedule's jobs.
    Scheduler,
    /// Adds samples, snapshots and uploads.
    Scraper,
    /// Collects garbage.
    Collector,
}

/// A job lease as a worker holds it: (job, epoch, owner).
type Lease = (Uuid, u32, String);

#[derive(Debug)]
struct ActorInfo {
    role: Role,
    /// The job lease a worker holds right now: (job, epoch, owner).
    lease: Option<(Uuid, u32, String)>,
}

#[derive(Debug, Default)]
struct State {
    violations: Vec<String>,
    /// Every (model, version) ever listed, with its manifest digest.
    versions: BTreeMap<(String, String), Digest>,
    /// Per model, the digest of each listed manifest with its version blanked, and the version:
    /// the same manifest must not be published as two versions.
    contents: BTreeMap<(String, Digest), String>,
    retired: BTreeSet<(String, String)>,
    /// Publishes their publisher was told succeeded.
    acknowledged: Vec<(String, String)>,
    /// Jobs whose enqueue (or schedule) call succeeded.
    enqueued: BTreeSet<Uuid>,
    /// Owner of each (job, attempt).
    holders: BTreeMap<(Uuid, u32), String>,
    trace: std::collections::hash_map::DefaultHasher,
    writes: u64,
    unsafe_store: bool,
    draining: bool,
    /// Non-worker actors not yet finished.
    producers: usize,
    /// Every call and write as text, when asked for (replaying a seed).
    log: Option<Vec<String>>,
}

/// The simulation's shared state and its checks.
#[derive(Debug)]
pub struct World {
    time: Arc<SimTime>,
    store: Arc<dyn Store>,
    actors: Mutex<Vec<ActorInfo>>,
    state: Mutex<State>,
}

fn peek(store: &Arc<dyn Store>, key: &Key) -> Option<Bytes> {
    store
        .get(key)
        .now_or_never()
        .expect("the in-memory store answers at once")
        .ok()
        .flatten()
        .map(|o| o.bytes)
}

fn parse<T: serde::de::DeserializeOwned>(bytes: Option<&Bytes>) -> Option<T> {
    bytes.and_then(|b| serde_json::from_slice(b).ok())
}

fn state_name(s: &JobState) -> &'static str {
    match s {
        JobState::Queued { .. } => "queued",
        JobState::Running { .. } => "running",
        JobState::Done { .. } => "done",
        JobState::Failed { .. } => "failed",
    }
}

impl World {
    /// A world over `store` (the store under the faults: what really is there).
    pub fn new(time: Arc<SimTime>, store: Arc<dyn Store>, unsafe_store: bool) -> Arc<Self> {
        Arc::new(Self {
            time,
            store,
            actors: Mutex::new(Vec::new()),
            state: Mutex::new(State {
                unsafe_store,
                ..State::default()
            }),
        })
    }

    /// Keeps a readable log of every call and write (for replaying a failing seed).
    pub fn keep_log(&self) {
        self.state.lock().expect("state").log = Some(Vec::new());
    }

    /// The log kept, if any.
    pub fn log(&self) -> Vec<String> {
        self.state
            .lock()
            .expect("state")
            .log
            .clone()
            .unwrap_or_default()
    }

    /// An actor that is not a worker finished its script.
    pub fn finished(&self) {
        let mut state = self.state.lock().expect("state");
        state.producers = state.producers.saturating_sub(1);
    }

    /// True once every actor but the workers has finished.
    pub fn producers_done(&self) -> bool {
        self.state.lock().expect("state").producers == 0
    }

    /// Registers the next actor; returns its index (the executor's numbering).
    pub fn add_actor(&self, role: Role) -> usize {
        if role != Role::Worker {
            self.state.lock().expect("state").producers += 1;
        }
        let mut actors = self.actors.lock().expect("actors");
        actors.push(ActorInfo { role, lease: None });
        actors.len() - 1
    }

    /// A worker took (or let go of) a lease.
    pub fn set_lease(&self, actor: usize, lease: Option<(Uuid, u32, String)>) {
        self.actors.lock().expect("actors")[actor].lease = lease;
    }

    /// A publish was acknowledged to its caller.
    pub fn acknowledge(&self, model: &str, version: &str) {
        self.state
            .lock()
            .expect("state")
            .acknowledged
            .push((model.to_owned(), version.to_owned()));
    }

    /// An enqueue was acknowledged to its caller.
    pub fn enqueued(&self, id: Uuid) {
        self.state.lock().expect("state").enqueued.insert(id);
    }

    /// The run is draining: no more faults or crashes; workers may stop once the queue is empty.
    pub fn set_draining(&self) {
        self.state.lock().expect("state").draining = true;
    }

    /// True once the run drains.
    pub fn draining(&self) -> bool {
        self.state.lock().expect("state").draining
    }

    /// A call reported `error`: a violation if its effect is in the store all the same (the
    /// registry must recognise its own applied writes), unless the error says the store kept
    /// failing, when the outcome is honestly unknown. `applied` reads the store's bytes at `key`.
    pub fn reported_failed(
        &self,
        what: &str,
        error: &crate::Error,
        key: &Key,
        applied: impl Fn(Option<&Bytes>) -> bool,
    ) {
        let unknown = matches!(
            error,
            crate::Error::Store(crate::store::StoreError::Backend { .. })
        );
        if !unknown && applied(peek(&self.store, key).as_ref()) {
            self.violation(format!(
                "{what}: applied, but reported failed to its caller"
            ));
        }
    }

    /// A worker was told it lost the lease of `job` at `epoch`: a violation if it still holds it.
    pub fn lease_lost(&self, job: Uuid, epoch: u32, owner: &str) {
        let key = layout::job(&job);
        if let Some(j) = parse::<Job>(peek(&self.store, &key).as_ref())
            && j.attempts == epoch
            && matches!(&j.state, JobState::Running { owner: o, .. } if o == owner)
        {
            self.violation(format!(
                "job {job}: {owner} gave up attempt {epoch} as lost while it still held the lease"
            ));
        }
    }

    fn violation(&self, text: String) {
        let mut state = self.state.lock().expect("state");
        if state.violations.len() < 50 {
            state.violations.push(text);
        }
    }

    /// Violations found so far.
    pub fn violations(&self) -> Vec<String> {
        self.state.lock().expect("state").violations.clone()
    }

    /// A digest of the sequence of calls (actor, operation, key, fault): equal for a replay.
    pub fn trace(&self) -> u64 {
        self.state.lock().expect("state").trace.finish()
    }

    /// Writes that took effect.
    pub fn writes(&self) -> u64 {
        self.state.lock().expect("state").writes
    }

    fn writer(&self) -> (Option<usize>, Option<Role>, Option<Lease>) {
        let actor = self.time.actor();
        let actors = self.actors.lock().expect("actors");
        match actor.and_then(|a| actors.get(a)) {
            Some(info) => (actor, Some(info.role), info.lease.clone()),
            None => (actor, None, None),
        }
    }

    fn check_index(&self, key: &Key, before: Option<&Bytes>, after: Option<&Bytes>) {
        let (actor, role, lease) = self.writer();
        let (Some(after), before) = (parse::<ModelIndex>(after), parse::<ModelIndex>(before))
        else {
            return;
        };
        let model = after.name.to_string();
        let old: BTreeSet<String> = before
            .iter()
            .flat_map(|b| b.versions.iter().map(|e| e.version.to_string()))
            .collect();
        let mut added = false;
        {
            let mut state = self.state.lock().expect("state");
            for v in &after.retired {
                state.retired.insert((model.clone(), v.to_string()));
            }
            for entry in &after.versions {
                let id = (model.clone(), entry.version.to_string());
                if state.retired.contains(&id) {
                    state.violations.push(format!(
                        "{model} {}: a retired version is listed again",
                        id.1
                    ));
                }
                match state.versions.get(&id).copied() {
                    Some(d) if d != entry.manifest => state.violations.push(format!(
                        "{model} {}: published twice with different manifests",
                        id.1
                    )),
                    _ => {
                        state.versions.insert(id, entry.manifest);
                    }
                }
            }
        }
        for entry in &after.versions {
            if old.contains(entry.version.as_str()) {
                continue;
            }
            added = true;
            let mkey = layout::manifest(&after.name, &entry.version);
            match peek(&self.store, &mkey) {
                None => self.violation(format!(
                    "{model} {}: listed without its manifest",
                    entry.version
                )),
                Some(bytes) if Digest::of(&bytes) != entry.manifest => self.violation(format!(
                    "{model} {}: listed with another manifest's digest",
                    entry.version
                )),
                Some(bytes) => {
                    if let Some(m) = parse::<Manifest>(Some(&bytes)) {
                        let mut blank = m.clone();
                        blank.version = crate::names::Version::numbered(0);
                        let content = Digest::of(&blank.to_bytes());
                        let mut state = self.state.lock().expect("state");
                        let other = state
                            .contents
                            .entry((model.clone(), content))
                            .or_insert_with(|| entry.version.to_string())
                            .clone();
                        if other != entry.version.as_str() {
                            state.violations.push(format!(
                                "{model}: the same manifest published as {other} and {}",
                                entry.version
                            ));
                        }
                        drop(state);
                        for a in &m.artifacts {
                            if peek(&self.store, &layout::blob(&a.digest)).is_none() {
                                self.violation(format!(
                                    "{model} {}: listed while blob {} is missing",
                                    entry.version, a.digest
                                ));
                            }
                        }
                    }
                }
            }
        }
        let latest = Alias::latest();
        let number = |i: &ModelIndex| i.alias(&latest).and_then(|v| v.number());
        if let (Some(b), Some(a)) = (before.as_ref().and_then(number), number(&after))
            && a < b
        {
            self.violation(format!("{model}: latest went back from v{b} to v{a}"));
        }
        let prod = Alias::production();
        let was = before.as_ref().and_then(|b| b.alias(&prod).cloned());
        let now = after.alias(&prod).cloned();
        if now != was
            && let Some(v) = &now
        {
            let gate =
                parse::<Manifest>(peek(&self.store, &layout::manifest(&after.name, v)).as_ref())
                    .and_then(|m| m.gate);
            match gate {
                Some(g) if g.baseline == was => {}
                Some(g) => self.violation(format!(
                    "{model}: production moved from {} to {v}, whose gate decision was taken against {}",
                    was.as_ref().map_or("nothing".into(), ToString::to_string),
                    g.baseline.as_ref().map_or("nothing".into(), ToString::to_string),
                )),
                None => self.violation(format!("{model}: production moved to {v}, which has no gate decision")),
            }
        }
        if added && role == Some(Role::Worker) {
            let fenced = lease.as_ref().is_some_and(|(job, epoch, owner)| {
                parse::<Job>(peek(&self.store, &layout::job(job)).as_ref()).is_some_and(|j| {
                    j.attempts == *epoch
                        && matches!(&j.state, JobState::Running { owner: o, .. } if o == owner)
                })
            });
            if !fenced {
                self.violation(format!(
                    "{key}: actor {actor:?} published without holding its job's lease ({lease:?})"
                ));
            }
        }
    }

    fn check_job(&self, before: Option<&Bytes>, after: Option<&Bytes>) {
        let (_, role, lease) = self.writer();
        let Some(after_job) = parse::<Job>(after) else {
            return;
        };
        let id = after_job.id;
        if let JobState::Running { owner, .. } = &after_job.state {
            let mut guard = self.state.lock().expect("state");
            let state = &mut *guard;
            let holder = state
                .holders
                .entry((id, after_job.attempts))
                .or_insert_with(|| owner.clone());
            if holder != owner {
                let text = format!(
                    "job {id}: attempt {} held by {holder} and by {owner}",
                    after_job.attempts
                );
                state.violations.push(text);
            }
        }
        let Some(before_job) = parse::<Job>(before) else {
            return;
        };
        if before == after {
            return;
        }
        if before_job.state.is_final() {
            self.violation(format!(
                "job {id}: rewritten after it was {}",
                state_name(&before_job.state)
            ));
        }
        if after_job.attempts < before_job.attempts {
            self.violation(format!("job {id}: attempts went back"));
        }
        if matches!(after_job.state, JobState::Done { .. }) {
            let owner_ok = matches!(&before_job.state, JobState::Running { owner, .. }
                if before_job.attempts == after_job.attempts
                    && (role != Some(Role::Worker)
                        || lease.as_ref().is_some_and(|(j, e, o)| *j == id && *e == after_job.attempts && o == owner)));
            if !owner_ok {
                self.violation(format!(
                    "job {id}: completed by a writer that does not hold attempt {} ({lease:?})",
                    after_job.attempts
                ));
            }
        }
    }

    fn check_sample_delete(&self, key: &Key) {
        let parts: Vec<&str> = key.as_str().splitn(3, '/').collect();
        let [_, dataset, path] = parts.as_slice() else {
            return;
        };
        let index_key = Key::from_store(format!("datasets/{dataset}/index.json"));
        if let Some(index) = parse::<SampleIndex>(peek(&self.store, &index_key).as_ref())
            && index
                .samples
                .iter()
                .any(|s| s.path == *path || s.meta_path() == *path)
        {
            self.violation(format!("{key}: deleted while the sample index lists it"));
        }
    }

    fn check_sample_index(&self, store: &Arc<dyn Store>, key: &Key, after: Option<&Bytes>) {
        let Some(index) = parse::<SampleIndex>(after) else {
            return;
        };
        let dataset = key.as_str().trim_end_matches("/index.json");
        let mut digests = BTreeSet::new();
        for s in &index.samples {
            if !digests.insert(s.pixels_sha256.clone()) {
                self.violation(format!(
                    "{key}: two samples with pixels {}",
                    s.pixels_sha256
                ));
            }
            for path in [s.path.clone(), s.meta_path()] {
                let file = Key::from_store(format!("{dataset}/{path}"));
                if peek(store, &file).is_none() {
                    self.violation(format!("{key}: lists {file}, which is missing"));
                }
            }
        }
    }

    /// Every blob digest that a listed version or a blob-layout snapshot references now.
    fn referenced_blobs(&self) -> BTreeMap<Digest, String> {
        let mut out = BTreeMap::new();
        let keys = self
            .store
            .list("")
            .now_or_never()
            .expect("in-memory")
            .unwrap_or_default();
        for key in &keys {
            if let Some(name) = layout::model_of_index_key(key)
                && let Some(index) = parse::<ModelIndex>(peek(&self.store, key).as_ref())
            {
                for e in &index.versions {
                    let m = parse::<Manifest>(
                        peek(&self.store, &layout::manifest(&name, &e.version)).as_ref(),
                    );
                    for a in m.iter().flat_map(|m| &m.artifacts) {
                        out.insert(a.digest, format!("{name} {}", e.version));
                    }
                }
            } else if key.as_str().contains("/snapshots/")
                && let Some(s) = parse::<Snapshot>(peek(&self.store, key).as_ref())
                && s.layout == SnapshotLayout::Blobs
            {
                for e in &s.entries {
                    out.insert(e.digest, key.to_string());
                }
            }
        }
        out
    }

    /// The checks over the whole store, once the run has drained.
    pub fn final_checks(&self) {
        self.final_checks_on(&self.store.clone());
    }

    /// The same checks over `store`, an in-memory copy of the store the run used (a real S3
    /// server's objects, copied once the run ended).
    pub fn final_checks_on(&self, store: &Arc<dyn Store>) {
        let keys = store
            .list("")
            .now_or_never()
            .expect("in-memory")
            .unwrap_or_default();
        let present: BTreeSet<&str> = keys.iter().map(Key::as_str).collect();
        for key in &keys {
            let k = key.as_str();
            if let Some(name) = layout::model_of_index_key(key) {
                let Some(index) = parse::<ModelIndex>(peek(store, key).as_ref()) else {
                    self.violation(format!("{k}: unreadable index"));
                    continue;
                };
                for e in &index.versions {
                    let mkey = layout::manifest(&name, &e.version);
                    let Some(bytes) = peek(store, &mkey) else {
                        self.violation(format!("{name} {}: manifest missing", e.version));
                        continue;
                    };
                    if Digest::of(&bytes) != e.manifest {
                        self.violation(format!("{name} {}: manifest digest differs", e.version));
                    }
                    for a in parse::<Manifest>(Some(&bytes))
                        .iter()
                        .flat_map(|m| m.artifacts.clone())
                    {
                        match peek(store, &layout::blob(&a.digest)) {
                            Some(b) if Digest::of(&b) == a.digest => {}
                            _ => self.violation(format!(
                                "{name} {}: blob {} missing or corrupt",
                                e.version, a.digest
                            )),
                        }
                    }
                }
            } else if k.starts_with("jobs/") && !k.starts_with(layout::PENDING_JOBS) {
                let Some(job) = parse::<Job>(peek(store, key).as_ref()) else {
                    continue;
                };
                if !job.state.is_final() {
                    let marker = layout::pending_job(&job.id);
                    self.violation(if present.contains(marker.as_str()) {
                        format!(
                            "job {}: still {} after the drain",
                            job.id,
                            state_name(&job.state)
                        )
                    } else {
                        format!(
                            "job {}: {} with no pending marker: no worker will ever list it",
                            job.id,
                            state_name(&job.state)
                        )
                    });
                }
            } else if k.starts_with("datasets/") && k.ends_with("/index.json") {
                self.check_sample_index(store, key, peek(store, key).as_ref());
            } else if k.contains("/snapshots/")
                && let Some(s) = parse::<Snapshot>(peek(store, key).as_ref())
            {
                for e in &s.entries {
                    let file = match s.layout {
                        SnapshotLayout::Blobs => layout::blob(&e.digest),
                        SnapshotLayout::DatasetFiles => {
                            Key::from_store(format!("datasets/{}/{}", s.dataset, e.path))
                        }
                    };
                    if !present.contains(file.as_str()) {
                        self.violation(format!("{k}: entry {} missing", e.path));
                    }
                }
            }
        }
        let state = self.state.lock().expect("state");
        let acknowledged = state.acknowledged.clone();
        let enqueued = state.enqueued.clone();
        let retired = state.retired.clone();
        drop(state);
        for (model, version) in acknowledged {
            let listed = parse::<ModelIndex>(
                peek(
                    store,
                    &Key::from_store(format!("models/{model}/index.json")),
                )
                .as_ref(),
            )
            .is_some_and(|i| {
                i.versions.iter().any(|e| e.version.as_str() == version)
                    || i.retired.iter().any(|v| v.as_str() == version)
            });
            if !listed && !retired.contains(&(model.clone(), version.clone())) {
                self.violation(format!(
                    "{model} {version}: acknowledged but not in the index"
                ));
            }
        }
        for id in enqueued {
            if !present.contains(layout::job(&id).as_str()) {
                self.violation(format!("job {id}: enqueued but never written"));
            }
        }
    }
}

impl Observer for World {
    fn turn(&self) -> Sleep {
        turn()
    }

    fn called(&self, op: OpKind, key: &str, fault: Option<FaultKind>) {
        let actor = self.time.actor();
        let mut state = self.state.lock().expect("state");
        (actor, op, key, fault).hash(&mut state.trace);
        let t = self.time.elapsed_ms();
        if let Some(log) = &mut state.log {
            log.push(format!(
                "{t:>9} a{} {op:?} {key} {fault:?}",
                actor.map_or(-1, |a| a as i64)
            ));
        }
    }

    fn wrote(&self, op: OpKind, key: &Key, before: Option<&Bytes>, after: Option<&Bytes>) {
        {
            let mut state = self.state.lock().expect("state");
            state.writes += 1;
            if let Some(log) = &mut state.log {
                log.push(format!(
                    "          applied {op:?} {key}: {}",
                    after.map_or("(deleted)".into(), |b| String::from_utf8_lossy(b)
                        .chars()
                        .take(300)
                        .collect::<String>()
                        .replace('\n', " "))
                ));
            }
            if state.unsafe_store {
                let text = format!("{op:?} {key} reached a store that ignores conditional writes");
                if state.violations.len() < 50 {
                    state.violations.push(text);
                }
                return;
            }
        }
        let k = key.as_str();
        let parts: Vec<&str> = k.split('/').collect();
        match (op, parts.as_slice()) {
            (OpKind::Delete, ["blobs", "sha256", _]) => {
                if let Some(hex) = parts.last()
                    && let Ok(d) = Digest::parse(&format!("sha256:{hex}"))
                    && let Some(by) = self.referenced_blobs().get(&d)
                {
                    self.violation(format!("{k}: deleted while {by} references it"));
                }
            }
            (OpKind::Delete, ["models", model, "versions", file]) => {
                let index = parse::<ModelIndex>(
                    peek(
                        &self.store,
                        &Key::from_store(format!("models/{model}/index.json")),
                    )
                    .as_ref(),
                );
                let v = file.trim_end_matches(".json");
                if index.is_some_and(|i| i.versions.iter().any(|e| e.version.as_str() == v)) {
                    self.violation(format!("{k}: deleted while the index lists it"));
                }
            }
            (OpKind::Delete, ["datasets", _, "images" | "meta", ..]) => {
                self.check_sample_delete(key)
            }
            (OpKind::Delete, _) => {}
            (_, ["models", _, "index.json"]) => self.check_index(key, before, after),
            (_, ["jobs", file]) if file.ends_with(".json") => self.check_job(before, after),
            (_, ["datasets", _, "index.json"]) => self.check_sample_index(&self.store, key, after),
            _ => {}
        }
    }
}
