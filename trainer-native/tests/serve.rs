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
    if dir.join("exposr_fn_models_composed.wasm").is_file() {
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

/// Sends a request whose JSON answer the test reads.
trait SendJson {
    async fn send_json(self) -> serde_json::Value;
}

impl SendJson for reqwest::RequestBuilder {
    async fn send_json(self) -> serde_json::Value {
        self.send().await.unwrap().json().await.unwrap()
    }
}

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

/// Where the served registry lives.
enum Backend {
    /// A temporary directory, mounted into the components.
    Dir,
    /// A fresh prefix in the moto S3 server, which the components reach over outbound HTTP.
    S3,
}

/// The moto server's coordinates as AWS_* variables, if `scripts/test` started one.
fn s3_env() -> Option<Vec<(String, String)>> {
    let var = |name: &str| std::env::var(format!("EXPOSR_TEST_S3_{name}")).ok();
    let Some(endpoint) = var("ENDPOINT") else {
        assert!(
            std::env::var("EXPOSR_REQUIRE_S3").is_err(),
            "EXPOSR_TEST_S3_ENDPOINT is not set; run the tests with scripts/test"
        );
        eprintln!("skipped: no S3 server (run scripts/test)");
        return None;
    };
    Some(vec![
        ("AWS_ENDPOINT_URL".into(), endpoint),
        ("AWS_ACCESS_KEY_ID".into(), var("ACCESS_KEY")?),
        ("AWS_SECRET_ACCESS_KEY".into(), var("SECRET_KEY")?),
        ("AWS_REGION".into(), var("REGION")?),
    ])
}

fn trainer(registry: &str, env: &[(String, String)]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_exposr-trainer"));
    c.arg("--registry").arg(registry).envs(env.iter().cloned());
    c
}

/// Trains and publishes iris v1 into `registry`, with run folders under `dir`.
fn train_iris(registry: &str, env: &[(String, String)], dir: &Path) {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data");
    let out = trainer(registry, env)
        .args(["train", "--model", "iris", "--csv"])
        .arg(data.join("iris.csv"))
        .arg("--schema")
        .arg(data.join("iris.schema.json"))
        .arg("--runs-dir")
        .arg(dir.join("runs"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn start() -> Option<Server> {
    start_on(Backend::Dir)
}

fn start_on(backend: Backend) -> Option<Server> {
    let components = components()?;
    let dir = tempfile::tempdir().unwrap();
    let (registry, env) = match backend {
        Backend::Dir => (
            dir.path().join("registry").to_str().unwrap().to_owned(),
            Vec::new(),
        ),
        Backend::S3 => (
            format!(
                "s3://{}/serve-{}",
                std::env::var("EXPOSR_TEST_S3_BUCKET").unwrap_or_default(),
                uuid::Uuid::new_v4().simple()
            ),
            s3_env()?,
        ),
    };
    train_iris(&registry, &env, dir.path());
    let mut child = trainer(&registry, &env)
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
        .send_json()
        .await;
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
        .send_json()
        .await;
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

/// The manifest of iris v1 as the API serves it.
async fn manifest(http: &reqwest::Client, base: &str) -> serde_json::Value {
    http.get(format!("{base}/models/iris/versions/v1"))
        .send_json()
        .await
}

fn argmax(v: &[f64]) -> usize {
    (0..v.len()).fold(0, |b, i| if v[i] > v[b] { i } else { b })
}

#[tokio::test]
async fn classify_reproduces_the_golden_outputs() {
    let Some(server) = start() else { return };
    let http = reqwest::Client::new();
    let url = format!("{}/classify", server.base);
    let m = manifest(&http, &server.base).await;
    let labels: Vec<&str> = m["labels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    for (golden, int8) in [(&m["golden"], false), (&m["golden_int8"], true)] {
        let cases = golden.as_array().unwrap();
        assert!(!cases.is_empty(), "the manifest carries golden cases");
        let rows: Vec<&serde_json::Value> = cases.iter().map(|c| &c["input"]).collect();
        let r = http
            .post(&url)
            .json(&serde_json::json!({"model": "iris", "features": rows, "int8": int8}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["model_version"], "v1");
        assert!(body["timings"]["inference_ms"].as_f64().unwrap() >= 0.0);
        let predictions = body["predictions"].as_array().unwrap();
        assert_eq!(predictions.len(), cases.len());
        for (case, p) in cases.iter().zip(predictions) {
            let expected: Vec<f64> = case["expected"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap())
                .collect();
            let got: Vec<f64> = labels
                .iter()
                .map(|l| p["probabilities"][l].as_f64().unwrap())
                .collect();
            assert_eq!(p["label"], labels[argmax(&expected)], "int8={int8}");
            if !int8 {
                let diff = got
                    .iter()
                    .zip(&expected)
                    .fold(0.0f64, |d, (a, b)| d.max((a - b).abs()));
                assert!(diff <= 1e-5, "float outputs differ by {diff}");
            }
        }
    }

    // Named features, in any order, are put in the model's input order.
    let names = m["features"]["feature_names"].as_array().unwrap();
    let row = m["golden"][0]["input"].as_array().unwrap();
    let named: serde_json::Map<String, serde_json::Value> = names
        .iter()
        .rev()
        .zip(row.iter().rev())
        .map(|(n, v)| (n.as_str().unwrap().to_owned(), v.clone()))
        .collect();
    let by_name: serde_json::Value = http
        .post(&url)
        .json(&serde_json::json!({"model": "iris", "features": named}))
        .send_json()
        .await;
    let expected = m["golden"][0]["expected"].as_array().unwrap();
    let best = argmax(
        &expected
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect::<Vec<_>>(),
    );
    assert_eq!(by_name["label"], labels[best], "{by_name}");

    let cases = [
        (http.post(&url).body("{not json"), 400, "bad_request"),
        (
            http.post(&url)
                .json(&serde_json::json!({"model": "iris", "features": [1.0, 2.0]})),
            400,
            "bad_request",
        ),
        (
            http.post(&url)
                .json(&serde_json::json!({"model": "iris", "features": {"petal": 1.0}})),
            400,
            "bad_request",
        ),
        (
            http.post(&url)
                .json(&serde_json::json!({"model": "../etc", "features": [1.0]})),
            400,
            "invalid_name",
        ),
        (
            http.post(&url)
                .json(&serde_json::json!({"model": "nope", "features": [1.0]})),
            404,
            "model_not_found",
        ),
        (
            http.post(&url).body(vec![b' '; 300 * 1024]),
            413,
            "body_too_large",
        ),
        (http.get(&url), 405, "method_not_allowed"),
    ];
    for (request, status, code) in cases {
        let r = request.send().await.unwrap();
        assert_eq!(r.status(), status, "{code}");
        assert_eq!(r.json::<serde_json::Value>().await.unwrap()["code"], code);
    }
}

#[tokio::test]
async fn the_validator_refuses_tampered_and_truncated_artifacts() {
    let Some(server) = start() else { return };
    let http = reqwest::Client::new();
    let validate = || {
        http.post(format!("{}/models/iris/versions/v1/validate", server.base))
            .send()
    };
    let report: serde_json::Value = validate().await.unwrap().json().await.unwrap();
    assert_eq!(report["ok"], true, "{report}");
    let artifacts = report["artifacts"].as_array().unwrap();
    assert_eq!(artifacts.len(), 2, "float and int8: {report}");
    for a in artifacts {
        assert!(a["golden_checked"].as_u64().unwrap() > 0, "{a}");
        assert_eq!(a["signature_matches"], true);
    }

    let m = manifest(&http, &server.base).await;
    let blob = |role: &str| {
        let a = m["artifacts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["role"] == role)
            .unwrap();
        let hex = a["digest"]
            .as_str()
            .unwrap()
            .strip_prefix("sha256:")
            .unwrap();
        server
            .dir
            .path()
            .join(format!("registry/blobs/sha256/{hex}"))
    };
    // Truncate the float file; flip one byte of the int8 file.
    let float = blob("onnx");
    let bytes = std::fs::read(&float).unwrap();
    std::fs::write(&float, &bytes[..bytes.len() / 2]).unwrap();
    let int8 = blob("onnx_int8");
    let mut bytes = std::fs::read(&int8).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x55;
    std::fs::write(&int8, &bytes).unwrap();

    let report: serde_json::Value = validate().await.unwrap().json().await.unwrap();
    assert_eq!(report["ok"], false, "{report}");
    for a in report["artifacts"].as_array().unwrap() {
        assert_eq!(a["ok"], false, "{a}");
        assert_eq!(a["digest_matches"], false, "{a}");
        assert!(!a["problems"].as_array().unwrap().is_empty(), "{a}");
    }
    // Classification never runs a model whose bytes fail their digest.
    let r = http
        .post(format!("{}/classify", server.base))
        .json(&serde_json::json!({"model": "iris", "features": [5.1, 3.5, 1.4, 0.2]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 500);
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap()["code"],
        "artifact_corrupt"
    );
    let missing = http
        .post(format!("{}/models/iris/versions/v7/validate", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
}

/// schemathesis (a property-based API tester) against the running functions: every documented
/// route, generated inputs both valid and invalid; no 5xx, and every response (status, content
/// type, headers, body) matches `openapi.yaml`.
#[test]
fn the_running_api_matches_its_openapi_document() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let tool = root.join(".venv/bin/schemathesis");
    if !tool.exists() {
        assert!(
            std::env::var("EXPOSR_REQUIRE_PYTHON").is_err(),
            "no .venv with schemathesis: run scripts/setup"
        );
        eprintln!("skipped: no .venv with schemathesis (run scripts/setup)");
        return;
    }
    let Some(server) = start() else { return };
    let out = Command::new(&tool)
        .arg("run")
        .arg(root.join("openapi.yaml"))
        .args(["--url", &server.base])
        .args(["--header", &format!("Authorization: Bearer {TOKEN}")])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,\
             response_headers_conformance,response_schema_conformance",
        ])
        .args(["--max-examples", "20", "--seed", "7", "--workers", "1"])
        .args(["--generation-database", "none", "--no-color"])
        .env("SCHEMATHESIS_HOOKS", "")
        .current_dir(server.dir.path())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "schemathesis found problems:\n{text}");
    assert!(
        text.contains("passed"),
        "schemathesis ran no test case:\n{text}"
    );
}

/// The same components over an S3 registry: they sign and send their own requests through the
/// host's outbound HTTP (`wasi:http/outgoing-handler`), reading what the trainer published and
/// writing job objects create-only.
#[tokio::test]
async fn components_serve_an_s3_registry_over_outbound_http() {
    let Some(server) = start_on(Backend::S3) else {
        return;
    };
    let http = reqwest::Client::new();
    let url = |path: &str| format!("{}{path}", server.base);
    let latest: serde_json::Value = http.get(url("/models/latest?name=iris")).send_json().await;
    assert_eq!(latest["model_version"], "v1", "{latest}");
    let download = latest["download_url"].as_str().unwrap();
    assert!(
        download.starts_with(&std::env::var("EXPOSR_TEST_S3_ENDPOINT").unwrap())
            && download.contains("X-Amz-Signature="),
        "a presigned S3 URL: {download}"
    );
    // Straight from the store, no credentials: the presigned URL carries the authorization.
    let bytes = http
        .get(download)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(latest["digest"], registry_digest(&bytes));
    let report: serde_json::Value = http
        .post(url("/models/iris/versions/v1/validate"))
        .send_json()
        .await;
    assert_eq!(report["ok"], true, "{report}");
    let classified: serde_json::Value = http
        .post(url("/classify"))
        .json(&serde_json::json!({"model": "iris", "features": [5.1, 3.5, 1.4, 0.2]}))
        .send_json()
        .await;
    assert_eq!(classified["label"], "setosa", "{classified}");
    let status: serde_json::Value = http.get(url("/status")).send_json().await;
    assert!(status["last_train"].is_string(), "{status}");
    let queued = http
        .post(url("/train"))
        .header("authorization", format!("Bearer {TOKEN}"))
        .send()
        .await
        .unwrap();
    assert_eq!(queued.status(), 202);
    let id = queued.json::<serde_json::Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let job: serde_json::Value = http
        .get(url(&format!("/jobs/{id}")))
        .header("authorization", format!("Bearer {TOKEN}"))
        .send_json()
        .await;
    assert_eq!(job["state"], "queued", "{job}");
}

/// A `wasmtime serve` process, killed when dropped.
struct WasmtimeServe {
    child: Child,
    base: String,
}

impl Drop for WasmtimeServe {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether the `wasmtime` CLI (installed by scripts/setup) is on PATH.
fn wasmtime_cli() -> bool {
    let found = Command::new("wasmtime")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var("EXPOSR_REQUIRE_WASM").is_err(),
            "no wasmtime CLI on PATH: run scripts/setup"
        );
        eprintln!("skipped: no wasmtime CLI (run scripts/setup)");
    }
    found
}

/// Serves `component` with `wasmtime serve` on a free loopback port, and waits until it answers.
async fn wasmtime_serve(component: &Path, args: &[String]) -> WasmtimeServe {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new("wasmtime")
        .args(["serve", "-S", "cli=y", "--addr"])
        .arg(format!("127.0.0.1:{port}"))
        .args(args)
        .arg(component)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let server = WasmtimeServe {
        child,
        base: format!("http://127.0.0.1:{port}"),
    };
    let http = reqwest::Client::new();
    for _ in 0..600 {
        if http
            .get(format!("{}/health", server.base))
            .send()
            .await
            .is_ok()
        {
            return server;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("wasmtime serve {} did not start", component.display());
}

/// The same `.wasm` files, unchanged, under the stock `wasmtime serve` (one component per
/// process): configuration as environment variables, the registry as a preopened directory.
#[tokio::test]
async fn the_same_components_run_under_wasmtime_serve() {
    let Some(components) = components() else {
        return;
    };
    if !wasmtime_cli() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let registry = dir.path().join("registry");
    train_iris(registry.to_str().unwrap(), &[], dir.path());
    let args = |extra: &[&str]| {
        let mut a = vec![
            "--dir".to_owned(),
            format!("{}::/registry", registry.display()),
            "--env".to_owned(),
            "EXPOSR_REGISTRY_DIR=/registry".to_owned(),
        ];
        a.extend(extra.iter().map(|s| (*s).to_owned()));
        a
    };
    let http = reqwest::Client::new();

    let status = wasmtime_serve(&components.join("exposr_fn_status.wasm"), &args(&[])).await;
    let body: serde_json::Value = http
        .get(format!("{}/status", status.base))
        .send_json()
        .await;
    assert!(body["last_train"].is_string(), "{body}");

    let models = wasmtime_serve(
        &components.join("exposr_fn_models_composed.wasm"),
        &args(&[]),
    )
    .await;
    let latest: serde_json::Value = http
        .get(format!("{}/models/latest?name=iris", models.base))
        .send_json()
        .await;
    assert_eq!(latest["model_version"], "v1", "{latest}");
    let classified: serde_json::Value = http
        .post(format!("{}/classify", models.base))
        .json(&serde_json::json!({"model": "iris", "features": [5.1, 3.5, 1.4, 0.2]}))
        .send_json()
        .await;
    assert_eq!(classified["label"], "setosa", "{classified}");
    let report: serde_json::Value = http
        .post(format!("{}/models/iris/versions/v1/validate", models.base))
        .send_json()
        .await;
    assert_eq!(report["ok"], true, "{report}");

    let token = format!("EXPOSR_API_TOKEN={TOKEN}");
    let jobs = wasmtime_serve(
        &components.join("exposr_fn_jobs.wasm"),
        &args(&["--env", &token]),
    )
    .await;
    let unauthorized = http
        .post(format!("{}/train", jobs.base))
        .send()
        .await
        .unwrap();
    assert_eq!(unauthorized.status(), 401);
    let queued = http
        .post(format!("{}/train", jobs.base))
        .header("authorization", format!("Bearer {TOKEN}"))
        .send()
        .await
        .unwrap();
    assert_eq!(queued.status(), 202);
    let id = queued.json::<serde_json::Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        registry.join(format!("jobs/{id}.json")).is_file(),
        "the job was written through the preopened directory"
    );
}
