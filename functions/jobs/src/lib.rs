//! The authenticated routes (bearer token, compared in constant time):
//!
//! | route | answer |
//! | --- | --- |
//! | `GET /metrics` | seed shape: total_images, models_trained, last_training, validation_accuracy; Prometheus text when `Accept` asks for it |
//! | `POST /scrape`, `POST /train` | enqueue a job in the registry (`jobs/<id>.json`), 202 with its id; unknown or unbounded parameters 400, gate overrides (`force`, `config.gate`) 403 without the admin token |
//! | `POST /uploads?label=…` | store an image (at most 10 MiB) as a pending sample, 202 |
//! | `GET /jobs/{id}` | the job and its state |
//!
//! Training never runs inside a request: a worker claims the queued job.

// `#[http_component]` generates the canonical-ABI export glue, which is `unsafe` code.
#![allow(unsafe_code)]

mod metrics;
mod triggers;
mod uploads;

use functions::{Config, method_not_allowed, problem};
use registry::jobs::JobKind;
use spin_sdk::http::{Method, Request, Response};
use spin_sdk::http_component;

#[http_component]
async fn handle(req: Request) -> Response {
    let config = Config::from_env();
    let given = req.header("authorization").and_then(|h| h.as_str());
    if !config.authorized(given) {
        let mut r = problem(401, "unauthorized", "a valid bearer token is required");
        r.set_header("www-authenticate", "Bearer");
        return r;
    }
    let reg = match config.appender_or_503() {
        Ok(r) => r,
        Err(response) => return response,
    };
    let path = req.path().trim_end_matches('/').to_owned();
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    match (req.method(), segments.as_slice()) {
        (Method::Get, ["metrics"]) => metrics::metrics(&reg, &config, &req).await,
        (Method::Post, ["scrape"]) => {
            triggers::trigger(&reg, &req, JobKind::Scrape, config.admin(given)).await
        }
        (Method::Post, ["train"]) => {
            triggers::trigger(&reg, &req, JobKind::Train, config.admin(given)).await
        }
        (Method::Get, ["jobs", id]) => triggers::job(&reg, id).await,
        (Method::Post, ["uploads"]) => uploads::upload(&reg, &req).await,
        (_, ["metrics"] | ["jobs", _]) => method_not_allowed(&req, "GET"),
        (_, ["scrape"] | ["train"] | ["uploads"]) => method_not_allowed(&req, "POST"),
        _ => problem(404, "not_found", "no such route"),
    }
}
