//! `worker`, `ingest`, `enqueue`, `jobs`, `schedule` and `history`: jobs, schedules and the
//! performance history.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context;
use registry::jobs::{ClaimOptions, JobKind, JobState};
use registry::layout::DatasetName;
use registry::schedule::Schedule;
use registry::{ModelName, Registry};
use serde_json::Value;

use crate::cli::{Global, JobKindArg, WorkerArgs};
use crate::output::{print_json, print_table};
use crate::registry_opts::{reader, writer};
use crate::worker;

const HOUR: f64 = 3600.0;
const DAY: f64 = 86400.0;

fn kind(arg: JobKindArg) -> JobKind {
    match arg {
        JobKindArg::Scrape => JobKind::Scrape,
        JobKindArg::Train => JobKind::Train,
    }
}

/// `KEY=VALUE` pairs; VALUE is JSON when it parses as JSON, else a string.
fn parse_params(pairs: &[String]) -> anyhow::Result<BTreeMap<String, Value>> {
    pairs
        .iter()
        .map(|p| {
            let (k, v) = p
                .split_once('=')
                .with_context(|| format!("parameter {p:?} is not KEY=VALUE"))?;
            anyhow::ensure!(!k.is_empty(), "parameter {p:?} has an empty key");
            let value = serde_json::from_str(v).unwrap_or_else(|_| Value::String(v.to_owned()));
            Ok((k.to_owned(), value))
        })
        .collect()
}

fn period(hours_or_days: Option<f64>, unit: f64, flag: &str) -> anyhow::Result<Option<Duration>> {
    hours_or_days
        .map(|v| {
            anyhow::ensure!(
                v.is_finite() && v > 0.0 && v * unit >= 1.0,
                "{flag} must be a positive number, not {v}"
            );
            Ok(Duration::from_secs_f64(v * unit))
        })
        .transpose()
}

