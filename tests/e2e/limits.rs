//! The embedded host's limits through real HTTP on a socket: bodies over a route's limit
//! (chunked, so no `Content-Length` warns the host, or declared), a request without a token
//! answered before its body arrives, oversized headers, a slow-loris connection, a request past
//! its deadline, back-pressure when every slot is taken, an instance over its memory limit.
//! Each is a JSON problem (or hyper's 431), nothing is written, the host's memory stays bounded,
//! and `/health` answers all along.

use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::{ADMIN_TOKEN, Backend, SendJson, Server, TOKEN, start_with, start_with_env};

/// An answer read off the socket: its status and, for a JSON problem, the document.
#[derive(Debug)]
struct Answer {
    status: u16,
    json: Value,
}

/// Reads one response (head and a `Content-Length` body) from `stream`, within 10 s.
async fn read_answer(stream: &mut tokio::net::tcp::OwnedReadHalf) -> Answer {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let read = async {
        loop {
            let n = stream.read(&mut chunk).await.unwrap_or(0);
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
            if let Some(end) = find(&buf, b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
                let length = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse::<usize>().ok())
                    .unwrap_or(0);
                if buf.len() >= end + 4 + length {
                    break;
                }
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .expect("an answer within 10 s");
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {text:?}"));
    let json = find(&buf, b"\r\n\r\n")
        .and_then(|end| serde_json::from_slice(&buf[end + 4..]).ok())
        .unwrap_or(Value::Null);
    Answer { status, json }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Sends `head` (without its blank line), then `chunks` chunks of 64 KiB with chunked encoding,
/// stopping as soon as the host answers, and returns the answer.
async fn chunked(server: &Server, head: &str, chunks: usize) -> Answer {
    let stream = TcpStream::connect(server.addr()).await.unwrap();
    let (mut rx, mut tx) = stream.into_split();
    let head =
        format!("{head}\r\nHost: test\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n");
    tx.write_all(head.as_bytes()).await.unwrap();
    let writer = tokio::spawn(async move {
        let block = vec![b'x'; 64 * 1024];
        for _ in 0..chunks {
            let mut piece = format!("{:x}\r\n", block.len()).into_bytes();
            piece.extend_from_slice(&block);
            piece.extend_from_slice(b"\r\n");
            if tx.write_all(&piece).await.is_err() {
                return;
            }
        }
        let _ = tx.write_all(b"0\r\n\r\n").await;
        // Keep the write half open until the answer is read.
        tokio::time::sleep(Duration::from_secs(30)).await;
    });
    let answer = read_answer(&mut rx).await;
    writer.abort();
    answer
}

/// `GET /health` answers 200 within a second.
async fn healthy(server: &Server) {
    let started = Instant::now();
    let r = reqwest::Client::new()
        .get(format!("{}/health", server.base))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .expect("/health answers");
    assert_eq!(r.status(), 200);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "/health took {:?}",
        started.elapsed()
    );
}

fn problem(answer: &Answer, status: u16, code: &str) {
    assert_eq!(answer.status, status, "{answer:?}");
    assert_eq!(answer.json["code"], code, "{answer:?}");
    assert!(answer.json["message"].is_string(), "{answer:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_requests_get_clear_problems_and_leave_the_host_serving() {
    let Some(server) = start_with(Backend::Dir, &["--header-timeout", "1s"]) else {
        return;
    };
    healthy(&server).await;
    let rss_at_rest = server.rss();
    let bearer = format!("POST /train HTTP/1.1\r\nAuthorization: Bearer {TOKEN}");

    // No token: 401 before a byte of the body is sent (the body never comes).
    let stream = TcpStream::connect(server.addr()).await.unwrap();
    let (mut rx, mut tx) = stream.into_split();
    tx.write_all(b"POST /train HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n")
        .await
        .unwrap();
    problem(&read_answer(&mut rx).await, 401, "unauthorized");
    // A wrong token of another length, and one of the same length.
    for token in ["short", &"x".repeat(TOKEN.len())] {
        let head = format!("POST /train HTTP/1.1\r\nAuthorization: Bearer {token}");
        problem(&chunked(&server, &head, 1).await, 401, "unauthorized");
    }

    // Chunked bodies over the route's limit: 256 KiB for JSON, 10 MiB for images.
    problem(&chunked(&server, &bearer, 64).await, 413, "body_too_large");
    problem(
        &chunked(&server, "POST /classify?model=iris HTTP/1.1", 200).await,
        413,
        "body_too_large",
    );
    problem(
        &chunked(
            &server,
            "POST /models/iris/versions/v1/validate HTTP/1.1",
            8,
        )
        .await,
        413,
        "body_too_large",
    );
    // A declared length over the limit is refused without reading.
    let stream = TcpStream::connect(server.addr()).await.unwrap();
    let (mut rx, mut tx) = stream.into_split();
    tx.write_all(b"POST /classify HTTP/1.1\r\nHost: test\r\nContent-Length: 99999999999\r\n\r\n")
        .await
        .unwrap();
    problem(&read_answer(&mut rx).await, 413, "body_too_large");
    // Under the limit, chunked, the component gets the body and judges it (not JSON: 400).
    let answer = chunked(&server, &bearer, 1).await;
    assert_eq!(answer.status, 400, "{answer:?}");

    // Too many header fields, or too many header bytes: hyper's 431, then the host serves on.
    let many: String = (0..100).map(|i| format!("X-Filler-{i}: {i}\r\n")).collect();
    let stream = TcpStream::connect(server.addr()).await.unwrap();
    let (mut rx, mut tx) = stream.into_split();
    tx.write_all(format!("GET /health HTTP/1.1\r\nHost: test\r\n{many}\r\n").as_bytes())
        .await
        .unwrap();
    assert_eq!(read_answer(&mut rx).await.status, 431);
    let stream = TcpStream::connect(server.addr()).await.unwrap();
    let (mut rx, mut tx) = stream.into_split();
    let huge = "y".repeat(64 * 1024);
    let _ = tx
        .write_all(
            format!("GET /health HTTP/1.1\r\nHost: test\r\nX-Huge: {huge}\r\n\r\n").as_bytes(),
        )
        .await;
    assert_eq!(read_answer(&mut rx).await.status, 431);

    // Slow loris: headers never finished; the host closes the connection after --header-timeout.
    let mut loris = TcpStream::connect(server.addr()).await.unwrap();
    loris
        .write_all(b"GET /health HTTP/1.1\r\nHost: test\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(10), loris.read_to_end(&mut rest)).await;
    assert!(
        closed.is_ok(),
        "the slow connection is still open after 10 s"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );

    // Nothing was written by any of it: no job was queued.
    assert!(
        !server.dir.path().join("registry/jobs").exists(),
        "a refused request wrote a job"
    );
    healthy(&server).await;
    let rss = server.rss();
    assert!(
        rss < rss_at_rest + (256 << 20),
        "host RSS grew from {} MiB to {} MiB",
        rss_at_rest >> 20,
        rss >> 20
    );
    eprintln!(
        "host RSS: {} MiB at rest, {} MiB after the bad-input matrix",
        rss_at_rest >> 20,
        rss >> 20
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_host_answers_busy_and_a_stalled_request_times_out() {
    let Some(server) = start_with(
        Backend::Dir,
        &[
            "--concurrency",
            "1",
            "--queue-wait",
            "200ms",
            "--request-timeout",
            "2s",
        ],
    ) else {
        return;
    };
    healthy(&server).await;
    // A request whose body never comes holds the one slot.
    let stream = TcpStream::connect(server.addr()).await.unwrap();
    let (mut rx, mut tx) = stream.into_split();
    tx.write_all(
        b"POST /classify?model=iris HTTP/1.1\r\nHost: test\r\nContent-Length: 100\r\n\r\n",
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = reqwest::get(format!("{}/status", server.base))
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "1");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["code"], "busy", "{body}");
    // Past its deadline the stalled request gets a 504, and the slot is free again.
    problem(&read_answer(&mut rx).await, 504, "deadline_exceeded");
    healthy(&server).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_instance_over_its_memory_limit_is_a_503_not_a_crash() {
    let Some(server) = start_with(Backend::Dir, &["--memory-limit", "1MiB"]) else {
        return;
    };
    let r = reqwest::get(format!("{}/status", server.base))
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["code"], "memory_limit", "{body}");
    // The host itself is unharmed: the next request gets the same clear answer.
    let r = reqwest::get(format!("{}/models", server.base))
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
}

#[tokio::test(flavor = "multi_thread")]
async fn job_parameters_are_bounded_and_gate_overrides_need_the_admin_token() {
    let Some(server) = start_with(Backend::Dir, &[]) else {
        return;
    };
    let http = reqwest::Client::new();
    let post = |route: &str, token: &str, body: Value| {
        http.post(format!("{}{route}", server.base))
            .bearer_auth(token)
            .json(&body)
    };
    let cases = [
        (
            "/train",
            TOKEN,
            serde_json::json!({"force": true}),
            403,
            "admin_required",
        ),
        (
            "/train",
            TOKEN,
            serde_json::json!({"config": {"gate": {"min_accuracy": 0.0}}}),
            403,
            "admin_required",
        ),
        (
            "/train",
            TOKEN,
            serde_json::json!({"epochs": 5}),
            400,
            "unknown_parameter",
        ),
        (
            "/train",
            TOKEN,
            serde_json::json!({"config": "big"}),
            400,
            "bad_parameter",
        ),
        (
            "/scrape",
            TOKEN,
            serde_json::json!({"limit": 1_000_000_000}),
            400,
            "bad_parameter",
        ),
        (
            "/scrape",
            TOKEN,
            serde_json::json!({"limit": 0}),
            400,
            "bad_parameter",
        ),
        (
            "/scrape",
            ADMIN_TOKEN,
            serde_json::json!({"force": true}),
            400,
            "unknown_parameter",
        ),
    ];
    for (route, token, body, status, code) in cases {
        let r = post(route, token, body.clone()).send().await.unwrap();
        assert_eq!(r.status(), status, "{route} {body}");
        let doc: Value = r.json().await.unwrap();
        assert_eq!(doc["code"], code, "{route} {body}: {doc}");
    }
    assert!(
        !server.dir.path().join("registry/jobs").exists(),
        "a refused trigger queued a job"
    );
    // The admin token may override the gate; the API token may trigger an ordinary run.
    let forced = post("/train", ADMIN_TOKEN, serde_json::json!({"force": true}))
        .send_json()
        .await;
    assert_eq!(forced["state"], "queued", "{forced}");
    let plain = post("/scrape", TOKEN, serde_json::json!({"limit": 5}))
        .send_json()
        .await;
    assert_eq!(plain["state"], "queued", "{plain}");
}

#[tokio::test(flavor = "multi_thread")]
async fn outbound_requests_leave_the_host_only_for_allowed_origins() {
    // The registry is on the moto server, but the allow-list (spin.toml's
    // allowed_outbound_hosts = ["{{ registry_endpoint }}"]) names another origin.
    let Some(server) = start_with_env(
        Backend::S3,
        &[],
        &[("SPIN_VARIABLE_REGISTRY_ENDPOINT", "http://127.0.0.1:9")],
    ) else {
        return;
    };
    let r = reqwest::get(format!("{}/models", server.base))
        .await
        .unwrap();
    assert!(r.status().is_server_error(), "{}", r.status());
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["code"], "registry_unavailable", "{body}");
    // With the endpoint allowed, the same components read the same registry.
    let Some(allowed) = start_with(Backend::S3, &[]) else {
        return;
    };
    let r = reqwest::get(format!("{}/models", allowed.base))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_rows_names_and_ids_are_clear_4xx_problems() {
    let Some(server) = start_with(Backend::Dir, &[]) else {
        return;
    };
    let http = reqwest::Client::new();
    let classify = |body: Value| {
        http.post(format!("{}/classify", server.base))
            .json(&body)
            .send()
    };
    // Overflowing values (f32 infinity after parsing), wrong widths, no rows, too many rows.
    let rows = vec![vec![1.0f32; 4]; 1025];
    for (body, status) in [
        (
            serde_json::json!({"model": "iris", "features": [1e39, 1.0, 1.0, 1.0]}),
            400,
        ),
        (
            serde_json::json!({"model": "iris", "features": [-1e39, 1.0, 1.0, 1.0]}),
            400,
        ),
        (
            serde_json::json!({"model": "iris", "features": [1.0, 2.0, 3.0]}),
            400,
        ),
        (
            serde_json::json!({"model": "iris", "features": [[1.0, 2.0, 3.0, 4.0, 5.0]]}),
            400,
        ),
        (serde_json::json!({"model": "iris", "features": []}), 400),
        (serde_json::json!({"model": "iris", "features": rows}), 400),
        (
            serde_json::json!({"model": "iris", "features": {"sepal_length": 1.0}}),
            400,
        ),
        (
            serde_json::json!({"model": "iris", "features": "1,2,3,4"}),
            400,
        ),
        (
            serde_json::json!({"model": "../iris", "features": [1.0, 1.0, 1.0, 1.0]}),
            400,
        ),
        (
            serde_json::json!({"model": "iris", "version": "../../x", "features": [1.0, 1.0, 1.0, 1.0]}),
            400,
        ),
    ] {
        let r = classify(body.clone()).await.unwrap();
        let status_got = r.status().as_u16();
        let doc: Value = r.json().await.unwrap();
        assert_eq!(status_got, status, "{body}: {doc}");
        assert!(
            doc["code"].is_string() && doc["message"].is_string(),
            "{body}: {doc}"
        );
    }
    // Path traversal in every name, id and file name a URL carries.
    let bearer = |path: &str| {
        http.get(format!("{}{path}", server.base))
            .bearer_auth(TOKEN)
            .send()
    };
    for path in [
        "/models/..%2F..%2Fetc",
        "/models/iris/versions/..%2F..%2Findex.json",
        "/models/iris/versions/v1/artifacts/..%2F..%2Fmanifest",
        "/models/%2e%2e/production",
        "/models/lookup?modality=gesture&user_id=..%2F..%2Fx",
        "/jobs/..%2F..%2Fschedule",
        "/jobs/00000000-0000-0000-0000-000000000000%2F..",
    ] {
        let r = bearer(path).await.unwrap();
        let status = r.status();
        let doc: Value = r.json().await.unwrap_or(Value::Null);
        assert!(status.is_client_error(), "{path}: {status} {doc}");
        assert!(doc["code"].is_string(), "{path}: {doc}");
    }
    // Uploads with a traversing dataset or label are refused, and nothing is written for them.
    for query in [
        "label=real&dataset=..%2F..%2Fmodels",
        "label=..%2Freal",
        "label=real&dataset=a%2Fb",
    ] {
        let r = http
            .post(format!("{}/uploads?{query}", server.base))
            .bearer_auth(TOKEN)
            .body(vec![0xffu8, 0xd8, 0xff, 0xe0, 0, 0])
            .send()
            .await
            .unwrap();
        assert!(r.status().is_client_error(), "{query}: {}", r.status());
    }
    fn files(dir: &std::path::Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                files(&path, out);
            } else {
                out.push(path.display().to_string());
            }
        }
    }
    let mut written = Vec::new();
    files(server.dir.path(), &mut written);
    assert!(
        !written
            .iter()
            .any(|p| p.contains("/pending/") || p.contains("/a/b")),
        "a refused upload was written: {written:?}"
    );
    healthy(&server).await;
}
