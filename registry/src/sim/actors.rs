//! The simulation's actors: each is a plain async function over a [`Registry`] with its own
//! clock, doing what a publisher, a worker, an API trigger, a scheduler, a scraper or the garbage
//! collector does, with errors handled the way those callers handle them (log and go on).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::world::World;
use crate::clock::Clock;
use crate::conformance::sample;
use crate::error::Error;
use crate::gc::GcOptions;
use crate::history::{Decision, HistoryEntry};
use crate::jobs::{ClaimOptions, ClaimStats, JobKind};
use crate::layout::DatasetName;
use crate::manifest::GateDecision;
use crate::names::{Alias, ModelName, Version};
use crate::registry::{Promotion, Published, Registry, VersionChoice};
use crate::samples::NewSample;

fn parse_job(bytes: Option<&Bytes>) -> Option<crate::jobs::Job> {
    bytes.and_then(|b| serde_json::from_slice(b).ok())
}
use crate::schedule::{Entry, Schedule};

/// What every actor gets.
pub struct Ctx {
    /// The shared world (for the oracle's records).
    pub world: Arc<World>,
    /// The actor's registry (its own clock).
    pub reg: Registry,
    /// The actor's clock, for its own pauses.
    pub clock: Arc<dyn Clock>,
    /// The actor's random source.
    pub rng: fastrand::Rng,
    /// Its index.
    pub me: usize,
    /// The lease its claims take.
    pub lease: Duration,
    /// Its pauses are this share of the simulated seconds (1 on virtual time; small on a real
    /// store, so that a run takes seconds).
    pub scale: f64,
}

impl Ctx {
    async fn pause(&mut self, min_s: u64, max_s: u64) {
        let secs = self.rng.u64(min_s..=max_s) as f64 * self.scale;
        self.clock.sleep(Duration::from_secs_f64(secs)).await;
    }
}

/// The attempts a job gets.
const MAX_ATTEMPTS: u32 = 3;

/// A gated publish: compares with production, decides, and promotes in the same index write
/// as the publish, conditional on production not having moved; decides again if it did.
pub async fn publish_gated(
    reg: &Registry,
    model: &ModelName,
    accuracy: f64,
    payload: &[u8],
    by: &str,
) -> Result<Published, Error> {
    let prod = Alias::production();
    for _ in 0..4 {
        let current = match reg.by_alias(model, &prod).await {
            Ok(m) => Some((m.version, m.metrics.accuracy.unwrap_or(0.0))),
            Err(Error::ModelNotFound { .. } | Error::AliasNotFound { .. }) => None,
            Err(e) => return Err(e),
        };
        let promote = accuracy >= 0.3
            && current
                .as_ref()
                .is_none_or(|(_, base)| accuracy > base + 0.01);
        let (mut m, files) = sample(model.as_str(), &[payload, b"labels"]);
        m.created_at = reg.now();
        m.metrics.accuracy = Some(accuracy);
        m.tags.insert("by".into(), by.to_owned());
        m.gate = Some(GateDecision {
            promoted: promote,
            alias: prod.clone(),
            forced: false,
            reason: "simulated gate".into(),
            min_accuracy: 0.3,
            min_gain: 0.01,
            baseline: current.as_ref().map(|c| c.0.clone()),
            baseline_accuracy: current.as_ref().map(|c| c.1),
        });
        let promotion = promote.then(|| Promotion {
            alias: prod.clone(),
            expected: current.map(|c| c.0),
        });
        // A publish that reports an error is rerun once with the same manifest, as a user would.
        let mut result = Err(Error::ReadOnly);
        for _ in 0..2 {
            result = match &promotion {
                Some(p) => {
                    reg.publish_promoted(m.clone(), &files, VersionChoice::Next, p.clone())
                        .await
                }
                None => reg.publish(m.clone(), &files, VersionChoice::Next).await,
            };
            if !matches!(&result, Err(e) if !matches!(e, Error::AliasMoved { .. } | Error::VersionExists { .. }))
            {
                break;
            }
        }
        match result {
            Err(Error::AliasMoved { .. }) => continue,
            other => return other,
        }
    }
    Err(Error::Conflict {
        key: crate::layout::model_index(model),
        attempts: 4,
    })
}

