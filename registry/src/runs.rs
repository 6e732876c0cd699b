//! Run ids and run records: `runs/<run-id>/<file>`, what `/status` and `/metrics` read to say when
//! the last training or scrape ran.
//!
//! A run id starts with its kind and the time it started (`run_20261202_190000_1a2b3c4d` for a
//! training run, `scrape_20261202_190000_<job>_a1` for a worker's attempt at a scrape job), so the
//! time of the newest run of a kind is read from the keys alone, without opening a record.

use std::fmt;

use bytes::Bytes;
use chrono::{DateTime, NaiveDateTime, Utc};

use crate::jobs::JobKind;
use crate::layout::{self, Key};
use crate::names::NameError;
use crate::registry::MAX_CAS_ATTEMPTS;
use crate::store::{PutMode, StoreError};
use crate::{Error, Registry, Version};

/// The time format inside a run id (second precision, UTC).
const STAMP: &str = "%Y%m%d_%H%M%S";

/// What a run did: a training run of the pipeline, or a worker's attempt at a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunKind {
    /// One pass of the training pipeline (`run_…`), from the CLI or a train job.
    Training,
    /// A worker's attempt at a job (`train_…`, `scrape_…`).
    Job(JobKind),
}

impl RunKind {
    /// The prefix of run ids of this kind.
    pub fn prefix(self) -> &'static str {
        match self {
            Self::Training => "run",
            Self::Job(kind) => kind.as_str(),
        }
    }
}

/// A checked run id: `<kind>_<YYYYmmdd_HHMMSS>_<suffix>`, safe as one key segment.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct RunId(String);

impl RunId {
    /// A fresh id for a training run started at `at`.
    pub fn training(at: DateTime<Utc>) -> Self {
        let unique = uuid::Uuid::new_v4().simple().to_string();
        Self(format!(
            "{}_{}_{}",
            RunKind::Training.prefix(),
            at.format(STAMP),
            &unique[..8]
        ))
    }

    /// The id of attempt `attempt` at job `job`, started at `at`.
    pub fn job_attempt(kind: JobKind, at: DateTime<Utc>, job: &uuid::Uuid, attempt: u32) -> Self {
        Self(format!(
            "{}_{}_{}_a{attempt}",
            kind.as_str(),
            at.format(STAMP),
            &job.simple().to_string()[20..]
        ))
    }

    /// Parses an id as stored; refuses anything that is not one segment of `<kind>_<time>_…`.
    pub fn parse(text: &str) -> Result<Self, NameError> {
        let id = Self(
            Version::new(text)
                .map_err(|e| NameError::new("run id", text, e.to_string()))?
                .to_string(),
        );
        match id.started_at() {
            Some(_) => Ok(id),
            None => Err(NameError::new(
                "run id",
                text,
                "is not <kind>_<YYYYmmdd_HHMMSS>_<suffix>",
            )),
        }
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether the run is of `kind`.
    pub fn is(&self, kind: RunKind) -> bool {
        self.0
            .strip_prefix(kind.prefix())
            .is_some_and(|rest| rest.starts_with('_'))
    }

    /// When the run started, from the id alone.
    pub fn started_at(&self) -> Option<DateTime<Utc>> {
        let (_, rest) = self.0.split_once('_')?;
        NaiveDateTime::parse_from_str(rest.get(..15)?, STAMP)
            .ok()
            .map(|t| t.and_utc())
    }
}

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for RunId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// The run a `runs/<run-id>/…` key belongs to, if it is one.
fn run_of(key: &Key) -> Option<RunId> {
    let rest = key.as_str().strip_prefix(layout::RUNS)?;
    RunId::parse(rest.split('/').next()?).ok()
}

impl Registry {
    /// Stores one file of a run's record (`runs/<run-id>/<file>`), create-only; the same bytes
    /// again are a retry, not an error. Returns the key.
    pub async fn put_run_record(
        &self,
        run: &RunId,
        file: &str,
        bytes: Bytes,
    ) -> Result<Key, Error> {
        self.check_writable()?;
        let key = layout::run_object(run.as_str(), &[file])?;
        self.create_or_adopt(&key, bytes).await?;
        // The pointer is a cache of the listing: a failure to move it is logged, not fatal, and
        // `last_run` still finds the run by listing when the pointer is missing.
        if let Err(e) = self.note_last_run(run).await {
            tracing::warn!("could not update the last-run pointer for {run}: {e}");
        }
        Ok(key)
    }

