//! Fake Unsplash, Pexels, Wikimedia and CivitAI servers and a fake image host on loopback. They
//! answer with the documented shapes, headers and paging of PHOTO_APIS.md, check auth the way each
//! API does, and inject faults: 429 with Retry-After, 503, a rate-limit reset, a slow response, a
//! truncated body, a corrupt and a too-small image, duplicates within and across sources.

use std::collections::BTreeMap;
use std::io::Cursor;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use image::{DynamicImage, ImageFormat, Rgb, RgbImage};
use serde_json::{Value, json};

pub const UNSPLASH_KEY: &str = "unsplash-test-key";
pub const PEXELS_KEY: &str = "pexels-test-key";

/// A picture with large-scale structure (a random 9x8 grid of colours, upscaled), so that
/// perceptual hashes of different pictures are far apart.
pub fn picture(seed: u64, w: u32, h: u32) -> RgbImage {
    let mut rng = fastrand::Rng::with_seed(seed);
    let cells: Vec<[u8; 3]> = (0..72)
        .map(|_| [rng.u8(..), rng.u8(..), rng.u8(..)])
        .collect();
    RgbImage::from_fn(w, h, |x, y| {
        let c = cells[((y * 8 / h) * 9 + x * 9 / w) as usize];
        Rgb(c)
    })
}

pub fn encode(img: &RgbImage, format: ImageFormat) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    DynamicImage::ImageRgb8(img.clone())
        .write_to(&mut out, format)
        .unwrap();
    out.into_inner()
}

/// What the fakes serve and what they saw.
pub struct Fake {
    pub base: String,
    pub images: BTreeMap<String, Vec<u8>>,
    /// Image downloads per name.
    pub downloads: Mutex<BTreeMap<String, u32>>,
    /// Unsplash download-tracking calls per photo id.
    pub tracked: Mutex<BTreeMap<String, u32>>,
    /// Requests per route, for one-off faults.
    pub hits: Mutex<BTreeMap<String, u32>>,
    /// Delay of every image download (to give a kill time to land).
    pub image_delay: Mutex<Duration>,
}

impl Fake {
    fn hit(&self, route: &str) -> u32 {
        let mut h = self.hits.lock().unwrap();
        let n = h.entry(route.to_owned()).or_default();
        *n += 1;
        *n
    }
}

pub type Shared = Arc<Fake>;

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
pub const UNSPLASH: &[&str] = &["u0", "u1", "u2", "u3", "u4", "u5"];
/// Pexels: 100..104; 102 is byte-identical to Unsplash's u2, 104 does not decode.
pub const PEXELS: &[&str] = &["100", "101", "102", "103", "104"];
pub const WIKIMEDIA: &[&str] = &["501", "502", "503"];
pub const CIVITAI: &[&str] = &["9001", "9002", "9003", "9004"];

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

pub async fn start_fakes() -> (Shared, SocketAddr) {
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
