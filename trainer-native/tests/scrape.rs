//! `exposr-trainer scrape` against fake Unsplash, Pexels, Wikimedia and CivitAI servers and a fake
//! image host on loopback. They answer with the documented shapes, headers and paging, check
//! auth the way each API does, and inject faults: 429 with Retry-After, 503, a rate-limit reset,
//! a slow response, a truncated body, a corrupt and a too-small image, duplicates within and
//! across sources. The scrape must lose nothing, store no duplicate, complete every attribution,
//! call Unsplash's download tracking, and resume after a kill without fetching again what it
//! stored.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Cursor;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use common::trainer;
use image::{DynamicImage, ImageFormat, Rgb, RgbImage};
use serde_json::{Value, json};

const UNSPLASH_KEY: &str = "unsplash-test-key";
const PEXELS_KEY: &str = "pexels-test-key";

/// A picture with large-scale structure (a random 9x8 grid of colours, upscaled), so that
/// perceptual hashes of different pictures are far apart.
fn picture(seed: u64, w: u32, h: u32) -> RgbImage {
    let mut rng = fastrand::Rng::with_seed(seed);
    let cells: Vec<[u8; 3]> = (0..72)
        .map(|_| [rng.u8(..), rng.u8(..), rng.u8(..)])
        .collect();
    RgbImage::from_fn(w, h, |x, y| {
        let c = cells[((y * 8 / h) * 9 + x * 9 / w) as usize];
        Rgb(c)
    })
}

fn encode(img: &RgbImage, format: ImageFormat) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    DynamicImage::ImageRgb8(img.clone())
        .write_to(&mut out, format)
        .unwrap();
    out.into_inner()
}

/// What the fakes serve and what they saw.
struct Fake {
    base: String,
    images: BTreeMap<String, Vec<u8>>,
    /// Image downloads per name.
    downloads: Mutex<BTreeMap<String, u32>>,
    /// Unsplash download-tracking calls per photo id.
    tracked: Mutex<BTreeMap<String, u32>>,
    /// Requests per route, for one-off faults.
    hits: Mutex<BTreeMap<String, u32>>,
    /// Delay of every image download (to give a kill time to land).
    image_delay: Mutex<Duration>,
}

impl Fake {
    fn hit(&self, route: &str) -> u32 {
        let mut h = self.hits.lock().unwrap();
        let n = h.entry(route.to_owned()).or_default();
        *n += 1;
        *n
    }
}

type Shared = Arc<Fake>;

