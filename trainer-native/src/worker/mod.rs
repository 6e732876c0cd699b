//! `exposr-trainer worker`: enqueue what the schedule says is due, then claim and run queued jobs.
//!
//! A job runs on a thread of its own (training is CPU work) while this task renews its lease every
//! third of the lease. If a renewal finds the job taken over (the lease expired, e.g. after a long
//! pause), the run is cancelled at its next I/O, before it writes anything further. A worker killed
//! at any moment leaves at most a job whose lease expires and which another worker then takes
//! over; SIGTERM or Ctrl-C hands the job back at once. Every attempt writes its log and result to
//! `runs/<kind>_<time>_<job>_a<attempt>/job.json` in the registry (and the local runs folder).

mod retrain;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use chrono::Utc;
use registry::Registry;
use registry::jobs::{ClaimOptions, ClaimStats, Claimed, Job, JobKind, JobState};
use registry::schedule::Schedule;
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::Mutex as AsyncMutex;
use tokio::sync::{oneshot, watch};

use crate::collect::{self, SourcesConfig};

/// How a worker runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// Claim options: owner name, lease, attempts.
    pub claim: ClaimOptions,
    /// Sleep between polls of an empty queue.
    pub poll: Duration,
    /// Stop when the queue has nothing claimable.
    pub once: bool,
    /// Stop after this many jobs.
    pub max_jobs: Option<usize>,
    /// Delay before the first retry of a failed job; doubled for each further attempt.
    pub retry_after: Duration,
    /// Longest an attempt may run; past it the attempt is cancelled and counts as failed.
    pub job_timeout: Duration,
    /// Enqueue scheduled jobs that are due.
    pub schedule: bool,
    /// The schedule to write if the registry has none.
    pub default_schedule: Schedule,
    /// `config/sources.yaml`, for scrape jobs.
    pub sources: Option<PathBuf>,
    /// Local run folders.
    pub runs_dir: PathBuf,
}

/// What a worker run did.
#[derive(Debug, Default, Serialize)]
pub struct Summary {
    /// Scheduled jobs this worker enqueued.
    pub enqueued: Vec<String>,
    /// Jobs finished: id, kind, final state.
    pub jobs: Vec<Value>,
    /// Claims attempted and their store round trips.
    pub claims: u32,
    /// Store calls spent claiming.
    pub claim_round_trips: u32,
    /// Claim races lost to other workers.
    pub lost_races: u32,
}

/// The log of one attempt, also mirrored to tracing.
#[derive(Clone, Default)]
pub struct JobLog(Arc<Mutex<Vec<String>>>);

impl JobLog {
    /// Appends a line.
    pub fn line(&self, text: impl Into<String>) {
        let text = text.into();
        tracing::info!("{text}");
        let stamped = format!("{} {text}", Utc::now().to_rfc3339());
        self.0.lock().expect("log lock").push(stamped);
    }

    fn lines(&self) -> Vec<String> {
        self.0.lock().expect("log lock").clone()
    }
}

/// Runs the worker until the queue is empty (`once`), `max_jobs` are done, or a signal arrives.
pub async fn run(reg: Registry, opts: Options) -> anyhow::Result<Summary> {
    let stop = shutdown_signal();
    let mut summary = Summary::default();
    let schedule = if opts.schedule {
        Some(
            reg.init_schedule(&opts.default_schedule)
                .await
                .context("reading the schedule")?,
        )
    } else {
        None
    };
    loop {
        if let Some(schedule) = &schedule {
            for due in reg.enqueue_due(schedule, Utc::now()).await? {
                if let Some(job) = due.enqueued {
                    tracing::info!(job = %job.id, kind = job.kind.as_str(), "enqueued the scheduled job");
                    summary.enqueued.push(job.id.to_string());
                }
            }
        }
        let mut stats = ClaimStats::default();
        let claimed = reg.claim_next(&opts.claim, &mut stats).await?;
        summary.claims += 1;
        summary.claim_round_trips += stats.round_trips;
        summary.lost_races += stats.lost_races;
        match claimed {
            Some(claimed) => {
                // A job that could not be finished (its lease lost, the store failing) is left
                // to its lease: another worker takes it over. This worker goes on.
                match run_claimed(&reg, claimed, &opts, &stop).await {
                    Ok(job) => summary.jobs.push(json!({
                        "id": job.id, "kind": job.kind, "attempts": job.attempts,
                        "state": serde_json::to_value(&job.state)?["state"],
                    })),
                    Err(e) => tracing::error!("finishing the job failed: {e:#}"),
                }
                if *stop.borrow() {
                    break;
                }
                if opts.max_jobs.is_some_and(|n| summary.jobs.len() >= n) {
                    break;
                }
            }
            None if opts.once => break,
            None => {
                let mut stop = stop.clone();
                tokio::select! {
                    _ = tokio::time::sleep(opts.poll) => {}
                    _ = stop.wait_for(|s| *s) => break,
                }
            }
        }
    }
    Ok(summary)
}

