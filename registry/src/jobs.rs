//! Job requests kept in the registry (`jobs/<id>.json`): what the HTTP triggers enqueue and
//! workers claim. This module holds the request and state types and enqueueing; claiming with
//! leases builds on them.

use std::collections::BTreeMap;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::Error;
use crate::layout;
use crate::registry::Registry;
use crate::store::PutMode;

/// What a job does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobKind {
    /// Collect images from the configured sources.
    Scrape,
    /// Train and, through the gate, publish.
    Train,
}

/// Where a job is in its life.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum JobState {
    /// Waiting for a worker.
    Queued,
    /// A worker holds it until the lease expires.
    Running {
        /// The worker.
        owner: String,
        /// When another worker may take it over.
        lease_expires: DateTime<Utc>,
    },
    /// Finished.
    Done {
        /// When.
        finished_at: DateTime<Utc>,
    },
    /// Given up on after its attempts.
    Failed {
        /// The last error.
        error: String,
    },
}

/// `jobs/<id>.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    /// The job's id.
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
}

impl Registry {
    /// Writes a new queued job, create-only.
    pub async fn enqueue(
        &self,
        kind: JobKind,
        params: BTreeMap<String, serde_json::Value>,
        requested_by: &str,
    ) -> Result<Job, Error> {
        let job = Job {
            id: Uuid::new_v4(),
            kind,
            params,
            requested_by: requested_by.to_owned(),
            created_at: Utc::now(),
            state: JobState::Queued,
            attempts: 0,
        };
        let bytes = serde_json::to_vec_pretty(&job).expect("a job always serializes");
        self.store()
            .put(&layout::job(&job.id), Bytes::from(bytes), PutMode::Create)
            .await?;
        Ok(job)
    }

    /// The job `id`, if it exists.
    pub async fn job(&self, id: &Uuid) -> Result<Option<Job>, Error> {
        let key = layout::job(id);
        let Some(object) = self.store().get(&key).await? else {
            return Ok(None);
        };
        serde_json::from_slice(&object.bytes)
            .map(Some)
            .map_err(|e| Error::Corrupt {
                key,
                reason: e.to_string(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::ObjectStoreBackend;
    use std::sync::Arc;

    #[tokio::test]
    async fn enqueued_jobs_read_back_queued() {
        let reg = Registry::read_only(Arc::new(ObjectStoreBackend::in_memory()));
        let job = reg
            .enqueue(JobKind::Train, BTreeMap::new(), "api")
            .await
            .unwrap();
        let back = reg.job(&job.id).await.unwrap().unwrap();
        assert_eq!(back, job);
        assert_eq!(back.state, JobState::Queued);
        let json = serde_json::to_value(&back).unwrap();
        assert_eq!(json["state"], "queued");
        assert_eq!(json["kind"], "train");
        assert!(reg.job(&Uuid::new_v4()).await.unwrap().is_none());
    }
}
