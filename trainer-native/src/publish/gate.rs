//! The quality gate: a new version becomes `production` only if it meets the minimum accuracy,
//! beats the current production version on the same test rows by the minimum gain, and loses no
//! more than allowed to int8 quantization; `--force` promotes whatever the gate says.

use anyhow::Context;
use registry::manifest::GateDecision;
use registry::{Alias, ModelName, Registry, Version};

use crate::dataset::Dataset;
use crate::train::Outcome;
use crate::train::config::TrainConfig;
use crate::validate::{accuracy, tract};

/// The production version and its accuracy on this run's test rows.
#[derive(Debug, Clone, PartialEq)]
pub struct ProductionScore {
    /// The version in production.
    pub version: Version,
    /// Its accuracy on this run's test rows, running its float ONNX file in tract.
    pub accuracy: f64,
}

/// What the gate weighs.
#[derive(Debug, Clone, Copy)]
pub struct Candidate {
    /// Test accuracy of the float model.
    pub accuracy: f64,
    /// Float test accuracy minus int8 test accuracy.
    pub int8_drop: f64,
}

/// Scores the current `production` version of `name` on this run's test rows. `None` when
/// nothing is in production; an error when production cannot be compared (other features or
/// labels) and the run is not forced.
pub async fn production_score(
    reg: &Registry,
    name: &ModelName,
    data: &Dataset,
    outcome: &Outcome,
    force: bool,
) -> anyhow::Result<Option<ProductionScore>> {
    match score(reg, name, data, outcome).await {
        Err(e) if force => {
            tracing::warn!("no comparable production version: {e:#}");
            Ok(None)
        }
        other => other,
    }
}

async fn score(
    reg: &Registry,
    name: &ModelName,
    data: &Dataset,
    outcome: &Outcome,
) -> anyhow::Result<Option<ProductionScore>> {
    let prod = match reg.by_alias(name, &Alias::production()).await {
        Ok(m) => m,
        Err(registry::Error::ModelNotFound { .. } | registry::Error::AliasNotFound { .. }) => {
            return Ok(None);
        }
        Err(e) => return Err(e.into()),
    };
    let artifact = prod
        .artifact("onnx")
        .context("production version has no onnx artifact")?;
    let bytes = reg.blob(&artifact.digest).await?;
    let same_inputs = prod.features.feature_names == data.feature_names
        && prod
            .labels
            .iter()
            .map(ToString::to_string)
            .eq(outcome.model.classes.iter().cloned());
    anyhow::ensure!(
        same_inputs,
        "production version {} has different features or labels; it cannot be compared on this \
         test split (use --force to replace it)",
        prod.version
    );
    let tx = crate::train::select_rows(data, &outcome.split.test);
    let out = tract::run(&bytes, tx.view()).context("running the production model")?;
    let truth: Vec<usize> = outcome.split.test.iter().map(|&i| data.y[i]).collect();
    Ok(Some(ProductionScore {
        version: prod.version,
        accuracy: accuracy(&out, &truth),
    }))
}

