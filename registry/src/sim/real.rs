//! The simulation's actors on a real store in real time: what the test suite runs against the
//! moto S3 server, with the applied-then-failed faults injected by the same [`FaultStore`].
//!
//! Publishers (through the gate), workers (one of them killed mid-run: its task is aborted, so it
//! makes no further call, as a SIGKILLed process), scrapers over one shared image set and the
//! garbage collector run as tokio tasks. At the end the store's objects are copied into memory
//! and checked with the simulation's final checks.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt;

use super::actors::{self, Ctx};
use super::exec::SimTime;
use super::fault::{FaultKind, FaultPlan, FaultStore};
use super::world::{Role, World};
use crate::clock::SystemClock;
use crate::gc::GcOptions;
use crate::jobs::{JobKind, JobState};
use crate::names::ModelName;
use crate::store::{ObjectStoreBackend, PutMode, Store};
use crate::{Registry, WritePolicy};

/// The scale of a run.
#[derive(Debug, Clone)]
pub struct RealOptions {
    /// Publishers of the gated model, and versions each.
    pub publishers: usize,
    /// Versions per publisher.
    pub versions: usize,
    /// Workers (one is killed).
    pub workers: usize,
    /// Jobs queued before the workers start.
    pub jobs: usize,
    /// Scrapers over the shared image set.
    pub scrapers: usize,
    /// Chance that a write is applied and then reported failed.
    pub applied_then_failed: f64,
    /// Seed of the faults and of the actors' choices.
    pub seed: u64,
}

impl Default for RealOptions {
    fn default() -> Self {
        Self {
            publishers: 8,
            versions: 20,
            workers: 4,
            jobs: 50,
            scrapers: 4,
            applied_then_failed: 0.05,
            seed: 1,
        }
    }
}

/// What a run found.
#[derive(Debug, Clone)]
pub struct RealReport {
    /// Broken invariants.
    pub violations: Vec<String>,
    /// Faults injected, by kind.
    pub faults: BTreeMap<FaultKind, u64>,
    /// Jobs done and failed.
    pub done: usize,
    /// Jobs failed for good.
    pub failed: usize,
    /// Versions of the gated model in its index at the end.
    pub versions: usize,
    /// Garbage-collection runs completed.
    pub collections: usize,
    /// Wall time.
    pub seconds: f64,
}

/// Runs the actors against `store` (a fresh, empty prefix of a real S3 server).
pub async fn run(store: Arc<dyn Store>, opts: &RealOptions) -> RealReport {
    let started = Instant::now();
    let faults = Arc::new(FaultStore::new(
        store.clone(),
        FaultPlan::applied_then_failed(opts.applied_then_failed),
        opts.seed,
    ));
    let world = World::new(
        SimTime::new(chrono::Utc::now()),
        Arc::new(ObjectStoreBackend::in_memory()),
        false,
    );
    let open = || async {
        Registry::open(faults.clone(), WritePolicy::Concurrent)
            .await
            .expect("the store opens for writing")
    };
    let ctx = |role: Role, reg: Registry| {
        let me = world.add_actor(role);
        Ctx {
            world: world.clone(),
            reg,
            clock: Arc::new(SystemClock),
            rng: fastrand::Rng::with_seed(opts.seed ^ ((me as u64) << 40)),
            me,
            lease: Duration::from_secs(5),
            // 250 simulated seconds of work between renewals: 0.75 s, under a sixth of the lease.
            scale: 0.003,
        }
    };

    let queue = open().await;
    for i in 0..opts.jobs {
        let kind = if i % 2 == 0 {
            JobKind::Train
        } else {
            JobKind::Scrape
        };
        for _ in 0..4 {
            if let Ok(job) = queue.enqueue(kind, BTreeMap::new(), "test").await {
                world.enqueued(job.id);
                break;
            }
        }
    }

    let model = ModelName::new("alpha").expect("valid");
    let mut producers = Vec::new();
    for _ in 0..opts.publishers {
        let c = ctx(Role::Publisher, open().await);
        let (world, model, versions) = (world.clone(), model.clone(), opts.versions);
        producers.push(tokio::spawn(async move {
            actors::publisher(c, model, true, versions).await;
            world.finished();
        }));
    }
    for _ in 0..opts.scrapers {
        let c = ctx(Role::Scraper, open().await);
        let world = world.clone();
        producers.push(tokio::spawn(async move {
            actors::scraper(c, 6).await;
            world.finished();
        }));
    }
    let mut workers = Vec::new();
    for _ in 0..opts.workers {
        let c = ctx(Role::Worker, open().await);
        workers.push(tokio::spawn(actors::worker(c, 0)));
    }
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let gc_reg = open().await;
    let collector = tokio::spawn(async move {
        let mut runs = 0;
        let mut stop = stop_rx;
        while !*stop.borrow() {
            let opts = GcOptions {
                keep_last: Some(3),
                grace: Duration::from_secs(15),
                dry_run: false,
            };
            if gc_reg.collect_garbage(&opts).await.is_ok() {
                runs += 1;
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(300)) => {}
                _ = stop.changed() => {}
            }
        }
        runs
    });

    // Kill the first worker once it holds a lease, mid-job.
    let victim = workers.remove(0);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    victim.abort();
    let _ = victim.await;

    for p in producers {
        p.await.expect("producer task");
    }
    let producers_done = started.elapsed().as_secs_f64();
    world.set_draining();
    for w in workers {
        w.await.expect("worker task");
    }
    tracing::info!(
        producers_done,
        workers_done = started.elapsed().as_secs_f64(),
        "real-time run"
    );
    eprintln!(
        "producers done after {producers_done:.1} s, workers after {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let _ = stop_tx.send(true);
    let collections = collector.await.expect("collector task");

    // Copy what is really stored into memory and check it as the simulation does.
    let copy: Arc<dyn Store> = Arc::new(ObjectStoreBackend::in_memory());
    let listing = store.list("").await.expect("listing the store");
    for key in &listing {
        if let Some(object) = store.get(key).await.expect("reading the store") {
            copy.put(key, object.bytes, PutMode::Overwrite)
                .now_or_never()
                .expect("in-memory")
                .expect("copy");
        }
    }
    world.final_checks_on(&copy);
    let reader = Registry::read_only(copy);
    let (mut done, mut failed) = (0, 0);
    for key in listing.iter().filter(|k| {
        let k = k.as_str();
        k.starts_with("jobs/") && !k.starts_with("jobs/pending/")
    }) {
        let id = key
            .as_str()
            .trim_start_matches("jobs/")
            .trim_end_matches(".json");
        if let Ok(id) = uuid::Uuid::parse_str(id)
            && let Ok(Some(job)) = reader.job(&id).await
        {
            match job.state {
                JobState::Done { .. } => done += 1,
                JobState::Failed { .. } => failed += 1,
                _ => {}
            }
        }
    }
    let versions = reader
        .index(&model)
        .await
        .map(|i| i.versions.len())
        .unwrap_or(0);
    RealReport {
        violations: world.violations(),
        faults: faults.injected(),
        done,
        failed,
        versions,
        collections,
        seconds: started.elapsed().as_secs_f64(),
    }
}
