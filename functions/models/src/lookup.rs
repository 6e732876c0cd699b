//! The read-only lookups: listings, indexes, manifests by version or alias, the seed's
//! `/models/latest`, per-user lookup with fallback, and digest-checked artifact downloads.

use functions::{Config, json, problem};
use registry::{Alias, Manifest, ModelName, Registry, Version};
use serde_json::json;
use spin_sdk::http::{Request, Response};

/// How long a presigned download URL stays valid.
const PRESIGNED_FOR: std::time::Duration = std::time::Duration::from_secs(15 * 60);

pub async fn list(reg: &Registry) -> Result<Response, registry::Error> {
    let mut out = Vec::new();
    for name in reg.models().await? {
        let index = reg.index(&name).await?;
        out.push(
            json!({ "name": name, "versions": index.versions.len(), "aliases": index.aliases }),
        );
    }
    Ok(json(200, &json!({ "models": out })))
}

pub async fn index(reg: &Registry, name: &str) -> Result<Response, registry::Error> {
    Ok(json(200, &reg.index(&ModelName::new(name)?).await?))
}

pub async fn by_version(
    req: &Request,
    reg: &Registry,
    name: &str,
    v: &str,
) -> Result<Response, registry::Error> {
    let m = reg
        .manifest(&ModelName::new(name)?, &Version::new(v)?)
        .await?;
    Ok(with_etag(req, &m, json(200, &m)))
}

pub async fn by_alias(
    req: &Request,
    reg: &Registry,
    name: &str,
    alias: &str,
) -> Result<Response, registry::Error> {
    let m = reg
        .by_alias(&ModelName::new(name)?, &Alias::new(alias)?)
        .await?;
    Ok(with_etag(req, &m, json(200, &m)))
}

/// Adds the manifest's ETag, or answers 304 when the client already has it.
fn with_etag(req: &Request, m: &Manifest, response: Response) -> Response {
    let etag = format!("\"{}\"", registry::Digest::of(&m.to_bytes()).hex());
    let cached = req
        .header("if-none-match")
        .and_then(|h| h.as_str())
        .is_some_and(|h| h.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let mut response = if cached {
        Response::builder().status(304).body(Vec::new()).build()
    } else {
        response
    };
    response.set_header("etag", etag);
    response.set_header("cache-control", "no-cache");
    response
}

pub fn query<'a>(req: &'a Request, key: &str) -> Option<&'a str> {
    req.query()
        .split('&')
        .find_map(|pair| pair.strip_prefix(key)?.strip_prefix('='))
}

/// The version a consumer should use: `production`, else `latest`.
pub async fn current(reg: &Registry, name: &ModelName) -> Result<Manifest, registry::Error> {
    match reg.by_alias(name, &Alias::production()).await {
        Err(registry::Error::AliasNotFound { .. }) => reg.by_alias(name, &Alias::latest()).await,
        other => other,
    }
}

pub async fn latest(
    reg: &Registry,
    config: &Config,
    req: &Request,
) -> Result<Response, registry::Error> {
    let name = match query(req, "name")
        .map(str::to_owned)
        .or_else(|| config.default_model().map(str::to_owned))
    {
        Some(n) => ModelName::new(n)?,
        None => {
            return Ok(problem(
                400,
                "no_model",
                "name a model with ?name= (or set EXPOSR_DEFAULT_MODEL)",
            ));
        }
    };
    let m = current(reg, &name).await?;
    let onnx = m.artifact("onnx").or_else(|| m.artifacts.first());
    // Straight from S3 when the store can presign; else through the artifact route.
    let download_url = match onnx {
        Some(a) => match reg.download_url(&a.digest, PRESIGNED_FOR).await? {
            Some(url) => Some(url),
            None => Some(format!(
                "/models/{}/versions/{}/artifacts/{}",
                m.name, m.version, a.role
            )),
        },
        None => None,
    };
    let body = json!({
        "model": m.name,
        "model_version": m.version,
        "timestamp": m.created_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "metrics": m.metrics,
        "download_url": download_url,
        "digest": onnx.map(|a| a.digest),
        "manifest_url": format!("/models/{}/versions/{}", m.name, m.version),
    });
    Ok(with_etag(req, &m, json(200, &body)))
}

pub async fn lookup(reg: &Registry, req: &Request) -> Result<Response, registry::Error> {
    let (Some(modality), Some(user)) = (query(req, "modality"), query(req, "user_id")) else {
        return Ok(problem(400, "bad_query", "give ?modality=…&user_id=…"));
    };
    let alias = Alias::new(query(req, "alias").unwrap_or("production"))?;
    let found = reg.lookup_user(modality, user, &alias).await?;
    let body = json!({ "fell_back": found.fell_back, "manifest": found.manifest });
    Ok(with_etag(req, &found.manifest, json(200, &body)))
}

pub async fn artifact(
    reg: &Registry,
    name: &str,
    version: &str,
    role: &str,
) -> Result<Response, registry::Error> {
    let m = reg
        .manifest(&ModelName::new(name)?, &Version::new(version)?)
        .await?;
    let Some(a) = m.artifact(role) else {
        return Ok(problem(
            404,
            "artifact_not_found",
            &format!("{name} {version} has no artifact {role:?}"),
        ));
    };
    let bytes = reg.blob(&a.digest).await?;
    Ok(Response::builder()
        .status(200)
        .header("content-type", a.media_type.as_str())
        .header(
            "content-disposition",
            // A stored manifest's file name goes into a header only if it is plain.
            match registry::manifest::is_plain_file_name(&a.file_name) {
                true => format!("attachment; filename=\"{}\"", a.file_name),
                false => "attachment".to_owned(),
            },
        )
        .header("x-content-digest", a.digest.to_string())
        .header("etag", format!("\"{}\"", a.digest.hex()))
        .body(bytes.to_vec())
        .build())
}
