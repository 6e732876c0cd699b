//! A model's performance history (`models/<name>/history/<run-id>.json`): one small object per
//! training run, written create-only (so concurrent runs never contend), read back in time order
//! by the CLI and `/metrics`.

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::error::Error;
use crate::layout;
use crate::names::ModelName;
use crate::registry::{Registry, parse};
use crate::store::PutMode;

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

impl Registry {
    /// Appends `entry` to its model's history.
    pub async fn append_history(&self, entry: &HistoryEntry) -> Result<(), Error> {
        let key = layout::history_entry(&entry.model, &entry.run_id)?;
        let bytes = serde_json::to_vec_pretty(entry).expect("serializes");
        self.store()
            .put(&key, Bytes::from(bytes), PutMode::Create)
            .await?;
        Ok(())
    }

    /// The last `limit` runs of `model` (all with `None`), oldest first.
    pub async fn history(
        &self,
        model: &ModelName,
        limit: Option<usize>,
    ) -> Result<Vec<HistoryEntry>, Error> {
        let keys = self.store().list(&layout::history_prefix(model)).await?;
        let skip = limit.map_or(0, |n| keys.len().saturating_sub(n));
        let reads = keys[skip..].iter().map(|key| async move {
            let object = self.store().get(key).await?;
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
        Ok(entries)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::ObjectStoreBackend;
    use std::sync::Arc;

    #[tokio::test]
    async fn history_reads_back_in_time_order_and_limits() {
        let reg = Registry::read_only(Arc::new(ObjectStoreBackend::in_memory()));
        let model = ModelName::new("iris").unwrap();
        let t0 = Utc::now();
        for (i, run) in ["run_b", "run_a", "run_c"].iter().enumerate() {
            let entry = HistoryEntry {
                run_id: (*run).into(),
                at: t0 + chrono::Duration::seconds(i as i64),
                model: model.clone(),
                version: Some(format!("v{i}")),
                dataset: None,
                snapshot: None,
                accuracy: Some(0.9),
                f1_macro: None,
                roc_auc: None,
                int8_accuracy: None,
                decision: Decision::Promoted,
                reason: "first".into(),
                job: None,
            };
            reg.append_history(&entry).await.unwrap();
            assert!(
                reg.append_history(&entry).await.is_err(),
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
}