/// Publishes `versions` versions of `model`: through the gate, or plain (numbered, and now and
/// then an exact version name that others may pick too). Payloads come from a small pool, so
/// identical blobs recur, also after retention dropped them.
pub async fn publisher(mut c: Ctx, model: ModelName, gated: bool, versions: usize) {
    for _ in 0..versions {
        c.pause(0, 120).await;
        let payload = format!("{model} weights {}", c.rng.u32(..8));
        let accuracy = c.rng.f64();
        let result = if gated {
            publish_gated(
                &c.reg,
                &model,
                accuracy,
                payload.as_bytes(),
                &format!("p{}", c.me),
            )
            .await
        } else {
            let (mut m, files) = sample(model.as_str(), &[payload.as_bytes(), b"labels"]);
            m.created_at = c.reg.now();
            m.tags.insert("by".into(), format!("p{}", c.me));
            let choice = if c.rng.u8(..4) == 0 {
                VersionChoice::Exact(Version::new(format!("r{}", c.rng.u32(..4))).expect("valid"))
            } else {
                VersionChoice::Next
            };
            publish_rerun(&c.reg, m, &files, choice).await
        };
        if let Ok(p) = result {
            c.world
                .acknowledge(model.as_str(), p.manifest.version.as_str());
        }
    }
}

/// Publishes `m` like a user who reruns a publish that reported an error: once more, with the
/// same manifest. The rerun must not publish it a second time.
async fn publish_rerun(
    reg: &Registry,
    m: crate::Manifest,
    files: &[Bytes],
    choice: VersionChoice,
) -> Result<Published, Error> {
    match reg.publish(m.clone(), files, choice.clone()).await {
        Err(e @ Error::VersionExists { .. }) => Err(e),
        Err(_) => reg.publish(m, files, choice).await,
        ok => ok,
    }
}

/// Claims jobs until the run drains and the queue is empty; runs each with renewals, and train
/// jobs publish through the gate, fenced by a renewal right before.
pub async fn worker(mut c: Ctx, incarnation: u32) {
    let owner = format!("w{}.{incarnation}", c.me);
    let opts = ClaimOptions {
        owner: owner.clone(),
        lease: c.lease,
        max_attempts: MAX_ATTEMPTS,
    };
    loop {
        let mut stats = ClaimStats::default();
        match c.reg.claim_next(&opts, &mut stats).await {
            Ok(Some(claimed)) => {
                c.world
                    .set_lease(c.me, Some((claimed.job.id, claimed.epoch(), owner.clone())));
                let (id, epoch) = (claimed.job.id, claimed.epoch());
                let key = crate::layout::job(&id);
                // The job runs beside a renewal loop that stops it when the lease is lost, as the
                // worker's job thread runs beside its renewals.
                let held = Arc::new(futures::lock::Mutex::new(claimed));
                let (reg, clock, lease) = (c.reg.clone(), c.clock.clone(), c.lease);
                let outcome = {
                    let renewals = renew_until_lost(&reg, &clock, lease, &held);
                    let work = run_job(&mut c, &held);
                    futures::pin_mut!(renewals, work);
                    match futures::future::select(work, renewals).await {
                        futures::future::Either::Left((outcome, _)) => outcome,
                        futures::future::Either::Right((lost, _)) => Err(lost),
                    }
                };
                let claimed = held.lock().await.clone();
                let result = match outcome {
                    Ok(true) => {
                        let r = c
                            .reg
                            .complete(claimed, serde_json::json!({ "by": owner }))
                            .await;
                        if let Err(e) = &r {
                            c.world.reported_failed(
                                &format!("completing job {id}"),
                                e,
                                &key,
                                |b| {
                                    parse_job(b).is_some_and(|j| {
                                        j.attempts == epoch
                                            && matches!(j.state, crate::jobs::JobState::Done { .. })
                                    })
                                },
                            );
                        }
                        r.map(drop)
                    }
                    Ok(false) => {
                        let r = c
                            .reg
                            .fail_attempt(
                                claimed,
                                "simulated failure",
                                MAX_ATTEMPTS,
                                Duration::from_secs_f64(30.0 * c.scale),
                            )
                            .await;
                        if let Err(e) = &r {
                            c.world
                                .reported_failed(&format!("failing job {id}"), e, &key, |b| {
                                    parse_job(b).is_some_and(|j| {
                                        j.attempts == epoch
                                            && j.last_error.as_deref() == Some("simulated failure")
                                            && !matches!(
                                                j.state,
                                                crate::jobs::JobState::Running { .. }
                                            )
                                    })
                                });
                        }
                        r.map(drop)
                    }
                    Err(e) => Err(e),
                };
                if let Err(e) = result {
                    if matches!(e, Error::LeaseLost { .. }) {
                        c.world.lease_lost(id, epoch, &owner);
                    }
                    tracing::debug!("worker {owner}: {e}");
                }
                c.world.set_lease(c.me, None);
            }
            _ if c.world.draining()
                && c.world.producers_done()
                && c.reg.pending_jobs().await.is_ok_and(|p| p.is_empty()) =>
            {
                return;
            }
            Ok(None) => c.pause(5, 40).await,
            Err(_) => c.pause(1, 10).await,
        }
    }
}

