//! The deterministic simulation of every registry writer under injected faults, clock skew and
//! crashes (`registry::sim`): thousands of seeds, each checked for the registry's invariants.
//!
//! - `cargo test -p exposr-registry --test simulation`: 5,000 seeds (the short mode of CI).
//! - `EXPOSR_SIM_SEEDS=1000000 cargo test --release -p exposr-registry --test simulation`: the
//!   long mode, any number of seeds (`EXPOSR_SIM_FIRST` moves the start).
//! - `EXPOSR_SIM_SEED=<n>`: replays one seed and prints what it found.

use std::time::Instant;

use registry::sim::{self, Outcome};

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().map(|v| {
        v.replace('_', "")
            .parse()
            .unwrap_or_else(|_| panic!("{name} must be a number, not {v:?}"))
    })
}

/// Runs `seeds` on every core; returns the outcomes of the failing seeds and totals.
fn explore(seeds: std::ops::Range<u64>) -> (Vec<Outcome>, Totals) {
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get()) as u64;
    let (start, end) = (seeds.start, seeds.end);
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            std::thread::spawn(move || {
                let mut failing = Vec::new();
                let mut totals = Totals::default();
                let mut seed = start + t;
                while seed < end {
                    let outcome = sim::run(seed);
                    totals.add(&outcome);
                    if !outcome.violations.is_empty() {
                        failing.push(outcome);
                    }
                    seed += threads;
                }
                (failing, totals)
            })
        })
        .collect();
    let mut failing = Vec::new();
    let mut totals = Totals::default();
    for h in handles {
        let (f, t) = h.join().expect("simulation thread");
        failing.extend(f);
        totals.merge(&t);
    }
    failing.sort_by_key(|o| o.seed);
    (failing, totals)
}

#[derive(Debug, Default)]
struct Totals {
    seeds: u64,
    steps: u64,
    calls: u64,
    writes: u64,
    crashes: u64,
    unsafe_stores: u64,
    faults: std::collections::BTreeMap<String, u64>,
}

impl Totals {
    fn add(&mut self, o: &Outcome) {
        self.seeds += 1;
        self.steps += o.steps as u64;
        self.calls += o.calls;
        self.writes += o.writes;
        self.crashes += o.crashes as u64;
        self.unsafe_stores += u64::from(o.unsafe_store);
        for (k, n) in &o.faults {
            *self.faults.entry(format!("{k:?}")).or_default() += n;
        }
    }
    fn merge(&mut self, t: &Totals) {
        self.seeds += t.seeds;
        self.steps += t.steps;
        self.calls += t.calls;
        self.writes += t.writes;
        self.crashes += t.crashes;
        self.unsafe_stores += t.unsafe_stores;
        for (k, n) in &t.faults {
            *self.faults.entry(k.clone()).or_default() += n;
        }
    }
}

#[test]
fn every_seed_keeps_the_registry_invariants() {
    if let Some(seed) = env_u64("EXPOSR_SIM_SEED") {
        let o = sim::run_logged(seed);
        for line in &o.log {
            eprintln!("{line}");
        }
        let mut o = o;
        o.log.clear();
        eprintln!("{o:#?}");
        assert!(o.violations.is_empty(), "seed {seed}: {:#?}", o.violations);
        return;
    }
    let first = env_u64("EXPOSR_SIM_FIRST").unwrap_or(0);
    let count = env_u64("EXPOSR_SIM_SEEDS").unwrap_or(5_000);
    let started = Instant::now();
    let (failing, totals) = explore(first..first + count);
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "simulation: {} seeds in {secs:.1} s ({:.0} seeds/s): {} steps, {} store calls, {} writes, \
         {} crashes, {} runs on a store that ignores conditional writes; faults injected: {:?}",
        totals.seeds,
        totals.seeds as f64 / secs,
        totals.steps,
        totals.calls,
        totals.writes,
        totals.crashes,
        totals.unsafe_stores,
        totals.faults
    );
    let report: Vec<String> = failing
        .iter()
        .take(10)
        .map(|o| format!("seed {}: {}", o.seed, o.violations.join(" | ")))
        .collect();
    assert!(
        failing.is_empty(),
        "{} of {count} seeds broke an invariant (replay one with EXPOSR_SIM_SEED=<seed>):\n{}",
        failing.len(),
        report.join("\n")
    );
    assert!(
        totals.faults.values().sum::<u64>() > 0,
        "faults were injected"
    );
    assert!(totals.crashes > 0, "actors were crashed");
}

#[test]
fn a_seed_replays_exactly() {
    for seed in [1, 7, 42, 1234] {
        let (a, b) = (sim::run(seed), sim::run(seed));
        assert_eq!(
            a.trace, b.trace,
            "seed {seed}: the same calls in the same order"
        );
        assert_eq!(a.steps, b.steps);
        assert_eq!(a.violations, b.violations);
        assert!(a.calls > 50, "seed {seed} made {} calls", a.calls);
    }
    assert_ne!(sim::run(1).trace, sim::run(2).trace, "seeds differ");
}
