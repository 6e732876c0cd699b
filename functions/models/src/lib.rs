//! Model lookup over the registry, for pollers such as Exposr-Core:
//!
//! | route | answer |
//! | --- | --- |
//! | `GET /models` | every model with its versions and aliases |
//! | `GET /models/latest` | the default model's production (else latest) version, seed 001's shape |
//! | `GET /models/lookup?modality=M&user_id=U` | a user's model, or the modality default |
//! | `GET /models/{name}` | the model's index |
//! | `GET /models/{name}/{alias}` | the manifest an alias points at |
//! | `GET /models/{name}/versions/{v}` | a version's manifest |
//! | `GET /models/{name}/versions/{v}/artifacts/{role}` | the artifact's bytes, digest-checked |
//!
//! Manifests carry an ETag (the manifest digest) and answer `If-None-Match` with 304, so polling
//! is cheap.

// `#[http_component]` generates the canonical-ABI export glue, which is `unsafe` code.
#![allow(unsafe_code)]

use functions::{json, method_not_allowed, problem, registry_problem};
use registry::{Alias, Manifest, ModelName, Registry, Version};
use serde_json::json;
use spin_sdk::http::{Method, Request, Response};
use spin_sdk::http_component;

/// The model `/models/latest` describes when the request does not name one.
const DEFAULT_MODEL: &str = "EXPOSR_DEFAULT_MODEL";

#[http_component]
async fn handle(req: Request) -> Response {
    if *req.method() != Method::Get {
        return method_not_allowed(&req, "GET");
    }
    let reg = match functions::registry_or_503() {
        Ok(r) => r,
        Err(response) => return response,
    };
    let path = req.path().trim_end_matches('/').to_owned();
    let segments: Vec<&str> = path.split('/').skip(2).collect();
    let result = match segments.as_slice() {
        [] | [""] => list(&reg).await,
        ["latest"] => latest(&reg, &req).await,
        ["lookup"] => lookup(&reg, &req).await,
        [name] => index(&reg, name).await,
        [name, "versions", v] => by_version(&req, &reg, name, v).await,
        [name, "versions", v, "artifacts", role] => artifact(&reg, name, v, role).await,
        [name, alias] => by_alias(&req, &reg, name, alias).await,
        _ => return problem(404, "not_found", "no such route"),
    };
    result.unwrap_or_else(|e| registry_problem(&e))
}

async fn list(reg: &Registry) -> Result<Response, registry::Error> {
    let mut out = Vec::new();
    for name in reg.models().await? {
        let index = reg.index(&name).await?;
        out.push(
            json!({ "name": name, "versions": index.versions.len(), "aliases": index.aliases }),
        );
    }
    Ok(json(200, &json!({ "models": out })))
}

async fn index(reg: &Registry, name: &str) -> Result<Response, registry::Error> {
    Ok(json(200, &reg.index(&ModelName::new(name)?).await?))
}

async fn by_version(
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

async fn by_alias(
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

fn query<'a>(req: &'a Request, key: &str) -> Option<&'a str> {
    req.query()
        .split('&')
        .find_map(|pair| pair.strip_prefix(key)?.strip_prefix('='))
}

async fn latest(reg: &Registry, req: &Request) -> Result<Response, registry::Error> {
    let name = match query(req, "name")
        .map(str::to_owned)
        .or_else(|| std::env::var(DEFAULT_MODEL).ok())
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
    let m = match reg.by_alias(&name, &Alias::production()).await {
        Err(registry::Error::AliasNotFound { .. }) => reg.by_alias(&name, &Alias::latest()).await?,
        other => other?,
    };
    let onnx = m.artifact("onnx").or_else(|| m.artifacts.first());
    let body = json!({
        "model": m.name,
        "model_version": m.version,
        "timestamp": m.created_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "metrics": m.metrics,
        "download_url": onnx.map(|a| format!("/models/{}/versions/{}/artifacts/{}", m.name, m.version, a.role)),
        "digest": onnx.map(|a| a.digest),
        "manifest_url": format!("/models/{}/versions/{}", m.name, m.version),
    });
    Ok(with_etag(req, &m, json(200, &body)))
}

async fn lookup(reg: &Registry, req: &Request) -> Result<Response, registry::Error> {
    let (Some(modality), Some(user)) = (query(req, "modality"), query(req, "user_id")) else {
        return Ok(problem(400, "bad_query", "give ?modality=…&user_id=…"));
    };
    let alias = Alias::new(query(req, "alias").unwrap_or("production"))?;
    let found = reg.lookup_user(modality, user, &alias).await?;
    let body = json!({ "fell_back": found.fell_back, "manifest": found.manifest });
    Ok(with_etag(req, &found.manifest, json(200, &body)))
}

async fn artifact(
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
            format!("attachment; filename=\"{}\"", a.file_name),
        )
        .header("x-content-digest", a.digest.to_string())
        .header("etag", format!("\"{}\"", a.digest.hex()))
        .body(bytes.to_vec())
        .build())
}
