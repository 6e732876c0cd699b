//! What the HTTP tests share: the built components, a registry the trainer just published iris
//! to (a directory or a prefix in the moto S3 server), and the embedded host serving it.
//!
//! The components are built by `scripts/build-functions` (run by `scripts/test`), into
//! `$EXPOSR_COMPONENTS_DIR` or `$CARGO_TARGET_DIR/wasm32-wasip2/release`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

pub fn components() -> Option<PathBuf> {
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

/// A fixture of `tests/data` (iris and wine from scikit-learn, and their schemas).
pub fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/data")
        .join(name)
}

/// Asserts that a command succeeded, showing what it printed if not.
pub fn ok(out: Output) -> Output {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

pub const TOKEN: &str = "test-token-7f3a";
/// The admin token `start` gives the host: the gate overrides of `POST /train`.
pub const ADMIN_TOKEN: &str = "test-admin-91c2e";

/// Sends a request whose JSON answer the test reads.
pub trait SendJson {
    async fn send_json(self) -> serde_json::Value;
}

impl SendJson for reqwest::RequestBuilder {
    async fn send_json(self) -> serde_json::Value {
        self.send().await.unwrap().json().await.unwrap()
    }
}

pub struct Server {
    child: Child,
    pub base: String,
    pub dir: tempfile::TempDir,
}

impl Server {
    /// The host's resident memory, in bytes (from /proc).
    pub fn rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap();
        kib * 1024
    }

    /// `host:port` of the server.
    pub fn addr(&self) -> &str {
        self.base.trim_start_matches("http://")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Where the served registry lives.
pub enum Backend {
    /// A temporary directory, mounted into the components.
    Dir,
    /// A fresh prefix in the moto S3 server, which the components reach over outbound HTTP.
    S3,
}

/// The moto server's coordinates as AWS_* variables, if `scripts/test` started one.
pub fn s3_env() -> Option<Vec<(String, String)>> {
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

pub fn trainer(registry: &str, env: &[(String, String)]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_exposr-trainer"));
    c.arg("--registry").arg(registry).envs(env.iter().cloned());
    c
}

/// Trains and publishes iris v1 into `registry`, with run folders under `dir`.
pub fn train_iris(registry: &str, env: &[(String, String)], dir: &Path) {
    let out = trainer(registry, env)
        .args(["train", "--model", "iris", "--csv"])
        .arg(data("iris.csv"))
        .arg("--schema")
        .arg(data("iris.schema.json"))
        .arg("--runs-dir")
        .arg(dir.join("runs"))
        .output()
        .unwrap();
    ok(out);
}

pub fn start() -> Option<Server> {
    start_on(Backend::Dir)
}

pub fn start_on(backend: Backend) -> Option<Server> {
    start_with(backend, &[])
}

/// Serves a fresh registry with iris v1 on `backend`, passing `serve` the extra `args` (limits).
pub fn start_with(backend: Backend, args: &[&str]) -> Option<Server> {
    start_with_env(backend, args, &[])
}

/// As [`start_with`], with extra environment for the host (not for the training run).
pub fn start_with_env(
    backend: Backend,
    args: &[&str],
    host_env: &[(&str, &str)],
) -> Option<Server> {
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
        .args(["--admin-token", ADMIN_TOKEN])
        .args(args)
        .envs(host_env.iter().copied())
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

/// `sha256:<hex>` of `bytes`, computed by coreutils' sha256sum (an independent implementation).
pub fn registry_digest(bytes: &[u8]) -> String {
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

/// The manifest of iris v1 as the API serves it.
pub async fn manifest(http: &reqwest::Client, base: &str) -> serde_json::Value {
    http.get(format!("{base}/models/iris/versions/v1"))
        .send_json()
        .await
}

pub fn argmax(v: &[f64]) -> usize {
    (0..v.len()).fold(0, |b, i| if v[i] > v[b] { i } else { b })
}

/// `POST /train` with the test token at `base`; asserts 202 and returns the job id.
pub async fn enqueue_train(http: &reqwest::Client, base: &str) -> String {
    let queued = http
        .post(format!("{base}/train"))
        .header("authorization", format!("Bearer {TOKEN}"))
        .send()
        .await
        .unwrap();
    assert_eq!(queued.status(), 202);
    queued.json::<serde_json::Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned()
}
