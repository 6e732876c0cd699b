//! Benchmarks that print figures (not timed tests):
//! - SHA-256 throughput of `Digest` against `openssl speed -evp sha256` on the same machine;
//! - one publish (3 blobs + manifest + index) against each store, with its store round trips;
//! - job claims by 1, 4 and 8 concurrent workers: claim latency, jobs per second, store round
//!   trips per job and claim races lost;
//! - garbage collection of a registry of 10,000 blobs (half of them referenced): time, objects
//!   scanned per second, store round trips;
//! - the deterministic simulation: seeds explored per second on one core.
//!
//! Run with `scripts/bench`, which starts the moto S3 server; without it the S3 row is skipped.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use registry::conformance::{Counting, sample};
use registry::store::{self, DirStore, ObjectStoreBackend, Store};
use registry::{Digest, Registry, VersionChoice, WritePolicy};

fn main() {
    // `cargo test --all-targets` runs bench binaries without `--bench`: build-check only.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    sha256_throughput();
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(publish_round_trips());
    runtime.block_on(claim_throughput());
    runtime.block_on(gc_throughput());
    simulation_rate();
}

/// A registry of 10,000 blobs: 100 versions of 50 blobs each reference half, the other half is
/// unreferenced and old; one collection with a zero grace period frees those.
async fn gc_throughput() {
    let dir = tempfile::tempdir().expect("temp dir");
    for (label, inner) in stores(dir.path()) {
        let counting = Counting::new(inner);
        let reg = Registry::open(counting.clone(), WritePolicy::Concurrent)
            .await
            .expect("open");
        let setup = Instant::now();
        for v in 0..100 {
            let payloads: Vec<Vec<u8>> = (0..50)
                .map(|i| format!("blob {v} {i}").into_bytes())
                .collect();
            let files: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
            let (m, blobs) = sample("gcbench", &files);
            reg.publish(m, &blobs, VersionChoice::Next)
                .await
                .expect("publish");
            let orphans: Vec<(String, Bytes)> = (0..50)
                .map(|i| {
                    (
                        format!("orphan {v} {i}"),
                        Bytes::from(format!("orphan {v} {i}")),
                    )
                })
                .collect();
            for (_, bytes) in orphans {
                let key = registry::layout::blob(&Digest::of(&bytes));
                counting
                    .put(&key, bytes, registry::store::PutMode::Create)
                    .await
                    .expect("orphan");
            }
        }
        let setup = setup.elapsed().as_secs_f64();
        let opts = registry::gc::GcOptions {
            keep_last: None,
            grace: Duration::ZERO,
            dry_run: false,
        };
        let before = counting.calls();
        let started = Instant::now();
        let report = reg.collect_garbage(&opts).await.expect("gc");
        let secs = started.elapsed().as_secs_f64();
        println!(
            "gc {label}: {} objects scanned in {secs:.2} s ({:.0} objects/s), freed {} objects \
             ({} bytes), {} store round trips (set-up {setup:.1} s)",
            report.scanned,
            report.scanned as f64 / secs,
            report.total().objects,
            report.total().bytes,
            counting.calls() - before
        );
    }
}

/// Seeds of the deterministic simulation explored per second on one core.
fn simulation_rate() {
    let started = Instant::now();
    let mut seeds = 0u64;
    let mut faults = 0u64;
    while started.elapsed() < Duration::from_secs(10) {
        let o = registry::sim::run(seeds);
        faults += o.faults.values().sum::<u64>();
        assert!(o.violations.is_empty(), "seed {seeds}: {:?}", o.violations);
        seeds += 1;
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "simulation: {seeds} seeds in {secs:.1} s on one core ({:.0} seeds/s, {:.0} faults/s)",
        seeds as f64 / secs,
        faults as f64 / secs
    );
}