/// Renews the lease every third of it until it is lost, or until renewals have failed for so
/// long that less than a third is left by this clock (another machine's clock may be that far
/// ahead): then the job must stop.
async fn renew_until_lost(
    reg: &Registry,
    clock: &Arc<dyn Clock>,
    lease: Duration,
    held: &futures::lock::Mutex<crate::jobs::Claimed>,
) -> Error {
    loop {
        clock.sleep(lease / 3).await;
        let mut claimed = held.lock().await;
        match reg.renew(&mut claimed, lease).await {
            Ok(()) => {}
            Err(e @ Error::LeaseLost { .. }) => return e,
            Err(e) if claimed.lease_nearly_over(clock.now(), lease / 3) => return e,
            Err(_) => {}
        }
    }
}

/// Works on a held job: `Ok(true)` to complete it, `Ok(false)` to fail the attempt, `Err` when
/// the lease was lost. Train jobs publish through the gate, fenced by a renewal right before.
async fn run_job(
    c: &mut Ctx,
    held: &futures::lock::Mutex<crate::jobs::Claimed>,
) -> Result<bool, Error> {
    for _ in 0..c.rng.usize(1..=3) {
        c.pause(10, 250).await;
    }
    let (id, epoch, kind) = {
        let claimed = held.lock().await;
        (claimed.job.id, claimed.epoch(), claimed.job.kind)
    };
    if kind == JobKind::Train {
        // The fence: a renewal right before publishing leaves the whole lease for it.
        {
            let mut claimed = held.lock().await;
            if let Err(e) = c.reg.renew(&mut claimed, c.lease).await {
                if matches!(e, Error::LeaseLost { .. }) {
                    c.world
                        .lease_lost(id, epoch, claimed.owner().unwrap_or_default());
                }
                return Err(e);
            }
        }
        let model = ModelName::new("trained").expect("valid");
        let payload = format!("trained by job {id}");
        let accuracy = c.rng.f64();
        let by = format!("w{}", c.me);
        let published = publish_gated(&c.reg, &model, accuracy, payload.as_bytes(), &by).await;
        let entry = HistoryEntry {
            run_id: format!("run-{}-a{epoch}", &id.simple().to_string()[20..]),
            at: c.reg.now(),
            model: model.clone(),
            version: published
                .as_ref()
                .ok()
                .map(|p| p.manifest.version.to_string()),
            dataset: None,
            snapshot: None,
            accuracy: Some(accuracy),
            f1_macro: None,
            roc_auc: None,
            int8_accuracy: None,
            decision: if published.as_ref().is_ok_and(|p| p.promoted) {
                Decision::Promoted
            } else {
                Decision::Kept
            },
            reason: "simulated".into(),
            job: Some(id),
        };
        match published {
            Ok(p) => c.world.acknowledge("trained", p.manifest.version.as_str()),
            Err(_) => return Ok(false),
        }
        if let Err(e) = c.reg.append_history(&entry).await {
            let key = crate::layout::history_entry(&model, entry.at, &entry.run_id)?;
            let bytes = serde_json::to_vec_pretty(&entry).expect("serializes");
            c.world
                .reported_failed(&format!("appending {}", entry.run_id), &e, &key, |b| {
                    b.is_some_and(|b| b[..] == bytes[..])
                });
            return Ok(false);
        }
    }
    Ok(c.rng.u8(..5) != 0)
}

