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

/// Upper bounds on a training config (see `TrainConfig::validate`).
pub struct Bounds {
    /// Epochs (and patience).
    pub epochs: usize,
    /// Batch size.
    pub batch_size: usize,
    /// Hidden layers.
    pub layers: usize,
    /// Width of a hidden layer.
    pub width: usize,
    /// Cross-validation folds.
    pub folds: usize,
    /// Grid combinations.
    pub grid: usize,
    /// Calibration rows.
    pub calibration: usize,
}

/// The bounds of every config.
pub const BOUNDS: Bounds = Bounds {
    epochs: 10_000,
    batch_size: 65_536,
    layers: 8,
    width: 4096,
    folds: 20,
    grid: 64,
    calibration: 100_000,
};

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
        self.check_bounds()
    }

    /// The upper bounds every config must keep, wherever it came from (a file, a `POST /train`
    /// body): far beyond any model this trainer makes for a microcontroller, and low enough that
    /// one job cannot occupy a worker for days or exhaust its memory.
    fn check_bounds(&self) -> anyhow::Result<()> {
        let b = &BOUNDS;
        let within = |what: &str, value: usize, max: usize| {
            anyhow::ensure!(value <= max, "{what} is {value}; at most {max} is allowed");
            Ok(())
        };
        within("training.epochs", self.training.epochs, b.epochs)?;
        within(
            "training.batch_size",
            self.training.batch_size,
            b.batch_size,
        )?;
        within("training.patience", self.training.patience, b.epochs)?;
        within(
            "model.hidden_layers (count)",
            self.model.hidden_layers.len(),
            b.layers,
        )?;
        let widest = |layers: &[usize]| layers.iter().copied().max().unwrap_or(0);
        within(
            "model.hidden_layers (width)",
            widest(&self.model.hidden_layers),
            b.width,
        )?;
        within("search.folds", self.search.folds, b.folds)?;
        let grid = &self.search.grid;
        for layers in &grid.hidden_layers {
            within("search.grid.hidden_layers (count)", layers.len(), b.layers)?;
            within("search.grid.hidden_layers (width)", widest(layers), b.width)?;
        }
        let combinations = [
            grid.hidden_layers.len(),
            grid.learning_rate.len(),
            grid.alpha.len(),
            grid.dropout_rate.len(),
        ]
        .iter()
        .try_fold(1usize, |n, &k| n.checked_mul(k.max(1)))
        .unwrap_or(usize::MAX);
        within("search.grid (combinations)", combinations, b.grid)?;
        within(
            "quantization.calibration_samples",
            self.quantization.calibration_samples,
            b.calibration,
        )?;
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

    #[test]
    fn configs_past_the_bounds_are_refused_with_the_field() {
        let refused = |yaml: &str, field: &str| {
            let cfg: TrainConfig = serde_norway::from_str(yaml).unwrap();
            let err = cfg.validate().unwrap_err().to_string();
            assert!(err.contains(field), "{yaml}: {err}");
        };
        refused("training: {epochs: 10000000}", "training.epochs");
        refused(
            "model: {hidden_layers: [100000]}",
            "model.hidden_layers (width)",
        );
        refused(
            "model: {hidden_layers: [8,8,8,8,8,8,8,8,8]}",
            "model.hidden_layers (count)",
        );
        refused(
            "search: {folds: 5, grid: {learning_rate: [0.1,0.2,0.3,0.4], alpha: [1,2,3,4], dropout_rate: [0.1,0.2,0.3,0.4,0.5]}}",
            "search.grid (combinations)",
        );
        refused("search: {folds: 1000}", "search.folds");
        refused(
            "quantization: {calibration_samples: 100000000}",
            "quantization.calibration_samples",
        );
        // At the bounds is fine.
        let cfg: TrainConfig =
            serde_norway::from_str("training: {epochs: 10000, patience: 10}").unwrap();
        cfg.validate().unwrap();
    }
}
