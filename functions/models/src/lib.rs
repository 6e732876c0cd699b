//! Model lookup, validation and classification over the registry, for pollers such as
//! Exposr-Core and for clients that classify at the edge:
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
//! | `POST /models/{name}/versions/{v}/validate` | the validator's report on every ONNX artifact |
//! | `POST /classify` | features in, label and probabilities out |
//!
//! Manifests carry an ETag (the manifest digest) and answer `If-None-Match` with 304, so polling
//! is cheap. Validation and classification run in the validator component (`wit/validator.wit`),
//! which the build composes into this one (`exposr-trainer compose`): tract lives only there.

// `#[http_component]` and `generate!` emit the canonical-ABI glue, which is `unsafe` code.
#![allow(unsafe_code)]

mod inference;
mod lookup;

use functions::{method_not_allowed, problem, registry_problem};
use spin_sdk::http::{Method, Request, Response};
use spin_sdk::http_component;

// The validator's report is the WIT record itself, serialisable: the one definition of its
// fields, the same in the trainer's records.
wit_bindgen::generate!({
    path: "../../wit",
    world: "validator-client",
    additional_derives: [serde::Serialize],
});

#[http_component]
async fn handle(req: Request) -> Response {
    let path = req.path().trim_end_matches('/').to_owned();
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    let post = matches!(
        segments.as_slice(),
        ["classify"] | ["models", _, "versions", _, "validate"]
    );
    match (req.method(), post) {
        (Method::Post, true) | (Method::Get, false) => {}
        (_, true) => return method_not_allowed(&req, "POST"),
        (_, false) => return method_not_allowed(&req, "GET"),
    }
    let config = functions::Config::from_env();
    let reg = match config.registry_or_503() {
        Ok(r) => r,
        Err(response) => return response,
    };
    let result = match segments.as_slice() {
        ["classify"] => inference::classify(&reg, &config, &req).await,
        ["models", name, "versions", v, "validate"] => inference::validate(&reg, name, v).await,
        ["models"] => lookup::list(&reg).await,
        ["models", "latest"] => lookup::latest(&reg, &config, &req).await,
        ["models", "lookup"] => lookup::lookup(&reg, &req).await,
        ["models", name] => lookup::index(&reg, name).await,
        ["models", name, "versions", v] => lookup::by_version(&req, &reg, name, v).await,
        ["models", name, "versions", v, "artifacts", role] => {
            lookup::artifact(&reg, name, v, role).await
        }
        ["models", name, alias] => lookup::by_alias(&req, &reg, name, alias).await,
        _ => return problem(404, "not_found", "no such route"),
    };
    result.unwrap_or_else(|e| registry_problem(&e))
}
