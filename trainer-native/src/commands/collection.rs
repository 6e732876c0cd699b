//! `scrape` and image `ingest`: collection from the command line.

use std::path::Path;

use anyhow::Context;
use registry::layout::DatasetName;

use crate::cli::Global;
use crate::collect::{self, SourcesConfig, images};
use crate::output::{print_json, print_table};
use crate::registry_opts::writer;

fn summary(tallies: &[images::Tally]) {
    let rows: Vec<Vec<String>> = tallies
        .iter()
        .map(|t| {
            let rejected = if t.rejected.is_empty() {
                "0".to_owned()
            } else {
                t.rejected
                    .iter()
                    .map(|(why, n)| format!("{n} {why}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            vec![
                t.source.clone(),
                t.listed.to_string(),
                t.fetched.to_string(),
                t.new.to_string(),
                t.duplicates.to_string(),
                rejected,
                format!("{} ({:.1} s)", t.rate_limit_waits, t.rate_limit_seconds),
                t.retries.to_string(),
            ]
        })
        .collect();
    print_table(
        &[
            "source",
            "listed",
            "fetched",
            "new",
            "duplicates",
            "rejected",
            "rate-limit waits",
            "retries",
        ],
        &rows,
    );
}

pub async fn scrape(
    g: &Global,
    only: Option<&str>,
    limit: Option<u64>,
    sources: &Path,
) -> anyhow::Result<()> {
    let config = SourcesConfig::load(sources)
        .with_context(|| "the sources config (--sources or EXPOSR_SOURCES)".to_owned())?;
    let reg = writer(g).await?;
    let report =
        collect::scrape(&reg, &config, only, limit, &mut |l| tracing::info!("{l}")).await?;
    if g.json {
        return print_json(&report);
    }
    for d in &report.datasets {
        println!(
            "{}: {} rows, snapshot {} ({})",
            d.dataset,
            d.rows,
            d.snapshot,
            if d.created { "new" } else { "unchanged" }
        );
    }
    if !report.sources.is_empty() {
        summary(&report.sources);
    }
    if let Some(s) = &report.snapshot {
        println!(
            "{}: {} samples, snapshot {} {}",
            s.dataset,
            s.rows,
            s.snapshot,
            if s.created { "(new)" } else { "(unchanged)" }
        );
    }
    Ok(())
}

pub async fn ingest_images(
    g: &Global,
    dir: Option<&Path>,
    label: Option<&str>,
    license: &str,
    dataset: Option<&str>,
    pending: bool,
) -> anyhow::Result<()> {
    let name = dataset.unwrap_or("authenticity");
    let ds = DatasetName::new(name).with_context(|| format!("dataset name {name:?}"))?;
    let reg = writer(g).await?;
    let limits = vision::Limits::default();
    let tally = match (dir, pending) {
        (_, true) => images::ingest_pending(&reg, &ds, &limits).await?,
        (Some(dir), false) => {
            let label = label.context("--label real|ai_generated is required with a folder")?;
            images::ingest_dir(&reg, &ds, dir, label, license, &limits).await?
        }
        (None, false) => {
            anyhow::bail!("give a folder of images, --csv with --schema, or --pending")
        }
    };
    let (snap, created) = reg.snapshot_samples(&ds, Some("ingest".into())).await?;
    if g.json {
        return print_json(&serde_json::json!({
            "tally": tally, "snapshot": snap.id, "digest": snap.digest,
            "samples": snap.entries.len(), "created": created,
        }));
    }
    summary(std::slice::from_ref(&tally));
    println!(
        "{ds}: {} samples, snapshot {} {}",
        snap.entries.len(),
        snap.id,
        if created { "(new)" } else { "(unchanged)" }
    );
    Ok(())
}

/// The bytes of an input: a file, or an http(s) URL (fetched politely, size-capped).
async fn read_input(input: &str, http: &crate::collect::http::Polite) -> anyhow::Result<Vec<u8>> {
    if input.starts_with("http://") || input.starts_with("https://") {
        let url = reqwest::Url::parse(input).with_context(|| format!("bad URL {input}"))?;
        return Ok(http.get(&url, &[]).await?.body.to_vec());
    }
    std::fs::read(input).with_context(|| format!("reading {input}"))
}

pub async fn classify(
    g: &Global,
    inputs: &[String],
    model: &str,
    reference: &str,
    int8: bool,
) -> anyhow::Result<()> {
    let name = registry::ModelName::new(model)?;
    let reg = crate::registry_opts::reader(g)?;
    let manifest = reg.resolve(&name, reference).await?;
    let (pipeline, version) = vision::features::PIPELINE;
    anyhow::ensure!(
        manifest.features.name == pipeline && manifest.features.version == version,
        "{name} {} uses feature pipeline {} v{}; this build computes {pipeline} v{version} from images",
        manifest.version,
        manifest.features.name,
        manifest.features.version
    );
    let role = if int8 { "onnx_int8" } else { "onnx" };
    let artifact = manifest
        .artifact(role)
        .with_context(|| format!("{name} {} has no {role} artifact", manifest.version))?;
    let onnx = crate::export::verify::Loaded::new(&reg.blob(&artifact.digest).await?)?;
    let mut files = Vec::new();
    for input in inputs {
        let path = Path::new(input);
        if path.is_dir() {
            let mut found: Vec<String> = std::fs::read_dir(path)
                .with_context(|| format!("reading {input}"))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file())
                .map(|p| p.display().to_string())
                .collect();
            found.sort();
            files.extend(found);
        } else {
            files.push(input.clone());
        }
    }
    let http = crate::collect::http::Polite::new(crate::collect::http::Politeness::default())?;
    let limits = vision::Limits::default();
    let labels: Vec<String> = manifest.labels.iter().map(ToString::to_string).collect();
    let mut results = Vec::new();
    let mut failed = 0;
    for input in &files {
        let start = std::time::Instant::now();
        let outcome = async {
            let bytes = read_input(input, &http).await?;
            let row = vision::features_of_image(&bytes, &limits)?;
            let x = ndarray::Array2::from_shape_vec((1, row.len()), row)?;
            let proba = onnx.predict(x.view())?;
            anyhow::Ok(proba.row(0).to_vec())
        }
        .await;
        let ms = start.elapsed().as_secs_f64() * 1e3;
        match outcome {
            Ok(p) => {
                let best = (0..p.len()).fold(0, |b, i| if p[i] > p[b] { i } else { b });
                results.push(serde_json::json!({
                    "input": input, "label": labels.get(best), "probability": p[best],
                    "probabilities": labels.iter().zip(&p).map(|(l, v)| (l.clone(), serde_json::json!(v))).collect::<serde_json::Map<_, _>>(),
                    "model": name, "model_version": manifest.version, "ms": ms,
                }));
            }
            Err(e) => {
                failed += 1;
                results.push(serde_json::json!({ "input": input, "error": format!("{e:#}") }));
            }
        }
    }
    if g.json {
        print_json(&results)?;
    } else {
        let rows: Vec<Vec<String>> = results
            .iter()
            .map(|r| match r.get("error") {
                Some(e) => vec![
                    r["input"].as_str().unwrap_or_default().to_owned(),
                    "-".into(),
                    "-".into(),
                    e.as_str().unwrap_or_default().to_owned(),
                ],
                None => vec![
                    r["input"].as_str().unwrap_or_default().to_owned(),
                    r["label"].as_str().unwrap_or_default().to_owned(),
                    format!("{:.3}", r["probability"].as_f64().unwrap_or_default()),
                    format!("{:.1} ms", r["ms"].as_f64().unwrap_or_default()),
                ],
            })
            .collect();
        print_table(&["input", "label", "probability", "time / error"], &rows);
    }
    anyhow::ensure!(
        failed == 0,
        "{failed} of {} inputs could not be classified",
        files.len()
    );
    Ok(())
}
