//! Renderings of a manifest in the formats older consumers read: the seeds' `registry.json`
//! entry (Exposr-Core) and CrowdMind's `meta.json`. The manifest stays the one source of truth.

use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::manifest::Manifest;

/// One entry of the seeds' `models/registry.json` list.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RegistryEntry {
    /// Model name.
    pub model: String,
    /// Version.
    pub version: String,
    /// RFC 3339 creation time, seconds precision, `Z`.
    pub timestamp: String,
    /// Samples in all.
    pub dataset_size: u64,
    /// Training samples.
    pub train_size: u64,
    /// Held-out samples the metrics below were measured on.
    pub val_size: u64,
    /// Accuracy.
    pub val_acc: Option<f64>,
    /// ROC AUC.
    pub val_auc: Option<f64>,
    /// Log loss.
    pub val_loss: Option<f64>,
    /// Macro precision.
    pub precision: Option<f64>,
    /// Macro recall.
    pub recall: Option<f64>,
}

impl From<&Manifest> for RegistryEntry {
    fn from(m: &Manifest) -> Self {
        // The seeds report metrics on the held-out split they call "val"; ours is `test`.
        let held_out = if m.metrics.split.as_deref() == Some("val") {
            m.dataset.val_size
        } else {
            m.dataset.test_size
        };
        Self {
            model: m.name.to_string(),
            version: m.version.to_string(),
            timestamp: m
                .created_at
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            dataset_size: m.dataset.size,
            train_size: m.dataset.train_size,
            val_size: held_out,
            val_acc: m.metrics.accuracy,
            val_auc: m.metrics.roc_auc,
            val_loss: m.metrics.loss,
            precision: m.metrics.precision,
            recall: m.metrics.recall,
        }
    }
}

/// CrowdMind's `meta.json` for the version.
pub fn crowdmind_meta(m: &Manifest) -> Value {
    let mapping: Map<String, Value> = m
        .labels
        .iter()
        .enumerate()
        .map(|(i, l)| (i.to_string(), Value::from(l.as_str())))
        .collect();
    let labels: Vec<&str> = m.labels.iter().map(|l| l.as_str()).collect();
    let (mean, scale) = m
        .preprocessing
        .as_ref()
        .map_or((json!([]), json!([])), |p| {
            (json!(p.scaler_mean), json!(p.scaler_scale))
        });
    let feature_count = m
        .signature
        .inputs
        .first()
        .and_then(|t| t.shape.last().copied().flatten())
        .unwrap_or(m.features.feature_names.len() as u64);
    let quantized = m.artifacts.iter().any(|a| a.role.ends_with("int8"));
    json!({
        "version": m.version.as_str(),
        "timestamp": m.created_at.to_rfc3339_opts(chrono::SecondsFormat::Micros, false),
        "dataset": {
            "id": m.dataset.id,
            "hash": m.dataset.snapshot.map(|d| d.hex()),
        },
        "features": {
            "count": feature_count,
            "preprocessing": {
                "scaler_mean": mean,
                "scaler_scale": scale,
                "label_classes": labels,
            },
        },
        "labels": { "count": m.labels.len(), "mapping": mapping },
        "model": {
            "architecture": m.model.architecture,
            "metrics": {
                "test_accuracy": m.metrics.accuracy,
                "precision": m.metrics.precision,
                "recall": m.metrics.recall,
                "f1": m.metrics.f1,
                "confusion_matrix": m.metrics.confusion_matrix,
            },
        },
        "quantization": if quantized {
            json!({ "type": "int8", "input_type": "int8", "output_type": "int8" })
        } else {
            Value::Null
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::tests::sample;

    #[test]
    fn registry_entry_has_the_seed_fields() {
        let m = sample("vit", b"w");
        let v = serde_json::to_value(RegistryEntry::from(&m)).unwrap();
        for field in [
            "model",
            "version",
            "timestamp",
            "dataset_size",
            "train_size",
            "val_size",
            "val_acc",
            "val_auc",
            "val_loss",
            "precision",
            "recall",
        ] {
            assert!(v.get(field).is_some(), "missing {field}");
        }
        assert_eq!(v["timestamp"], "2025-10-29T00:59:08Z");
        assert_eq!(v["val_acc"], 0.95);
        assert_eq!(v["val_size"], 23);
    }

    #[test]
    fn crowdmind_meta_maps_labels_and_metrics() {
        let m = sample("crowdmind", b"w");
        let meta = crowdmind_meta(&m);
        assert_eq!(meta["labels"]["count"], 3);
        assert_eq!(meta["labels"]["mapping"]["1"], "versicolor");
        assert_eq!(meta["features"]["count"], 4);
        assert_eq!(meta["model"]["metrics"]["test_accuracy"], 0.95);
        assert_eq!(
            meta["features"]["preprocessing"]["label_classes"][2],
            "virginica"
        );
    }
}
