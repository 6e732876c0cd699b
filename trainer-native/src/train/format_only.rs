//! The format-only reference score: logistic regression on features that describe only an
//! image's file format (size, quality, compression), with the run's split and seed. A detector
//! data set is confounded when this scores well above chance; the report shows it next to the
//! model's score.

use anyhow::Context;
use serde_json::{Value, json};

use super::config::{Family, TrainConfig};
use super::{Observer, run};
use crate::dataset::Dataset;

/// Test accuracy and AUC on the format-only features, and the majority class's share of the
/// test rows (what "chance" means here).
pub fn score(reference: &Dataset, cfg: &TrainConfig) -> anyhow::Result<Value> {
    struct Quiet;
    impl Observer for Quiet {}
    let mut c = cfg.clone();
    c.model.family = Family::LogisticRegression;
    c.search = Default::default();
    let o = run(reference, &c, &mut Quiet).context("training the format-only reference")?;
    let mut counts = vec![0usize; reference.classes.len()];
    for &i in &o.split.test {
        counts[reference.y[i]] += 1;
    }
    let majority = *counts.iter().max().unwrap_or(&0) as f64 / o.split.test.len().max(1) as f64;
    Ok(json!({
        "features": reference.feature_names, "test_accuracy": o.test.accuracy,
        "roc_auc": o.test.roc_auc, "majority_share": majority,
    }))
}