fn sha256_throughput() {
    // 16 KiB blocks, as `openssl speed -bytes 16384` hashes, so both run from cache.
    let block = vec![0x5au8; 16 * 1024];
    let rate = |hash: &dyn Fn(&[u8])| {
        let mut hashed = 0usize;
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(2) {
            for _ in 0..64 {
                hash(std::hint::black_box(&block));
            }
            hashed += 64 * block.len();
        }
        hashed as f64 / start.elapsed().as_secs_f64() / 1e6
    };
    let ours = rate(&|b| {
        std::hint::black_box(Digest::of(b));
    });
    println!("sha256 Digest::of, 16 KiB blocks: {ours:.0} MB/s");
    match openssl_sha256() {
        Some(theirs) => println!(
            "sha256 openssl speed -evp sha256, 16 KiB blocks: {theirs:.0} MB/s; ratio ours/openssl = {:.2}x",
            ours / theirs
        ),
        None => println!("sha256 openssl: not measured (openssl not found)"),
    }
}

/// OpenSSL's 16 KiB-block SHA-256 throughput in MB/s, from `openssl speed`.
fn openssl_sha256() -> Option<f64> {
    let out = std::process::Command::new("openssl")
        .args([
            "speed", "-evp", "sha256", "-bytes", "16384", "-seconds", "2",
        ])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    // Last line: "sha256   1495000.00k" (thousands of bytes per second).
    let line = text
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with("sha256"))?;
    let kbytes: f64 = line
        .split_whitespace()
        .last()?
        .trim_end_matches('k')
        .parse()
        .ok()?;
    Some(kbytes * 1000.0 / 1e6)
}

/// A fresh store of each kind: memory, a directory, and moto when `scripts/bench` started it.
fn stores(dir: &std::path::Path) -> Vec<(&'static str, Arc<dyn Store>)> {
    let mut stores: Vec<(&str, Arc<dyn Store>)> = vec![
        ("memory", Arc::new(ObjectStoreBackend::in_memory())),
        (
            "directory",
            Arc::new(
                DirStore::new(dir.join(uuid::Uuid::new_v4().simple().to_string())).expect("dir"),
            ),
        ),
    ];
    match std::env::var("EXPOSR_TEST_S3_ENDPOINT") {
        Ok(endpoint) => {
            let options = vec![
                ("aws_endpoint".to_owned(), endpoint),
                ("aws_access_key_id".to_owned(), "testing".to_owned()),
                ("aws_secret_access_key".to_owned(), "testing".to_owned()),
                ("aws_region".to_owned(), "us-east-1".to_owned()),
            ];
            let url = format!("s3://exposr-test/bench-{}", uuid::Uuid::new_v4().simple());
            stores.push(("moto S3", store::open(&url, &options).expect("s3")));
        }
        Err(_) => println!("S3: skipped (run scripts/bench to start the moto server)"),
    }
    stores
}

async fn publish_round_trips() {
    let dir = tempfile::tempdir().expect("temp dir");
    for (label, inner) in stores(dir.path()) {
        let counting = Counting::new(inner);
        let reg = Registry::open(counting.clone(), WritePolicy::Concurrent)
            .await
            .expect("open");
        let runs = 30;
        let mut times = Vec::with_capacity(runs);
        let mut trips = Vec::with_capacity(runs);
        for i in 0..runs {
            let blobs: Vec<Vec<u8>> = (0..3)
                .map(|b| format!("run {i} blob {b} ").repeat(3000).into_bytes())
                .collect();
            let refs: Vec<&[u8]> = blobs.iter().map(Vec::as_slice).collect();
            let (m, files) = sample("bench", &refs);
            let files: Vec<Bytes> = files;
            let before = counting.calls();
            let start = Instant::now();
            reg.publish(m, &files, VersionChoice::Next)
                .await
                .expect("publish");
            times.push(start.elapsed());
            trips.push(counting.calls() - before);
        }
        times.sort();
        let p50 = times[runs / 2];
        let p90 = times[runs * 9 / 10];
        let max_trips = trips.iter().max().copied().unwrap_or(0);
        println!(
            "publish 3 blobs (~60 KB each) + manifest + index on {label}: p50 {:.2} ms, p90 {:.2} ms, \
             store round trips {max_trips} (= blobs + {})",
            p50.as_secs_f64() * 1e3,
            p90.as_secs_f64() * 1e3,
            max_trips as i64 - 3
        );
        // A retrain: new weights, the same labels file as the last version (reused), promoted
        // through the gate in the same index write.
        let mut times = Vec::with_capacity(runs);
        let mut trips = Vec::with_capacity(runs);
        let name = registry::ModelName::new("bench").expect("valid");
        for i in 0..runs {
            let weights = format!("retrain {i} ").repeat(3000).into_bytes();
            let (m, files) = sample("bench", &[&weights, b"labels.json of every version"]);
            let current = reg
                .index(&name)
                .await
                .ok()
                .and_then(|x| x.alias(&registry::Alias::production()).cloned());
            let before = counting.calls();
            let start = Instant::now();
            reg.publish_promoted(
                m,
                &files,
                VersionChoice::Next,
                registry::Promotion {
                    alias: registry::Alias::production(),
                    expected: current,
                },
            )
            .await
            .expect("publish");
            times.push(start.elapsed());
            trips.push(counting.calls() - before);
        }
        times.sort();
        println!(
            "retrain publish (new weights, reused labels, promoted in the same index write) on \
             {label}: p50 {:.2} ms, p90 {:.2} ms, store round trips {} (= blobs + 3 + 4 for the \
             reused blob's protection from garbage collection; publish then promote was blobs + 3 \
             + 2)",
            times[runs / 2].as_secs_f64() * 1e3,
            times[runs * 9 / 10].as_secs_f64() * 1e3,
            trips.iter().max().copied().unwrap_or(0)
        );
    }
}

