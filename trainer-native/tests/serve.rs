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

struct Server {
    child: Child,
    base: String,
    _dir: tempfile::TempDir,
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
        .args(["--listen", "127.0.0.1:0"])
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
    Some(Server {
        child,
        base,
        _dir: dir,
    })
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
