//! `GET /health` (liveness) and `GET /status` (no auth; the seeds' shape: uptime, last_scrape,
//! last_train, dataset_counts), read from the registry.

// `#[http_component]` generates the canonical-ABI export glue, which is `unsafe` code.
#![allow(unsafe_code)]

use chrono::{DateTime, Utc};
use functions::{json, method_not_allowed, registry_problem};
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
    let reg = match functions::registry_or_503() {
        Ok(r) => r,
        Err(response) => return response,
    };
    let runs = match reg.store().list("runs/").await {
        Ok(keys) => keys,
        Err(e) => return registry_problem(&e.into()),
    };
    let last_train = runs
        .iter()
        .filter_map(|k| functions::run_time(k.as_str()))
        .max();
    let models = match reg.models().await {
        Ok(m) => m.len(),
        Err(e) => return registry_problem(&e),
    };
    let uptime = std::env::var(functions::STARTED_AT)
        .ok()
        .and_then(|t| DateTime::parse_from_rfc3339(&t).ok())
        .map(|t| (Utc::now() - t.with_timezone(&Utc)).num_milliseconds() as f64 / 1000.0);
    let last_scrape = runs
        .iter()
        .filter_map(|k| functions::run_time_of(k.as_str(), "scrape"))
        .max();
    let counts = match functions::sample_counts(&reg).await {
        Ok(c) => c,
        Err(e) => return registry_problem(&e),
    };
    json(
        200,
        &json!({
            "uptime": uptime,
            "last_scrape": last_scrape.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
            "last_train": last_train.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
            "dataset_counts": counts.to_json(),
            "models": models,
        }),
    )
}
