//! What every Exposr component needs: configuration from the environment, the registry it reads
//! (a directory the host preopens, or S3 through the host's outbound HTTP), JSON responses and
//! problem documents with stable codes, and constant-time bearer auth.
//!
//! Configuration comes from environment variables, which reach the same `.wasm` on Spin (the
//! component's `environment` in `spin.toml`), on `wasmtime serve` (`--env`) and on the embedded
//! host (`exposr-trainer serve`): a component that imported `spin:variables` would not load on
//! plain WASI hosts.

#![warn(missing_docs)]

#[cfg(target_arch = "wasm32")]
pub mod outbound;

use std::sync::Arc;

use registry::samples::SampleLabel;
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
/// Environment variable holding the API token (a secret: never logged, never echoed).
pub const API_TOKEN: &str = "EXPOSR_API_TOKEN";
/// Environment variable holding the admin token: everything the API token allows, and the gate
/// overrides of `POST /train` (`force`, `config.gate`). A secret like the API token.
pub const ADMIN_TOKEN: &str = "EXPOSR_ADMIN_TOKEN";
/// Environment variable naming the model `/models/latest`, `/classify` and `/metrics` use when
/// a request names none.
pub const DEFAULT_MODEL: &str = "EXPOSR_DEFAULT_MODEL";

/// A component's configuration, read from the environment once per request: the only place a
/// component reads it.
#[derive(Clone, Default)]
pub struct Config {
    /// `s3://…` registry URL, if one is set.
    registry_url: Option<String>,
    /// The preopened registry directory.
    registry_dir: String,
    /// `AWS_*` settings for S3.
    aws: Vec<(String, String)>,
    /// The bearer token authenticated routes require (empty: none is accepted).
    api_token: String,
    /// The admin token (empty: no request is admin).
    admin_token: String,
    /// The default model's name, as set.
    default_model: Option<String>,
    /// When the host started.
    started_at: Option<chrono::DateTime<chrono::Utc>>,
}

impl std::fmt::Debug for Config {
    // The token is a secret: a Debug print shows only whether one is set.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("registry_url", &self.registry_url)
            .field("registry_dir", &self.registry_dir)
            .field("aws", &self.aws.iter().map(|(k, _)| k).collect::<Vec<_>>())
            .field("api_token_set", &!self.api_token.is_empty())
            .field("admin_token_set", &!self.admin_token.is_empty())
            .field("default_model", &self.default_model)
            .field("started_at", &self.started_at)
            .finish()
    }
}

impl Config {
    /// The configuration in this process's environment.
    pub fn from_env() -> Self {
        Self::from_vars(std::env::vars())
    }

    /// The configuration in `vars` (name, value).
    pub fn from_vars(vars: impl IntoIterator<Item = (String, String)>) -> Self {
        let mut c = Self {
            registry_dir: "/registry".to_owned(),
            ..Self::default()
        };
        for (k, v) in vars {
            match k.as_str() {
                REGISTRY_URL if v.starts_with("s3://") => c.registry_url = Some(v),
                REGISTRY_DIR => c.registry_dir = v,
                API_TOKEN => c.api_token = v,
                ADMIN_TOKEN => c.admin_token = v,
                DEFAULT_MODEL if !v.is_empty() => c.default_model = Some(v),
                STARTED_AT => {
                    c.started_at = chrono::DateTime::parse_from_rfc3339(&v)
                        .ok()
                        .map(|t| t.with_timezone(&chrono::Utc));
                }
                _ if k.starts_with("AWS_") => c.aws.push((k, v)),
                _ => {}
            }
        }
        c
    }

    /// The default model's name, if one is set.
    pub fn default_model(&self) -> Option<&str> {
        self.default_model.as_deref()
    }

    /// Seconds since the host started, if it said when.
    pub fn uptime(&self, now: chrono::DateTime<chrono::Utc>) -> Option<f64> {
        self.started_at
            .map(|t| (now - t).num_milliseconds() as f64 / 1000.0)
    }

    /// Whether the Authorization header carries the API token or the admin token
    /// ([`bearer_matches`]).
    pub fn authorized(&self, header: Option<&str>) -> bool {
        // Both are compared, so the time taken does not say which one matched.
        let api = bearer_matches(header, &self.api_token);
        let admin = bearer_matches(header, &self.admin_token);
        api | admin
    }

    /// Whether the Authorization header carries the admin token.
    pub fn admin(&self, header: Option<&str>) -> bool {
        bearer_matches(header, &self.admin_token)
    }

    /// The store the host gives this component: S3 when the registry URL is `s3://…`, else the
    /// preopened directory.
    fn store(&self) -> anyhow::Result<Arc<dyn Store>> {
        if let Some(url) = &self.registry_url {
            return s3(url, &self.aws);
        }
        Ok(Arc::new(DirStore::open_existing(&self.registry_dir)?))
    }

