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
