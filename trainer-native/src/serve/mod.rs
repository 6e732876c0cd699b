//! `exposr-trainer serve`: the embedded host. Runs the project's WebAssembly components under
//! wasmtime (WASIp2, wasi:http) on localhost, with the routes, environment and mounts of
//! `spin.toml`, over the local registry directory (the whole system on one machine), or over an
//! S3 registry that the components reach through the host's outbound HTTP.

pub mod compose;
pub mod limits;
pub mod manifest;
pub mod outbound;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Config, Engine, Store, UpdateDeadline};
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

pub use limits::Limits;
use limits::{Budget, Stopped};
use manifest::{ComponentSpec, Router, SpinManifest};

/// The environment variables of the tokens, by the `spin.toml` variable a component declares to
/// get one: only those components see them, and the host authenticates their routes itself.
const SECRETS: [(&str, &str); 2] = [
    ("api_token", "EXPOSR_API_TOKEN"),
    ("admin_token", "EXPOSR_ADMIN_TOKEN"),
];

/// What to serve and where.
pub struct Options {
    /// The `spin.toml`.
    pub manifest: PathBuf,
    /// Where the built `.wasm` files are (looked up by file name); default: next to the manifest.
    pub components: Option<PathBuf>,
    /// The registry directory mounted where the manifest mounts `registry-data`; `None` when the
    /// components reach an S3 registry themselves (`EXPOSR_REGISTRY` in `env`).
    pub registry: Option<PathBuf>,
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Extra environment for every component (the registry's `s3://` URL and `AWS_*` settings).
    pub env: Vec<(String, String)>,
    /// The API token, for the components that declare `api_token` (none: their routes are 401).
    pub token: Option<String>,
    /// The admin token (gate overrides), for the components that declare `admin_token`.
    pub admin_token: Option<String>,
    /// What one request may use.
    pub limits: Limits,
}

/// How the components reach the registry.
pub struct RegistryAccess {
    /// The directory mounted into them, for a local registry.
    pub dir: Option<PathBuf>,
    /// Environment for them: the `s3://` URL and `AWS_*` settings, for an S3 registry.
    pub env: Vec<(String, String)>,
}

/// How the components reach the registry at `url`: a local directory is mounted into them; for
/// an `s3://` URL they reach S3 themselves through the host's outbound HTTP, with the same URL and
/// `AWS_*` settings as this process.
pub fn registry_access(
    url: &str,
    vars: impl Iterator<Item = (String, String)>,
) -> anyhow::Result<RegistryAccess> {
    if url.starts_with("s3://") {
        let mut env = vec![("EXPOSR_REGISTRY".to_owned(), url.to_owned())];
        env.extend(vars.filter(|(k, _)| k.starts_with("AWS_")));
        return Ok(RegistryAccess { dir: None, env });
    }
    anyhow::ensure!(
        !url.contains("://") || url.starts_with("file://"),
        "serve needs a local registry directory or an s3:// URL, not {url}"
    );
    Ok(RegistryAccess {
        dir: Some(PathBuf::from(url.strip_prefix("file://").unwrap_or(url))),
        env: Vec::new(),
    })
}

struct Loaded {
    pre: ProxyPre<Guest>,
    spec: ComponentSpec,
    outbound: outbound::AllowList,
}

struct Host {
    router: Router,
    components: HashMap<String, Loaded>,
    registry: Option<PathBuf>,
    env: Vec<(String, String)>,
    /// The secrets by `spin.toml` variable name (`api_token`, `admin_token`); empty ones left out.
    secrets: Vec<(&'static str, &'static str, String)>,
    limits: Limits,
    slots: Semaphore,
}

struct Guest {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    budget: Budget,
    outbound: outbound::AllowList,
}

impl WasiView for Guest {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for Guest {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.outbound,
        }
    }
}

fn engine() -> anyhow::Result<Engine> {
    let mut config = Config::new();
    // CPU time is counted in epoch ticks (a thread advances the epoch every EPOCH_TICK).
    config.epoch_interruption(true);
    // Compiled code is cached on disk: a cold compile of the tract component takes seconds.
    match wasmtime::Cache::new(wasmtime::CacheConfig::new()) {
        Ok(cache) => {
            config.cache(Some(cache));
        }
        Err(e) => tracing::warn!("wasmtime compilation cache unavailable: {e:#}"),
    }
    Ok(Engine::new(&config)?)
}

