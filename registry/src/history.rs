//! A model's performance history (`models/<name>/history/<time>_<run-id>.json`): one small object
//! per training run, written create-only (so concurrent runs never contend), read back in time
//! order by the CLI and `/metrics`. The key starts with the entry's time, so the newest entries
//! are the last listed whatever the run ids look like; keys from before that (`<run-id>.json`)
//! are read too.

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::error::Error;
use crate::layout;
use crate::names::ModelName;
use crate::registry::{Registry, parse};

/// What a run decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// Published and promoted to production by the quality gate (or forced).
    Promoted,
    /// Published, but the gate kept production where it was.
    Kept,
    /// Not trained: no new data since the last run.
    Skipped,
    /// The run failed.
    Failed,
}

/// One run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// The run.
    pub run_id: String,
    /// When it ended.
    pub at: DateTime<Utc>,
    /// The model.
    pub model: ModelName,
    /// The version published, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The dataset (id or `name@snapshot`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset: Option<String>,
    /// Digest of the dataset snapshot trained on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<Digest>,
    /// Test accuracy of the float model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accuracy: Option<f64>,
    /// Macro F1 on test.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub f1_macro: Option<f64>,
    /// ROC AUC on test.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roc_auc: Option<f64>,
    /// Test accuracy of the int8 file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub int8_accuracy: Option<f64>,
    /// The decision.
    pub decision: Decision,
    /// Why, in words (the gate's reason, or why it was skipped or failed).
    pub reason: String,
    /// The job that ran it, if a worker did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<uuid::Uuid>,
}

impl HistoryEntry {
    /// An entry for run `run_id` of `model`, decided `decision` for `reason` at `at`, with no
    /// version, lineage or scores yet (a skipped or failed run has none).
    pub fn new(
        run_id: impl Into<String>,
        at: DateTime<Utc>,
        model: ModelName,
        decision: Decision,
        reason: impl Into<String>,
    ) -> Self {
        Self {
            run_id: run_id.into(),
            at,
            model,
            version: None,
            dataset: None,
            snapshot: None,
            accuracy: None,
            f1_macro: None,
            roc_auc: None,
            int8_accuracy: None,
            decision,
            reason: reason.into(),
            job: None,
        }
    }
}

impl Registry {
    /// Appends `entry` to its model's history. Appending the same entry again (a retry whose
    /// first answer was lost) is not an error; another entry for the same run and time is.
    pub async fn append_history(&self, entry: &HistoryEntry) -> Result<(), Error> {
        self.check_writable()?;
        let key = layout::history_entry(&entry.model, entry.at, &entry.run_id)?;
        let bytes = serde_json::to_vec_pretty(entry).expect("serializes");
        self.create_or_adopt(&key, Bytes::from(bytes)).await?;
        Ok(())
    }

    /// The last `limit` runs of `model` by time (all with `None`), oldest first.
    pub async fn history(
        &self,
        model: &ModelName,
        limit: Option<usize>,
    ) -> Result<Vec<HistoryEntry>, Error> {
        let prefix = layout::history_prefix(model);
        let keys = self.retrying(|| self.store().list(&prefix)).await?;
        // Timed keys sort by time; the few from before them are always read.
        let (timed, legacy): (Vec<_>, Vec<_>) = keys
            .iter()
            .partition(|k| layout::history_key_is_timed(model, k));
        let skip = limit.map_or(0, |n| timed.len().saturating_sub(n));
        let reads = legacy
            .into_iter()
            .chain(timed.into_iter().skip(skip))
            .map(|key| async move {
                let object = self.get_retrying(key).await?;
                object
                    .map(|o| parse::<HistoryEntry>(key, &o.bytes))
                    .transpose()
            });
        let mut entries: Vec<HistoryEntry> = futures::future::try_join_all(reads)
            .await?
            .into_iter()
            .flatten()
            .collect();
        entries.sort_by(|a, b| a.at.cmp(&b.at).then_with(|| a.run_id.cmp(&b.run_id)));
        if let Some(n) = limit {
            entries.drain(..entries.len().saturating_sub(n));
        }
        Ok(entries)
    }

    /// The dataset snapshot the model's newest version was trained on (`latest`'s lineage):
    /// what a retraining compares with to skip a run on unchanged data. However many runs were
    /// skipped since, this stays one index and one manifest read.
    pub async fn last_trained_snapshot(
        &self,
        model: &ModelName,
    ) -> Result<Option<(crate::Version, Digest)>, Error> {
        match self.by_alias(model, &crate::Alias::latest()).await {
            Ok(m) => Ok(m.dataset.snapshot.map(|s| (m.version, s))),
            Err(Error::ModelNotFound { .. } | Error::AliasNotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn history_reads_back_in_time_order_and_limits() {
        let reg = Registry::in_memory_writer().await;
        let model = ModelName::new("iris").unwrap();
        let t0 = Utc::now();
        for (i, run) in ["run_b", "run_a", "run_c"].iter().enumerate() {
            let mut entry = HistoryEntry::new(
                *run,
                t0 + chrono::Duration::seconds(i as i64),
                model.clone(),
                Decision::Promoted,
                "first",
            );
            entry.version = Some(format!("v{i}"));
            entry.accuracy = Some(0.9);
            reg.append_history(&entry).await.unwrap();
            reg.append_history(&entry)
                .await
                .expect("the same entry again is a retry, not an error");
            let mut other = entry.clone();
            other.reason = "different".into();
            assert!(
                reg.append_history(&other).await.is_err(),
                "create-only: a run is recorded once"
            );
        }
        let all = reg.history(&model, None).await.unwrap();
        let runs: Vec<_> = all.iter().map(|e| e.run_id.as_str()).collect();
        assert_eq!(runs, ["run_b", "run_a", "run_c"]);
        assert_eq!(reg.history(&model, Some(1)).await.unwrap().len(), 1);
        let json = serde_json::to_value(&all[0]).unwrap();
        assert_eq!(json["decision"], "promoted");
    }

    /// Run ids of every kind (`skip-…` sorts after `run_…`, `failed-…` before) come back by
    /// time: the last N are the newest N, however many skips were recorded.
    #[tokio::test]
    async fn the_newest_entries_are_the_last_whatever_their_run_ids() {
        let reg = Registry::in_memory_writer().await;
        let model = ModelName::new("iris").unwrap();
        let t0 = Utc::now();
        let entry = |i: i64, run: String, decision| {
            HistoryEntry::new(
                run,
                t0 + chrono::Duration::seconds(i),
                model.clone(),
                decision,
                "",
            )
        };
        for i in 0..60 {
            reg.append_history(&entry(i, format!("skip-{i:03}"), Decision::Skipped))
                .await
                .unwrap();
        }
        reg.append_history(&entry(100, "run_z".into(), Decision::Kept))
            .await
            .unwrap();
        reg.append_history(&entry(101, "failed-a".into(), Decision::Failed))
            .await
            .unwrap();
        let last: Vec<String> = reg
            .history(&model, Some(2))
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.run_id)
            .collect();
        assert_eq!(last, ["run_z", "failed-a"]);
        assert_eq!(reg.history(&model, Some(10)).await.unwrap().len(), 10);
        assert_eq!(reg.history(&model, None).await.unwrap().len(), 62);
    }
}
