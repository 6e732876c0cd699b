//! Training configuration: seed 004's `configs/train.yaml` shape, accepted as is, plus our own
//! sections (model family, learning rate, quality gate, grid search). Unknown keys are refused so
//! that a typo does not silently train with a default.

use std::path::Path;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use super::mlp::{FitConfig, Monitor};
use crate::dataset::split::Ratios;

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    /// Seed of every random choice (split, initialisation, shuffling, dropout).
    pub random_seed: u64,
    /// Split ratios.
    pub data: DataConfig,
    /// Model family and shape.
    pub model: ModelConfig,
    /// Optimiser settings.
    pub training: TrainingConfig,
    /// Post-training quantization.
    pub quantization: QuantizationConfig,
    /// Promotion rule.
    pub gate: GateConfig,
    /// Optional k-fold cross-validation and grid search.
    pub search: SearchConfig,
}

/// `data:` — split ratios.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DataConfig {
    /// Training share.
    pub train_ratio: f64,
    /// Validation share.
    pub val_ratio: f64,
    /// Test share.
    pub test_ratio: f64,
}

/// `model:` — family and architecture.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelConfig {
    /// `mlp` or `logistic_regression`.
    #[serde(rename = "type")]
    pub family: Family,
    /// Hidden layer widths (MLP).
    pub hidden_layers: Vec<usize>,
    /// Dropout on hidden activations (MLP).
    pub dropout_rate: f64,
    /// Hidden activation; only `relu` is supported.
    pub activation: String,
}

/// Model family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Family {
    /// Multilayer perceptron.
    Mlp,
    /// Multinomial logistic regression.
    LogisticRegression,
}

/// `training:` — optimiser and stopping.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainingConfig {
    /// Maximum epochs.
    pub epochs: usize,
    /// Mini-batch size.
    pub batch_size: usize,
    /// Early-stopping patience in epochs.
    pub patience: usize,
    /// Adam learning rate.
    pub learning_rate: f64,
    /// L2 penalty.
    pub alpha: f64,
    /// Early stopping watches `val_loss` (default) or `val_accuracy` (scikit-learn's rule).
    pub monitor: Monitor,
}

/// `quantization:` — static int8 calibration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QuantizationConfig {
    /// Training rows used to calibrate activation ranges.
    pub calibration_samples: usize,
    /// Largest accepted accuracy drop of int8 against float on the test split.
    pub max_accuracy_drop: f64,
}

/// `gate:` — when a new version becomes `production`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GateConfig {
    /// Minimum test accuracy.
    pub min_accuracy: f64,
    /// Minimum gain over the current production version on the same test split.
    pub min_gain: f64,
}

/// `search:` — k-fold cross-validation, and a grid search when `grid` lists values.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SearchConfig {
    /// Folds; 0 or 1 turns cross-validation off.
    pub folds: usize,
    /// Values to try; every combination is cross-validated and the best mean accuracy wins.
    pub grid: Grid,
}

/// Hyperparameter values to search.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Grid {
    /// Candidate hidden layer lists.
    pub hidden_layers: Vec<Vec<usize>>,
    /// Candidate learning rates.
    pub learning_rate: Vec<f64>,
    /// Candidate L2 penalties.
    pub alpha: Vec<f64>,
    /// Candidate dropout rates.
    pub dropout_rate: Vec<f64>,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            random_seed: 42,
            data: DataConfig::default(),
            model: ModelConfig::default(),
            training: TrainingConfig::default(),
            quantization: QuantizationConfig::default(),
            gate: GateConfig::default(),
            search: SearchConfig::default(),
        }
    }
}

impl Default for DataConfig {
    fn default() -> Self {
        let r = Ratios::default();
        Self {
            train_ratio: r.train,
            val_ratio: r.val,
            test_ratio: r.test,
        }
    }
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self {
            family: Family::Mlp,
            hidden_layers: vec![64, 32],
            dropout_rate: 0.2,
            activation: "relu".into(),
        }
    }
}

impl Default for TrainingConfig {
    fn default() -> Self {
        Self {
            epochs: 100,
            batch_size: 32,
            patience: 10,
            learning_rate: 0.001,
            alpha: 0.0001,
            monitor: Monitor::ValLoss,
        }
    }
}

