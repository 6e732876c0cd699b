//! Ingestion throughput on one core: the vision crate's steps (read, SHA-256 of the original,
//! decode, checks, alpha compositing, resize and crop to 256x256, SHA-256 of the pixels,
//! perceptual hash, JPEG encoding) plus writing the image and a metadata JSON, on the offline
//! real and AI-generated images (`scripts/data/fetch.py images`), against Python's PIL +
//! imagehash doing the same steps on the same files in the same run (`scripts/bench_ingest.py`).
//!
//! Run with `scripts/bench` (or `cargo bench -p exposr-vision --bench ingest`).

use std::path::{Path, PathBuf};
use std::time::Instant;

fn files(dirs: &[PathBuf]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack: Vec<PathBuf> = dirs.to_vec();
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("image folder") {
            let p = e.expect("entry").path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

fn ingest(path: &Path, out: &Path, limits: &vision::Limits) -> bool {
    let bytes = std::fs::read(path).expect("read");
    let Ok(n) = vision::normalize(&bytes, limits) else {
        return false;
    };
    std::fs::write(out.join(format!("{}.jpg", n.original.sha256)), &n.jpeg).expect("write");
    let meta = serde_json::json!({
        "hash": n.original.sha256, "pixels_sha256": n.pixels_sha256,
        "phash": format!("{:016x}", n.phash), "width": n.original.width, "height": n.original.height,
    });
    std::fs::write(
        out.join(format!("{}.json", n.original.sha256)),
        serde_json::to_vec(&meta).expect("json"),
    )
    .expect("write");
    true
}

fn main() {
    // `cargo test --all-targets` runs bench binaries without `--bench`: build-check only.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let dirs = vec![
        root.join(".cache/data/images/real"),
        root.join(".cache/data/images/ai_generated"),
    ];
    if !dirs.iter().all(|d| d.is_dir()) {
        println!("ingest: skipped (run scripts/data/fetch.py images)");
        return;
    }
    let limits = vision::Limits::default();
    let python = root.join(".venv/bin/python");
    let groups: [(&str, Vec<PathBuf>); 3] = [
        ("real photos (PNG, JPEG)", vec![dirs[0].clone()]),
        ("AI images (WEBP)", vec![dirs[1].clone()]),
        ("all", dirs.clone()),
    ];
    for (label, group) in groups {
        let files = files(&group);
        let mut best = f64::MAX;
        let mut accepted = 0;
        for _ in 0..3 {
            let tmp = tempfile::tempdir().expect("temp dir");
            let start = Instant::now();
            accepted = files
                .iter()
                .filter(|f| ingest(f, tmp.path(), &limits))
                .count();
            best = best.min(start.elapsed().as_secs_f64());
        }
        let ours = files.len() as f64 / best;
        let peer = std::process::Command::new(&python)
            .arg(root.join("scripts/bench_ingest.py"))
            .args(&group)
            .output();
        let theirs = match peer {
            Ok(o) if o.status.success() => {
                let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("peer JSON");
                v["per_second"].as_f64()
            }
            _ => None,
        };
        match theirs {
            Some(theirs) => println!(
                "ingest on one core (decode, check, hash, perceptual hash, normalise, store), {label}, \
                 {} images ({accepted} accepted): exposr-trainer {ours:.1} images/s, PIL + imagehash \
                 {theirs:.1} images/s; ratio {:.2}x",
                files.len(),
                ours / theirs
            ),
            None => println!(
                "ingest on one core, {label}, {} images: exposr-trainer {ours:.1} images/s; PIL + \
                 imagehash not measured (run scripts/setup for .venv)",
                files.len()
            ),
        }
    }
    // Feature extraction alone, on the stored (normalised) JPEGs: what retraining and the
    // classify function spend per image.
    let stored: Vec<Vec<u8>> = files(&dirs)
        .iter()
        .filter_map(|f| vision::normalize(&std::fs::read(f).ok()?, &limits).ok())
        .map(|n| n.jpeg)
        .collect();
    let start = Instant::now();
    for jpeg in &stored {
        vision::features_of_sample(jpeg).expect("features");
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "features ({} v{}) of {} normalised images on one core: {:.1} images/s ({:.2} ms each)",
        vision::features::PIPELINE.name,
        vision::features::PIPELINE.version,
        stored.len(),
        stored.len() as f64 / secs,
        secs * 1e3 / stored.len() as f64
    );
}