/// Loads every component, binds, prints the address, and serves until killed.
pub async fn serve(opts: Options, on_ready: impl FnOnce(SocketAddr)) -> anyhow::Result<()> {
    let spin = SpinManifest::load(&opts.manifest)?;
    let base = opts.manifest.parent().unwrap_or(Path::new("."));
    let engine = engine()?;
    let mut linker: Linker<Guest> = Linker::new(&engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
    let variables = variable_values(&spin, &opts.env);
    let mut components = HashMap::new();
    for (id, spec) in &spin.component {
        let wasm = match &opts.components {
            Some(dir) => dir.join(
                Path::new(&spec.source)
                    .file_name()
                    .context("component source has no file name")?,
            ),
            None => base.join(&spec.source),
        };
        if !wasm.is_file() {
            bail!(
                "component {id}: {} not found; build the components first (scripts/build-functions)",
                wasm.display()
            );
        }
        let component = Component::from_file(&engine, &wasm)
            .map_err(anyhow::Error::from)
            .with_context(|| format!("loading {}", wasm.display()))?;
        let pre = linker
            .instantiate_pre(&component)
            .map_err(anyhow::Error::from)
            .with_context(|| format!("linking component {id}"))?;
        let pre = ProxyPre::new(pre)?;
        let hosts = spec
            .allowed_outbound_hosts
            .iter()
            .map(|h| outbound::resolve(h, &variables))
            .collect::<anyhow::Result<Vec<_>>>()
            .with_context(|| format!("component {id}: allowed_outbound_hosts"))?;
        components.insert(
            id.clone(),
            Loaded {
                pre,
                spec: spec.clone(),
                outbound: outbound::AllowList::new(&hosts)
                    .with_context(|| format!("component {id}: allowed_outbound_hosts"))?,
            },
        );
    }
    if let Some(dir) = &opts.registry {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut env = opts.env;
    env.push(("EXPOSR_STARTED_AT".into(), chrono::Utc::now().to_rfc3339()));
    let ticker = engine.weak();
    std::thread::spawn(move || {
        while let Some(engine) = ticker.upgrade() {
            engine.increment_epoch();
            drop(engine);
            std::thread::sleep(limits::EPOCH_TICK);
        }
    });
    let limits = opts.limits;
    let host = Arc::new(Host {
        router: Router::new(&spin.trigger.http),
        components,
        registry: opts.registry,
        env,
        secrets: SECRETS
            .iter()
            .zip([opts.token, opts.admin_token])
            .filter_map(|(&(var, env), value)| Some((var, env, value.filter(|v| !v.is_empty())?)))
            .collect(),
        slots: Semaphore::new(limits.concurrency),
        limits,
    });
    let listener = TcpListener::bind(opts.listen)
        .await
        .with_context(|| format!("binding {}", opts.listen))?;
    on_ready(listener.local_addr()?);
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            // Out of file descriptors, say: wait, and go on serving those already connected.
            Err(e) => {
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let host = host.clone();
        tokio::spawn(async move {
            let limits = host.limits.clone();
            let service = hyper::service::service_fn(move |req| {
                let host = host.clone();
                async move { Ok::<_, std::convert::Infallible>(host.handle(req).await) }
            });
            if let Err(e) = http1::Builder::new()
                .keep_alive(true)
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_read)
                .max_headers(limits.max_headers)
                .max_buf_size(limits.header_bytes.max(8192))
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!("connection ended: {e}");
            }
        });
    }
}

fn problem(status: StatusCode, code: &str, message: &str) -> Response<HyperOutgoingBody> {
    let body = serde_json::json!({ "code": code, "message": message }).to_string();
    let mut builder = Response::builder()
        .status(status)
        .header("content-type", "application/json");
    if status == StatusCode::SERVICE_UNAVAILABLE {
        builder = builder.header("retry-after", "1");
    }
    if status == StatusCode::UNAUTHORIZED {
        builder = builder.header("www-authenticate", "Bearer");
    }
    builder
        .body(
            Full::new(Bytes::from(body))
                .map_err(|never| match never {})
                .boxed_unsync(),
        )
        .expect("a valid response")
}