    /// The registry, for reading only, or the 503 to answer when the host gave none (logged,
    /// not shown to the client).
    pub fn registry_or_503(&self) -> Result<Registry, Response> {
        self.store().map(Registry::read_only).map_err(unavailable)
    }

    /// The registry for the jobs component, which may add job requests and uploads (create-only
    /// writes under fresh keys) and nothing else; or the 503 to answer.
    pub fn appender_or_503(&self) -> Result<Registry, Response> {
        self.store().map(Registry::appender).map_err(unavailable)
    }
}

fn unavailable(e: anyhow::Error) -> Response {
    eprintln!("registry unavailable: {e:#}");
    problem(
        503,
        "registry_unavailable",
        "the model registry is not available",
    )
}

#[cfg(target_arch = "wasm32")]
fn s3(url: &str, aws: &[(String, String)]) -> anyhow::Result<Arc<dyn Store>> {
    Ok(registry::store::open_with_http(
        url,
        aws,
        outbound::WasiHttp,
    )?)
}

#[cfg(not(target_arch = "wasm32"))]
fn s3(url: &str, _aws: &[(String, String)]) -> anyhow::Result<Arc<dyn Store>> {
    anyhow::bail!("{url}: S3 from this crate is for WebAssembly components")
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
        Error::QuotaExceeded { .. } => {
            let mut r = problem(429, "quota_exceeded", &err.to_string());
            r.set_header("retry-after", "3600");
            r
        }
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

/// Whether `header` (the Authorization value) carries `expected` as a bearer token. Both sides are
/// hashed first, so the constant-time comparison is over equal lengths: timing reveals neither how
/// much of a guess was right nor how long the token is. (The embedded host, which checks the
/// token before a component runs, has the same check in `trainer-native/src/serve/limits.rs`.)
pub fn bearer_matches(header: Option<&str>, expected: &str) -> bool {
    use registry::digest::Digest;
    use subtle::ConstantTimeEq;
    let Some(token) = header.and_then(|h| h.strip_prefix("Bearer ")) else {
        return false;
    };
    let (given, wanted) = (
        Digest::of(token.as_bytes()),
        Digest::of(expected.as_bytes()),
    );
    !expected.is_empty() && bool::from(given.as_bytes().ct_eq(wanted.as_bytes()))
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
            let Some(label) = entry.label.as_deref() else {
                continue;
            };
            match SampleLabel::parse(label) {
                Ok(SampleLabel::Real) => c.real += 1,
                Ok(SampleLabel::AiGenerated) => c.ai_generated += 1,
                Err(_) if matches!(label, "unlabeled" | "pending") => c.unlabeled += 1,
                Err(_) => c.other += 1,
            }
        }
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configuration_is_read_once_and_keeps_the_token_secret() {
        let vars = |pairs: &[(&str, &str)]| {
            Config::from_vars(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())))
        };
        let c = vars(&[
            (API_TOKEN, "s3cr3t-token"),
            (ADMIN_TOKEN, "adm1n-token"),
            (DEFAULT_MODEL, "authenticity"),
            (STARTED_AT, "2026-12-02T19:00:00Z"),
            (REGISTRY_URL, "s3://bucket/prefix"),
            ("AWS_REGION", "eu-west-1"),
            ("HOME", "/root"),
        ]);
        assert!(c.authorized(Some("Bearer s3cr3t-token")));
        assert!(!c.authorized(Some("Bearer s3cr3t-tokem")));
        assert!(
            !c.admin(Some("Bearer s3cr3t-token")),
            "the API token is not admin"
        );
        assert!(c.authorized(Some("Bearer adm1n-token")) && c.admin(Some("Bearer adm1n-token")));
        assert_eq!(c.default_model(), Some("authenticity"));
        let now = chrono::DateTime::parse_from_rfc3339("2026-12-02T19:00:02.5Z").unwrap();
        assert_eq!(c.uptime(now.with_timezone(&chrono::Utc)), Some(2.5));
        assert_eq!(c.aws, [("AWS_REGION".to_owned(), "eu-west-1".to_owned())]);
        let shown = format!("{c:?}");
        assert!(
            !shown.contains("s3cr3t") && !shown.contains("adm1n"),
            "{shown}"
        );
        assert!(shown.contains("api_token_set: true"), "{shown}");
        // Defaults: the preopened directory, no token (nothing is authorized), no model.
        let d = vars(&[(REGISTRY_URL, "file:///ignored"), (DEFAULT_MODEL, "")]);
        assert_eq!(d.registry_dir, "/registry");
        assert!(d.registry_url.is_none() && d.default_model().is_none());
        assert!(!d.authorized(Some("Bearer ")) && d.uptime(chrono::Utc::now()).is_none());
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
