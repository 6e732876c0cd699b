//! The HTTP API as a client sees it: the real built `.wasm` components under the embedded
//! wasmtime host (`exposr-trainer serve`), over a registry the trainer just published to.
//!
//! The components are built by `scripts/build-functions` (run by `scripts/test`), into
//! `$EXPOSR_COMPONENTS_DIR` or `$CARGO_TARGET_DIR/wasm32-wasip2/release`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

fn components() -> Option<PathBuf> {
    let dir = std::env::var("EXPOSR_COMPONENTS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            let target = std::env::var("CARGO_TARGET_DIR")
                .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/../target").into());
            Path::new(&target).join("wasm32-wasip2/release")
        });
    if dir.join("exposr_fn_models.wasm").is_file() {
        return Some(dir);
    }
    assert!(
        std::env::var("EXPOSR_REQUIRE_WASM").is_err(),
        "no built components in {}: run scripts/build-functions",
        dir.display()
    );
    eprintln!(
        "skipped: no built components in {} (run scripts/build-functions)",
        dir.display()
    );
    None
}

const TOKEN: &str = "test-token-7f3a";

struct Server {
    child: Child,
    base: String,
    dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn trainer(registry: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_exposr-trainer"));
    c.arg("--registry").arg(registry);
    c
}

fn start() -> Option<Server> {
    let components = components()?;
    let dir = tempfile::tempdir().unwrap();
    let registry = dir.path().join("registry");
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data");
    let out = trainer(&registry)
        .args(["train", "--model", "iris", "--csv"])
        .arg(data.join("iris.csv"))
        .arg("--schema")
        .arg(data.join("iris.schema.json"))
        .arg("--runs-dir")
        .arg(dir.path().join("runs"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut child = trainer(&registry)
        .arg("serve")
        .arg("--manifest")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../spin.toml"))
        .arg("--components")
        .arg(&components)
        .args(["--listen", "127.0.0.1:0", "--token", TOKEN])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let base = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected: {line:?}"))
        .to_owned();
    Some(Server { child, base, dir })
}

#[tokio::test]
async fn routes_answer_as_documented() {
    let Some(server) = start() else { return };
    let http = reqwest::Client::new();
    let get = |path: &str| http.get(format!("{}{path}", server.base)).send();

    let health = get("/health").await.unwrap();
    assert_eq!(health.status(), 200);
    assert_eq!(
        health.json::<serde_json::Value>().await.unwrap()["status"],
        "ok"
    );

    let status: serde_json::Value = get("/status").await.unwrap().json().await.unwrap();
    for field in ["uptime", "last_scrape", "last_train", "dataset_counts"] {
        assert!(
            status.get(field).is_some(),
            "/status lacks {field}: {status}"
        );
    }
    assert!(status["last_train"].is_string(), "{status}");
    assert_eq!(status["dataset_counts"]["total"], 0);

    let models: serde_json::Value = get("/models").await.unwrap().json().await.unwrap();
    assert_eq!(models["models"][0]["name"], "iris");

    let latest = get("/models/latest").await.unwrap();
    assert_eq!(latest.status(), 200);
    let etag = latest.headers()["etag"].to_str().unwrap().to_owned();
    let body: serde_json::Value = latest.json().await.unwrap();
    for field in ["model_version", "timestamp", "metrics", "download_url"] {
        assert!(
            body.get(field).is_some(),
            "/models/latest lacks {field}: {body}"
        );
    }
    assert_eq!(body["model_version"], "v1");

    let again = http
        .get(format!("{}/models/latest", server.base))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(
        again.status(),
        304,
        "an unchanged model costs a poller nothing"
    );

    let download = get(body["download_url"].as_str().unwrap()).await.unwrap();
    assert_eq!(download.status(), 200);
    let bytes = download.bytes().await.unwrap();
    let digest = registry_digest(&bytes);
    assert_eq!(
        body["digest"], digest,
        "the download matches the manifest digest"
    );

    let manifest: serde_json::Value = get("/models/iris/production")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(manifest["version"], "v1");
    assert_eq!(get("/models/iris/versions/v1").await.unwrap().status(), 200);
    assert_eq!(
        get("/models/iris")
            .await
            .unwrap()
            .json::<serde_json::Value>()
            .await
            .unwrap()["aliases"]["production"],
        "v1"
    );
}

/// `sha256:<hex>` of `bytes`, computed by coreutils' sha256sum (an independent implementation).
fn registry_digest(bytes: &[u8]) -> String {
    let mut child = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    child.stdin.take().unwrap().write_all(bytes).unwrap();
    let out = child.wait_with_output().unwrap();
    format!(
        "sha256:{}",
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .next()
            .unwrap()
    )
}

#[tokio::test]
async fn errors_are_json_with_stable_codes() {
    let Some(server) = start() else { return };
    let http = reqwest::Client::new();
    let cases = [
        ("/models/nope", 404, "model_not_found"),
        ("/models/iris/versions/v9", 404, "version_not_found"),
        ("/models/iris/staging", 404, "alias_not_found"),
        ("/models/Bad..Name", 400, "invalid_name"),
        (
            "/models/iris/versions/v1/artifacts/tflite",
            404,
            "artifact_not_found",
        ),
        ("/models/lookup?modality=gesture", 400, "bad_query"),
        ("/nothing-here", 404, "not_found"),
    ];
    for (path, status, code) in cases {
        let r = http
            .get(format!("{}{path}", server.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), status, "{path}");
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["code"], code, "{path}: {body}");
        assert!(body["message"].is_string());
    }
    let post = http
        .post(format!("{}/health", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(post.status(), 405);
    assert_eq!(post.headers()["allow"], "GET");
}

#[tokio::test]
async fn authenticated_routes_enqueue_jobs_and_report_metrics() {
    let Some(server) = start() else { return };
    let http = reqwest::Client::new();
    let url = |path: &str| format!("{}{path}", server.base);
    let auth = format!("Bearer {TOKEN}");

    for header in [None, Some("Bearer wrong"), Some(TOKEN)] {
        let mut r = http.get(url("/metrics"));
        if let Some(h) = header {
            r = r.header("authorization", h);
        }
        let r = r.send().await.unwrap();
        assert_eq!(r.status(), 401, "{header:?}");
        assert_eq!(r.headers()["www-authenticate"], "Bearer");
        let body = r.text().await.unwrap();
        assert!(
            body.contains("unauthorized") && !body.contains(TOKEN),
            "{body}"
        );
    }

    let metrics: serde_json::Value = http
        .get(url("/metrics"))
        .header("authorization", &auth)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(metrics["models_trained"], 1);
    assert!(
        metrics["validation_accuracy"].as_f64().unwrap() > 0.9,
        "{metrics}"
    );
    for field in ["total_images", "last_training"] {
        assert!(metrics.get(field).is_some(), "{metrics}");
    }
    let text = http
        .get(url("/metrics"))
        .header("authorization", &auth)
        .header("accept", "text/plain")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.contains("exposr_models_trained 1"), "{text}");

    let queued = http
        .post(url("/train"))
        .header("authorization", &auth)
        .body(r#"{"model": "iris"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(queued.status(), 202);
    let queued: serde_json::Value = queued.json().await.unwrap();
    let id = queued["id"].as_str().unwrap().to_owned();
    let job: serde_json::Value = http
        .get(url(&format!("/jobs/{id}")))
        .header("authorization", &auth)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (job["state"].as_str(), job["kind"].as_str()),
        (Some("queued"), Some("train"))
    );
    assert_eq!(job["params"]["model"], "iris");
    assert!(
        server
            .dir
            .path()
            .join(format!("registry/jobs/{id}.json"))
            .is_file(),
        "the job is in the registry"
    );
    let scrape = http
        .post(url("/scrape"))
        .header("authorization", &auth)
        .send()
        .await
        .unwrap();
    assert_eq!(scrape.status(), 202, "an empty body is fine");

    let cases = [
        (http.post(url("/scrape")).body("{not json"), 400, "bad_json"),
        (
            http.post(url("/train")).body(vec![b' '; 70 * 1024]),
            413,
            "body_too_large",
        ),
        (http.get(url("/jobs/not-a-uuid")), 400, "invalid_job_id"),
        (
            http.get(url("/jobs/00000000-0000-4000-8000-000000000000")),
            404,
            "job_not_found",
        ),
        (http.get(url("/train")), 405, "method_not_allowed"),
    ];
    for (request, status, code) in cases {
        let r = request.header("authorization", &auth).send().await.unwrap();
        assert_eq!(r.status(), status, "{code}");
        assert_eq!(r.json::<serde_json::Value>().await.unwrap()["code"], code);
    }
}
