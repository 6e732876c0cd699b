//! Benchmarks of the HTTP functions that print figures and ratios against peers measured in
//! the same run (not timed tests):
//! - requests/s and p50/p99 latency of `/status` and `/models/latest` under `wasmtime serve`,
//!   against a native axum twin built on the same registry crate, over a registry directory and
//!   over the moto S3 server;
//! - tract in WebAssembly (the validator component's `infer`) against tract native on the same
//!   model, and `POST /models/{name}/versions/{v}/validate` end to end;
//! - linear memory per instance of each component.
//!
//! Run with `scripts/bench`, which builds the components, trains the sample model, starts moto
//! and passes their coordinates in the environment.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use registry::runs::RunKind;
use registry::store::{self, Store};
use registry::{Alias, ModelName, Registry};
use serde_json::json;
use tract_onnx::prelude::*;

const CLIENTS: usize = 4;
const REQUESTS: usize = 2000;

fn main() {
    // `cargo test --all-targets` runs bench binaries without `--bench`: build-check only.
    if !std::env::args().any(|a| a == "--bench") {
        println!("functions benchmark: run it with scripts/bench");
        return;
    }
    let components = PathBuf::from(std::env::var("EXPOSR_COMPONENTS_DIR").expect(
        "EXPOSR_COMPONENTS_DIR: run this benchmark with scripts/bench, which builds the components",
    ));
    let registry_dir = PathBuf::from(
        std::env::var("EXPOSR_BENCH_REGISTRY").expect("EXPOSR_BENCH_REGISTRY (scripts/bench)"),
    );
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let mut backends: Vec<Backend> =
            vec![("directory", registry_dir.display().to_string(), vec![])];
        if let Some(s3) = s3_backend() {
            backends.push(s3);
        }
        for (label, location, env) in &backends {
            http_routes(&components, label, location, env).await;
        }
        validation_end_to_end(&components, &registry_dir).await;
        image_classification(&components, &registry_dir).await;
    });
    tract_wasm_vs_native(&components, &registry_dir);
    memory_per_instance(&components);
}

