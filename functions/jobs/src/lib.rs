//! The authenticated routes (bearer token, compared in constant time):
//!
//! | route | answer |
//! | --- | --- |
//! | `GET /metrics` | seed shape: total_images, models_trained, last_training, validation_accuracy; Prometheus text when `Accept` asks for it |
//! | `POST /scrape`, `POST /train` | enqueue a job in the registry (`jobs/<id>.json`), 202 with its id |
//! | `POST /uploads?label=…` | store an image (at most 10 MiB) as a pending sample, 202 |
//! | `GET /jobs/{id}` | the job and its state |
//!
//! Training never runs inside a request: a worker claims the queued job.

// `#[http_component]` generates the canonical-ABI export glue, which is `unsafe` code.
#![allow(unsafe_code)]

use std::collections::BTreeMap;

use functions::{bearer_matches, json, method_not_allowed, problem, registry_problem};
use registry::jobs::JobKind;
use registry::{Alias, ModelName, Registry};
use serde_json::{Value, json};
use spin_sdk::http::{Method, Request, Response};
use spin_sdk::http_component;

/// Environment variable holding the API token (a secret: never logged, never echoed).
const TOKEN: &str = "EXPOSR_API_TOKEN";
/// Largest trigger body accepted.
const MAX_BODY: usize = 64 * 1024;
/// Largest upload accepted.
const MAX_UPLOAD: usize = 10 * 1024 * 1024;

#[http_component]
async fn handle(req: Request) -> Response {
    let expected = std::env::var(TOKEN).unwrap_or_default();
    let given = req.header("authorization").and_then(|h| h.as_str());
    if !bearer_matches(given, &expected) {
        let mut r = problem(401, "unauthorized", "a valid bearer token is required");
        r.set_header("www-authenticate", "Bearer");
        return r;
    }
    let reg = match functions::appender_or_503() {
        Ok(r) => r,
        Err(response) => return response,
    };
    let path = req.path().trim_end_matches('/').to_owned();
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    match (req.method(), segments.as_slice()) {
        (Method::Get, ["metrics"]) => metrics(&reg, &req).await,
        (Method::Post, ["scrape"]) => trigger(&reg, &req, JobKind::Scrape).await,
        (Method::Post, ["train"]) => trigger(&reg, &req, JobKind::Train).await,
        (Method::Get, ["jobs", id]) => job(&reg, id).await,
        (Method::Post, ["uploads"]) => upload(&reg, &req).await,
        (_, ["metrics"] | ["jobs", _]) => method_not_allowed(&req, "GET"),
        (_, ["scrape"] | ["train"] | ["uploads"]) => method_not_allowed(&req, "POST"),
        _ => problem(404, "not_found", "no such route"),
    }
}

async fn trigger(reg: &Registry, req: &Request, kind: JobKind) -> Response {
    let body = req.body();
    if body.len() > MAX_BODY {
        return problem(
            413,
            "body_too_large",
            &format!("the body may have at most {MAX_BODY} bytes"),
        );
    }
    let params: BTreeMap<String, Value> = if body.iter().all(u8::is_ascii_whitespace) {
        BTreeMap::new()
    } else {
        match serde_json::from_slice(body) {
            Ok(p) => p,
            Err(e) => {
                return problem(
                    400,
                    "bad_json",
                    &format!("the body must be a JSON object: {e}"),
                );
            }
        }
    };
    match reg.enqueue(kind, params, "api").await {
        Ok(job) => {
            let mut r = json(
                202,
                &json!({ "id": job.id, "kind": job.kind, "state": "queued", "status_url": format!("/jobs/{}", job.id) }),
            );
            r.set_header("location", format!("/jobs/{}", job.id));
            r
        }
        Err(e) => registry_problem(&e),
    }
}

