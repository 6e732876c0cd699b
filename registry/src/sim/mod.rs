//! A deterministic simulation of the registry's actors over the in-memory store, with the faults
//! real S3 produces injected by a [`fault::FaultStore`].
//!
//! One seed fixes everything: which actors run (publishers with and without the gate, workers
//! that crash and restart, API enqueuers, schedule enqueuers across period boundaries, scrapers
//! adding overlapping samples and uploads, the garbage collector), each actor's clock offset, the
//! fault plan, the interleaving of their store calls and the crashes. After a main phase with
//! faults and crashes, the run drains without them, and the store is checked as a whole. Every
//! write is checked as it takes effect too ([`world::World`] lists the invariants). A failing
//! seed replays exactly: `EXPOSR_SIM_SEED=<seed> cargo test -p exposr-registry --test simulation`.

pub mod actors;
pub mod exec;
pub mod fault;
pub mod real;
pub mod world;

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::FutureExt;

use self::actors::Ctx;
use self::exec::{Executor, Phase, SimClock, SimTime, Task};
use self::fault::{FaultKind, FaultPlan, FaultStore};
use self::world::{Role, World};
use crate::conformance::IgnoreConditions;
use crate::names::ModelName;
use crate::store::{ObjectStoreBackend, Store};
use crate::{Registry, WritePolicy};

/// What an actor does, given its context and incarnation.
type Body = Box<dyn Fn(Ctx, u32) -> Task>;

fn body<F, Fut>(f: F) -> Body
where
    F: Fn(Ctx, u32) -> Fut + 'static,
    Fut: std::future::Future<Output = ()> + 'static,
{
    Box::new(move |c, i| Box::pin(f(c, i)))
}

/// What one seed's run did and found.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The seed.
    pub seed: u64,
    /// Broken invariants (empty: the run passed).
    pub violations: Vec<String>,
    /// Scheduler steps taken.
    pub steps: usize,
    /// Actors crashed (and restarted).
    pub crashes: usize,
    /// Faults injected, by kind.
    pub faults: BTreeMap<FaultKind, u64>,
    /// Store calls made.
    pub calls: u64,
    /// Writes that took effect.
    pub writes: u64,
    /// A digest of the calls in order: equal when a seed replays.
    pub trace: u64,
    /// The store ignored conditional writes (every write must have been refused).
    pub unsafe_store: bool,
    /// Every call and write, when [`run_logged`] asked for it.
    pub log: Vec<String>,
}

/// Runs the simulation for `seed`.
pub fn run(seed: u64) -> Outcome {
    run_with(seed, false)
}

/// Runs the simulation for `seed`, keeping a log of every call and write.
pub fn run_logged(seed: u64) -> Outcome {
    run_with(seed, true)
}