impl Host {
    async fn handle(&self, req: Request<Incoming>) -> Response<HyperOutgoingBody> {
        let path = req.uri().path().to_owned();
        let Some(id) = self.router.route(&path) else {
            return problem(
                StatusCode::NOT_FOUND,
                "not_found",
                "no route matches this path",
            );
        };
        let loaded = &self.components[id];
        // Authentication before anything is read or a slot is taken.
        if loaded.spec.authenticated() {
            let given = req
                .headers()
                .get(hyper::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok());
            // Every token is compared, so the time taken does not say which one matched.
            let matched = self
                .secrets
                .iter()
                .fold(false, |m, (_, _, t)| m | limits::bearer_matches(given, t));
            if !matched {
                return problem(
                    StatusCode::UNAUTHORIZED,
                    "unauthorized",
                    "a valid bearer token is required",
                );
            }
        }
        let limit = self.limits.body_limit(&path);
        let declared = req
            .headers()
            .get(hyper::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if let Some(n) = declared
            && n > limit as u64
        {
            // Within the drain allowance the body is read and dropped first, so that the client,
            // still sending, reads the 413 rather than a reset connection.
            if n <= limits::drain_allowance(limit) {
                let within = self.limits.deadline;
                let _ = tokio::time::timeout(within, drain(req.into_body(), n)).await;
            }
            return too_large(limit);
        }
        let Ok(_slot) = tokio::time::timeout(self.limits.queue_wait, self.slots.acquire()).await
        else {
            return problem(
                StatusCode::SERVICE_UNAVAILABLE,
                "busy",
                "the host is serving as many requests as it may; try again shortly",
            );
        };
        match tokio::time::timeout(self.limits.deadline, self.read_and_run(loaded, req, limit))
            .await
        {
            Ok(resp) => resp,
            Err(_) => Ok(problem(
                StatusCode::GATEWAY_TIMEOUT,
                "deadline_exceeded",
                &format!(
                    "the request took longer than {}",
                    humantime::format_duration(self.limits.deadline)
                ),
            )),
        }
        .unwrap_or_else(|e| {
            tracing::error!(component = id, "request failed: {e:#}");
            problem(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "the function failed",
            )
        })
    }

    /// Reads the body up to `limit` (however it is framed), then runs the component on it.
    async fn read_and_run(
        &self,
        loaded: &Loaded,
        req: Request<Incoming>,
        limit: usize,
    ) -> anyhow::Result<Response<HyperOutgoingBody>> {
        let (parts, mut body) = req.into_parts();
        let mut bytes = Vec::new();
        while let Some(frame) = body.frame().await {
            let frame = match frame {
                Ok(frame) => frame,
                Err(e) => {
                    return Ok(problem(
                        StatusCode::BAD_REQUEST,
                        "bad_body",
                        &format!("the request body could not be read: {e}"),
                    ));
                }
            };
            let Some(data) = frame.data_ref() else {
                continue;
            };
            if bytes.len() + data.len() > limit {
                // Read on (and drop) within the allowance, so the client reads the answer.
                let seen = (bytes.len() + data.len()) as u64;
                drain(body, limits::drain_allowance(limit).saturating_sub(seen)).await;
                return Ok(too_large(limit));
            }
            bytes.extend_from_slice(data);
        }
        let body = Bytes::from(bytes);
        self.run(loaded, Request::from_parts(parts, Full::new(body)))
            .await
    }

    async fn run(
        &self,
        loaded: &Loaded,
        req: Request<Full<Bytes>>,
    ) -> anyhow::Result<Response<HyperOutgoingBody>> {
        let mut wasi = WasiCtx::builder();
        wasi.inherit_stderr();
        for (k, v) in loaded
            .spec
            .environment
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .chain(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        {
            wasi.env(k, v);
        }
        // A secret reaches only the components that declare it.
        for (var, env, value) in &self.secrets {
            if loaded.spec.variables.contains_key(*var) {
                wasi.env(env, value);
            }
        }
        for mount in &loaded.spec.files {
            // The registry is the one directory components see; read-only.
            if let (Some(registry), "registry-data") = (&self.registry, mount.source.as_str()) {
                let writable = loaded
                    .spec
                    .environment
                    .get("EXPOSR_REGISTRY_WRITABLE")
                    .is_some_and(|v| v == "1");
                let perms = if writable {
                    FsPerms::ReadWrite
                } else {
                    FsPerms::ReadOnly
                };
                wasi.preopened_dir(registry, &mount.destination, perms)?;
            }
        }
        let mut store = Store::new(
            loaded.pre.engine(),
            Guest {
                wasi: wasi.build(),
                http: WasiHttpCtx::new(),
                table: ResourceTable::new(),
                budget: Budget::new(&self.limits),
                outbound: loaded.outbound.clone(),
            },
        );
        store.limiter(|guest| &mut guest.budget);
        // Every tick of running WebAssembly costs one tick of the budget and yields the thread,
        // so a busy component neither runs unbounded nor starves other requests.
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|mut ctx| {
            if ctx.data_mut().budget.tick() {
                Ok(UpdateDeadline::Yield(1))
            } else {
                Ok(UpdateDeadline::Interrupt)
            }
        });
        let (sender, receiver) = tokio::sync::oneshot::channel();
        let incoming = store
            .data_mut()
            .http()
            .new_incoming_request(Scheme::Http, req)?;
        let out = store.data_mut().http().new_response_outparam(sender)?;
        let pre = loaded.pre.clone();
        let task = tokio::spawn(async move {
            let result = async {
                let proxy = pre.instantiate_async(&mut store).await?;
                proxy
                    .wasi_http_incoming_handler()
                    .call_handle(&mut store, incoming, out)
                    .await
            }
            .await;
            (
                result.map_err(anyhow::Error::from),
                store.data().budget.stopped,
            )
        });
        // Until the response head is out, the instance dies with this future (when the request's
        // deadline passes); then it lives on to stream the body, still within its CPU budget.
        let mut task = AbortOnDrop(Some(task));
        match receiver.await {
            Ok(Ok(resp)) => {
                task.0 = None;
                Ok(resp)
            }
            Ok(Err(e)) => Err(anyhow::Error::from(e)),
            Err(_) => match task.0.as_mut().expect("still held").await {
                Ok((_, Stopped::Memory)) => Ok(problem(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "memory_limit",
                    &format!(
                        "the request needed more than {} MiB",
                        self.limits.memory >> 20
                    ),
                )),
                Ok((_, Stopped::CpuTime)) => Ok(problem(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "cpu_time_exceeded",
                    &format!(
                        "the request ran longer than {}",
                        humantime::format_duration(self.limits.cpu_time)
                    ),
                )),
                Ok((Ok(()), Stopped::No)) => bail!("the component never sent a response"),
                Ok((Err(e), Stopped::No)) => Err(e.context("the component trapped")),
                Err(e) => Err(e.into()),
            },
        }
    }
}

/// The values of the manifest's variables: `SPIN_VARIABLE_<NAME>` from this process's environment
/// (Spin's own provider), else, for `registry_endpoint`, the S3 endpoint the components are given
/// (`AWS_ENDPOINT_URL`, or AWS's regional endpoint), else the default.
fn variable_values(
    spin: &SpinManifest,
    env: &[(String, String)],
) -> std::collections::BTreeMap<String, String> {
    let given = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    spin.variables
        .iter()
        .filter_map(|(name, var)| {
            let from_env = std::env::var(format!("SPIN_VARIABLE_{}", name.to_uppercase())).ok();
            let endpoint = (name == "registry_endpoint")
                .then(|| {
                    given("AWS_ENDPOINT_URL").or_else(|| {
                        given("AWS_REGION")
                            .or_else(|| given("AWS_DEFAULT_REGION"))
                            .map(|r| format!("https://s3.{r}.amazonaws.com"))
                    })
                })
                .flatten();
            let value = from_env.or(endpoint).or_else(|| var.default.clone())?;
            Some((name.clone(), value))
        })
        .collect()
}

/// A task aborted when dropped, unless taken out first.
struct AbortOnDrop<T>(Option<tokio::task::JoinHandle<T>>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        if let Some(task) = &self.0 {
            task.abort();
        }
    }
}

/// Reads and drops up to `up_to` more bytes of `body` (a lingering close: a client still sending
/// its body then reads the answer instead of a reset connection).
async fn drain(mut body: Incoming, up_to: u64) {
    let mut seen = 0u64;
    while seen <= up_to {
        match body.frame().await {
            Some(Ok(frame)) => seen += frame.data_ref().map_or(0, |d| d.len() as u64),
            _ => return,
        }
    }
}

fn too_large(limit: usize) -> Response<HyperOutgoingBody> {
    problem(
        StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
        &format!("the body of this route may have at most {limit} bytes"),
    )
}
