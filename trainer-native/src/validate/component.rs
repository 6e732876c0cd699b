//! Runs the validator component (`wit/validator.wit`, built from `functions/validator`) under
//! wasmtime: the same `.wasm` the functions serve with, so the trainer publishes nothing that the
//! serving runtime would refuse.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use registry::{Digest, Manifest};
use serde_json::json;

use crate::export::artifacts::Artifacts;
use serde::Serialize;
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Engine, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

// The report type is the WIT record itself, serialisable: the one definition of what a
// validation found, the same fields the functions return.
wasmtime::component::bindgen!({
    path: "../wit",
    world: "validator",
    additional_derives: [serde::Serialize],
});

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
    /// What the component found.
    #[serde(flatten)]
    pub report: Report,
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

    /// Validates each artifact of `manifest` (bytes by role) and reports on every one.
    pub fn validate_each(
        &self,
        manifest: &Manifest,
        files: &[(String, Vec<u8>)],
    ) -> anyhow::Result<Vec<Validation>> {
        files
            .iter()
            .map(|(role, bytes)| {
                Ok(Validation {
                    role: role.clone(),
                    report: self.validate(manifest, role, bytes)?,
                })
            })
            .collect()
    }

    /// Validates every artifact of `manifest` (bytes by role), failing on the first problem.
    pub fn validate_all(
        &self,
        manifest: &Manifest,
        files: &[(String, Vec<u8>)],
    ) -> anyhow::Result<Vec<Validation>> {
        let reports = self.validate_each(manifest, files)?;
        if let Some(refused) = reports.iter().find(|v| !v.report.ok) {
            bail!(
                "the validator component refused {}: {}",
                refused.role,
                refused.report.problems.join("; ")
            );
        }
        Ok(reports)
    }
}

/// Runs the validator component on both ONNX files with `manifest`, off the async threads.
/// Without a built component (scripts/build-functions) the tract checks stand, and the record
/// says so.
pub async fn check_artifacts(
    manifest: &Manifest,
    a: &Artifacts,
) -> anyhow::Result<serde_json::Value> {
    let Some(path) = locate() else {
        tracing::warn!(
            "validator component not built (scripts/build-functions): checked with native tract only"
        );
        return Ok(json!({
            "component": null,
            "reason": "validator component not built; checked with native tract only",
        }));
    };
    let m = manifest.clone();
    let files = vec![
        ("onnx".to_owned(), a.float.clone()),
        ("onnx_int8".to_owned(), a.int8.clone()),
    ];
    let (source, reports) = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
        let validator = WasmValidator::load(&path)?;
        let reports = validator.validate_all(&m, &files)?;
        Ok((validator.source, reports))
    })
    .await
    .context("validator task")??;
    Ok(json!({ "component": source.0, "component_digest": source.1, "reports": reports }))
}
