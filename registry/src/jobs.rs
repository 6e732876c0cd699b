//! Job requests kept in the registry (`jobs/<id>.json`): what the HTTP triggers and the schedule
//! enqueue, and what workers claim.
//!
//! The protocol, all of it conditional writes on the job object:
//!
//! - **enqueue**: write the marker `jobs/pending/<id>` (so workers list only unfinished jobs),
//!   then the job, create-only, `queued`. Ids are UUIDv7, so the listing is oldest first.
//! - **claim**: read a pending job with its ETag; if it is queued (and not waiting out a retry
//!   delay), or running with an expired lease, write it back `running` with this worker as owner,
//!   a lease expiry and one more attempt, `If-Match` the ETag read. Of any number of workers that
//!   read the same ETag, exactly one write succeeds; the others move on to the next job.
//! - **renew**: the owner rewrites the lease expiry `If-Match` its last ETag while it works; a
//!   failed match means the job was taken over, and the owner must stop.
//! - **finish**: the owner writes `done` with a result, or, after an error, `queued` again with
//!   the error and a retry time, or `failed` once its attempts are used up; then it deletes the
//!   marker. A crash between the two leaves a marker that the next claim removes.
//!
//! The attempt number is the lease's epoch: a claim raises it, so a write by the holder of an
//! older epoch always fails its compare-and-swap, and a holder recognises its own applied writes
//! (same owner, same epoch) when their answers are lost. A marker whose job never appeared is
//! removed only after it is old by its own timestamp, and whoever removes one looks for the job
//! again afterwards, as an enqueuer looks for its marker after writing the job: whichever of the
//! two comes second puts the marker back.
//!
//! Lease expiry compares clocks of different machines; keep leases long against their skew
//! (minutes, renewed every third of the lease), and renew right before publishing.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use uuid::Uuid;

use crate::error::Error;
use crate::layout;
use crate::registry::{BACKEND_ATTEMPTS, Registry};
use crate::store::{ETag, PutMode, StoreError};

/// What a job does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobKind {
    /// Collect data from the configured sources into dataset snapshots.
    Scrape,
    /// Train on the newest snapshots and, through the gate, publish.
    Train,
}

impl JobKind {
    /// The kind as written in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Scrape => "scrape",
            Self::Train => "train",
        }
    }
}

/// Where a job is in its life.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum JobState {
    /// Waiting for a worker (after a failed attempt, not before `not_before`).
    Queued {
        /// A retry waits until then.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        not_before: Option<DateTime<Utc>>,
    },
    /// A worker holds it until the lease expires.
    Running {
        /// The worker.
        owner: String,
        /// When this attempt started.
        started_at: DateTime<Utc>,
        /// When another worker may take it over.
        lease_expires: DateTime<Utc>,
    },
    /// Finished.
    Done {
        /// When.
        finished_at: DateTime<Utc>,
        /// What the job produced (run ids, versions, snapshots).
        #[serde(default)]
        result: serde_json::Value,
    },
    /// Given up on after its attempts.
    Failed {
        /// When.
        finished_at: DateTime<Utc>,
        /// The last error.
        error: String,
    },
}

impl JobState {
    /// True once the job will not run again.
    pub fn is_final(&self) -> bool {
        matches!(self, Self::Done { .. } | Self::Failed { .. })
    }
}

/// `jobs/<id>.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    /// The job's id (UUIDv7: ordered by creation).
    pub id: Uuid,
    /// What to do.
    pub kind: JobKind,
    /// Parameters as given.
    #[serde(default)]
    pub params: BTreeMap<String, serde_json::Value>,
    /// Who asked (e.g. `api`, `schedule`).
    pub requested_by: String,
    /// When it was asked for.
    pub created_at: DateTime<Utc>,
    /// Its state.
    #[serde(flatten)]
    pub state: JobState,
    /// Attempts started so far.
    pub attempts: u32,
    /// The error of the last failed attempt, kept while the job is retried.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// When the job object was last written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<DateTime<Utc>>,
}

