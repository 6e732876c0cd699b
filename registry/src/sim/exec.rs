//! The simulation's scheduler: actors are futures polled one step at a time in an order drawn
//! from the seed, on virtual time.
//!
//! Every store call of an actor first awaits its turn ([`Observer::turn`]), which returns
//! pending once: one poll of an actor runs it up to its next store call (the in-memory store
//! answers at once, so nothing else runs in between). The scheduler picks which actor moves next,
//! advances virtual time, and may crash an actor at any point (its future is dropped, as a killed
//! process stops) and start it again. Nothing here reads the real clock or a thread-local random
//! source that the seed does not set, so a seed replays exactly.
//!
//! [`Observer::turn`]: super::fault::Observer::turn

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::clock::{Clock, Sleep};

/// Virtual time shared by every actor, and who is running.
#[derive(Debug)]
pub struct SimTime {
    base: DateTime<Utc>,
    ms: AtomicI64,
    actor: AtomicUsize,
}

impl SimTime {
    /// Time zero at `base`.
    pub fn new(base: DateTime<Utc>) -> Arc<Self> {
        Arc::new(Self {
            base,
            ms: AtomicI64::new(0),
            actor: AtomicUsize::new(usize::MAX),
        })
    }

    /// Milliseconds since time zero.
    pub fn elapsed_ms(&self) -> i64 {
        self.ms.load(Ordering::SeqCst)
    }

    /// The true time (no actor's offset).
    pub fn now(&self) -> DateTime<Utc> {
        self.base + chrono::Duration::milliseconds(self.elapsed_ms())
    }

    fn advance(&self, ms: u64) {
        self.ms.fetch_add(ms as i64, Ordering::SeqCst);
    }

    /// The actor being polled (its index), if any.
    pub fn actor(&self) -> Option<usize> {
        match self.actor.load(Ordering::SeqCst) {
            usize::MAX => None,
            n => Some(n),
        }
    }
}

/// An actor's clock: virtual time plus the actor's own offset (clock skew).
#[derive(Debug, Clone)]
pub struct SimClock {
    time: Arc<SimTime>,
    offset_ms: i64,
}

impl SimClock {
    /// A clock `offset_ms` ahead of (negative: behind) true virtual time.
    pub fn new(time: Arc<SimTime>, offset_ms: i64) -> Self {
        Self { time, offset_ms }
    }
}

impl Clock for SimClock {
    fn now(&self) -> DateTime<Utc> {
        self.time.now() + chrono::Duration::milliseconds(self.offset_ms)
    }

    fn sleep(&self, pause: Duration) -> Sleep {
        let deadline = self.time.elapsed_ms() + pause.as_millis() as i64;
        Box::pin(SimSleep {
            time: self.time.clone(),
            deadline,
            first: true,
        })
    }
}

/// Pending until virtual time reaches the deadline (and at least once).
struct SimSleep {
    time: Arc<SimTime>,
    deadline: i64,
    first: bool,
}

impl Future for SimSleep {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if !self.first && self.time.elapsed_ms() >= self.deadline {
            return Poll::Ready(());
        }
        self.first = false;
        // Combinators that poll only woken children (FuturesUnordered) must poll this again.
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

/// A turn: pending once, then ready.
pub fn turn() -> Sleep {
    struct Turn(bool);
    impl Future for Turn {
        type Output = ();
        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            if self.0 {
                return Poll::Ready(());
            }
            self.0 = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }
    Box::pin(Turn(false))
}

/// An actor's future.
pub type Task = Pin<Box<dyn Future<Output = ()>>>;

struct Actor {
    task: Option<Task>,
    start: Box<dyn FnMut(u32) -> Task>,
    incarnation: u32,
    crashable: bool,
}

/// How a phase of the run goes.
#[derive(Debug, Clone, Copy)]
pub struct Phase {
    /// Steps at most.
    pub steps: usize,
    /// Chance, per step, that the chosen actor crashes (if it may) and starts again.
    pub crash: f64,
    /// Virtual milliseconds a step advances, at most.
    pub step_ms: u64,
}

/// The scheduler.
pub struct Executor {
    rng: fastrand::Rng,
    time: Arc<SimTime>,
    actors: Vec<Actor>,
    /// Steps taken, crashes made.
    pub steps: usize,
    /// Crashes made.
    pub crashes: usize,
}

impl Executor {
    /// A scheduler drawing from `seed`.
    pub fn new(seed: u64, time: Arc<SimTime>) -> Self {
        Self {
            rng: fastrand::Rng::with_seed(seed),
            time,
            actors: Vec::new(),
            steps: 0,
            crashes: 0,
        }
    }

    /// Adds an actor; `start(incarnation)` makes its future (again after a crash).
    pub fn spawn(
        &mut self,
        crashable: bool,
        mut start: impl FnMut(u32) -> Task + 'static,
    ) -> usize {
        let task = start(0);
        self.actors.push(Actor {
            task: Some(task),
            start: Box::new(start),
            incarnation: 0,
            crashable,
        });
        self.actors.len() - 1
    }

    /// True when every actor has finished.
    pub fn idle(&self) -> bool {
        self.actors.iter().all(|a| a.task.is_none())
    }

    /// Runs until every actor is done or `phase.steps` are spent; true if all are done.
    pub fn run(&mut self, phase: Phase) -> bool {
        let waker = Waker::noop();
        let mut cx = Context::from_waker(waker);
        for _ in 0..phase.steps {
            let live: Vec<usize> = (0..self.actors.len())
                .filter(|&i| self.actors[i].task.is_some())
                .collect();
            if live.is_empty() {
                return true;
            }
            let i = live[self.rng.usize(..live.len())];
            self.steps += 1;
            let actor = &mut self.actors[i];
            if actor.crashable && phase.crash > 0.0 && self.rng.f64() < phase.crash {
                // Dropped mid-flight, as a killed process stops; then started afresh.
                actor.incarnation += 1;
                self.crashes += 1;
                actor.task = None;
                actor.task = Some((actor.start)(actor.incarnation));
            }
            self.time.actor.store(i, Ordering::SeqCst);
            let task = actor.task.as_mut().expect("live actor");
            if task.as_mut().poll(&mut cx).is_ready() {
                actor.task = None;
            }
            self.time.actor.store(usize::MAX, Ordering::SeqCst);
            self.time.advance(self.rng.u64(0..=phase.step_ms));
        }
        self.idle()
    }
}