pub async fn worker(g: &Global, args: &WorkerArgs) -> anyhow::Result<()> {
    let scrape = period(args.scrape_every_hours, HOUR, "SCRAPE_EVERY_HOURS")?;
    let train = period(args.train_every_days, DAY, "TRAIN_EVERY_DAYS")?;
    let defaults = Schedule::defaults();
    let wanted = Schedule::every(
        scrape.unwrap_or(defaults.entries[0].every()),
        train.unwrap_or(defaults.entries[1].every()),
    );
    let reg = writer(g).await?;
    if !args.no_schedule
        && let Some(current) = reg.schedule().await?
    {
        for (given, kind) in [(scrape, JobKind::Scrape), (train, JobKind::Train)] {
            if let (Some(given), Some(entry)) = (given, current.entry(kind))
                && given != entry.every()
            {
                tracing::warn!(
                    "the registry schedules {} every {}, not {} as configured here; the registry's \
                     schedule applies (change it with `exposr-trainer schedule --{}-every …`)",
                    kind.as_str(),
                    humantime::format_duration(entry.every()),
                    humantime::format_duration(given),
                    kind.as_str()
                );
            }
        }
    }
    let owner = args.id.clone().unwrap_or_else(|| {
        let host = std::env::var("HOSTNAME")
            .ok()
            .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
            .map(|h| h.trim().to_owned())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "worker".to_owned());
        format!("{host}-{}", std::process::id())
    });
    let sources = args.sources.exists().then(|| args.sources.clone());
    let opts = worker::Options {
        claim: ClaimOptions {
            owner,
            lease: args.lease.max(Duration::from_secs(1)),
            max_attempts: args.max_attempts,
        },
        poll: args.poll_interval,
        once: args.once,
        max_jobs: args.max_jobs,
        retry_after: args.retry_after,
        job_timeout: args.job_timeout,
        schedule: !args.no_schedule,
        default_schedule: wanted,
        sources,
        runs_dir: args.runs_dir.clone(),
    };
    let summary = worker::run(reg, opts).await?;
    if g.json {
        return print_json(&summary);
    }
    for id in &summary.enqueued {
        println!("enqueued scheduled job {id}");
    }
    let rows: Vec<Vec<String>> = summary
        .jobs
        .iter()
        .map(|j| {
            ["id", "kind", "state", "attempts"]
                .iter()
                .map(|k| match &j[*k] {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect()
        })
        .collect();
    if rows.is_empty() {
        println!("no job to run");
    } else {
        print_table(&["job", "kind", "state", "attempts"], &rows);
    }
    println!(
        "{} claim{}: {} store round trips, {} lost race{}",
        summary.claims,
        if summary.claims == 1 { "" } else { "s" },
        summary.claim_round_trips,
        summary.lost_races,
        if summary.lost_races == 1 { "" } else { "s" }
    );
    Ok(())
}

pub async fn ingest(
    g: &Global,
    dataset: &str,
    csv: &std::path::Path,
    schema: &std::path::Path,
) -> anyhow::Result<()> {
    let name = DatasetName::new(dataset).with_context(|| format!("dataset name {dataset:?}"))?;
    let reg = writer(g).await?;
    let c = crate::collect::ingest_tabular(&reg, &name, csv, schema).await?;
    if g.json {
        return print_json(&c);
    }
    println!(
        "{}: {} rows, snapshot {} {} ({})",
        c.dataset,
        c.rows,
        c.snapshot,
        c.digest,
        if c.created {
            "new"
        } else {
            "unchanged: the newest snapshot has the same content"
        }
    );
    Ok(())
}

pub async fn enqueue(g: &Global, arg: JobKindArg, params: &[String]) -> anyhow::Result<()> {
    let params = parse_params(params)?;
    let reg = writer(g).await?;
    let job = reg.enqueue(kind(arg), params, "cli").await?;
    if g.json {
        return print_json(&job);
    }
    println!("{}", job.id);
    Ok(())
}

pub async fn jobs(g: &Global, id: Option<uuid::Uuid>) -> anyhow::Result<()> {
    let reg = reader(g)?;
    if let Some(id) = id {
        let job = reg
            .job(&id)
            .await?
            .with_context(|| format!("no job {id}"))?;
        return print_json(&job);
    }
    let mut jobs = Vec::new();
    for id in reg.pending_jobs().await? {
        if let Some(job) = reg.job(&id).await? {
            jobs.push(job);
        }
    }
    if g.json {
        return print_json(&jobs);
    }
    let rows: Vec<Vec<String>> = jobs
        .iter()
        .map(|j| {
            let state = match &j.state {
                JobState::Queued { not_before: None } => "queued".to_owned(),
                JobState::Queued {
                    not_before: Some(t),
                } => format!("queued (retry after {})", t.to_rfc3339()),
                JobState::Running {
                    owner,
                    lease_expires,
                    ..
                } => format!(
                    "running on {owner} (lease to {})",
                    lease_expires.to_rfc3339()
                ),
                JobState::Done { .. } => "done".to_owned(),
                JobState::Failed { .. } => "failed".to_owned(),
            };
            vec![
                j.id.to_string(),
                j.kind.as_str().to_owned(),
                state,
                j.attempts.to_string(),
                j.requested_by.clone(),
            ]
        })
        .collect();
    if rows.is_empty() {
        println!("no pending jobs");
        return Ok(());
    }
    print_table(&["job", "kind", "state", "attempts", "by"], &rows);
    Ok(())
}

pub async fn schedule(
    g: &Global,
    scrape: Option<Duration>,
    train: Option<Duration>,
    train_params: &[String],
) -> anyhow::Result<()> {
    let changing = scrape.is_some() || train.is_some() || !train_params.is_empty();
    let schedule = if changing {
        let reg = writer(g).await?;
        let mut s = reg.schedule().await?.unwrap_or_else(Schedule::defaults);
        let params = parse_params(train_params)?;
        for entry in &mut s.entries {
            let new = match entry.kind {
                JobKind::Scrape => scrape,
                JobKind::Train => train,
            };
            if let Some(every) = new {
                anyhow::ensure!(every.as_secs() >= 1, "a period must be at least 1 s");
                entry.every_seconds = every.as_secs();
            }
            if entry.kind == JobKind::Train && !params.is_empty() {
                entry.params = params.clone();
            }
        }
        s.updated_at = chrono::Utc::now();
        reg.set_schedule(&s).await?;
        s
    } else {
        reader(g)?.schedule().await?.unwrap_or_else(|| {
            eprintln!("the registry has no schedule yet; a worker writes these defaults:");
            Schedule::defaults()
        })
    };
    if g.json {
        return print_json(&schedule);
    }
    let now = chrono::Utc::now();
    let rows: Vec<Vec<String>> = schedule
        .entries
        .iter()
        .map(|e| {
            let next = e.period_start(e.period(now) + 1);
            vec![
                e.kind.as_str().to_owned(),
                humantime::format_duration(e.every()).to_string(),
                next.to_rfc3339(),
                serde_json::to_string(&e.params).unwrap_or_default(),
            ]
        })
        .collect();
    print_table(&["job", "every", "next period starts", "params"], &rows);
    Ok(())
}

pub async fn history(g: &Global, model: Option<&str>, limit: Option<usize>) -> anyhow::Result<()> {
    let reg: Registry = reader(g)?;
    let models = match model {
        Some(m) => vec![ModelName::new(m)?],
        None => reg.models().await?,
    };
    let mut all = Vec::new();
    for m in &models {
        all.extend(reg.history(m, limit).await?);
    }
    if g.json {
        return print_json(&all);
    }
    if all.is_empty() {
        println!("no training runs recorded");
        return Ok(());
    }
    let pct = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{:.2}%", v * 100.0));
    let rows: Vec<Vec<String>> = all
        .iter()
        .map(|h| {
            vec![
                h.at.format("%Y-%m-%d %H:%M:%S").to_string(),
                h.model.to_string(),
                h.version.clone().unwrap_or_else(|| "-".into()),
                h.dataset.clone().unwrap_or_else(|| "-".into()),
                pct(h.accuracy),
                pct(h.int8_accuracy),
                serde_json::to_value(h.decision)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default(),
                h.reason.clone(),
            ]
        })
        .collect();
    print_table(
        &[
            "at (UTC)", "model", "version", "dataset", "accuracy", "int8", "decision", "why",
        ],
        &rows,
    );
    Ok(())
}