/// A registry to serve: (label, location, AWS_* env).
type Backend = (&'static str, String, Vec<(String, String)>);

/// The moto registry scripts/bench published to, if any.
fn s3_backend() -> Option<Backend> {
    let url = std::env::var("EXPOSR_BENCH_S3_REGISTRY").ok()?;
    let var = |n: &str| std::env::var(format!("EXPOSR_TEST_S3_{n}")).unwrap_or_default();
    let env = vec![
        ("AWS_ENDPOINT_URL".into(), var("ENDPOINT")),
        ("AWS_ACCESS_KEY_ID".into(), var("ACCESS_KEY")),
        ("AWS_SECRET_ACCESS_KEY".into(), var("SECRET_KEY")),
        ("AWS_REGION".into(), var("REGION")),
    ];
    Some(("moto S3", url, env))
}

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

async fn wait_up(base: &str) {
    let http = reqwest::Client::new();
    for _ in 0..600 {
        if http.get(format!("{base}/health")).send().await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{base} did not come up");
}

/// `wasmtime serve` of one component over `location` (a directory or an s3:// URL).
async fn wasmtime_serve(wasm: &Path, location: &str, env: &[(String, String)]) -> (Proc, String) {
    let port = free_port();
    let mut cmd = Command::new("wasmtime");
    cmd.args(["serve", "-S", "cli=y", "--addr"])
        .arg(format!("127.0.0.1:{port}"));
    if location.starts_with("s3://") {
        cmd.arg("--env").arg(format!("EXPOSR_REGISTRY={location}"));
    } else {
        cmd.arg("--dir").arg(format!("{location}::/registry"));
        cmd.args(["--env", "EXPOSR_REGISTRY_DIR=/registry"]);
    }
    for (k, v) in env {
        cmd.arg("--env").arg(format!("{k}={v}"));
    }
    let child = cmd
        .arg(wasm)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("wasmtime on PATH (scripts/setup installs it)");
    let base = format!("http://127.0.0.1:{port}");
    wait_up(&base).await;
    (Proc(child), base)
}

/// The native twin: the same two routes on axum, over the same registry crate calls.
async fn native_twin(location: &str, env: &[(String, String)]) -> String {
    let store: Arc<dyn Store> = store::open(location, env).expect("open registry");
    let reg = Arc::new(Registry::read_only(store));
    async fn status(State(reg): State<Arc<Registry>>) -> axum::Json<serde_json::Value> {
        let last_train = reg.last_run(RunKind::Training).await.ok().flatten();
        let models = reg.models().await.map(|m| m.len()).unwrap_or(0);
        axum::Json(json!({
            "last_train": last_train.map(|(_, at)| at.to_rfc3339()),
            "models": models,
        }))
    }
    async fn latest(State(reg): State<Arc<Registry>>) -> axum::Json<serde_json::Value> {
        let name = ModelName::new("iris").expect("name");
        let m = match reg.by_alias(&name, &Alias::production()).await {
            Ok(m) => m,
            Err(_) => reg.by_alias(&name, &Alias::latest()).await.expect("latest"),
        };
        axum::Json(json!({ "model_version": m.version, "metrics": m.metrics }))
    }
    let app = Router::new()
        .route("/health", get(|| async { "ok" }))
        .route("/status", get(status))
        .route("/models/latest", get(latest))
        .with_state(reg);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    base
}

struct Figures {
    rps: f64,
    p50: Duration,
    p99: Duration,
}

/// `CLIENTS` keep-alive clients send `REQUESTS` GETs of `path` in all.
async fn load(base: &str, path: &str) -> Figures {
    let url = format!("{base}{path}");
    let http = reqwest::Client::new();
    for _ in 0..20 {
        let r = http.get(&url).send().await.expect("warm-up");
        assert!(r.status().is_success(), "{url}: {}", r.status());
    }
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..CLIENTS {
        let (http, url) = (http.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            let mut times = Vec::with_capacity(REQUESTS / CLIENTS);
            for _ in 0..REQUESTS / CLIENTS {
                let t = Instant::now();
                let r = http.get(&url).send().await.expect("request");
                r.bytes().await.expect("body");
                times.push(t.elapsed());
            }
            times
        }));
    }
    let mut times = Vec::new();
    for t in tasks {
        times.extend(t.await.expect("client"));
    }
    let elapsed = start.elapsed();
    times.sort();
    Figures {
        rps: times.len() as f64 / elapsed.as_secs_f64(),
        p50: times[times.len() / 2],
        p99: times[times.len() * 99 / 100],
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

async fn http_routes(components: &Path, label: &str, location: &str, env: &[(String, String)]) {
    let (_status_proc, status_base) =
        wasmtime_serve(&components.join("exposr_fn_status.wasm"), location, env).await;
    let (_models_proc, models_base) = wasmtime_serve(
        &components.join("exposr_fn_models_composed.wasm"),
        location,
        env,
    )
    .await;
    let twin = native_twin(location, env).await;
    for (path, wasm_base) in [
        ("/status", &status_base),
        ("/models/latest?name=iris", &models_base),
    ] {
        let wasm = load(wasm_base, path).await;
        let native = load(&twin, path).await;
        println!(
            "{path} on {label}, {CLIENTS} clients: wasmtime serve {:.0} req/s, p50 {:.2} ms, p99 {:.2} ms; \
             native axum twin {:.0} req/s, p50 {:.2} ms, p99 {:.2} ms; ratio wasm/native {:.2}x",
            wasm.rps,
            ms(wasm.p50),
            ms(wasm.p99),
            native.rps,
            ms(native.p50),
            ms(native.p99),
            wasm.rps / native.rps
        );
    }
}

async fn validation_end_to_end(components: &Path, registry_dir: &Path) {
    let location = registry_dir.display().to_string();
    let (_proc, base) = wasmtime_serve(
        &components.join("exposr_fn_models_composed.wasm"),
        &location,
        &[],
    )
    .await;
    let http = reqwest::Client::new();
    let url = format!("{base}/models/iris/versions/v1/validate");
    let mut times = Vec::new();
    for _ in 0..50 {
        let t = Instant::now();
        let r: serde_json::Value = http
            .post(&url)
            .send()
            .await
            .expect("validate")
            .json()
            .await
            .expect("json");
        assert_eq!(r["ok"], true, "{r}");
        times.push(t.elapsed());
    }
    times.sort();
    println!(
        "POST /models/iris/versions/v1/validate (float + int8, golden cases) under wasmtime serve: p50 {:.2} ms, p99 {:.2} ms",
        ms(times[times.len() / 2]),
        ms(times[times.len() * 99 / 100])
    );
}

/// `POST /classify` with an image (the detector scripts/bench trained) under wasmtime serve,
/// against the same steps natively in this process: features (decode, check, normalise, JPEG
/// round trip, image-forensics v1) and the tract run.
async fn image_classification(components: &Path, registry_dir: &Path) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let photo = std::fs::read(root.join(".cache/data/images/real/chelsea.png"));
    let reg = registry::Registry::read_only(Arc::new(
        registry::store::DirStore::new(registry_dir).expect("registry"),
    ));
    let name = registry::ModelName::new("detector").expect("name");
    let (Ok(photo), Ok(manifest)) = (
        photo,
        reg.manifest(&name, &registry::Version::numbered(1)).await,
    ) else {
        println!("image classification: skipped (scripts/bench trains the detector)");
        return;
    };
    let (_proc, base) = wasmtime_serve(
        &components.join("exposr_fn_models_composed.wasm"),
        &registry_dir.display().to_string(),
        &[],
    )
    .await;
    let http = reqwest::Client::new();
    let url = format!("{base}/classify?model=detector&version=v1");
    let (mut total, mut features) = (Vec::new(), Vec::new());
    for _ in 0..40 {
        let t = Instant::now();
        let r: serde_json::Value = http
            .post(&url)
            .header("content-type", "image/png")
            .body(photo.clone())
            .send()
            .await
            .expect("classify")
            .json()
            .await
            .expect("json");
        total.push(ms(t.elapsed()));
        features.push(r["timings"]["features_ms"].as_f64().expect("features_ms"));
    }
    let onnx = reg
        .blob(&manifest.artifact("onnx").expect("onnx").digest)
        .await
        .expect("blob");
    let model = tract_onnx::onnx()
        .model_for_read(&mut &onnx[..])
        .expect("onnx")
        .into_optimized()
        .expect("optimize")
        .into_runnable()
        .expect("plan");
    let (mut native_total, mut native_features) = (Vec::new(), Vec::new());
    for _ in 0..40 {
        let t = Instant::now();
        let row = vision::features_of_image(&photo, &vision::Limits::default()).expect("features");
        native_features.push(ms(t.elapsed()));
        let input = tract_onnx::prelude::Tensor::from_shape(&[1, row.len()], &row).expect("tensor");
        model
            .run(tract_onnx::prelude::tvec!(input.into()))
            .expect("run");
        native_total.push(ms(t.elapsed()));
    }
    let p50 = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (wt, wf, nt, nf) = (
        p50(&mut total),
        p50(&mut features),
        p50(&mut native_total),
        p50(&mut native_features),
    );
    println!(
        "POST /classify with a 451x300 PNG (detector v1) under wasmtime serve: p50 {wt:.2} ms end to \
         end, of which features {wf:.2} ms; natively in-process: features {nf:.2} ms, features + \
         tract {nt:.2} ms; features WebAssembly/native = {:.2}x",
        wf / nf
    );
}

wasmtime::component::bindgen!({ path: "../wit", world: "validator" });

struct Ctx {
    wasi: wasmtime_wasi::WasiCtx,
    table: wasmtime::component::ResourceTable,
    peak_memory: usize,
}

impl wasmtime_wasi::WasiView for Ctx {
    fn ctx(&mut self) -> wasmtime_wasi::WasiCtxView<'_> {
        wasmtime_wasi::WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// Records the largest linear memory an instance asks for.
impl wasmtime::ResourceLimiter for Ctx {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.peak_memory = self.peak_memory.max(desired);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        _desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(true)
    }
}

fn new_store(engine: &wasmtime::Engine) -> wasmtime::Store<Ctx> {
    let mut store = wasmtime::Store::new(
        engine,
        Ctx {
            wasi: wasmtime_wasi::WasiCtx::builder().build(),
            table: wasmtime::component::ResourceTable::new(),
            peak_memory: 0,
        },
    );
    store.limiter(|c| c as &mut dyn wasmtime::ResourceLimiter);
    store
}

fn iris_model(registry_dir: &Path) -> (Vec<u8>, usize) {
    let reg = Registry::read_only(store::open(registry_dir.to_str().unwrap(), &[]).unwrap());
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let m = reg
            .by_alias(&ModelName::new("iris").unwrap(), &Alias::latest())
            .await
            .expect("iris is published");
        let bytes = reg.blob(&m.artifact("onnx").unwrap().digest).await.unwrap();
        (bytes.to_vec(), m.features.feature_names.len())
    })
}

