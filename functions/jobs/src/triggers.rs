//! `POST /scrape` and `POST /train` enqueue a job for a worker; `GET /jobs/{id}` shows it.

use std::collections::BTreeMap;

use functions::{json, problem, registry_problem};
use registry::Registry;
use registry::jobs::JobKind;
use serde_json::{Value, json};
use spin_sdk::http::{Request, Response};

/// Largest trigger body accepted.
const MAX_BODY: usize = 64 * 1024;
/// Most images per query a scrape job may ask for (the worker holds the same bound).
const MAX_SCRAPE_LIMIT: u64 = 10_000;

/// The parameters each kind of job takes; anything else is refused before it is queued.
fn known(kind: JobKind) -> &'static [&'static str] {
    match kind {
        JobKind::Scrape => &["source", "limit"],
        JobKind::Train => &["dataset", "model", "family", "seed", "config", "force"],
    }
}

/// Checks a trigger's parameters: known names, bounded values, and the gate overrides (`force`,
/// `config.gate`) only for the admin token. The worker checks the training config in full.
fn check(kind: JobKind, params: &BTreeMap<String, Value>, admin: bool) -> Result<(), Response> {
    if let Some(unknown) = params.keys().find(|k| !known(kind).contains(&k.as_str())) {
        return Err(problem(
            400,
            "unknown_parameter",
            &format!(
                "{} jobs take {}; not {unknown:?}",
                kind.as_str(),
                known(kind).join(", ")
            ),
        ));
    }
    if let Some(limit) = params.get("limit")
        && !limit
            .as_u64()
            .is_some_and(|n| (1..=MAX_SCRAPE_LIMIT).contains(&n))
    {
        return Err(problem(
            400,
            "bad_parameter",
            &format!("limit must be an integer from 1 to {MAX_SCRAPE_LIMIT}, not {limit}"),
        ));
    }
    if let Some(config) = params.get("config")
        && !config.is_object()
    {
        return Err(problem(
            400,
            "bad_parameter",
            "config must be a JSON object",
        ));
    }
    let overrides_gate = params
        .get("force")
        .is_some_and(|f| f != &Value::Bool(false))
        || params
            .get("config")
            .is_some_and(|c| c.get("gate").is_some());
    if overrides_gate && !admin {
        return Err(problem(
            403,
            "admin_required",
            "force and config.gate override the quality gate: they need the admin token",
        ));
    }
    Ok(())
}

pub async fn trigger(reg: &Registry, req: &Request, kind: JobKind, admin: bool) -> Response {
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
    if let Err(refused) = check(kind, &params, admin) {
        return refused;
    }
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