/// A flag that turns true on SIGTERM or Ctrl-C.
fn shutdown_signal() -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        #[cfg(unix)]
        let term = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let term = std::future::pending::<()>();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term => {}
        }
        tracing::warn!("stopping: the current job is handed back to the queue");
        let _ = tx.send(true);
    });
    rx
}

/// Runs one claimed job to its end (done, retried, failed, handed back or lost).
async fn run_claimed(
    reg: &Registry,
    claimed: Claimed,
    opts: &Options,
    stop: &watch::Receiver<bool>,
) -> anyhow::Result<Job> {
    let job = claimed.job.clone();
    // Shared with the job thread, whose fence renews the lease right before it publishes.
    let held = Arc::new(AsyncMutex::new(claimed));
    let started = Utc::now();
    // `<kind>_<time>_<job>_a<attempt>`: sorted by time, and `/status` reads the time of the last
    // scrape from the key alone.
    let run_id = registry::RunId::job_attempt(job.kind, started, &job.id, job.attempts);
    let log = JobLog::default();
    log.line(format!(
        "{} claimed {} job {} (attempt {} of {}, requested by {})",
        opts.claim.owner,
        job.kind.as_str(),
        job.id,
        job.attempts,
        opts.claim.max_attempts,
        job.requested_by
    ));
    let clock = Instant::now();
    let (cancel_tx, cancel_rx) = oneshot::channel::<()>();
    let (done_tx, mut done_rx) = oneshot::channel();
    let ctx = Context {
        reg: reg.clone(),
        job: job.clone(),
        sources: opts.sources.clone(),
        runs_dir: opts.runs_dir.clone(),
        log: log.clone(),
        fence: Arc::new(LeaseFence {
            reg: reg.clone(),
            held: held.clone(),
            lease: opts.claim.lease,
        }),
    };
    std::thread::Builder::new()
        .name(format!("job-{}", job.id))
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            let result = match rt {
                Ok(rt) => rt.block_on(async {
                    tokio::select! {
                        r = execute(&ctx) => Some(r),
                        _ = cancel_rx => None,
                    }
                }),
                Err(e) => Some(Err(e.into())),
            };
            let _ = done_tx.send(result);
        })
        .context("starting the job thread")?;

    let renew_every = opts.claim.lease / 3;
    let mut stop = stop.clone();
    let deadline = tokio::time::sleep(opts.job_timeout);
    tokio::pin!(deadline);
    let outcome = loop {
        tokio::select! {
            r = &mut done_rx => break Outcome::Finished(r.ok().flatten()),
            _ = &mut deadline => {
                let _ = cancel_tx.send(());
                break Outcome::Finished(Some(Err(anyhow::anyhow!(
                    "the attempt ran longer than the job timeout ({}) and was cancelled",
                    humantime::format_duration(opts.job_timeout)
                ))));
            }
            _ = tokio::time::sleep(renew_every) => {
                let mut claimed = held.lock().await;
                let renewed = reg.renew(&mut claimed, opts.claim.lease).await;
                match after_renewal(renewed, &claimed, Utc::now(), opts.claim.lease) {
                    Renewal::Held => {}
                    Renewal::Retry(why) => tracing::warn!("renewing the lease failed, retrying: {why}"),
                    Renewal::Lost(why) => {
                        let _ = cancel_tx.send(());
                        break Outcome::Lost(why);
                    }
                }
            }
            _ = stop.wait_for(|s| *s) => {
                let _ = cancel_tx.send(());
                break Outcome::Stopped;
            }
        }
    };

    let claimed = held.lock().await.clone();
    let (final_job, record) = match outcome {
        Outcome::Finished(Some(Ok(result))) => {
            log.line(format!("done in {:.2} s", clock.elapsed().as_secs_f64()));
            let job = reg.complete(claimed, result.clone()).await?;
            (job, json!({ "outcome": "done", "result": result }))
        }
        Outcome::Finished(Some(Err(err))) => {
            let error = format!("{err:#}");
            log.line(format!("failed: {error}"));
            let delay = retry_delay(opts.retry_after, job.attempts);
            let job = reg
                .fail_attempt(claimed, &error, opts.claim.max_attempts, delay)
                .await?;
            if let JobState::Queued { not_before } = &job.state {
                log.line(match not_before {
                    Some(t) => format!("will be retried after {}", t.to_rfc3339()),
                    None => "will be retried".to_owned(),
                });
            }
            (job, json!({ "outcome": "error", "error": error }))
        }
        Outcome::Finished(None) => anyhow::bail!("job thread ended without a result"),
        Outcome::Stopped => {
            log.line("stopped by a signal; handing the job back");
            let job = reg
                .fail_attempt(
                    claimed,
                    "the worker was stopped",
                    opts.claim.max_attempts,
                    Duration::ZERO,
                )
                .await?;
            (job, json!({ "outcome": "stopped" }))
        }
        Outcome::Lost(why) => {
            log.line(format!("abandoned: {why}"));
            (
                job.clone(),
                json!({ "outcome": "lease_lost", "error": why }),
            )
        }
    };
    let mut record = record;
    record["job"] = json!(job.id);
    record["kind"] = json!(job.kind);
    record["attempt"] = json!(job.attempts);
    record["owner"] = json!(opts.claim.owner);
    record["started_at"] = json!(started);
    record["finished_at"] = json!(Utc::now());
    record["seconds"] = json!(clock.elapsed().as_secs_f64());
    record["log"] = json!(log.lines());
    write_record(reg, &opts.runs_dir, &run_id, &record).await?;
    Ok(final_job)
}

