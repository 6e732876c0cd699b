//! What every Exposr component needs: configuration from the environment, the registry it reads
//! (a directory the host preopens, or S3 through the host's outbound HTTP), JSON responses and
//! problem documents with stable codes, and constant-time bearer auth.
//!
//! Configuration comes from environment variables, which reach the same `.wasm` on Spin (the
//! component's `environment` in `spin.toml`), on `wasmtime serve` (`--env`) and on the embedded
//! host (`exposr-trainer serve`): a component that imported `spin:variables` would not load on
//! plain WASI hosts.

#[cfg(target_arch = "wasm32")]
pub mod outbound;

use std::sync::Arc;

use registry::store::{DirStore, Store};
use registry::{Error, Registry};
use serde::Serialize;
use spin_sdk::http::{Request, Response};

/// Environment variable naming the registry directory the host preopens.
pub const REGISTRY_DIR: &str = "EXPOSR_REGISTRY_DIR";
/// Environment variable with an S3 registry URL (`s3://bucket/prefix`); it wins over the
/// directory. Credentials, region and endpoint come from the usual `AWS_*` variables.
pub const REGISTRY_URL: &str = "EXPOSR_REGISTRY";
/// Environment variable with the host's start time (RFC 3339), for `uptime`.
pub const STARTED_AT: &str = "EXPOSR_STARTED_AT";

/// The store the host gives this component: S3 when `EXPOSR_REGISTRY` is an `s3://` URL, else
/// the preopened directory.
fn store() -> anyhow::Result<Arc<dyn Store>> {
    if let Ok(url) = std::env::var(REGISTRY_URL)
        && url.starts_with("s3://")
    {
        return s3(&url);
    }
    let dir = std::env::var(REGISTRY_DIR).unwrap_or_else(|_| "/registry".to_owned());
    Ok(Arc::new(DirStore::open_existing(&dir)?))
}

/// The registry, for reading only. Components never publish.
pub fn registry() -> anyhow::Result<Registry> {
    Ok(Registry::read_only(store()?))
}

/// The registry for the jobs component: it may add job requests and uploads (create-only
/// writes under fresh keys) and nothing else.
pub fn appender() -> anyhow::Result<Registry> {
    Ok(Registry::appender(store()?))
}

/// The appending registry, or the 503 to answer when the host gave none.
pub fn appender_or_503() -> Result<Registry, Response> {
    appender().map_err(|e| {
        eprintln!("registry unavailable: {e:#}");
        problem(
            503,
            "registry_unavailable",
            "the model registry is not available",
        )
    })
}

#[cfg(target_arch = "wasm32")]
fn s3(url: &str) -> anyhow::Result<Arc<dyn Store>> {
    let options: Vec<(String, String)> = std::env::vars()
        .filter(|(k, _)| k.starts_with("AWS_"))
        .collect();
    Ok(registry::store::open_with_http(
        url,
        &options,
        outbound::WasiHttp,
    )?)
}

#[cfg(not(target_arch = "wasm32"))]
fn s3(url: &str) -> anyhow::Result<Arc<dyn Store>> {
    anyhow::bail!("{url}: S3 from this crate is for WebAssembly components")
}

/// The registry, or the 503 to answer when the host gave none (logged, not shown to the client).
pub fn registry_or_503() -> Result<Registry, Response> {
    registry().map_err(|e| {
        eprintln!("registry unavailable: {e:#}");
        problem(
            503,
            "registry_unavailable",
            "the model registry is not available",
        )
    })
}

/// A JSON response with `status`.
pub fn json(status: u16, body: &impl Serialize) -> Response {
    let bytes = serde_json::to_vec(body).unwrap_or_else(|_| b"{}".to_vec());
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(bytes)
        .build()
}

/// A problem document: `{"code": "...", "message": "..."}`.
pub fn problem(status: u16, code: &str, message: &str) -> Response {
    json(
        status,
        &serde_json::json!({ "code": code, "message": message }),
    )
}

/// Maps a registry error to a response: what the caller can act on, never internals in a 5xx.
pub fn registry_problem(err: &Error) -> Response {
    match err {
        Error::ModelNotFound { .. } => problem(404, "model_not_found", &err.to_string()),
        Error::VersionNotFound { .. } => problem(404, "version_not_found", &err.to_string()),
        Error::AliasNotFound { .. } => problem(404, "alias_not_found", &err.to_string()),
        Error::BlobNotFound { .. } => problem(404, "blob_not_found", &err.to_string()),
        Error::InvalidName(e) => problem(400, "invalid_name", &e.to_string()),
        Error::DigestMismatch { .. } => {
            eprintln!("registry error: {err}");
            problem(
                500,
                "artifact_corrupt",
                "a stored artifact fails its digest check and is not served",
            )
        }
        other => {
            eprintln!("registry error: {other:?}");
            problem(
                500,
                "registry_unavailable",
                "the model registry could not be read",
            )
        }
    }
}