fn tract_wasm_vs_native(components: &Path, registry_dir: &Path) {
    let (model, width) = iris_model(registry_dir);
    let rows = 32usize;
    let features: Vec<f32> = (0..rows * width).map(|i| (i % 7) as f32 * 0.9).collect();
    let engine = wasmtime::Engine::default();
    let component = wasmtime::component::Component::from_file(
        &engine,
        components.join("exposr_fn_validator.wasm"),
    )
    .expect("validator component");
    let mut linker = wasmtime::component::Linker::new(&engine);
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker).expect("wasi");
    let pre = ValidatorPre::new(linker.instantiate_pre(&component).expect("link")).expect("pre");
    let mut store = new_store(&engine);
    let instance = pre.instantiate(&mut store).expect("instantiate");
    let infer = instance.exposr_validator_infer();
    let n = 300;
    let wasm_out = infer
        .call_run(&mut store, &model, width as u32, &features)
        .expect("call")
        .expect("run");
    let t = Instant::now();
    for _ in 0..n {
        infer
            .call_run(&mut store, &model, width as u32, &features)
            .expect("call")
            .expect("run");
    }
    let wasm = t.elapsed() / n;
    let native_run = || {
        let plan = tract_onnx::onnx()
            .model_for_read(&mut &model[..])
            .and_then(|m| m.into_optimized())
            .and_then(|m| m.into_runnable())
            .expect("tract");
        let input = Tensor::from_shape(&[rows, width], &features).expect("tensor");
        plan.run(tvec!(input.into())).expect("run")
    };
    let out = native_run();
    let native_values: Vec<f32> = out[0]
        .to_plain_array_view::<f32>()
        .expect("f32")
        .iter()
        .copied()
        .collect();
    let diff = native_values
        .iter()
        .zip(&wasm_out.values)
        .fold(0.0f32, |d, (a, b)| d.max((a - b).abs()));
    let t = Instant::now();
    for _ in 0..n {
        std::hint::black_box(native_run());
    }
    let native = t.elapsed() / n;
    println!(
        "tract load+optimize+run of the iris MLP on {rows} rows: WebAssembly {:.3} ms, native {:.3} ms; \
         ratio wasm/native {:.2}x; outputs agree within {diff:e}",
        ms(wasm),
        ms(native),
        wasm.as_secs_f64() / native.as_secs_f64()
    );
    println!(
        "validator instance linear memory after {n} runs: {:.1} MiB",
        store.data().peak_memory as f64 / (1 << 20) as f64
    );
}

fn memory_per_instance(components: &Path) {
    let engine = wasmtime::Engine::default();
    let mut linker = wasmtime::component::Linker::new(&engine);
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker).expect("wasi");
    linker.allow_shadowing(true);
    for file in [
        "exposr_fn_status.wasm",
        "exposr_fn_jobs.wasm",
        "exposr_fn_models_composed.wasm",
        "exposr_fn_validator.wasm",
    ] {
        let path = components.join(file);
        let component =
            wasmtime::component::Component::from_file(&engine, &path).expect("component");
        // Imports the sync linker lacks (wasi:http) are stubbed: instantiation alone is measured.
        let mut linker = linker.clone();
        linker
            .define_unknown_imports_as_traps(&component)
            .expect("stub imports");
        let mut store = new_store(&engine);
        linker
            .instantiate(&mut store, &component)
            .expect("instantiate");
        println!(
            "{file}: {:.1} MiB file, {:.2} MiB linear memory per instance at start",
            std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0) as f64 / (1 << 20) as f64,
            store.data().peak_memory as f64 / (1 << 20) as f64
        );
    }
}
