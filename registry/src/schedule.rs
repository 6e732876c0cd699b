//! The schedule kept in the registry (`schedule.json`): which jobs the workers enqueue on their
//! own, and how often. Time is cut into periods of each entry's interval counted from the Unix
//! epoch (12 h: 00:00 and 12:00 UTC); the job of a period has an id every worker computes the same
//! way ([`scheduled_job_id`]), and is written create-only, so however many workers start in a
//! period, it is enqueued once. Any cron that runs a worker at least once per period is enough.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::jobs::{Job, JobKind, scheduled_job_id};
use crate::layout;
use crate::registry::Registry;
use crate::store::{PutMode, StoreError};

/// One recurring job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// What to enqueue.
    pub kind: JobKind,
    /// The period, in seconds.
    pub every_seconds: u64,
    /// Parameters of each job.
    #[serde(default)]
    pub params: BTreeMap<String, serde_json::Value>,
}

impl Entry {
    /// The period.
    pub fn every(&self) -> Duration {
        Duration::from_secs(self.every_seconds)
    }

    /// The period `at` falls in.
    pub fn period(&self, at: DateTime<Utc>) -> u64 {
        (at.timestamp().max(0) as u64) / self.every_seconds.max(1)
    }

    /// When period `period` starts.
    pub fn period_start(&self, period: u64) -> DateTime<Utc> {
        let secs = period.saturating_mul(self.every_seconds.max(1));
        DateTime::from_timestamp(secs as i64, 0).unwrap_or(DateTime::<Utc>::MAX_UTC)
    }
}

/// `schedule.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Schedule {
    /// The recurring jobs.
    pub entries: Vec<Entry>,
    /// When it was last written.
    pub updated_at: DateTime<Utc>,
}

impl Schedule {
    /// Seed 001's defaults: scrape every 12 hours, train every 7 days.
    pub fn defaults() -> Self {
        Self::every(
            Duration::from_secs(12 * 3600),
            Duration::from_secs(7 * 86400),
        )
    }

    /// A scrape and a train entry with these periods.
    pub fn every(scrape: Duration, train: Duration) -> Self {
        let entry = |kind, every: Duration| Entry {
            kind,
            every_seconds: every.as_secs().max(1),
            params: BTreeMap::new(),
        };
        Self {
            entries: vec![entry(JobKind::Scrape, scrape), entry(JobKind::Train, train)],
            updated_at: Utc::now(),
        }
    }

    /// The entry of `kind`, if scheduled.
    pub fn entry(&self, kind: JobKind) -> Option<&Entry> {
        self.entries.iter().find(|e| e.kind == kind)
    }
}

/// What [`Registry::enqueue_due`] did for one entry.
#[derive(Debug, Clone)]
pub struct Due {
    /// The entry's kind.
    pub kind: JobKind,
    /// The current period's job id.
    pub id: uuid::Uuid,
    /// The job, if this call enqueued it (otherwise another run already had).
    pub enqueued: Option<Job>,
}

impl Registry {
    /// The schedule, if one was ever written.
    pub async fn schedule(&self) -> Result<Option<Schedule>, Error> {
        let key = layout::schedule();
        let Some(object) = self.get_retrying(&key).await? else {
            return Ok(None);
        };
        serde_json::from_slice(&object.bytes)
            .map(Some)
            .map_err(|e| Error::Corrupt {
                key,
                reason: e.to_string(),
            })
    }

    /// Writes `schedule` if the registry has none yet; returns the one in force.
    pub async fn init_schedule(&self, schedule: &Schedule) -> Result<Schedule, Error> {
        self.check_writable()?;
        let bytes = Bytes::from(serde_json::to_vec_pretty(schedule).expect("serializes"));
        match self.create_or_adopt(&layout::schedule(), bytes).await {
            Ok(_) => Ok(schedule.clone()),
            Err(StoreError::AlreadyExists { key }) => {
                self.schedule().await?.ok_or_else(|| Error::Corrupt {
                    key,
                    reason: "exists but cannot be read back".into(),
                })
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Replaces the schedule.
    pub async fn set_schedule(&self, schedule: &Schedule) -> Result<(), Error> {
        self.check_writable()?;
        let bytes = Bytes::from(serde_json::to_vec_pretty(schedule).expect("serializes"));
        let key = layout::schedule();
        self.retrying(|| self.store().put(&key, bytes.clone(), PutMode::Overwrite))
            .await?;
        Ok(())
    }

    /// Enqueues each entry's job for the period `now` falls in, unless it already exists.
    pub async fn enqueue_due(
        &self,
        schedule: &Schedule,
        now: DateTime<Utc>,
    ) -> Result<Vec<Due>, Error> {
        self.check_writable()?;
        let mut out = Vec::new();
        for entry in &schedule.entries {
            let period = entry.period(now);
            let id = scheduled_job_id(entry.kind, entry.every(), period);
            let mut params = entry.params.clone();
            params.insert(
                "period_start".into(),
                entry.period_start(period).to_rfc3339().into(),
            );
            let enqueued = self
                .enqueue_once(id, entry.kind, params, "schedule")
                .await?;
            out.push(Due {
                kind: entry.kind,
                id,
                enqueued,
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_job_per_period_however_many_calls() {
        let reg = Registry::in_memory_writer().await;
        let s = reg.init_schedule(&Schedule::defaults()).await.unwrap();
        let other = Schedule::every(Duration::from_secs(60), Duration::from_secs(60));
        assert_eq!(
            reg.init_schedule(&other).await.unwrap(),
            s,
            "the first one stays"
        );
        let now = DateTime::parse_from_rfc3339("2026-11-26T13:00:00Z")
            .unwrap()
            .to_utc();
        let first = reg.enqueue_due(&s, now).await.unwrap();
        assert!(first.iter().all(|d| d.enqueued.is_some()));
        let later = now + chrono::Duration::hours(10);
        let again = reg.enqueue_due(&s, later).await.unwrap();
        assert!(again.iter().all(|d| d.enqueued.is_none()), "same periods");
        let next = reg
            .enqueue_due(&s, now + chrono::Duration::hours(12))
            .await
            .unwrap();
        let kinds: Vec<_> = next
            .iter()
            .filter(|d| d.enqueued.is_some())
            .map(|d| d.kind)
            .collect();
        assert_eq!(kinds, vec![JobKind::Scrape], "12 h later only the scrape");
        let job = first[0].enqueued.as_ref().unwrap();
        assert_eq!(job.params["period_start"], "2026-11-26T12:00:00+00:00");
        assert_eq!(reg.pending_jobs().await.unwrap().len(), 3);
    }
}
