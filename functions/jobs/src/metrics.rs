//! `GET /metrics`: seed 001's figures as JSON, or Prometheus text when `Accept` asks for it.

use std::collections::BTreeMap;

use functions::{Config, json, registry_problem};
use registry::{Alias, ModelName, Registry, RunKind};
use serde_json::{Value, json};
use spin_sdk::http::{Request, Response};

pub async fn metrics(reg: &Registry, config: &Config, req: &Request) -> Response {
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
    let last_training = match reg.last_run(RunKind::Training).await {
        Ok(run) => run.map(|(_, t)| t),
        Err(e) => return registry_problem(&e),
    };
    let accuracy = match config.default_model().and_then(|n| ModelName::new(n).ok()) {
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
