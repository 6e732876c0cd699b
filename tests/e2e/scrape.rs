//! `exposr-trainer scrape` against fake Unsplash, Pexels, Wikimedia and CivitAI servers and a fake
//! image host on loopback. They answer with the documented shapes, headers and paging, check
//! auth the way each API does, and inject faults: 429 with Retry-After, 503, a rate-limit reset,
//! a slow response, a truncated body, a corrupt and a too-small image, duplicates within and
//! across sources. The scrape must lose nothing, store no duplicate, complete every attribution,
//! call Unsplash's download tracking, and resume after a kill without fetching again what it
//! stored.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use image::ImageFormat;
use serde_json::Value;

use crate::common::{self, trainer};
use crate::fakes::photo_apis::*;

fn sources_file(dir: &Path, addr: SocketAddr) -> PathBuf {
    let base = format!("http://{addr}");
    let text = format!(
        r#"
reddit:
  enabled: false
dataset: photos
# The fakes listen on loopback.
allow_private_addresses: true
sources:
  - name: unsplash
    enabled: true
    label: real
    queries: ["portrait photography"]
    limit_per_query: 10
    per_page: 4
    rate_limit_per_hour: 36000
    base_url: {base}/unsplash
  - name: pexels
    enabled: true
    label: real
    queries: ["fashion"]
    limit_per_query: 10
    per_page: 4
    base_url: {base}/pexels
  - name: wikimedia
    enabled: true
    label: real
    queries: ["dog"]
    limit_per_query: 10
    per_page: 2
    base_url: {base}/wikimedia
  - name: civitai
    enabled: true
    label: ai
    queries: ["sort=Newest"]
    limit_per_query: 10
    per_page: 2
    base_url: {base}/civitai
"#
    );
    let path = dir.join("sources.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

fn env() -> Vec<(String, String)> {
    vec![
        ("UNSPLASH_ACCESS_KEY".into(), UNSPLASH_KEY.into()),
        ("PEXELS_API_KEY".into(), PEXELS_KEY.into()),
    ]
}

fn registry_of(dir: &Path) -> registry::Registry {
    registry::Registry::read_only(Arc::new(
        registry::store::DirStore::new(dir.join("registry")).unwrap(),
    ))
}

fn scrape_cmd(dir: &Path, sources: &Path, per_page_limit: Option<u64>) -> std::process::Command {
    let mut c = trainer(dir.join("registry").to_str().unwrap(), &env());
    c.args(["--json", "scrape", "--sources"]).arg(sources);
    if let Some(l) = per_page_limit {
        c.args(["--limit", &l.to_string()]);
    }
    c
}

/// Runs `command` off the async runtime (the fakes run on it) and asserts it succeeded.
async fn run_ok(mut command: std::process::Command) -> std::process::Output {
    let out = tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Distinct pictures the fakes list that must be stored: every image but the near copy u3,
/// the too-small u5, the byte copy 102 and the corrupt 104.
const EXPECTED_NEW: usize = 4 + 3 + 3 + 4;

#[tokio::test(flavor = "multi_thread")]
async fn scrape_collects_every_source_politely_and_stores_each_picture_once() {
    let (fake, addr) = start_fakes().await;
    let dir = tempfile::tempdir().unwrap();
    let sources = sources_file(dir.path(), addr);
    let started = Instant::now();
    let out = run_ok(scrape_cmd(dir.path(), &sources, None)).await;
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let by_source: BTreeMap<&str, &Value> = report["sources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["source"].as_str().unwrap(), t))
        .collect();
    let new: u64 = by_source.values().map(|t| t["new"].as_u64().unwrap()).sum();
    assert_eq!(new as usize, EXPECTED_NEW, "{report:#}");
    assert_eq!(by_source["unsplash"]["new"], 4);
    assert_eq!(
        by_source["unsplash"]["duplicates"], 1,
        "u3, a near copy of u1"
    );
    assert_eq!(by_source["unsplash"]["rejected"]["too_small"], 1, "u5");
    assert_eq!(
        by_source["pexels"]["duplicates"], 1,
        "102, byte-identical to u2"
    );
    assert_eq!(by_source["pexels"]["rejected"]["corrupt"], 1, "104");
    assert!(
        by_source["pexels"]["retries"].as_u64().unwrap() >= 2,
        "503 and the truncated body"
    );
    assert!(
        by_source["pexels"]["rate_limit_waits"].as_u64().unwrap() >= 1,
        "the reset wait"
    );
    assert!(
        by_source["unsplash"]["rate_limit_waits"].as_u64().unwrap() >= 1,
        "the 429"
    );
    assert!(
        by_source["civitai"]["retries"].as_u64().unwrap() >= 1,
        "the 503"
    );
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "Retry-After and the reset were honoured"
    );
    // Paging: pages of 4 (Unsplash, Pexels) and 2 (Wikimedia's continue, CivitAI's cursor)
    // were followed to the end.
    assert_eq!(by_source["unsplash"]["listed"], UNSPLASH.len());
    assert_eq!(by_source["pexels"]["listed"], PEXELS.len());
    assert_eq!(by_source["wikimedia"]["listed"], WIKIMEDIA.len());
    assert_eq!(by_source["civitai"]["listed"], CIVITAI.len());

    let reg = registry_of(dir.path());
    let ds = registry::layout::DatasetName::new("photos").unwrap();
    let (index, _) = reg.sample_index(&ds).await.unwrap();
    assert_eq!(index.samples.len(), EXPECTED_NEW);
    let pixels: BTreeSet<_> = index.samples.iter().map(|s| &s.pixels_sha256).collect();
    assert_eq!(pixels.len(), EXPECTED_NEW, "no duplicate pixels");
    let near = registry::samples::straddling_pairs(&index.samples, |s| s.id.as_u128() % 2 == 0, 6);
    assert!(near.is_empty(), "no near duplicates at all: {near:?}");
    let labels: BTreeMap<&str, usize> = index.samples.iter().fold(BTreeMap::new(), |mut m, s| {
        *m.entry(s.label.as_str()).or_default() += 1;
        m
    });
    assert_eq!(labels["real"], 10);
    assert_eq!(labels["ai_generated"], 4);

    // Every image is a normalised JPEG, and every metadata file has its attribution.
    for s in &index.samples {
        let bytes = reg.sample_file(&ds, &s.path).await.unwrap().unwrap();
        assert_eq!(image::guess_format(&bytes).unwrap(), ImageFormat::Jpeg);
        let img = image::load_from_memory(&bytes).unwrap();
        assert_eq!((img.width(), img.height()), (256, 256));
        let meta_bytes = reg.sample_file(&ds, &s.meta_path()).await.unwrap().unwrap();
        let meta: Value = serde_json::from_slice(&meta_bytes).unwrap();
        for field in [
            "id",
            "source",
            "label",
            "timestamp",
            "hash",
            "attribution",
            "api_data",
        ] {
            assert!(meta.get(field).is_some(), "{field} missing in {meta}");
        }
        let a = &meta["attribution"];
        for field in ["platform", "license", "url"] {
            assert!(
                a[field].as_str().is_some_and(|v| !v.is_empty()),
                "{field} empty in {meta}"
            );
        }
        assert!(
            a["photographer"].as_str().is_some_and(|v| !v.is_empty()),
            "{meta}"
        );
        assert_eq!(meta["hash"], s.original_sha256.as_str());
        if s.source == "wikimedia" {
            assert_eq!(a["photographer"], "Xavier & Co");
            assert_eq!(a["license"], "CC BY-SA 4.0");
        }
        if s.source == "civitai" {
            assert!(
                meta["api_data"]["meta"].is_null()
                    || meta["api_data"]["meta"]["prompt"].is_string()
            );
        }
    }
    // Unsplash's download tracking, once per stored photo, none for the others.
    let tracked = fake.tracked.lock().unwrap().clone();
    assert_eq!(
        tracked.keys().cloned().collect::<Vec<_>>(),
        ["u0", "u1", "u2", "u4"]
    );
    assert!(tracked.values().all(|&n| n == 1));
    // The snapshot lists every sample with its label.
    let snap = reg.latest_snapshot(&ds).await.unwrap().unwrap();
    assert_eq!(snap.entries.len(), EXPECTED_NEW);
    assert_eq!(report["snapshot"]["rows"], EXPECTED_NEW);

    // A second scrape finds every query done: nothing listed, nothing fetched.
    let before = fake.downloads.lock().unwrap().clone();
    run_ok(scrape_cmd(dir.path(), &sources, None)).await;
    assert_eq!(*fake.downloads.lock().unwrap(), before);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_scrape_resumes_without_fetching_again_what_it_stored() {
    let (fake, addr) = start_fakes().await;
    *fake.image_delay.lock().unwrap() = Duration::from_millis(250);
    let dir = tempfile::tempdir().unwrap();
    let sources = sources_file(dir.path(), addr);
    let reg = registry_of(dir.path());
    let ds = registry::layout::DatasetName::new("photos").unwrap();
    // Pages of 2: the kill lands after some pages are committed and before the end.
    let mut child = scrape_cmd(dir.path(), &sources, Some(2))
        .arg("--source")
        .arg("civitai")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (index, _) = reg.sample_index(&ds).await.unwrap();
        if !index.samples.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "nothing stored");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let (stored, _) = reg.sample_index(&ds).await.unwrap();
    assert!(
        stored.samples.len() < CIVITAI.len(),
        "killed too late to test a resume"
    );
    let stored_ids: BTreeSet<String> = stored
        .samples
        .iter()
        .filter_map(|s| s.source_id.clone())
        .collect();

    *fake.image_delay.lock().unwrap() = Duration::ZERO;
    let mut resume = scrape_cmd(dir.path(), &sources, Some(CIVITAI.len() as u64));
    resume.args(["--source", "civitai"]);
    run_ok(resume).await;
    let (index, _) = reg.sample_index(&ds).await.unwrap();
    assert_eq!(
        index.samples.len(),
        CIVITAI.len(),
        "every image stored once"
    );
    let downloads = fake.downloads.lock().unwrap().clone();
    for id in &stored_ids {
        assert_eq!(
            downloads[id], 1,
            "{id} was stored before the kill and fetched again"
        );
    }
}

#[tokio::test]
async fn a_source_without_its_key_fails_with_the_variable_to_set() {
    let (_fake, addr) = start_fakes().await;
    let dir = tempfile::tempdir().unwrap();
    let sources = sources_file(dir.path(), addr);
    let out = trainer(dir.path().join("registry").to_str().unwrap(), &[])
        .args(["scrape", "--source", "unsplash", "--sources"])
        .arg(&sources)
        .env_remove("UNSPLASH_ACCESS_KEY")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("UNSPLASH_ACCESS_KEY"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn without_the_private_address_opt_in_nothing_on_loopback_is_fetched() {
    let (fake, addr) = start_fakes().await;
    let dir = tempfile::tempdir().unwrap();
    let sources = sources_file(dir.path(), addr);
    let text = std::fs::read_to_string(&sources).unwrap().replace(
        "allow_private_addresses: true",
        "allow_private_addresses: false",
    );
    std::fs::write(&sources, text).unwrap();
    let out = tokio::task::spawn_blocking(move || scrape_cmd(dir.path(), &sources, None).output())
        .await
        .unwrap()
        .unwrap();
    assert!(
        !out.status.success(),
        "every source failed, so the scrape fails"
    );
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.contains("private or local address"), "{said}");
    assert!(
        fake.hits.lock().unwrap().is_empty() && fake.downloads.lock().unwrap().is_empty(),
        "a request reached the fake"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn uploads_are_kept_pending_then_ingested_like_any_image() {
    let Some(server) = common::start() else {
        return;
    };
    let http = reqwest::Client::new();
    let post = |query: &str, body: Vec<u8>, token: bool| {
        let mut r = http
            .post(format!("{}/uploads?{query}", server.base))
            .header("content-type", "image/png")
            .body(body);
        if token {
            r = r.header("authorization", format!("Bearer {}", common::TOKEN));
        }
        r.send()
    };
    let png = encode(&picture(77, 400, 300), ImageFormat::Png);
    let small = encode(&picture(78, 64, 64), ImageFormat::Png);
    assert_eq!(
        post("label=real", png.clone(), false)
            .await
            .unwrap()
            .status(),
        401
    );
    let bad = post("label=cat", png.clone(), true).await.unwrap();
    assert_eq!(bad.status(), 400);
    let problem: Value = bad.json().await.unwrap();
    assert_eq!(problem["code"], "invalid_label");
    assert_eq!(
        post("label=real", b"hello".to_vec(), true)
            .await
            .unwrap()
            .status(),
        415
    );
    let huge = [png.clone(), vec![0u8; 10 * 1024 * 1024]].concat();
    assert_eq!(post("label=real", huge, true).await.unwrap().status(), 413);
    let ok = post("label=real&license=CC0", png, true).await.unwrap();
    assert_eq!(ok.status(), 202);
    let body: Value = ok.json().await.unwrap();
    assert_eq!(body["state"], "pending");
    assert_eq!(body["dataset"], "authenticity");
    assert_eq!(post("label=ai", small, true).await.unwrap().status(), 202);

    let registry = server.dir.path().join("registry");
    let out = trainer(registry.to_str().unwrap(), &[])
        .args(["--json", "ingest", "--pending"])
        .output()
        .unwrap();
    let out = common::ok(out);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["tally"]["new"], 1);
    assert_eq!(report["tally"]["rejected"]["too_small"], 1);
    assert_eq!(report["samples"], 1);
    let reg =
        registry::Registry::read_only(Arc::new(registry::store::DirStore::new(&registry).unwrap()));
    let ds = registry::layout::DatasetName::new("authenticity").unwrap();
    assert!(
        reg.pending_ids(&ds).await.unwrap().is_empty(),
        "handled uploads are removed"
    );
    let (index, _) = reg.sample_index(&ds).await.unwrap();
    assert_eq!(index.samples[0].label.as_str(), "real");
    assert_eq!(index.samples[0].source, "upload");
    // /status counts the labelled samples of the newest snapshot.
    let status: Value = http
        .get(format!("{}/status", server.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(status["dataset_counts"]["total"], 1);
    assert_eq!(status["dataset_counts"]["real"], 1);
}