/// What a worker does after trying to renew its lease.
#[derive(Debug, PartialEq)]
enum Renewal {
    /// The lease is renewed, or still long enough to try again.
    Held,
    /// The renewal failed in the store; try again at the next tick.
    Retry(String),
    /// Give the job up (stop working on it now): another worker has it, or may take it.
    Lost(String),
}

/// The claim decision after a renewal: a lease taken over is lost at once; a store failure is
/// retried until the lease is within a third of its end (another machine's clock may be ahead of
/// ours by that much, and take the job over).
fn after_renewal(
    renewed: Result<(), registry::Error>,
    claimed: &Claimed,
    now: chrono::DateTime<Utc>,
    lease: Duration,
) -> Renewal {
    match renewed {
        Ok(()) => Renewal::Held,
        Err(e @ registry::Error::LeaseLost { .. }) => Renewal::Lost(e.to_string()),
        Err(e) if claimed.lease_nearly_over(now, lease / 3) => {
            Renewal::Lost(format!("the lease expired while renewals failed: {e}"))
        }
        Err(e) => Renewal::Retry(e.to_string()),
    }
}

/// How long a failed attempt waits before it is retried: `base`, doubled per earlier attempt
/// (at most 2^10 times).
fn retry_delay(base: Duration, attempts: u32) -> Duration {
    base.saturating_mul(1 << attempts.saturating_sub(1).min(10))
}

enum Outcome {
    Finished(Option<anyhow::Result<Value>>),
    Stopped,
    Lost(String),
}

async fn write_record(
    reg: &Registry,
    runs_dir: &std::path::Path,
    run_id: &registry::RunId,
    record: &Value,
) -> anyhow::Result<()> {
    let bytes = serde_json::to_vec_pretty(record)?;
    let dir = runs_dir.join(run_id.as_str());
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::write(dir.join("job.json"), &bytes)
        .with_context(|| format!("writing {}", dir.join("job.json").display()))?;
    reg.put_run_record(run_id, "job.json", bytes.into())
        .await
        .with_context(|| format!("storing the record of run {run_id}"))?;
    Ok(())
}

/// What a job's code gets.
pub struct Context {
    reg: Registry,
    job: Job,
    sources: Option<PathBuf>,
    runs_dir: PathBuf,
    log: JobLog,
    fence: Arc<dyn crate::job::Fence>,
}

/// The fence of a held job: a renewal, so that the lease is whole when the publish starts and a
/// worker whose lease was taken over stops before publishing.
struct LeaseFence {
    reg: Registry,
    held: Arc<AsyncMutex<Claimed>>,
    lease: Duration,
}

