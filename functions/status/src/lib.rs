//! `GET /health` (liveness) and `GET /status` (no auth; the seeds' shape: uptime, last_scrape,
//! last_train, dataset_counts), read from the registry.

// `#[http_component]` generates the canonical-ABI export glue, which is `unsafe` code.
#![allow(unsafe_code)]

use chrono::{DateTime, Utc};
use functions::{json, method_not_allowed, registry_problem};
use registry::RunKind;
use registry::jobs::JobKind;
use serde_json::json;
use spin_sdk::http::{Method, Request, Response};
use spin_sdk::http_component;

#[http_component]
async fn handle(req: Request) -> Response {
    if *req.method() != Method::Get {
        return method_not_allowed(&req, "GET");
    }
    match req.path() {
        "/health" => json(
            200,
            &json!({ "status": "ok", "version": env!("CARGO_PKG_VERSION") }),
        ),
        _ => status().await,
    }
}

async fn status() -> Response {
    let config = functions::Config::from_env();
    let reg = match config.registry_or_503() {
        Ok(r) => r,
        Err(response) => return response,
    };
    let stamp = |t: DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let last_train = match reg.last_run(RunKind::Training).await {
        Ok(run) => run.map(|(_, t)| stamp(t)),
        Err(e) => return registry_problem(&e),
    };
    let last_scrape = match reg.last_run(RunKind::Job(JobKind::Scrape)).await {
        Ok(run) => run.map(|(_, t)| stamp(t)),
        Err(e) => return registry_problem(&e),
    };
    let models = match reg.models().await {
        Ok(m) => m.len(),
        Err(e) => return registry_problem(&e),
    };
    let counts = match functions::sample_counts(&reg).await {
        Ok(c) => c,
        Err(e) => return registry_problem(&e),
    };
    json(
        200,
        &json!({
            "uptime": config.uptime(Utc::now()),
            "last_scrape": last_scrape,
            "last_train": last_train,
            "dataset_counts": counts.to_json(),
            "models": models,
        }),
    )
}