fn run_with(seed: u64, log: bool) -> Outcome {
    // The registry's own jitter and ids draw from the thread's fastrand: seeded here.
    fastrand::seed(seed);
    let mut rng = fastrand::Rng::with_seed(seed);
    let base = chrono::DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
        .expect("a valid time")
        .to_utc()
        + chrono::Duration::seconds(rng.i64(0..86_400 * 30));
    let time = SimTime::new(base);
    let unsafe_store = rng.u8(..12) == 0;
    let memory: Arc<dyn Store> = Arc::new(ObjectStoreBackend::in_memory());
    let under: Arc<dyn Store> = if unsafe_store {
        Arc::new(IgnoreConditions(memory.clone()))
    } else {
        memory.clone()
    };
    let world = World::new(time.clone(), memory, unsafe_store);
    if log {
        world.keep_log();
    }
    let plan = if rng.u8(..8) == 0 {
        FaultPlan::none()
    } else {
        FaultPlan::random(&mut rng)
    };
    let faults = Arc::new(
        FaultStore::new(under, plan, rng.u64(..))
            .with_clock(Arc::new(SimClock::new(time.clone(), 0)))
            .with_observer(world.clone()),
    );
    let mut exec = Executor::new(rng.u64(..), time.clone());

    let mut add = |role: Role, crashable: bool, body: Body, rng: &mut fastrand::Rng| {
        let me = world.add_actor(role);
        // Clocks up to 45 s off either way: 90 s apart at most, within gc::CLOCK_ALLOWANCE and
        // a third of the workers' lease.
        let offset_ms = rng.i64(-45_000..=45_000);
        let (world, store, time) = (
            world.clone(),
            faults.clone() as Arc<dyn Store>,
            time.clone(),
        );
        let index = exec.spawn(crashable, move |incarnation| {
            let clock = Arc::new(SimClock::new(time.clone(), offset_ms));
            let reg = Registry::open(store.clone(), WritePolicy::Concurrent)
                .now_or_never()
                .expect("the probe passes the fault store untouched")
                .expect("the in-memory store opens")
                .with_clock(clock.clone());
            let ctx = Ctx {
                world: world.clone(),
                reg,
                clock,
                rng: fastrand::Rng::with_seed(
                    seed ^ ((me as u64) << 40) ^ (u64::from(incarnation) * 7919),
                ),
                me,
                lease: std::time::Duration::from_secs(600),
                scale: 1.0,
            };
            let task = body(ctx, incarnation);
            if role == Role::Worker {
                return task;
            }
            let world = world.clone();
            Box::pin(async move {
                task.await;
                world.finished();
            })
        });
        assert_eq!(index, me, "actor numbering");
    };

    let alpha = ModelName::new("alpha").expect("valid");
    let beta = ModelName::new("beta").expect("valid");
    for _ in 0..rng.usize(1..=2) {
        let (model, versions) = (alpha.clone(), rng.usize(2..=6));
        add(
            Role::Publisher,
            true,
            body(move |c, _| actors::publisher(c, model.clone(), true, versions)),
            &mut rng,
        );
    }
    for _ in 0..rng.usize(0..=2) {
        let (model, versions) = (beta.clone(), rng.usize(2..=6));
        add(
            Role::Publisher,
            true,
            body(move |c, _| actors::publisher(c, model.clone(), false, versions)),
            &mut rng,
        );
    }
    for _ in 0..rng.usize(1..=3) {
        add(Role::Worker, true, body(actors::worker), &mut rng);
    }
    let jobs = rng.usize(2..=8);
    add(
        Role::Enqueuer,
        true,
        body(move |c, _| actors::enqueuer(c, jobs)),
        &mut rng,
    );
    for _ in 0..rng.usize(0..=2) {
        let rounds = rng.usize(2..=5);
        add(
            Role::Scheduler,
            true,
            body(move |c, _| actors::scheduler(c, rounds)),
            &mut rng,
        );
    }
    for _ in 0..rng.usize(0..=2) {
        let rounds = rng.usize(2..=6);
        add(
            Role::Scraper,
            true,
            body(move |c, _| actors::scraper(c, rounds)),
            &mut rng,
        );
    }
    if rng.bool() {
        let rounds = rng.usize(2..=4);
        add(
            Role::Collector,
            true,
            body(move |c, _| actors::collector(c, rounds)),
            &mut rng,
        );
    }

    exec.run(Phase {
        steps: rng.usize(300..=1500),
        crash: 0.004,
        step_ms: 3000,
    });
    world.set_draining();
    faults.set_active(false);
    let drained = exec.run(Phase {
        steps: 40_000,
        crash: 0.0,
        step_ms: 10_000,
    });
    let mut violations = world.violations();
    if !drained {
        violations.push("the run did not drain within 40,000 steps".into());
    }
    if !unsafe_store {
        world.final_checks();
        violations = world.violations();
        if !drained {
            violations.push("the run did not drain within 40,000 steps".into());
        }
    }
    Outcome {
        seed,
        violations,
        steps: exec.steps,
        crashes: exec.crashes,
        faults: faults.injected(),
        calls: faults.calls(),
        writes: world.writes(),
        trace: world.trace(),
        unsafe_store,
        log: world.log(),
    }
}
