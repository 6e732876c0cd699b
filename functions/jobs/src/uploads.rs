//! `POST /uploads`: an image stored as a pending sample for the next ingestion.

use std::collections::BTreeMap;

use functions::{json, problem, registry_problem};
use registry::Registry;
use registry::samples::SampleLabel;
use serde_json::json;
use spin_sdk::http::{Request, Response};

/// Largest upload accepted.
const MAX_UPLOAD: usize = 10 * 1024 * 1024;

/// `POST /uploads?label=real|ai_generated[&dataset=D][&license=L]` with the image as the body:
/// stored as a pending sample, which the next scrape (or `exposr-trainer ingest --pending`)
/// checks, normalises and deduplicates like any other image. Only the file type is checked here,
/// by its magic bytes; decoding happens at ingestion, outside the request.
pub async fn upload(reg: &Registry, req: &Request) -> Response {
    let body = req.body();
    if body.len() > MAX_UPLOAD {
        return problem(
            413,
            "body_too_large",
            &format!("an upload may have at most {MAX_UPLOAD} bytes"),
        );
    }
    let query: BTreeMap<String, String> = url_pairs(req.query());
    let label = match query.get("label").map(|l| SampleLabel::parse(l)) {
        Some(Ok(label)) => label,
        Some(Err(e)) => return problem(400, "invalid_label", &e.to_string()),
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
    let Some(format) = vision::sniff(body) else {
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