/// `POST /uploads?label=real|ai_generated[&dataset=D][&license=L]` with the image as the body:
/// stored as a pending sample, which the next scrape (or `exposr-trainer ingest --pending`)
/// checks, normalises and deduplicates like any other image. Only the file type is checked here,
/// by its magic bytes; decoding happens at ingestion, outside the request.
async fn upload(reg: &Registry, req: &Request) -> Response {
    let body = req.body();
    if body.len() > MAX_UPLOAD {
        return problem(
            413,
            "body_too_large",
            &format!("an upload may have at most {MAX_UPLOAD} bytes"),
        );
    }
    let query: BTreeMap<String, String> = url_pairs(req.query());
    let label = match query.get("label").map(String::as_str) {
        Some("real") => "real",
        Some("ai" | "ai_generated") => "ai_generated",
        Some(other) => {
            return problem(
                400,
                "invalid_label",
                &format!("label must be real or ai_generated, not {other:?}"),
            );
        }
        None => {
            return problem(
                400,
                "missing_label",
                "give ?label=real or ?label=ai_generated",
            );
        }
    };
    let dataset = query.get("dataset").map_or("authenticity", String::as_str);
    let Ok(dataset) = registry::layout::DatasetName::new(dataset) else {
        return problem(400, "invalid_name", "dataset must be a path-safe slug");
    };
    let format = if body.starts_with(&[0xff, 0xd8, 0xff]) {
        "jpeg"
    } else if body.starts_with(b"\x89PNG\r\n\x1a\n") {
        "png"
    } else if body.len() >= 12 && &body[..4] == b"RIFF" && &body[8..12] == b"WEBP" {
        "webp"
    } else {
        return problem(
            415,
            "unsupported_media_type",
            "the body must be a JPEG, PNG or WEBP image",
        );
    };
    let license = query.get("license").cloned();
    let description = json!({
        "label": label, "format": format, "bytes": body.len(), "license": license,
        "uploaded_at": chrono::Utc::now().to_rfc3339(),
    });
    match reg
        .put_pending(&dataset, bytes::Bytes::copy_from_slice(body), &description)
        .await
    {
        Ok(id) => json(
            202,
            &json!({ "id": id, "dataset": dataset, "label": label, "state": "pending" }),
        ),
        Err(e) => registry_problem(&e),
    }
}

