//! `POST /scrape` and `POST /train` enqueue a job for a worker; `GET /jobs/{id}` shows it.

use std::collections::BTreeMap;

use functions::{json, problem, registry_problem};
use registry::Registry;
use registry::jobs::JobKind;
use serde_json::{Value, json};
use spin_sdk::http::{Request, Response};

/// Largest trigger body accepted.
const MAX_BODY: usize = 64 * 1024;

pub async fn trigger(reg: &Registry, req: &Request, kind: JobKind) -> Response {
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

pub async fn job(reg: &Registry, id: &str) -> Response {
    let Ok(id) = uuid::Uuid::parse_str(id) else {
        return problem(400, "invalid_job_id", "a job id is a UUID");
    };
    match reg.job(&id).await {
        Ok(Some(job)) => json(200, &job),
        Ok(None) => problem(404, "job_not_found", &format!("no job {id}")),
        Err(e) => registry_problem(&e),
    }
}