fn json_response(status: StatusCode, headers: &[(&str, String)], body: Value) -> Response {
    let mut r = (status, axum::Json(body)).into_response();
    for (k, v) in headers {
        r.headers_mut().insert(
            axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    r
}

/// Unsplash: ids u0..u5; u3 is a lossy copy of u1 (a near duplicate), u5 is too small.
const UNSPLASH: &[&str] = &["u0", "u1", "u2", "u3", "u4", "u5"];
/// Pexels: 100..104; 102 is byte-identical to Unsplash's u2, 104 does not decode.
const PEXELS: &[&str] = &["100", "101", "102", "103", "104"];
const WIKIMEDIA: &[&str] = &["501", "502", "503"];
const CIVITAI: &[&str] = &["9001", "9002", "9003", "9004"];

fn images() -> BTreeMap<String, Vec<u8>> {
    let mut m = BTreeMap::new();
    let mut seed = 1;
    let mut next = |w, h| {
        seed += 1;
        picture(seed, w, h)
    };
    for id in ["u0", "u1", "u2", "u4"] {
        m.insert(id.to_owned(), encode(&next(480, 360), ImageFormat::Jpeg));
    }
    let u1 = image::load_from_memory(&m["u1"]).unwrap().to_rgb8();
    // A re-encoded, slightly resized copy of u1.
    let copy = image::imageops::resize(&u1, 470, 352, image::imageops::FilterType::Triangle);
    m.insert("u3".into(), encode(&copy, ImageFormat::Png));
    m.insert("u5".into(), encode(&next(120, 90), ImageFormat::Png));
    for id in ["100", "101", "103"] {
        m.insert(id.to_owned(), encode(&next(400, 400), ImageFormat::Png));
    }
    m.insert("102".into(), m["u2"].clone());
    m.insert(
        "104".into(),
        b"\xff\xd8\xff\xe0 this is not really a JPEG".to_vec(),
    );
    for id in WIKIMEDIA {
        m.insert((*id).to_owned(), encode(&next(512, 384), ImageFormat::Jpeg));
    }
    for id in CIVITAI {
        m.insert((*id).to_owned(), encode(&next(416, 608), ImageFormat::WebP));
    }
    m
}

async fn image_host(State(f): State<Shared>, UrlPath(name): UrlPath<String>) -> Response {
    let delay = *f.image_delay.lock().unwrap();
    tokio::time::sleep(delay).await;
    let Some(bytes) = f.images.get(&name).cloned() else {
        return StatusCode::NOT_FOUND.into_response();
    };
    *f.downloads.lock().unwrap().entry(name.clone()).or_default() += 1;
    let n = f.hit(&format!("img/{name}"));
    if name == "101" && n == 1 {
        // Truncated: Content-Length promises the whole file, the connection ends halfway.
        let half = bytes::Bytes::copy_from_slice(&bytes[..bytes.len() / 2]);
        let chunks: Vec<Result<bytes::Bytes, std::io::Error>> =
            vec![Ok(half), Err(std::io::Error::other("connection lost"))];
        return Response::builder()
            .header(header::CONTENT_TYPE, "image/png")
            .header(header::CONTENT_LENGTH, bytes.len())
            .body(Body::from_stream(futures::stream::iter(chunks)))
            .unwrap();
    }
    if name == "502" && n == 1 {
        // Slow, but within the client's timeout.
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    ([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response()
}

async fn unsplash_search(
    State(f): State<Shared>,
    headers: HeaderMap,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok());
    if auth != Some(&format!("Client-ID {UNSPLASH_KEY}")) || headers.get("accept-version").is_none()
    {
        return json_response(
            StatusCode::UNAUTHORIZED,
            &[],
            json!({"errors": ["OAuth error: The access token is invalid"]}),
        );
    }
    if f.hit("unsplash") == 1 {
        return json_response(
            StatusCode::TOO_MANY_REQUESTS,
            &[("retry-after", "1".into())],
            json!({"errors": ["Rate Limit Exceeded"]}),
        );
    }
    let page: usize = q.get("page").and_then(|p| p.parse().ok()).unwrap_or(1);
    let per_page: usize = q.get("per_page").and_then(|p| p.parse().ok()).unwrap_or(10);
    let total_pages = UNSPLASH.len().div_ceil(per_page);
    let results: Vec<Value> = UNSPLASH
        .iter()
        .skip((page - 1) * per_page)
        .take(per_page)
        .map(|id| {
            json!({
                "id": id, "width": 480, "height": 360, "alt_description": "a picture",
                "urls": {"raw": format!("{}/img/{id}?ixid=1", f.base), "regular": format!("{}/img/{id}", f.base)},
                "links": {"html": format!("https://unsplash.com/photos/{id}"),
                          "download": format!("https://unsplash.com/photos/{id}/download"),
                          "download_location": format!("{}/unsplash/photos/{id}/download?ixid=abc", f.base)},
                "user": {"username": "jeff", "name": "Jeff Sheldon", "links": {"html": "https://unsplash.com/@jeff"}},
            })
        })
        .collect();
    json_response(
        StatusCode::OK,
        &[
            ("x-ratelimit-limit", "50".into()),
            ("x-ratelimit-remaining", "45".into()),
            ("x-total", UNSPLASH.len().to_string()),
        ],
        json!({"total": UNSPLASH.len(), "total_pages": total_pages, "results": results}),
    )
}

async fn unsplash_track(
    State(f): State<Shared>,
    headers: HeaderMap,
    UrlPath(id): UrlPath<String>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok());
    if auth != Some(&format!("Client-ID {UNSPLASH_KEY}"))
        || q.get("ixid").map(String::as_str) != Some("abc")
    {
        return json_response(StatusCode::UNAUTHORIZED, &[], json!({"errors": ["no"]}));
    }
    *f.tracked.lock().unwrap().entry(id.clone()).or_default() += 1;
    json_response(
        StatusCode::OK,
        &[],
        json!({"url": format!("{}/img/{id}", f.base)}),
    )
}

async fn pexels_search(
    State(f): State<Shared>,
    headers: HeaderMap,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(PEXELS_KEY) {
        return json_response(
            StatusCode::UNAUTHORIZED,
            &[],
            json!({"error": "Unauthorized"}),
        );
    }
    let page: usize = q.get("page").and_then(|p| p.parse().ok()).unwrap_or(1);
    let per_page: usize = q.get("per_page").and_then(|p| p.parse().ok()).unwrap_or(15);
    if page == 2 && f.hit("pexels-2") == 1 {
        return json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            &[],
            json!({"error": "busy"}),
        );
    }
    let photos: Vec<Value> = PEXELS
        .iter()
        .skip((page - 1) * per_page)
        .take(per_page)
        .map(|id| {
            json!({
                "id": id.parse::<u64>().unwrap(), "width": 400, "height": 400,
                "url": format!("https://www.pexels.com/photo/p-{id}/"),
                "photographer": "Lukas Rodriguez", "photographer_url": "https://www.pexels.com/@lukas",
                "photographer_id": 1, "avg_color": "#374824", "liked": false, "alt": "Rocks",
                "src": {"original": format!("{}/img/{id}", f.base), "large2x": format!("{}/img/{id}", f.base)},
            })
        })
        .collect();
    let mut body = json!({"total_results": PEXELS.len(), "page": page, "per_page": per_page, "photos": photos});
    if page * per_page < PEXELS.len() {
        body["next_page"] = json!(format!(
            "https://api.pexels.com/v1/search/?page={}&per_page={per_page}&query={}",
            page + 1,
            q.get("query").cloned().unwrap_or_default()
        ));
    }
    // The first page uses up the window; the client must wait for the reset (2-3 s).
    let remaining = if page == 1 { 0 } else { 150 };
    let reset = chrono::Utc::now().timestamp() + 3;
    json_response(
        StatusCode::OK,
        &[
            ("x-ratelimit-limit", "200".into()),
            ("x-ratelimit-remaining", remaining.to_string()),
            ("x-ratelimit-reset", reset.to_string()),
        ],
        body,
    )
}

async fn wikimedia_api(
    State(f): State<Shared>,
    headers: HeaderMap,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    let ua = headers
        .get("user-agent")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !ua.contains("exposr-trainer") || !ua.contains("https://") {
        return (StatusCode::FORBIDDEN, "Please set a descriptive User-Agent").into_response();
    }
    assert_eq!(q.get("formatversion").map(String::as_str), Some("2"));
    assert_eq!(q.get("maxlag").map(String::as_str), Some("5"));
    let offset: usize = q.get("gsroffset").and_then(|o| o.parse().ok()).unwrap_or(0);
    let limit: usize = q.get("gsrlimit").and_then(|o| o.parse().ok()).unwrap_or(10);
    let pages: Vec<Value> = WIKIMEDIA
        .iter()
        .enumerate()
        .skip(offset)
        .take(limit)
        .map(|(i, id)| {
            json!({
                "pageid": id.parse::<u64>().unwrap(), "ns": 6, "title": format!("File:Dog {id}.jpg"),
                "index": i + 1,
                "imageinfo": [{
                    "size": 2345678, "width": 4000, "height": 3000, "mime": "image/jpeg",
                    "thumburl": format!("{}/img/{id}", f.base), "url": format!("{}/img/{id}", f.base),
                    "descriptionurl": format!("https://commons.wikimedia.org/wiki/File:Dog_{id}.jpg"),
                    "extmetadata": {
                        "LicenseShortName": {"value": "CC BY-SA 4.0", "source": "commons-desc-page", "hidden": true},
                        "Artist": {"value": "<a href=\"//commons.wikimedia.org/wiki/User:X\">Xavier &amp; Co</a>", "source": "commons-desc-page"},
                    }
                }]
            })
        })
        .collect();
    let mut body = json!({"batchcomplete": true, "query": {"pages": pages}});
    if offset + limit < WIKIMEDIA.len() {
        body["continue"] = json!({"gsroffset": offset + limit, "continue": "gsroffset||"});
    }
    json_response(StatusCode::OK, &[], body)
}

async fn civitai_images(
    State(f): State<Shared>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    assert_eq!(
        q.get("browsingLevel").map(String::as_str),
        Some("1"),
        "SFW by default"
    );
    assert_eq!(
        q.get("sort").map(String::as_str),
        Some("Newest"),
        "the query's filter"
    );
    if f.hit("civitai") == 1 {
        return json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            &[
                ("retry-after", "1".into()),
                ("cache-control", "no-store".into()),
            ],
            json!({"error": "Server busy, please retry shortly."}),
        );
    }
    let start: usize = q.get("cursor").and_then(|c| c.parse().ok()).unwrap_or(0);
    let limit: usize = q.get("limit").and_then(|c| c.parse().ok()).unwrap_or(100);
    let items: Vec<Value> = CIVITAI
        .iter()
        .enumerate()
        .skip(start)
        .take(limit)
        .map(|(i, id)| {
            let meta = match i % 3 {
                0 => Value::Null,
                1 => json!({"prompt": "a castle", "Model": "juggernautXL_v9", "seed": 1}),
                _ => json!({"id": id.parse::<u64>().unwrap(), "meta": {"prompt": "a cat", "Model": "flux"}}),
            };
            json!({
                "id": id.parse::<u64>().unwrap(), "url": format!("{}/img/{id}", f.base),
                "width": 416, "height": 608, "nsfwLevel": "None", "type": "image", "nsfw": false,
                "browsingLevel": 1, "createdAt": "2025-04-17T21:28:57.225Z", "postId": 1,
                "meta": meta, "username": "Ajuro", "baseModel": "SDXL 1.0", "modelVersionIds": [9208],
            })
        })
        .collect();
    let mut metadata = json!({});
    if start + limit < CIVITAI.len() {
        metadata["nextCursor"] = json!((start + limit).to_string());
    }
    json_response(
        StatusCode::OK,
        &[],
        json!({"items": items, "metadata": metadata}),
    )
}

async fn start_fakes() -> (Shared, SocketAddr) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let fake = Arc::new(Fake {
        base: format!("http://{addr}"),
        images: images(),
        downloads: Mutex::default(),
        tracked: Mutex::default(),
        hits: Mutex::default(),
        image_delay: Mutex::new(Duration::ZERO),
    });
    let app = Router::new()
        .route("/img/{name}", get(image_host))
        .route("/unsplash/search/photos", get(unsplash_search))
        .route("/unsplash/photos/{id}/download", get(unsplash_track))
        .route("/pexels/v1/search", get(pexels_search))
        .route("/wikimedia/w/api.php", get(wikimedia_api))
        .route("/civitai/images", get(civitai_images))
        .with_state(fake.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (fake, addr)
}

fn sources_file(dir: &Path, addr: SocketAddr) -> PathBuf {
    let base = format!("http://{addr}");
    let text = format!(
        r#"
reddit:
  enabled: false
dataset: photos
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
        let image_key =
            registry::layout::dataset_object(&ds, &s.path.split('/').collect::<Vec<_>>()).unwrap();
        let bytes = reg.store().get(&image_key).await.unwrap().unwrap().bytes;
        assert_eq!(image::guess_format(&bytes).unwrap(), ImageFormat::Jpeg);
        let img = image::load_from_memory(&bytes).unwrap();
        assert_eq!((img.width(), img.height()), (256, 256));
        let meta_path = s
            .path
            .replacen("images/", "meta/", 1)
            .replace(".jpg", ".json");
        let meta_key =
            registry::layout::dataset_object(&ds, &meta_path.split('/').collect::<Vec<_>>())
                .unwrap();
        let meta: Value =
            serde_json::from_slice(&reg.store().get(&meta_key).await.unwrap().unwrap().bytes)
                .unwrap();
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
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["tally"]["new"], 1);
    assert_eq!(report["tally"]["rejected"]["too_small"], 1);
    assert_eq!(report["samples"], 1);
    let reg =
        registry::Registry::read_only(Arc::new(registry::store::DirStore::new(&registry).unwrap()));
    let ds = registry::layout::DatasetName::new("authenticity").unwrap();
    assert!(
        reg.pending(&ds).await.unwrap().is_empty(),
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
