//! `POST /classify` and `POST /models/{name}/versions/{v}/validate`: both run the validator
//! component (tract, composed into this one) on an artifact read from the registry.

use std::collections::BTreeMap;
use std::time::Instant;

use functions::{Config, json, problem};
use registry::{Alias, Manifest, ModelName, Registry, Version};
use serde::Deserialize;
use serde_json::json;
use spin_sdk::http::{Request, Response};

use crate::exposr::validator::{infer, validate};
use crate::lookup::current;

/// Largest `/classify` body accepted.
pub const MAX_CLASSIFY_BODY: usize = 256 * 1024;
/// Most rows one `/classify` call may carry.
pub const MAX_ROWS: usize = 1024;
/// Largest image `/classify` accepts.
pub const MAX_IMAGE_BODY: usize = 10 * 1024 * 1024;

/// A classification request: which model, and one row, several rows, or named features.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClassifyRequest {
    /// Model name (default: `EXPOSR_DEFAULT_MODEL`).
    model: Option<String>,
    /// An exact version; else `alias`; else production, then latest.
    version: Option<String>,
    alias: Option<String>,
    /// Per-user lookup (A3CP): the user's model, else the modality's default.
    modality: Option<String>,
    user_id: Option<String>,
    /// Run the int8 file instead of the float one.
    #[serde(default)]
    int8: bool,
    features: Features,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Features {
    Row(Vec<f32>),
    Rows(Vec<Vec<f32>>),
    Named(BTreeMap<String, f32>),
}

fn bad(message: impl AsRef<str>) -> Response {
    problem(400, "bad_request", message.as_ref())
}

fn millis(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1e3
}

/// Picks the manifest a classification request names.
async fn resolve(
    reg: &Registry,
    config: &Config,
    req: &ClassifyRequest,
) -> Result<Manifest, registry::Error> {
    if let (Some(modality), Some(user)) = (&req.modality, &req.user_id) {
        let alias = Alias::new(req.alias.as_deref().unwrap_or("production"))?;
        return Ok(reg.lookup_user(modality, user, &alias).await?.manifest);
    }
    let name = req
        .model
        .clone()
        .or_else(|| config.default_model().map(str::to_owned))
        .unwrap_or_default();
    let name = ModelName::new(name)?;
    match (&req.version, &req.alias) {
        (Some(v), _) => reg.manifest(&name, &Version::new(v)?).await,
        (None, Some(a)) => reg.by_alias(&name, &Alias::new(a)?).await,
        (None, None) => current(reg, &name).await,
    }
}

/// The rows of `features` in the model's input order, or what is wrong with them.
fn rows(features: Features, m: &Manifest) -> Result<(usize, Vec<f32>), String> {
    let width = m
        .signature
        .inputs
        .first()
        .and_then(|t| t.shape.last().copied().flatten())
        .map(|w| w as usize)
        .ok_or("the model's signature has no fixed input width")?;
    let rows = match features {
        Features::Row(row) => vec![row],
        Features::Rows(rows) => rows,
        Features::Named(mut named) => {
            let names = &m.features.feature_names;
            let missing: Vec<&str> = names
                .iter()
                .filter(|n| !named.contains_key(*n))
                .map(String::as_str)
                .collect();
            if !missing.is_empty() {
                return Err(format!("missing features: {}", missing.join(", ")));
            }
            let row = names.iter().filter_map(|n| named.remove(n)).collect();
            if let Some(extra) = named.keys().next() {
                return Err(format!("unknown feature {extra:?}"));
            }
            vec![row]
        }
    };
    if rows.is_empty() || rows.len() > MAX_ROWS {
        return Err(format!("give 1 to {MAX_ROWS} rows"));
    }
    for (i, row) in rows.iter().enumerate() {
        if row.len() != width {
            return Err(format!(
                "row {i} has {} values, the model takes {width}",
                row.len()
            ));
        }
        if let Some(j) = row.iter().position(|v| !v.is_finite()) {
            return Err(format!("row {i}, feature {j} is not a finite number"));
        }
    }
    Ok((width, rows.concat()))
}

