//! `exposr-trainer serve`: the embedded host. Runs the project's WebAssembly components under
//! wasmtime (WASIp2, wasi:http) on localhost, with the routes, environment and mounts of
//! `spin.toml`, over the local registry directory (the whole system on one machine), or over an
//! S3 registry that the components reach through the host's outbound HTTP.

pub mod compose;
pub mod manifest;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Config, Engine, Store};
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use manifest::{ComponentSpec, Router, SpinManifest};

/// Largest request body accepted (the components enforce their own, smaller limits too).
pub const MAX_BODY: usize = 16 * 1024 * 1024;

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
    /// Extra environment for every component (e.g. the API token).
    pub env: Vec<(String, String)>,
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
}

struct Host {
    router: Router,
    components: HashMap<String, Loaded>,
    registry: Option<PathBuf>,
    env: Vec<(String, String)>,
}

struct Guest {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
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
            hooks: Default::default(),
        }
    }
}

fn engine() -> anyhow::Result<Engine> {
    let mut config = Config::new();
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
        components.insert(
            id.clone(),
            Loaded {
                pre,
                spec: spec.clone(),
            },
        );
    }
    if let Some(dir) = &opts.registry {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut env = opts.env;
    env.push(("EXPOSR_STARTED_AT".into(), chrono::Utc::now().to_rfc3339()));
    let host = Arc::new(Host {
        router: Router::new(&spin.trigger.http),
        components,
        registry: opts.registry,
        env,
    });
    let listener = TcpListener::bind(opts.listen)
        .await
        .with_context(|| format!("binding {}", opts.listen))?;
    on_ready(listener.local_addr()?);
    loop {
        let (stream, _) = listener.accept().await?;
        let host = host.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let host = host.clone();
                async move { Ok::<_, std::convert::Infallible>(host.handle(req).await) }
            });
            if let Err(e) = http1::Builder::new()
                .keep_alive(true)
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
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
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
        match self.run(loaded, req).await {
            Ok(resp) => resp,
            Err(e) => {
                tracing::error!(component = id, "request failed: {e:#}");
                problem(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "the function failed",
                )
            }
        }
    }

    async fn run(
        &self,
        loaded: &Loaded,
        req: Request<Incoming>,
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
            },
        );
        let declared = req
            .headers()
            .get(hyper::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
        if declared.is_some_and(|n| n > MAX_BODY) {
            return Ok(problem(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                "request body too large",
            ));
        }
        let (sender, receiver) = tokio::sync::oneshot::channel();
        let incoming = store
            .data_mut()
            .http()
            .new_incoming_request(Scheme::Http, req)?;
        let out = store.data_mut().http().new_response_outparam(sender)?;
        let pre = loaded.pre.clone();
        let task = tokio::spawn(async move {
            let proxy = pre.instantiate_async(&mut store).await?;
            proxy
                .wasi_http_incoming_handler()
                .call_handle(&mut store, incoming, out)
                .await?;
            Ok::<(), anyhow::Error>(())
        });
        match receiver.await {
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(e)) => Err(anyhow::Error::from(e)),
            Err(_) => match task.await {
                Ok(Ok(())) => bail!("the component never sent a response"),
                Ok(Err(e)) => Err(e.context("the component trapped")),
                Err(e) => Err(e.into()),
            },
        }
    }
}