/// `405` for a method the route does not take.
pub fn method_not_allowed(req: &Request, allowed: &str) -> Response {
    let mut r = problem(
        405,
        "method_not_allowed",
        &format!("{} is not allowed here; use {allowed}", req.method()),
    );
    r.set_header("allow", allowed);
    r
}

/// Whether `header` (the Authorization value) carries `expected` as a bearer token, compared in
/// constant time so that timing does not reveal how much of a guess was right.
pub fn bearer_matches(header: Option<&str>, expected: &str) -> bool {
    use subtle::ConstantTimeEq;
    let Some(token) = header.and_then(|h| h.strip_prefix("Bearer ")) else {
        return false;
    };
    !expected.is_empty() && bool::from(token.as_bytes().ct_eq(expected.as_bytes()))
}

/// The start time encoded in a run key `runs/run_YYYYMMDD_HHMMSS_<id>/…`.
pub fn run_time(key: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    run_time_of(key, "run")
}

/// The start time of a run whose folder name is `<prefix>_YYYYMMDD_HHMMSS…` (a worker's
/// `scrape_…` and `train_…` attempts), from its key alone.
pub fn run_time_of(key: &str, prefix: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    let id = key
        .strip_prefix("runs/")?
        .strip_prefix(prefix)?
        .strip_prefix('_')?;
    let stamp = id.get(..15)?;
    chrono::NaiveDateTime::parse_from_str(stamp, "%Y%m%d_%H%M%S")
        .ok()
        .map(|t| t.and_utc())
}

/// Labelled samples in the newest snapshot of every dataset (seed 001's counts; tabular
/// datasets, whose rows are not samples, count nothing).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SampleCounts {
    /// Labelled `real`.
    pub real: u64,
    /// Labelled `ai_generated` (or `ai`).
    pub ai_generated: u64,
    /// Pending or unlabeled.
    pub unlabeled: u64,
    /// Any other label.
    pub other: u64,
}

impl SampleCounts {
    /// All samples.
    pub fn total(&self) -> u64 {
        self.real + self.ai_generated + self.unlabeled + self.other
    }

    /// The seed's `dataset_counts` object.
    pub fn to_json(self) -> serde_json::Value {
        serde_json::json!({
            "total": self.total(), "real": self.real,
            "ai_generated": self.ai_generated, "unlabeled": self.unlabeled,
        })
    }
}

/// Counts the samples of every dataset's newest snapshot by label.
pub async fn sample_counts(reg: &Registry) -> Result<SampleCounts, Error> {
    let mut c = SampleCounts::default();
    for name in reg.datasets().await? {
        let Some(snapshot) = reg.latest_snapshot(&name).await? else {
            continue;
        };
        for entry in &snapshot.entries {
            match entry.label.as_deref() {
                Some("real") => c.real += 1,
                Some("ai" | "ai_generated") => c.ai_generated += 1,
                Some("unlabeled" | "pending") => c.unlabeled += 1,
                Some(_) => c.other += 1,
                None => {}
            }
        }
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_keys_carry_their_time() {
        let t = run_time("runs/run_20251029_005908_ab12cd34/record.json").unwrap();
        assert_eq!(t.to_rfc3339(), "2025-10-29T00:59:08+00:00");
        assert!(run_time("runs/other/record.json").is_none());
        let s = run_time_of(
            "runs/scrape_20261126_120000_0123456789ab_a1/job.json",
            "scrape",
        );
        assert_eq!(s.unwrap().to_rfc3339(), "2026-11-26T12:00:00+00:00");
        assert!(run_time_of("runs/train_20261126_120000_x_a1/job.json", "scrape").is_none());
    }

    #[test]
    fn bearer_tokens_must_match_exactly() {
        assert!(bearer_matches(Some("Bearer abc"), "abc"));
        assert!(!bearer_matches(Some("Bearer abd"), "abc"));
        assert!(!bearer_matches(Some("Bearer abc"), ""));
        assert!(!bearer_matches(Some("abc"), "abc"));
        assert!(!bearer_matches(None, "abc"));
    }
}