    /// Moves `catalog/last-run/<kind>` to `run` unless it already names a newer run: a
    /// compare-and-swap loop, so racing writers leave the newest one there (a write applied but
    /// reported failed is found on the next read).
    async fn note_last_run(&self, run: &RunId) -> Result<(), Error> {
        let Some(prefix) = run.as_str().split('_').next() else {
            return Ok(());
        };
        let key = layout::last_run_pointer(prefix);
        let ours = (run.started_at(), run.clone());
        for _ in 0..MAX_CAS_ATTEMPTS {
            let current = self.get_retrying(&key).await?;
            let mode = match &current {
                Some(object) => {
                    let named = std::str::from_utf8(&object.bytes)
                        .ok()
                        .and_then(|t| RunId::parse(t.trim()).ok());
                    if named.is_some_and(|id| (id.started_at(), id) >= ours) {
                        return Ok(());
                    }
                    PutMode::IfMatch(object.etag.clone())
                }
                None => PutMode::Create,
            };
            let bytes = Bytes::from(run.as_str().to_owned());
            match self.store().put(&key, bytes, mode).await {
                Ok(_) => return Ok(()),
                Err(StoreError::AlreadyExists { .. } | StoreError::PreconditionFailed { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// A stored file of a run's record, if there is one.
    pub async fn run_record(&self, run: &RunId, file: &str) -> Result<Option<Bytes>, Error> {
        let key = layout::run_object(run.as_str(), &[file])?;
        Ok(self.get_retrying(&key).await?.map(|o| o.bytes))
    }

    /// Every run of `kind` with a stored record, oldest first.
    pub async fn runs(&self, kind: RunKind) -> Result<Vec<RunId>, Error> {
        // Stores list by whole key segments (object_store), so the kind is filtered here.
        let mut ids: Vec<RunId> = self
            .store()
            .list(layout::RUNS)
            .await?
            .iter()
            .filter_map(run_of)
            .filter(|id| id.is(kind))
            .collect();
        ids.sort_by_key(|id| (id.started_at(), id.clone()));
        ids.dedup();
        Ok(ids)
    }

    /// The newest run of `kind` and when it started, if any ran: one read of the kind's pointer,
    /// or a listing of `runs/` where there is none yet (registries from before the pointer).
    pub async fn last_run(&self, kind: RunKind) -> Result<Option<(RunId, DateTime<Utc>)>, Error> {
        let pointer = self
            .get_retrying(&layout::last_run_pointer(kind.prefix()))
            .await?;
        let named = pointer.as_ref().and_then(|o| {
            let id = RunId::parse(std::str::from_utf8(&o.bytes).ok()?.trim()).ok()?;
            let at = id.started_at()?;
            id.is(kind).then_some((id, at))
        });
        if named.is_some() {
            return Ok(named);
        }
        Ok(self
            .runs(kind)
            .await?
            .into_iter()
            .filter_map(|id| id.started_at().map(|t| (id, t)))
            .max_by_key(|(id, t)| (*t, id.clone())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn ids_carry_kind_and_time_and_refuse_anything_else() {
        let at = Utc.with_ymd_and_hms(2026, 12, 2, 19, 0, 5).unwrap();
        let t = RunId::training(at);
        assert!(t.is(RunKind::Training) && !t.is(RunKind::Job(JobKind::Train)));
        assert_eq!(t.started_at(), Some(at));
        let job = uuid::Uuid::new_v4();
        let s = RunId::job_attempt(JobKind::Scrape, at, &job, 2);
        assert!(s.is(RunKind::Job(JobKind::Scrape)) && s.as_str().ends_with("_a2"));
        assert_eq!(RunId::parse(s.as_str()).unwrap(), s);
        for bad in [
            "",
            "run",
            "run_2026",
            "../run_20261202_190005_x",
            "run_20261302_190005_x",
        ] {
            assert!(RunId::parse(bad).is_err(), "{bad:?} parsed");
        }
        // "running_…" is not a training run.
        assert!(!RunId("running_20261202_190005_x".into()).is(RunKind::Training));
    }

    #[tokio::test]
    async fn the_last_run_of_a_kind_is_read_from_the_keys() {
        let reg = Registry::in_memory_writer().await;
        assert_eq!(reg.last_run(RunKind::Training).await.unwrap(), None);
        let t = |h| Utc.with_ymd_and_hms(2026, 12, 2, h, 0, 0).unwrap();
        let job = uuid::Uuid::new_v4();
        let runs = [
            RunId::training(t(9)),
            RunId::training(t(11)),
            RunId::job_attempt(JobKind::Scrape, t(12), &job, 1),
            RunId::training(t(10)),
        ];
        for r in &runs {
            for file in ["record.json", "job.json"] {
                reg.put_run_record(r, file, Bytes::from_static(b"{}"))
                    .await
                    .unwrap();
            }
        }
        // The same bytes again are a retry; other bytes are a conflict.
        reg.put_run_record(&runs[0], "record.json", Bytes::from_static(b"{}"))
            .await
            .unwrap();
        assert!(
            reg.put_run_record(&runs[0], "record.json", Bytes::from_static(b"[]"))
                .await
                .is_err()
        );
        assert_eq!(
            reg.last_run(RunKind::Training).await.unwrap(),
            Some((runs[1].clone(), t(11)))
        );
        assert_eq!(reg.runs(RunKind::Training).await.unwrap().len(), 3);
        // The pointer named the newest training run although an older one was stored last; a
        // registry without it (from before the pointer) is answered by listing.
        let pointer = layout::last_run_pointer("run");
        assert_eq!(
            &reg.store().get(&pointer).await.unwrap().unwrap().bytes[..],
            runs[1].as_str().as_bytes()
        );
        reg.store().delete(&pointer).await.unwrap();
        assert_eq!(
            reg.last_run(RunKind::Training).await.unwrap(),
            Some((runs[1].clone(), t(11)))
        );
        assert_eq!(
            reg.last_run(RunKind::Job(JobKind::Scrape)).await.unwrap(),
            Some((runs[2].clone(), t(12)))
        );
        assert_eq!(
            reg.last_run(RunKind::Job(JobKind::Train)).await.unwrap(),
            None
        );
        assert_eq!(
            reg.run_record(&runs[3], "job.json")
                .await
                .unwrap()
                .as_deref(),
            Some(&b"{}"[..])
        );
    }
}
