//! Runs the validator component (`wit/validator.wit`, built from `functions/validator`) under
//! wasmtime: the same `.wasm` the functions serve with, so the trainer publishes nothing that the
//! serving runtime would refuse.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use registry::{Digest, Manifest};
use serde::Serialize;
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Engine, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

wasmtime::component::bindgen!({ path: "../wit", world: "validator" });

use exports::exposr::validator::validate::Report;

/// File name of the built validator component.
pub const FILE: &str = "exposr_fn_validator.wasm";

struct Ctx {
    wasi: WasiCtx,
    table: ResourceTable,
}

impl WasiView for Ctx {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// A loaded validator component.
pub struct WasmValidator {
    engine: Engine,
    pre: ValidatorPre<Ctx>,
    /// Where it was loaded from, and the digest of its bytes.
    pub source: (PathBuf, Digest),
}

/// One artifact's validation, for run records.
#[derive(Debug, Clone, Serialize)]
pub struct Validation {
    /// The artifact role.
    pub role: String,
    /// Whether every check passed.
    pub ok: bool,
    /// Golden cases run.
    pub golden_checked: u32,
    /// Largest difference from the expected outputs.
    pub golden_max_abs_diff: f32,
    /// Problems found.
    pub problems: Vec<String>,
}

/// Where the built validator is: `$EXPOSR_COMPONENTS_DIR`, else the wasm32-wasip2 release folder
/// of the cargo target directory this binary was built in.
pub fn locate() -> Option<PathBuf> {
    let candidates = [
        std::env::var_os("EXPOSR_COMPONENTS_DIR").map(PathBuf::from),
        std::env::current_exe()
            .ok()
            .and_then(|exe| Some(exe.parent()?.parent()?.join("wasm32-wasip2/release"))),
    ];
    candidates
        .into_iter()
        .flatten()
        .map(|d| d.join(FILE))
        .find(|p| p.is_file())
}

impl WasmValidator {
    /// Compiles and links the component at `path`.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let mut config = wasmtime::Config::new();
        if let Ok(cache) = wasmtime::Cache::new(wasmtime::CacheConfig::new()) {
            config.cache(Some(cache));
        }
        let engine = Engine::new(&config)?;
        let component = Component::new(&engine, &bytes)
            .map_err(anyhow::Error::from)
            .with_context(|| format!("compiling {}", path.display()))?;
        let mut linker: Linker<Ctx> = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
        let pre = ValidatorPre::new(linker.instantiate_pre(&component)?)?;
        Ok(Self {
            engine,
            pre,
            source: (path.to_owned(), Digest::of(&bytes)),
        })
    }

    /// Validates the artifact `role` of `manifest`, whose bytes are `artifact`. Blocking: call it
    /// from a blocking thread.
    pub fn validate(
        &self,
        manifest: &Manifest,
        role: &str,
        artifact: &[u8],
    ) -> anyhow::Result<Report> {
        let mut store = Store::new(
            &self.engine,
            Ctx {
                wasi: WasiCtx::builder().inherit_stderr().build(),
                table: ResourceTable::new(),
            },
        );
        let instance = self.pre.instantiate(&mut store)?;
        let json = serde_json::to_string(manifest)?;
        match instance
            .exposr_validator_validate()
            .call_validate(&mut store, &json, role, artifact)?
        {
            Ok(report) => Ok(report),
            Err(message) => bail!("the validator refused the request: {message}"),
        }
    }

    /// Validates every ONNX artifact of `manifest` (bytes by role), failing on the first problem.
    pub fn validate_all(
        &self,
        manifest: &Manifest,
        files: &[(&str, &[u8])],
    ) -> anyhow::Result<Vec<Validation>> {
        let mut out = Vec::new();
        for (role, bytes) in files {
            let r = self.validate(manifest, role, bytes)?;
            if !r.ok {
                bail!(
                    "the validator component refused {role}: {}",
                    r.problems.join("; ")
                );
            }
            out.push(Validation {
                role: (*role).to_owned(),
                ok: r.ok,
                golden_checked: r.golden_checked,
                golden_max_abs_diff: r.golden_max_abs_diff,
                problems: r.problems,
            });
        }
        Ok(out)
    }
}