/// `a=1&b=x%20y` as a map (later keys win).
fn url_pairs(query: &str) -> BTreeMap<String, String> {
    url::form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

async fn job(reg: &Registry, id: &str) -> Response {
    let Ok(id) = uuid::Uuid::parse_str(id) else {
        return problem(400, "invalid_job_id", "a job id is a UUID");
    };
    match reg.job(&id).await {
        Ok(Some(job)) => json(200, &job),
        Ok(None) => problem(404, "job_not_found", &format!("no job {id}")),
        Err(e) => registry_problem(&e),
    }
}

async fn metrics(reg: &Registry, req: &Request) -> Response {
    let models = match reg.models().await {
        Ok(m) => m,
        Err(e) => return registry_problem(&e),
    };
    let mut trained = 0usize;
    let mut history = serde_json::Map::new();
    // Each model's newest version and its test accuracy, from its manifest: however many runs
    // were skipped since, the figure stays.
    let mut newest = BTreeMap::new();
    for name in &models {
        match reg.index(name).await {
            Ok(index) => trained += index.versions.len(),
            Err(e) => return registry_problem(&e),
        }
        match reg.by_alias(name, &Alias::latest()).await {
            Ok(m) => {
                if let Some(a) = m.metrics.accuracy {
                    newest.insert(name.to_string(), (m.version.to_string(), a));
                }
            }
            Err(registry::Error::AliasNotFound { .. }) => {}
            Err(e) => return registry_problem(&e),
        }
        match reg.history(name, Some(HISTORY_RUNS)).await {
            Ok(h) if !h.is_empty() => {
                history.insert(name.to_string(), json!(h));
            }
            Ok(_) => {}
            Err(e) => return registry_problem(&e),
        }
    }
    let pending = match reg.pending_jobs().await {
        Ok(p) => p.len(),
        Err(e) => return registry_problem(&e),
    };
    let images = match functions::sample_counts(reg).await {
        Ok(c) => c.total(),
        Err(e) => return registry_problem(&e),
    };
    let runs = reg.store().list("runs/").await.unwrap_or_default();
    let last_training = runs
        .iter()
        .filter_map(|k| functions::run_time(k.as_str()))
        .max();
    let accuracy = match std::env::var("EXPOSR_DEFAULT_MODEL")
        .ok()
        .and_then(|n| ModelName::new(n).ok())
    {
        Some(name) => reg
            .by_alias(&name, &Alias::production())
            .await
            .ok()
            .and_then(|m| m.metrics.accuracy),
        None => None,
    };
    let prometheus = req
        .header("accept")
        .and_then(|h| h.as_str())
        .is_some_and(|a| a.contains("text/plain") || a.contains("openmetrics"));
    if prometheus {
        let mut text = String::new();
        text.push_str("# HELP exposr_models_trained Published model versions.\n# TYPE exposr_models_trained gauge\n");
        text.push_str(&format!("exposr_models_trained {trained}\n"));
        text.push_str("# HELP exposr_total_images Images in the datasets.\n# TYPE exposr_total_images gauge\n");
        text.push_str(&format!("exposr_total_images {images}\n"));
        if let Some(a) = accuracy {
            text.push_str(&format!("# HELP exposr_validation_accuracy Test accuracy of the production model.\n# TYPE exposr_validation_accuracy gauge\nexposr_validation_accuracy {a}\n"));
        }
        text.push_str(&format!("# HELP exposr_jobs_pending Jobs queued or running.\n# TYPE exposr_jobs_pending gauge\nexposr_jobs_pending {pending}\n"));
        text.push_str(&prometheus_history(&newest, &history));
        if let Some(t) = last_training {
            text.push_str(&format!("# HELP exposr_last_training_timestamp_seconds When the last training run started.\n# TYPE exposr_last_training_timestamp_seconds gauge\nexposr_last_training_timestamp_seconds {}\n", t.timestamp()));
        }
        return Response::builder()
            .status(200)
            .header("content-type", "text/plain; version=0.0.4")
            .body(text)
            .build();
    }
    json(
        200,
        &json!({
            "total_images": images,
            "models_trained": trained,
            "last_training": last_training.map(|t| t.to_rfc3339()),
            "validation_accuracy": accuracy,
            "jobs_pending": pending,
            "history": history,
        }),
    )
}

/// Runs per model that `/metrics` shows.
const HISTORY_RUNS: usize = 10;

/// Gauges of each model's newest version's accuracy, and how its recent runs were decided.
fn prometheus_history(
    newest: &BTreeMap<String, (String, f64)>,
    history: &serde_json::Map<String, Value>,
) -> String {
    let mut text = String::from(
        "# HELP exposr_model_test_accuracy Test accuracy of the model's newest version.\n\
         # TYPE exposr_model_test_accuracy gauge\n",
    );
    let mut decisions = String::from(
        "# HELP exposr_recent_training_runs The model's recent training runs by decision.\n\
         # TYPE exposr_recent_training_runs gauge\n",
    );
    for (model, (version, accuracy)) in newest {
        text.push_str(&format!(
            "exposr_model_test_accuracy{{model=\"{model}\",version=\"{version}\"}} {accuracy}\n"
        ));
    }
    for (model, runs) in history {
        let runs = runs.as_array().map(Vec::as_slice).unwrap_or_default();
        let mut counts = std::collections::BTreeMap::<&str, usize>::new();
        for r in runs {
            *counts
                .entry(r["decision"].as_str().unwrap_or("unknown"))
                .or_default() += 1;
        }
        for (decision, n) in counts {
            decisions.push_str(&format!(
                "exposr_recent_training_runs{{model=\"{model}\",decision=\"{decision}\"}} {n}\n"
            ));
        }
    }
    text.push_str(&decisions);
    text
}