/// The gate's decision for `candidate` against `production`.
pub fn decide(
    cfg: &TrainConfig,
    force: bool,
    candidate: Candidate,
    production: Option<ProductionScore>,
) -> GateDecision {
    let g = &cfg.gate;
    let acc = candidate.accuracy;
    let mut reasons = Vec::new();
    if acc < g.min_accuracy {
        reasons.push(format!(
            "accuracy {acc:.4} is below the minimum {:.4}",
            g.min_accuracy
        ));
    }
    if let Some(p) = &production
        && acc < p.accuracy + g.min_gain
    {
        reasons.push(format!(
            "accuracy {acc:.4} does not beat production {} ({:.4}) by {:.4}",
            p.version, p.accuracy, g.min_gain
        ));
    }
    if candidate.int8_drop > cfg.quantization.max_accuracy_drop {
        reasons.push(format!(
            "int8 accuracy drop {:.4} exceeds {:.4}",
            candidate.int8_drop, cfg.quantization.max_accuracy_drop
        ));
    }
    let passed = reasons.is_empty();
    let reason = match (passed, force) {
        (true, _) => match &production {
            Some(p) => format!(
                "accuracy {acc:.4} beats production {} ({:.4}) by at least {:.4}",
                p.version, p.accuracy, g.min_gain
            ),
            None => format!(
                "accuracy {acc:.4} meets the minimum {:.4}; no production version yet",
                g.min_accuracy
            ),
        },
        (false, true) => format!("forced despite: {}", reasons.join("; ")),
        (false, false) => reasons.join("; "),
    };
    GateDecision {
        promoted: passed || force,
        alias: Alias::production(),
        forced: force && !passed,
        reason,
        min_accuracy: g.min_accuracy,
        min_gain: g.min_gain,
        baseline: production.as_ref().map(|p| p.version.clone()),
        baseline_accuracy: production.map(|p| p.accuracy),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(min_accuracy: f64, min_gain: f64, max_drop: f64) -> TrainConfig {
        let mut c = TrainConfig::default();
        c.gate.min_accuracy = min_accuracy;
        c.gate.min_gain = min_gain;
        c.quantization.max_accuracy_drop = max_drop;
        c
    }

    fn prod(v: u64, accuracy: f64) -> Option<ProductionScore> {
        Some(ProductionScore {
            version: Version::numbered(v),
            accuracy,
        })
    }

    fn cand(accuracy: f64, int8_drop: f64) -> Candidate {
        Candidate {
            accuracy,
            int8_drop,
        }
    }

    #[test]
    fn every_rule_can_refuse_and_force_overrides_each() {
        let c = cfg(0.8, 0.01, 0.02);
        let first = decide(&c, false, cand(0.85, 0.0), None);
        assert!(first.promoted && !first.forced && first.baseline.is_none());
        assert!(
            first.reason.contains("no production version yet"),
            "{}",
            first.reason
        );
        let cases = [
            (cand(0.79, 0.0), None, "below the minimum"),
            (
                cand(0.905, 0.0),
                prod(3, 0.9),
                "does not beat production v3",
            ),
            (cand(0.95, 0.03), None, "int8 accuracy drop"),
        ];
        for (candidate, production, why) in cases {
            let d = decide(&c, false, candidate, production.clone());
            assert!(!d.promoted && !d.forced, "{why}: {d:?}");
            assert!(d.reason.contains(why), "{}", d.reason);
            assert_eq!(d.baseline_accuracy, production.as_ref().map(|p| p.accuracy));
            let f = decide(&c, true, candidate, production);
            assert!(
                f.promoted && f.forced && f.reason.starts_with("forced despite"),
                "{f:?}"
            );
        }
        // All three at once are all named.
        let d = decide(&c, false, cand(0.5, 0.1), prod(1, 0.9));
        assert_eq!(d.reason.matches("; ").count(), 2, "{}", d.reason);
    }

    #[test]
    fn the_gain_is_measured_against_production_on_the_same_rows() {
        let c = cfg(0.0, 0.01, 1.0);
        let beats = decide(&c, false, cand(0.911, 0.0), prod(7, 0.9));
        assert!(beats.promoted, "{beats:?}");
        assert_eq!(beats.baseline, Some(Version::numbered(7)));
        assert!(
            beats.reason.contains("beats production v7"),
            "{}",
            beats.reason
        );
        // Equal to production plus less than the gain: kept, and forcing marks it forced.
        let ties = decide(&c, false, cand(0.905, 0.0), prod(7, 0.9));
        assert!(!ties.promoted);
        assert!(decide(&c, true, cand(0.905, 0.0), prod(7, 0.9)).forced);
        // Forcing a run that passes anyway is not "forced".
        assert!(!decide(&c, true, cand(0.95, 0.0), prod(7, 0.9)).forced);
    }
}