/// True when the body is an image (by content type or magic bytes) rather than JSON.
fn is_image(req: &Request) -> bool {
    let body = req.body();
    let typed = req
        .header("content-type")
        .and_then(|h| h.as_str())
        .is_some_and(|t| t.trim_start().to_ascii_lowercase().starts_with("image/"));
    typed || vision::sniff(body).is_some()
}

/// `POST /classify` with an image body (`?model=&version=&alias=&int8=`): decoded, checked and
/// normalised exactly as ingestion does, measured by the model's feature pipeline, classified.
async fn classify_image(
    reg: &Registry,
    config: &Config,
    req: &Request,
) -> Result<Response, registry::Error> {
    let start = Instant::now();
    let body = req.body();
    if body.len() > MAX_IMAGE_BODY {
        return Ok(problem(
            413,
            "body_too_large",
            &format!("an image may have at most {MAX_IMAGE_BODY} bytes"),
        ));
    }
    let query: BTreeMap<String, String> = url::form_urlencoded::parse(req.query().as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let parsed = ClassifyRequest {
        model: query.get("model").cloned(),
        version: query.get("version").cloned(),
        alias: query.get("alias").cloned(),
        modality: None,
        user_id: None,
        int8: query.get("int8").is_some_and(|v| v == "true" || v == "1"),
        features: Features::Row(Vec::new()),
    };
    let m = resolve(reg, config, &parsed).await?;
    let pipeline = vision::features::PIPELINE;
    if !m.features.is(pipeline) {
        return Ok(problem(
            422,
            "unsupported_pipeline",
            &format!(
                "{} {} uses feature pipeline {} v{}; this function computes {pipeline} from \
                 images",
                m.name, m.version, m.features.name, m.features.version
            ),
        ));
    }
    let features_start = Instant::now();
    let row = match vision::features_of_image(body, &vision::Limits::default()) {
        Ok(row) => row,
        Err(vision::FeatureError::Rejected(why)) => {
            let status = match why {
                vision::Rejected::TooLarge { .. } | vision::Rejected::TooManyPixels { .. } => 413,
                vision::Rejected::Format(_) => 415,
                _ => 400,
            };
            return Ok(problem(
                status,
                &format!("image_{}", why.code()),
                &why.to_string(),
            ));
        }
        Err(e) => {
            return Ok(problem(422, "features_failed", &e.to_string()));
        }
    };
    let features_ms = millis(features_start);
    let explain = query
        .get("features")
        .is_some_and(|v| v == "true" || v == "1");
    let shown = explain.then(|| row.clone());
    let mut response = run_model(
        reg,
        &m,
        parsed.int8,
        row.len(),
        row,
        start,
        Some(features_ms),
    )
    .await?;
    if let Some(row) = shown
        && response.status() == &200
    {
        // `?features=true`: the vector too, to compare with other runtimes.
        let mut body: serde_json::Value =
            serde_json::from_slice(response.body()).unwrap_or_default();
        body["features"] =
            json!({ "pipeline": pipeline.name, "version": pipeline.version, "values": row });
        response = json(200, &body);
    }
    Ok(response)
}

/// `POST /classify`.
pub async fn classify(
    reg: &Registry,
    config: &Config,
    req: &Request,
) -> Result<Response, registry::Error> {
    if is_image(req) {
        return classify_image(reg, config, req).await;
    }
    let start = Instant::now();
    let body = req.body();
    if body.len() > MAX_CLASSIFY_BODY {
        return Ok(problem(
            413,
            "body_too_large",
            &format!("the body is over {MAX_CLASSIFY_BODY} bytes"),
        ));
    }
    let parsed: ClassifyRequest = match serde_json::from_slice(body) {
        Ok(p) => p,
        Err(e) => return Ok(bad(format!("malformed classification request: {e}"))),
    };
    let int8 = parsed.int8;
    let m = resolve(reg, config, &parsed).await?;
    let (width, data) = match rows(parsed.features, &m) {
        Ok(r) => r,
        Err(message) => return Ok(bad(message)),
    };
    run_model(reg, &m, int8, width, data, start, None).await
}

/// Runs the model's float (or int8) file on rows of `width` features and shapes the answer.
async fn run_model(
    reg: &Registry,
    m: &Manifest,
    int8: bool,
    width: usize,
    data: Vec<f32>,
    start: Instant,
    features_ms: Option<f64>,
) -> Result<Response, registry::Error> {
    let role = if int8 { "onnx_int8" } else { "onnx" };
    let Some(artifact) = m.artifact(role) else {
        return Ok(problem(
            404,
            "artifact_not_found",
            &format!("{} {} has no artifact {role:?}", m.name, m.version),
        ));
    };
    let bytes = reg.blob(&artifact.digest).await?;
    let fetched = millis(start);
    let infer_start = Instant::now();
    let out = match infer::run(&bytes, width as u32, &data) {
        Ok(out) => out,
        Err(e) => {
            eprintln!("inference failed for {} {}: {e}", m.name, m.version);
            return Ok(problem(
                500,
                "inference_failed",
                "the model could not be run",
            ));
        }
    };
    let inference = millis(infer_start);
    let labels: Vec<String> = m.labels.iter().map(ToString::to_string).collect();
    let predictions: Vec<_> = out
        .values
        .chunks(out.width.max(1) as usize)
        .map(|probs| prediction(probs, &labels))
        .collect();
    let first = predictions.first().cloned().unwrap_or_default();
    Ok(json(
        200,
        &json!({
            "model": m.name,
            "model_version": m.version,
            "artifact": role,
            "digest": artifact.digest,
            "label": first["label"],
            "probability": first["probability"],
            "probabilities": first["probabilities"],
            "predictions": predictions,
            "timings": {
                "features_ms": features_ms, "fetch_ms": fetched, "inference_ms": inference,
                "total_ms": millis(start),
            },
        }),
    ))
}

fn prediction(probs: &[f32], labels: &[String]) -> serde_json::Value {
    let best = (0..probs.len()).fold(0, |b, i| if probs[i] > probs[b] { i } else { b });
    let name = |i: usize| labels.get(i).cloned().unwrap_or_else(|| i.to_string());
    let by_label: serde_json::Map<String, serde_json::Value> = (0..probs.len())
        .map(|i| (name(i), json!(probs[i])))
        .collect();
    json!({ "label": name(best), "probability": probs.get(best), "probabilities": by_label })
}

/// `POST /models/{name}/versions/{v}/validate`: the validator's report on every ONNX artifact.
pub async fn validate(reg: &Registry, name: &str, v: &str) -> Result<Response, registry::Error> {
    let start = Instant::now();
    let m = reg
        .manifest(&ModelName::new(name)?, &Version::new(v)?)
        .await?;
    let manifest_json = serde_json::to_string(&m).unwrap_or_default();
    let mut reports = Vec::new();
    for a in m
        .artifacts
        .iter()
        .filter(|a| a.media_type == "application/onnx")
    {
        // Read without the registry's digest check: the validator must see tampered or truncated
        // bytes to report them, rather than the read failing.
        let Some(bytes) = reg.blob_unchecked(&a.digest).await? else {
            reports
                .push(json!({ "role": a.role, "ok": false, "problems": ["the blob is missing"] }));
            continue;
        };
        match validate::validate(&manifest_json, &a.role, &bytes) {
            Ok(report) => {
                let mut r = serde_json::to_value(&report).unwrap_or_default();
                r["role"] = json!(a.role);
                reports.push(r);
            }
            Err(e) => reports.push(json!({ "role": a.role, "ok": false, "problems": [e] })),
        }
    }
    let ok = !reports.is_empty() && reports.iter().all(|r| r["ok"] == true);
    Ok(json(
        200,
        &json!({
            "model": m.name,
            "version": m.version,
            "ok": ok,
            "artifacts": reports,
            "timings": { "total_ms": millis(start) },
        }),
    ))
}
