//! Benchmarks that print figures (not timed tests):
//! - SHA-256 throughput of `Digest` against `openssl speed -evp sha256` on the same machine;
//! - one publish (3 blobs + manifest + index) against each store, with its store round trips.
//!
//! Run with `scripts/bench`, which starts the moto S3 server; without it the S3 row is skipped.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use registry::conformance::{Counting, sample};
use registry::store::{self, DirStore, ObjectStoreBackend, Store};
use registry::{Digest, Registry, VersionChoice, WritePolicy};

fn main() {
    sha256_throughput();
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(publish_round_trips());
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

async fn publish_round_trips() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut stores: Vec<(&str, Arc<dyn Store>)> = vec![
        ("memory", Arc::new(ObjectStoreBackend::in_memory())),
        (
            "directory",
            Arc::new(DirStore::new(dir.path()).expect("dir")),
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
        Err(_) => println!("publish on S3: skipped (run scripts/bench to start the moto server)"),
    }
    for (label, inner) in stores {
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
    }
}