/// Enqueues `jobs` jobs as the HTTP triggers do.
pub async fn enqueuer(mut c: Ctx, jobs: usize) {
    for _ in 0..jobs {
        c.pause(0, 200).await;
        let kind = if c.rng.bool() {
            JobKind::Train
        } else {
            JobKind::Scrape
        };
        if let Ok(job) = c.reg.enqueue(kind, BTreeMap::new(), "api").await {
            c.world.enqueued(job.id);
        }
    }
}

/// The schedule's enqueuer, run `rounds` times across period boundaries.
pub async fn scheduler(mut c: Ctx, rounds: usize) {
    let schedule = Schedule {
        entries: vec![
            Entry {
                kind: JobKind::Scrape,
                every_seconds: 900,
                params: BTreeMap::new(),
            },
            Entry {
                kind: JobKind::Train,
                every_seconds: 1800,
                params: BTreeMap::new(),
            },
        ],
        updated_at: c.reg.now(),
    };
    for _ in 0..rounds {
        if let Ok(due) = c.reg.enqueue_due(&schedule, c.reg.now()).await {
            for d in due {
                c.world.enqueued(d.id);
            }
        }
        c.pause(60, 700).await;
    }
}

/// Adds overlapping samples from a shared pool of eight images, snapshots now and then, and
/// takes in an upload.
pub async fn scraper(mut c: Ctx, rounds: usize) {
    let dataset = DatasetName::new("photos").expect("valid");
    // Perceptual hashes far apart: distinct images are never near duplicates of each other.
    let phash = |k: u32| fastrand::Rng::with_seed(u64::from(k) + 1000).u64(..);
    for _ in 0..rounds {
        c.pause(0, 150).await;
        let picks: Vec<u32> = (0..c.rng.usize(1..=3)).map(|_| c.rng.u32(..8)).collect();
        let candidates: Vec<NewSample> = picks
            .iter()
            .map(|&k| {
                let image = Bytes::from(format!("jpeg of image {k}"));
                let mut s = NewSample::with_id(
                    c.reg.new_id(),
                    c.reg.now(),
                    image,
                    serde_json::json!({ "image": k }),
                );
                s.record.label = match k % 2 {
                    0 => crate::samples::SampleLabel::Real,
                    _ => crate::samples::SampleLabel::AiGenerated,
                };
                s.record.source = "sim".into();
                s.record.original_sha256 = format!("original {k}");
                s.record.pixels_sha256 = format!("pixels {k}");
                s.record.phash = format!("{:016x}", phash(k));
                s
            })
            .collect();
        let _ = c.reg.add_samples(&dataset, candidates, 6).await;
        if c.rng.u8(..3) == 0 {
            let _ = c.reg.snapshot_samples(&dataset, None).await;
        }
        if c.rng.u8(..4) == 0
            && let Ok(id) = c
                .reg
                .put_pending(
                    &dataset,
                    Bytes::from_static(b"upload"),
                    &serde_json::json!({}),
                )
                .await
        {
            c.pause(0, 30).await;
            let _ = c.reg.remove_pending(&dataset, &id).await;
        }
    }
}

/// Collects garbage `rounds` times, with retention of the newest one to three versions and a
/// grace period of 900 simulated seconds.
pub async fn collector(mut c: Ctx, rounds: usize) {
    for _ in 0..rounds {
        c.pause(200, 900).await;
        let opts = GcOptions {
            keep_last: Some(c.rng.usize(1..=3)),
            grace: Duration::from_secs_f64(900.0 * c.scale),
            dry_run: c.rng.u8(..5) == 0,
        };
        let _ = c.reg.collect_garbage(&opts).await;
    }
}