impl crate::job::Fence for LeaseFence {
    fn check(&self) -> futures::future::BoxFuture<'_, anyhow::Result<()>> {
        Box::pin(async move {
            let mut claimed = self.held.lock().await;
            self.reg.renew(&mut claimed, self.lease).await?;
            Ok(())
        })
    }
}

async fn execute(ctx: &Context) -> anyhow::Result<Value> {
    match ctx.job.kind {
        JobKind::Scrape => scrape(ctx).await,
        JobKind::Train => retrain::run(ctx).await,
    }
}

/// Most images one scrape job may fetch per query (`limit`).
const MAX_SCRAPE_LIMIT: u64 = 10_000;

async fn scrape(ctx: &Context) -> anyhow::Result<Value> {
    let params = &ctx.job.params;
    for key in params.keys() {
        anyhow::ensure!(
            ["source", "limit", "period_start"].contains(&key.as_str()),
            "unknown scrape parameter {key:?} (known: source, limit)"
        );
    }
    let only = match params.get("source") {
        None => None,
        Some(Value::String(s)) => Some(s.as_str()),
        Some(other) => anyhow::bail!("parameter source must be a string, not {other}"),
    };
    let limit = match params.get("limit") {
        None => None,
        Some(v) => Some(
            v.as_u64()
                .filter(|n| (1..=MAX_SCRAPE_LIMIT).contains(n))
                .with_context(|| {
                    format!(
                        "parameter limit must be an integer from 1 to {MAX_SCRAPE_LIMIT}, not {v}"
                    )
                })?,
        ),
    };
    let path = ctx.sources.as_deref().context(
        "no sources config: pass --sources (or set EXPOSR_SOURCES) to a config/sources.yaml",
    )?;
    let config = SourcesConfig::load(path)?;
    let log = ctx.log.clone();
    let report = collect::scrape(&ctx.reg, &config, only, limit, &mut |l| log.line(l)).await?;
    Ok(serde_json::to_value(report)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use registry::jobs::JobKind;
    use registry::store::ObjectStoreBackend;

    async fn claimed(lease: Duration) -> (Registry, Claimed) {
        let reg = Registry::open(
            Arc::new(ObjectStoreBackend::in_memory()),
            registry::WritePolicy::Concurrent,
        )
        .await
        .unwrap();
        reg.enqueue(JobKind::Train, Default::default(), "test")
            .await
            .unwrap();
        let opts = registry::jobs::ClaimOptions {
            owner: "w1".into(),
            lease,
            max_attempts: 3,
        };
        let mut stats = Default::default();
        let c = reg
            .claim_next(&opts, &mut stats)
            .await
            .unwrap()
            .expect("a job");
        (reg, c)
    }

    #[tokio::test]
    async fn a_renewal_keeps_retries_or_gives_up_the_job() {
        let lease = Duration::from_secs(60);
        let (_, c) = claimed(lease).await;
        let now = Utc::now();
        // Any error but a lost lease is the store failing.
        let store_error = || {
            Err(registry::Error::BlobNotFound {
                digest: registry::Digest::of(b"503"),
            })
        };
        assert_eq!(after_renewal(Ok(()), &c, now, lease), Renewal::Held);
        assert!(matches!(
            after_renewal(store_error(), &c, now, lease),
            Renewal::Retry(_)
        ));
        // Within a third of the lease's end, a failing store means giving the job up.
        let late = now + chrono::Duration::seconds(45);
        match after_renewal(store_error(), &c, late, lease) {
            Renewal::Lost(why) => assert!(why.contains("expired while renewals failed"), "{why}"),
            other => panic!("{other:?}"),
        }
        let lost = Err(registry::Error::LeaseLost {
            job: c.job.id,
            detail: "taken over".into(),
        });
        assert!(matches!(
            after_renewal(lost, &c, now, lease),
            Renewal::Lost(_)
        ));
    }

    #[test]
    fn retries_back_off_exponentially_and_cap() {
        let base = Duration::from_secs(30);
        assert_eq!(retry_delay(base, 0), base);
        assert_eq!(retry_delay(base, 1), base);
        assert_eq!(retry_delay(base, 3), base * 4);
        assert_eq!(retry_delay(base, 50), base * 1024);
        assert_eq!(retry_delay(Duration::MAX, 5), Duration::MAX);
    }
}
