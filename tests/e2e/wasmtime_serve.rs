//! The same `.wasm` files, unchanged, under the stock `wasmtime serve` (installed by
//! `scripts/setup`), as any WASIp2 `wasi:http` host would run them.

use std::path::Path;
use std::process::{Child, Command, Stdio};

use crate::common::*;

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
    let id = enqueue_train(&http, &jobs.base).await;
    assert!(
        registry.join(format!("jobs/{id}.json")).is_file(),
        "the job was written through the preopened directory"
    );
}