impl Job {
    fn new(
        id: Uuid,
        kind: JobKind,
        params: BTreeMap<String, serde_json::Value>,
        by: &str,
        now: DateTime<Utc>,
    ) -> Self {
        Self {
            id,
            kind,
            params,
            requested_by: by.to_owned(),
            created_at: now,
            state: JobState::Queued { not_before: None },
            attempts: 0,
            last_error: None,
            updated_at: None,
        }
    }

    fn to_bytes(&self) -> Bytes {
        Bytes::from(serde_json::to_vec_pretty(self).expect("a job always serializes"))
    }
}

/// How a worker claims: who it is, how long its lease lasts, how many attempts a job gets.
#[derive(Debug, Clone)]
pub struct ClaimOptions {
    /// The worker's name, recorded as the job's owner.
    pub owner: String,
    /// How long a claim (and each renewal) holds the job.
    pub lease: Duration,
    /// Attempts before a job is failed for good (a crashed attempt counts).
    pub max_attempts: u32,
}

/// A job this worker holds, with the ETag of its last write.
#[derive(Debug, Clone)]
pub struct Claimed {
    /// The job as last written.
    pub job: Job,
    etag: ETag,
}

impl Claimed {
    /// The lease's epoch (the attempt number): raised by every claim, so a stale holder's
    /// writes fail.
    pub fn epoch(&self) -> u32 {
        self.job.attempts
    }

    /// True when, by `now`, less than `margin` of the lease is left: a worker whose renewals
    /// keep failing must stop then, because another machine's clock may be `margin` ahead.
    pub fn lease_nearly_over(&self, now: DateTime<Utc>, margin: Duration) -> bool {
        match &self.job.state {
            JobState::Running { lease_expires, .. } => lease_until(now, margin) >= *lease_expires,
            _ => true,
        }
    }

    /// The worker that holds the lease.
    pub fn owner(&self) -> Option<&str> {
        match &self.job.state {
            JobState::Running { owner, .. } => Some(owner),
            _ => None,
        }
    }
}

/// What a pending marker holds: when it was written, by the enqueuer's clock.
#[derive(Debug, Serialize, Deserialize)]
struct Marker {
    created_at: DateTime<Utc>,
}

/// What [`Registry::claim_next`] did, for metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClaimStats {
    /// Store calls made.
    pub round_trips: u32,
    /// Compare-and-swap writes lost to another worker.
    pub lost_races: u32,
}

/// A marker whose job does not appear within this long is left over from a failed enqueue.
const ORPHAN_MARKER_AGE: Duration = Duration::from_secs(300);

fn lease_until(now: DateTime<Utc>, lease: Duration) -> DateTime<Utc> {
    now + chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::MAX)
}

/// The creation time a UUIDv7 carries.
fn created_at_of(id: &Uuid) -> Option<DateTime<Utc>> {
    let (secs, nanos) = id.get_timestamp()?.to_unix();
    DateTime::from_timestamp(secs as i64, nanos)
}

/// The id of the job a schedule enqueues for `kind` in period `period`: a UUIDv7 stamped with the
/// period's start, whose other bits are a hash of the kind, interval and period. Every worker
/// computes the same id, so create-only writes let exactly one of them enqueue it.
pub fn scheduled_job_id(kind: JobKind, every: Duration, period: u64) -> Uuid {
    let start_ms = period.saturating_mul(every.as_millis() as u64);
    let hash = Sha256::digest(format!("{}/{}/{period}", kind.as_str(), every.as_secs()));
    let mut random = [0u8; 10];
    random.copy_from_slice(&hash[..10]);
    uuid::Builder::from_unix_timestamp_millis(start_ms, &random).into_uuid()
}

impl Registry {
    /// Writes a new queued job: its pending marker, then the job, both create-only.
    pub async fn enqueue(
        &self,
        kind: JobKind,
        params: BTreeMap<String, serde_json::Value>,
        requested_by: &str,
    ) -> Result<Job, Error> {
        self.check_fresh_writes()?;
        let job = Job::new(self.new_id(), kind, params, requested_by, self.now());
        self.write_new_job(&job).await?;
        Ok(job)
    }