/// Workers racing over a queue: each claims (list + get + conditional put) and completes (put +
/// marker delete) until the queue is empty.
async fn claim_throughput() {
    use registry::jobs::{ClaimOptions, ClaimStats, JobKind};
    const JOBS: usize = 120;
    for workers in [1usize, 4, 8] {
        let dir = tempfile::tempdir().expect("temp dir");
        for (label, inner) in stores(dir.path()) {
            if label == "memory" {
                continue;
            }
            let counting = Counting::new(inner);
            let reg = Registry::open(counting.clone(), WritePolicy::Concurrent)
                .await
                .expect("open");
            for _ in 0..JOBS {
                reg.enqueue(JobKind::Scrape, Default::default(), "bench")
                    .await
                    .expect("enqueue");
            }
            let before = counting.calls();
            let start = Instant::now();
            let tasks: Vec<_> = (0..workers)
                .map(|w| {
                    let reg = reg.clone();
                    tokio::spawn(async move {
                        let opts = ClaimOptions {
                            owner: format!("bench-{w}"),
                            lease: Duration::from_secs(300),
                            max_attempts: 3,
                        };
                        let mut stats = ClaimStats::default();
                        let mut latencies = Vec::new();
                        loop {
                            let t = Instant::now();
                            let Some(claimed) =
                                reg.claim_next(&opts, &mut stats).await.expect("claim")
                            else {
                                break;
                            };
                            latencies.push(t.elapsed());
                            reg.complete(claimed, serde_json::Value::Null)
                                .await
                                .expect("complete");
                        }
                        (latencies, stats)
                    })
                })
                .collect();
            let mut latencies = Vec::new();
            let mut lost = 0;
            let mut claim_trips = 0;
            for t in tasks {
                let (l, s) = t.await.expect("worker");
                latencies.extend(l);
                lost += s.lost_races;
                claim_trips += s.round_trips;
            }
            let wall = start.elapsed().as_secs_f64();
            let trips = counting.calls() - before;
            assert_eq!(latencies.len(), JOBS, "every job claimed once");
            latencies.sort();
            let ms = |d: Duration| d.as_secs_f64() * 1e3;
            println!(
                "claims on {label}, {workers} worker(s), {JOBS} jobs: {:.0} jobs/s, claim latency \
                 p50 {:.2} ms p90 {:.2} ms, store round trips per job {:.2} (claiming {:.2}, of which \
                 the final empty listings {workers}), lost races {lost}",
                JOBS as f64 / wall,
                ms(latencies[JOBS / 2]),
                ms(latencies[JOBS * 9 / 10]),
                trips as f64 / JOBS as f64,
                claim_trips as f64 / JOBS as f64,
            );
        }
    }
}