impl Default for QuantizationConfig {
    fn default() -> Self {
        Self {
            calibration_samples: 100,
            max_accuracy_drop: 0.02,
        }
    }
}

impl Default for GateConfig {
    fn default() -> Self {
        Self {
            min_accuracy: 0.85,
            min_gain: 0.01,
        }
    }
}

impl TrainConfig {
    /// Reads a YAML file.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading config {}", path.display()))?;
        let cfg: Self = serde_norway::from_str(&text)
            .with_context(|| format!("{} is not a valid training config", path.display()))?;
        cfg.validate()
            .with_context(|| format!("{} is not a valid training config", path.display()))?;
        Ok(cfg)
    }

    /// Checks values that parse but make no sense.
    pub fn validate(&self) -> anyhow::Result<()> {
        self.ratios().validate().map_err(anyhow::Error::msg)?;
        anyhow::ensure!(
            self.model.activation == "relu",
            "model.activation: only relu is supported, got {:?}",
            self.model.activation
        );
        anyhow::ensure!(
            (0.0..1.0).contains(&self.model.dropout_rate),
            "model.dropout_rate must be in [0, 1)"
        );
        anyhow::ensure!(self.training.epochs > 0, "training.epochs must be positive");
        anyhow::ensure!(
            self.training.batch_size > 0,
            "training.batch_size must be positive"
        );
        anyhow::ensure!(
            self.training.learning_rate > 0.0,
            "training.learning_rate must be positive"
        );
        anyhow::ensure!(
            self.model.hidden_layers.iter().all(|&w| w > 0),
            "model.hidden_layers: every width must be positive"
        );
        anyhow::ensure!(
            self.quantization.calibration_samples > 0,
            "quantization.calibration_samples must be positive"
        );
        Ok(())
    }

    /// Split ratios.
    pub fn ratios(&self) -> Ratios {
        Ratios {
            train: self.data.train_ratio,
            val: self.data.val_ratio,
            test: self.data.test_ratio,
        }
    }

    /// The settings of one fit.
    pub fn fit(&self) -> FitConfig {
        let mlp = self.model.family == Family::Mlp;
        FitConfig {
            hidden_layers: if mlp {
                self.model.hidden_layers.clone()
            } else {
                vec![]
            },
            dropout: if mlp { self.model.dropout_rate } else { 0.0 },
            learning_rate: self.training.learning_rate,
            alpha: self.training.alpha,
            batch_size: self.training.batch_size,
            max_epochs: self.training.epochs,
            patience: self.training.patience,
            tol: 1e-4,
            monitor: self.training.monitor,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_004_train_yaml_is_accepted_as_is() {
        let yaml = "random_seed: 42\n\ndata:\n  train_ratio: 0.70\n  val_ratio: 0.15\n  test_ratio: 0.15\n\nmodel:\n  hidden_layers: [64, 32]\n  dropout_rate: 0.2\n  activation: \"relu\"\n\ntraining:\n  epochs: 100\n  batch_size: 32\n  patience: 10\n\nquantization:\n  calibration_samples: 100\n";
        let cfg: TrainConfig = serde_norway::from_str(yaml).unwrap();
        cfg.validate().unwrap();
        assert_eq!(cfg, TrainConfig::default());
    }

    #[test]
    fn typos_and_nonsense_are_refused() {
        assert!(serde_norway::from_str::<TrainConfig>("trainig: {epochs: 3}").is_err());
        assert!(serde_norway::from_str::<TrainConfig>("model: {hiden_layers: [3]}").is_err());
        let cfg: TrainConfig =
            serde_norway::from_str("data: {train_ratio: 0.5, val_ratio: 0.1, test_ratio: 0.1}")
                .unwrap();
        assert!(cfg.validate().unwrap_err().to_string().contains("sum to 1"));
        let cfg: TrainConfig =
            serde_norway::from_str("model: {type: logistic_regression}").unwrap();
        assert!(cfg.fit().hidden_layers.is_empty());
    }
}