    /// Enqueues a job with a given id unless a job with that id exists (whatever its state).
    /// Returns the job if this call created it.
    pub async fn enqueue_once(
        &self,
        id: Uuid,
        kind: JobKind,
        params: BTreeMap<String, serde_json::Value>,
        requested_by: &str,
    ) -> Result<Option<Job>, Error> {
        // A fixed id is only enqueued once if create-only writes really are.
        self.check_writable()?;
        if let Some((existing, _)) = self.job_with_etag(&id).await? {
            // The job exists; make sure it can still be found (a marker removed as an orphan
            // while its enqueuer was slow is put back).
            if !existing.state.is_final() {
                self.ensure_marker(&id).await?;
            }
            return Ok(None);
        }
        let job = Job::new(id, kind, params, requested_by, self.now());
        match self.write_new_job(&job).await {
            Ok(()) => Ok(Some(job)),
            Err(Error::Store(StoreError::AlreadyExists { .. })) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn write_new_job(&self, job: &Job) -> Result<(), Error> {
        // The marker first: a job that exists is always findable by workers. A marker whose job
        // never got written is removed by a later claim.
        self.ensure_marker(&job.id).await?;
        self.create_or_adopt(&layout::job(&job.id), job.to_bytes())
            .await?;
        // A claimer may have taken the marker for an orphan's and removed it before the job
        // appeared: look once more, after the job exists.
        self.ensure_marker(&job.id).await
    }

    /// Creates the pending marker of `id` unless it exists.
    async fn ensure_marker(&self, id: &Uuid) -> Result<(), Error> {
        let key = layout::pending_job(id);
        if self.get_retrying(&key).await?.is_some() {
            return Ok(());
        }
        let marker = Marker {
            created_at: self.now(),
        };
        let bytes = Bytes::from(serde_json::to_vec(&marker).expect("a marker serializes"));
        match self
            .retrying(|| self.store().put(&key, bytes.clone(), PutMode::Create))
            .await
        {
            Ok(_) | Err(StoreError::AlreadyExists { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// The job `id`, if it exists.
    pub async fn job(&self, id: &Uuid) -> Result<Option<Job>, Error> {
        Ok(self.job_with_etag(id).await?.map(|(job, _)| job))
    }

    async fn job_with_etag(&self, id: &Uuid) -> Result<Option<(Job, ETag)>, Error> {
        let key = layout::job(id);
        let Some(object) = self.get_retrying(&key).await? else {
            return Ok(None);
        };
        let job = serde_json::from_slice(&object.bytes).map_err(|e| Error::Corrupt {
            key,
            reason: e.to_string(),
        })?;
        Ok(Some((job, object.etag)))
    }

    /// Ids of every job, finished or not, oldest first (a full listing of `jobs/`: for operators
    /// and tests; workers read the pending markers instead).
    pub async fn jobs(&self) -> Result<Vec<Uuid>, Error> {
        let keys = self.retrying(|| self.store().list("jobs/")).await?;
        let mut ids: Vec<Uuid> = keys.iter().filter_map(layout::job_of_key).collect();
        ids.sort();
        Ok(ids)
    }

    /// Ids of jobs not yet finished (queued or running), oldest first.
    pub async fn pending_jobs(&self) -> Result<Vec<Uuid>, Error> {
        let keys = self
            .retrying(|| self.store().list(layout::PENDING_JOBS))
            .await?;
        let mut ids: Vec<Uuid> = keys.iter().filter_map(layout::job_of_pending_key).collect();
        ids.sort();
        Ok(ids)
    }

    /// Removes the marker of a job that never appeared, once the marker is old by its own
    /// timestamp; then looks for the job again and puts the marker back if it appeared meanwhile.
    async fn remove_orphan_marker(&self, id: &Uuid, stats: &mut ClaimStats) -> Result<(), Error> {
        let key = layout::pending_job(id);
        stats.round_trips += 1;
        let Some(object) = self.get_retrying(&key).await? else {
            return Ok(());
        };
        // Markers from before they carried a time: the id's own time.
        let written = serde_json::from_slice::<Marker>(&object.bytes)
            .map(|m| m.created_at)
            .ok()
            .or_else(|| created_at_of(id));
        if written.is_none_or(|t| lease_until(t, ORPHAN_MARKER_AGE) >= self.now()) {
            return Ok(());
        }
        stats.round_trips += 2;
        self.delete_retrying(&key).await?;
        if let Some((job, _)) = self.job_with_etag(id).await?
            && !job.state.is_final()
        {
            stats.round_trips += 1;
            self.ensure_marker(id).await?;
        }
        Ok(())
    }

    /// Claims the oldest claimable job, if any: queued and due, or running with an expired
    /// lease. A job whose lease expired with its attempts used up is failed instead.
    pub async fn claim_next(
        &self,
        opts: &ClaimOptions,
        stats: &mut ClaimStats,
    ) -> Result<Option<Claimed>, Error> {
        self.check_writable()?;
        stats.round_trips += 1;
        let mut ids = self.pending_jobs().await?;
        // Workers that list at the same moment would all race for the oldest job; starting each
        // at a random one of the first few spreads them out, and keeps the order nearly FIFO.
        let head = ids.len().min(8);
        if head > 1 {
            ids[..head].rotate_left(fastrand::usize(..head));
        }
        for id in ids {
            stats.round_trips += 1;
            let Some((job, etag)) = self.job_with_etag(&id).await? else {
                self.remove_orphan_marker(&id, stats).await?;
                continue;
            };
            let now = self.now();
            let takeover = match &job.state {
                JobState::Queued { not_before } if not_before.is_some_and(|t| t > now) => continue,
                JobState::Queued { .. } => None,
                JobState::Running { lease_expires, .. } if *lease_expires > now => continue,
                JobState::Running { owner, .. } => Some(owner.clone()),
                JobState::Done { .. } | JobState::Failed { .. } => {
                    // Finished, but its owner died before removing the marker.
                    stats.round_trips += 1;
                    self.delete_retrying(&layout::pending_job(&id)).await?;
                    continue;
                }
            };
            let mut next = job.clone();
            next.updated_at = Some(now);
            if let Some(owner) = &takeover
                && job.attempts >= opts.max_attempts
            {
                let error = format!(
                    "the lease of {owner} expired on attempt {} of {}; last error: {}",
                    job.attempts,
                    opts.max_attempts,
                    job.last_error
                        .as_deref()
                        .unwrap_or("none (the worker stopped)")
                );
                next.state = JobState::Failed {
                    finished_at: now,
                    error,
                };
                stats.round_trips += 1;
                match self.cas_job(&next, &etag).await? {
                    Some(_) => {
                        stats.round_trips += 1;
                        self.delete_retrying(&layout::pending_job(&id)).await?;
                    }
                    None => stats.lost_races += 1,
                }
                continue;
            }
            next.attempts += 1;
            next.state = JobState::Running {
                owner: opts.owner.clone(),
                started_at: now,
                lease_expires: lease_until(now, opts.lease),
            };
            stats.round_trips += 1;
            match self.cas_job(&next, &etag).await? {
                Some(etag) => {
                    if let Some(owner) = takeover {
                        tracing::warn!(job = %id, %owner, attempt = next.attempts, "took over a job whose lease expired");
                    }
                    return Ok(Some(Claimed { job: next, etag }));
                }
                None => stats.lost_races += 1,
            }
        }
        Ok(None)
    }

    /// Writes `next` over the job as read at `etag`. `Some(tag)`: our bytes are stored (written
    /// now, or by an earlier try whose answer was lost); `None`: another writer's are.
    async fn cas_job(&self, next: &Job, etag: &ETag) -> Result<Option<ETag>, Error> {
        let key = layout::job(&next.id);
        let bytes = next.to_bytes();
        let mut failures = 0;
        loop {
            let backend = match self
                .store()
                .put(&key, bytes.clone(), PutMode::IfMatch(etag.clone()))
                .await
            {
                Ok(tag) => return Ok(Some(tag)),
                Err(StoreError::PreconditionFailed { .. }) => None,
                Err(e @ StoreError::Backend { .. }) => {
                    failures += 1;
                    self.backoff(failures).await;
                    Some(e)
                }
                Err(e) => return Err(e.into()),
            };
            match self.get_retrying(&key).await? {
                Some(o) if o.bytes == bytes => return Ok(Some(o.etag)),
                // Still failing after every try, and not applied.
                _ if failures >= BACKEND_ATTEMPTS => {
                    return Err(backend.map_or(
                        Error::Conflict {
                            key: key.clone(),
                            attempts: failures,
                        },
                        Error::from,
                    ));
                }
                // A backend failure that was not applied: try again.
                Some(o) if backend.is_some() && o.etag == *etag => continue,
                _ => return Ok(None),
            }
        }
    }

    /// Test support: overwrites a job as read at `etag`.
    #[cfg(test)]
    async fn put_job(&self, job: &Job, etag: &ETag) -> Result<ETag, Error> {
        Ok(self
            .store()
            .put(
                &layout::job(&job.id),
                job.to_bytes(),
                PutMode::IfMatch(etag.clone()),
            )
            .await?)
    }

    /// Rewrites `claimed`'s state if this worker still holds the lease.
    async fn rewrite(&self, claimed: &mut Claimed, next: Job) -> Result<(), Error> {
        for _ in 0..BACKEND_ATTEMPTS {
            if let Some(etag) = self.cas_job(&next, &claimed.etag).await? {
                claimed.etag = etag;
                claimed.job = next;
                return Ok(());
            }
            let Some((current, etag)) = self.job_with_etag(&claimed.job.id).await? else {
                return Err(Error::LeaseLost {
                    job: claimed.job.id,
                    detail: "it was deleted".into(),
                });
            };
            if already_written(&current, &next) {
                // An earlier call of ours got this far and its answer was lost.
                claimed.etag = etag;
                claimed.job = current;
                return Ok(());
            }
            if !holds(&current, claimed) {
                let detail = match &current.state {
                    JobState::Running { owner, .. } => format!("{owner} took it over"),
                    other => format!("it is now {}", state_name(other)),
                };
                return Err(Error::LeaseLost {
                    job: claimed.job.id,
                    detail,
                });
            }
            // Still ours: an earlier write of ours (a renewal reported failed) was applied.
            claimed.etag = etag;
            claimed.job = current;
        }
        Err(Error::Conflict {
            key: layout::job(&claimed.job.id),
            attempts: BACKEND_ATTEMPTS,
        })
    }

    /// Extends the lease of a job this worker holds. [`Error::LeaseLost`] means another worker
    /// took it over: stop working on it. Call it right before a step whose effect must be
    /// fenced (publishing), so that the lease has its full length left for that step.
    pub async fn renew(&self, claimed: &mut Claimed, lease: Duration) -> Result<(), Error> {
        self.check_writable()?;
        let mut next = claimed.job.clone();
        let now = self.now();
        let JobState::Running { lease_expires, .. } = &mut next.state else {
            return Err(Error::LeaseLost {
                job: next.id,
                detail: format!("it is {}", state_name(&next.state)),
            });
        };
        *lease_expires = lease_until(now, lease);
        next.updated_at = Some(now);
        self.rewrite(claimed, next).await
    }

    /// Marks a held job done with its result and removes its pending marker.
    pub async fn complete(
        &self,
        mut claimed: Claimed,
        result: serde_json::Value,
    ) -> Result<Job, Error> {
        self.check_writable()?;
        let mut next = claimed.job.clone();
        let now = self.now();
        next.state = JobState::Done {
            finished_at: now,
            result,
        };
        next.updated_at = Some(now);
        self.rewrite(&mut claimed, next).await?;
        self.remove_marker(&claimed.job.id).await;
        Ok(claimed.job)
    }

    /// Removes the marker of a finished job; a failure leaves it to the next claim to remove.
    async fn remove_marker(&self, id: &Uuid) {
        if let Err(e) = self.delete_retrying(&layout::pending_job(id)).await {
            tracing::warn!(job = %id, "removing the pending marker failed (the next claim removes it): {e}");
        }
    }

    /// Records a failed attempt of a held job: queued again after `retry_after` while it has
    /// attempts left, failed for good (marker removed) once it has none.
    pub async fn fail_attempt(
        &self,
        mut claimed: Claimed,
        error: &str,
        max_attempts: u32,
        retry_after: Duration,
    ) -> Result<Job, Error> {
        self.check_writable()?;
        let mut next = claimed.job.clone();
        let now = self.now();
        next.last_error = Some(error.to_owned());
        next.updated_at = Some(now);
        let last = next.attempts >= max_attempts;
        next.state = if last {
            JobState::Failed {
                finished_at: now,
                error: format!(
                    "failed after {} attempt{}: {error}",
                    next.attempts,
                    if next.attempts == 1 { "" } else { "s" }
                ),
            }
        } else {
            JobState::Queued {
                not_before: (!retry_after.is_zero()).then(|| lease_until(now, retry_after)),
            }
        };
        self.rewrite(&mut claimed, next).await?;
        if last {
            self.remove_marker(&claimed.job.id).await;
        }
        Ok(claimed.job)
    }
}

/// True while `current` is still the lease `claimed` holds: running, same owner, same epoch.
fn holds(current: &Job, claimed: &Claimed) -> bool {
    current.attempts == claimed.job.attempts
        && matches!((&current.state, claimed.owner()),
            (JobState::Running { owner, .. }, Some(mine)) if owner == mine)
}

/// True when `current` is the outcome `next` was to write, written by an earlier call of the
/// same holder (same epoch, same kind of state, same error or result).
fn already_written(current: &Job, next: &Job) -> bool {
    if current.attempts != next.attempts || current.last_error != next.last_error {
        return false;
    }
    match (&current.state, &next.state) {
        (JobState::Done { result: a, .. }, JobState::Done { result: b, .. }) => a == b,
        (JobState::Failed { error: a, .. }, JobState::Failed { error: b, .. }) => a == b,
        (JobState::Queued { .. }, JobState::Queued { .. }) => next.last_error.is_some(),
        _ => false,
    }
}

fn state_name(state: &JobState) -> &'static str {
    match state {
        JobState::Queued { .. } => "queued",
        JobState::Running { .. } => "running",
        JobState::Done { .. } => "done",
        JobState::Failed { .. } => "failed",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::ObjectStoreBackend;
    use futures::FutureExt;
    use std::sync::Arc;

    fn registry() -> Registry {
        Registry::open(
            Arc::new(ObjectStoreBackend::in_memory()),
            crate::WritePolicy::Concurrent,
        )
        .now_or_never()
        .expect("the in-memory store answers at once")
        .unwrap()
    }

    fn opts(owner: &str, lease: Duration) -> ClaimOptions {
        ClaimOptions {
            owner: owner.into(),
            lease,
            max_attempts: 2,
        }
    }

    #[tokio::test]
    async fn enqueued_jobs_read_back_queued() {
        let reg = registry();
        let job = reg
            .enqueue(JobKind::Train, BTreeMap::new(), "api")
            .await
            .unwrap();
        let back = reg.job(&job.id).await.unwrap().unwrap();
        assert_eq!(back, job);
        let json = serde_json::to_value(&back).unwrap();
        assert_eq!(json["state"], "queued");
        assert_eq!(json["kind"], "train");
        assert_eq!(reg.pending_jobs().await.unwrap(), vec![job.id]);
        assert!(reg.job(&Uuid::new_v4()).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn a_job_is_claimed_once_and_done_removes_it_from_the_queue() {
        let reg = registry();
        let job = reg
            .enqueue(JobKind::Scrape, BTreeMap::new(), "api")
            .await
            .unwrap();
        let mut stats = ClaimStats::default();
        let a = reg
            .claim_next(&opts("a", Duration::from_secs(60)), &mut stats)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(a.job.id, job.id);
        assert_eq!(a.job.attempts, 1);
        assert_eq!(stats.round_trips, 3, "list, get, put");
        let none = reg
            .claim_next(&opts("b", Duration::from_secs(60)), &mut stats)
            .await
            .unwrap();
        assert!(none.is_none(), "a live lease is not taken over");
        let done = reg.complete(a, serde_json::json!({"ok": 1})).await.unwrap();
        assert!(matches!(done.state, JobState::Done { .. }));
        assert!(reg.pending_jobs().await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn an_expired_lease_is_taken_over_and_the_old_owner_loses_it() {
        let reg = registry();
        reg.enqueue(JobKind::Train, BTreeMap::new(), "api")
            .await
            .unwrap();
        let mut stats = ClaimStats::default();
        let mut a = reg
            .claim_next(&opts("a", Duration::ZERO), &mut stats)
            .await
            .unwrap()
            .unwrap();
        let b = reg
            .claim_next(&opts("b", Duration::from_secs(60)), &mut stats)
            .await
            .unwrap()
            .expect("expired lease is claimable");
        assert_eq!(b.job.attempts, 2);
        let err = reg
            .renew(&mut a, Duration::from_secs(60))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, Error::LeaseLost { detail, .. } if detail.contains("b took it over")),
            "{err}"
        );
        assert!(reg.complete(a, serde_json::Value::Null).await.is_err());
        reg.complete(b, serde_json::Value::Null).await.unwrap();
    }

    #[tokio::test]
    async fn failures_retry_then_fail_with_the_error() {
        let reg = registry();
        let job = reg
            .enqueue(JobKind::Train, BTreeMap::new(), "api")
            .await
            .unwrap();
        let o = opts("w", Duration::from_secs(60));
        let mut stats = ClaimStats::default();
        let c = reg.claim_next(&o, &mut stats).await.unwrap().unwrap();
        let j = reg
            .fail_attempt(c, "boom 1", 2, Duration::from_secs(3600))
            .await
            .unwrap();
        assert!(matches!(
            j.state,
            JobState::Queued {
                not_before: Some(_)
            }
        ));
        assert!(
            reg.claim_next(&o, &mut stats).await.unwrap().is_none(),
            "waits out the retry delay"
        );
        // Make the retry due now.
        let (mut due, etag) = reg.job_with_etag(&job.id).await.unwrap().unwrap();
        due.state = JobState::Queued { not_before: None };
        reg.put_job(&due, &etag).await.unwrap();
        let c = reg.claim_next(&o, &mut stats).await.unwrap().unwrap();
        let j = reg
            .fail_attempt(c, "boom 2", 2, Duration::ZERO)
            .await
            .unwrap();
        let JobState::Failed { error, .. } = &j.state else {
            panic!("{j:?}")
        };
        assert_eq!(error, "failed after 2 attempts: boom 2");
        assert!(reg.pending_jobs().await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_lease_that_expires_on_the_last_attempt_fails_the_job() {
        let reg = registry();
        let job = reg
            .enqueue(JobKind::Train, BTreeMap::new(), "api")
            .await
            .unwrap();
        let mut stats = ClaimStats::default();
        for _ in 0..2 {
            reg.claim_next(&opts("dies", Duration::ZERO), &mut stats)
                .await
                .unwrap()
                .unwrap();
        }
        assert!(
            reg.claim_next(&opts("c", Duration::ZERO), &mut stats)
                .await
                .unwrap()
                .is_none()
        );
        let j = reg.job(&job.id).await.unwrap().unwrap();
        let JobState::Failed { error, .. } = &j.state else {
            panic!("{j:?}")
        };
        assert!(error.contains("lease of dies expired"), "{error}");
    }

    #[tokio::test]
    async fn scheduled_ids_are_stable_and_enqueue_once() {
        let every = Duration::from_secs(12 * 3600);
        let id = scheduled_job_id(JobKind::Scrape, every, 40_000);
        assert_eq!(id, scheduled_job_id(JobKind::Scrape, every, 40_000));
        assert_ne!(id, scheduled_job_id(JobKind::Train, every, 40_000));
        assert_ne!(id, scheduled_job_id(JobKind::Scrape, every, 40_001));
        assert_eq!(
            created_at_of(&id).unwrap().timestamp(),
            40_000 * 12 * 3600,
            "stamped with the period's start"
        );
        let reg = registry();
        let first = reg
            .enqueue_once(id, JobKind::Scrape, BTreeMap::new(), "schedule")
            .await
            .unwrap();
        assert!(first.is_some());
        let second = reg
            .enqueue_once(id, JobKind::Scrape, BTreeMap::new(), "schedule")
            .await
            .unwrap();
        assert!(second.is_none());
    }
}
