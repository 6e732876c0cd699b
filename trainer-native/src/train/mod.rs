//! Training: scaler, split, fit, cross-validation and grid search, evaluation.

pub mod config;
pub mod format_only;
pub mod metrics;
pub mod mlp;

use ndarray::{Array1, Array2, ArrayView2, Axis};
use serde::Serialize;

use crate::dataset::Dataset;
use crate::dataset::split::{self, Split};
use config::{Grid, TrainConfig};
use metrics::Report;
use mlp::{Epoch, FitConfig, FitData, History, Network};

/// Standardisation fitted on training rows: `(x - mean) / scale`, scale being the population
/// standard deviation (1 for a constant column), as scikit-learn's `StandardScaler`.
#[derive(Debug, Clone, PartialEq)]
pub struct Scaler {
    /// Per-feature mean.
    pub mean: Array1<f32>,
    /// Per-feature scale.
    pub scale: Array1<f32>,
}

impl Scaler {
    /// Fits on `x`'s rows.
    pub fn fit(x: ArrayView2<f32>) -> Self {
        let n = x.nrows().max(1) as f64;
        let mean64 = x.map(|&v| v as f64).sum_axis(Axis(0)) / n;
        let mut var = Array1::<f64>::zeros(x.ncols());
        for row in x.rows() {
            for ((v, &m), &xv) in var.iter_mut().zip(&mean64).zip(row) {
                let d = xv as f64 - m;
                *v += d * d;
            }
        }
        let scale = var.mapv(|v| {
            let s = (v / n).sqrt();
            if s > 1e-12 { s as f32 } else { 1.0 }
        });
        Self {
            mean: mean64.mapv(|m| m as f32),
            scale,
        }
    }

    /// Scales rows, in exactly the f32 operations the exported graph performs (Sub, then Div).
    pub fn transform(&self, x: ArrayView2<f32>) -> Array2<f32> {
        let mut out = x.to_owned();
        out -= &self.mean;
        out /= &self.scale;
        out
    }
}

/// A trained model: scaler and network, with the names that describe its inputs and outputs.
#[derive(Debug, Clone, PartialEq)]
pub struct Model {
    /// Input standardisation.
    pub scaler: Scaler,
    /// The network.
    pub net: Network,
    /// Feature names, in input order.
    pub feature_names: Vec<String>,
    /// Class labels, in output order.
    pub classes: Vec<String>,
}

impl Model {
    /// Probabilities for raw (unscaled) rows.
    pub fn predict_proba(&self, x: ArrayView2<f32>) -> Array2<f32> {
        self.net.predict_proba(self.scaler.transform(x).view())
    }
}

/// Mean and spread of accuracy across folds for one setting.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CvScore {
    /// The setting.
    pub config: FitConfig,
    /// Accuracy of each fold.
    pub fold_accuracy: Vec<f64>,
    /// Mean accuracy.
    pub mean_accuracy: f64,
    /// Standard deviation of the fold accuracies.
    pub std_accuracy: f64,
}

/// What a training run produced.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The model trained on the training split.
    pub model: Model,
    /// The settings it was trained with (the grid search's winner, if one ran).
    pub fit: FitConfig,
    /// Row indices of each part.
    pub split: Split,
    /// Metrics on the test split.
    pub test: Report,
    /// Metrics on the validation split, if it has rows.
    pub val: Option<Report>,
    /// Epoch history of the final fit.
    pub history: History,
    /// Cross-validation scores of every setting tried, best first.
    pub cv: Vec<CvScore>,
}

/// Receives progress: fold starts and epoch ends.
pub trait Observer {
    /// A cross-validation fit starts: `done` of `total` so far.
    fn fold(&mut self, _done: usize, _total: usize) {}
    /// The final fit starts.
    fn final_fit(&mut self, _max_epochs: usize) {}
    /// An epoch of the final fit ended.
    fn epoch(&mut self, _epoch: &Epoch) {}
}

fn rows(x: &Array2<f32>, idx: &[usize]) -> Array2<f32> {
    x.select(Axis(0), idx)
}

fn pick(y: &[usize], idx: &[usize]) -> Vec<usize> {
    idx.iter().map(|&i| y[i]).collect()
}

/// Fits scaler and network on `train` rows, stopping early on `val` rows.
fn fit_on(
    data: &Dataset,
    train: &[usize],
    val: &[usize],
    fit: &FitConfig,
    seed: u64,
    on_epoch: impl FnMut(&Epoch),
) -> (Model, History) {
    let x_train = rows(&data.x, train);
    let scaler = Scaler::fit(x_train.view());
    let xs = scaler.transform(x_train.view());
    let ys = pick(&data.y, train);
    let xv = scaler.transform(rows(&data.x, val).view());
    let yv = pick(&data.y, val);
    let fit_data = FitData {
        x: xs.view(),
        y: &ys,
        val: (!val.is_empty()).then_some((xv.view(), yv.as_slice())),
        classes: data.classes.len(),
    };
    let (net, history) = mlp::fit(&fit_data, fit, seed, on_epoch);
    let model = Model {
        scaler,
        net,
        feature_names: data.feature_names.clone(),
        classes: data.classes.iter().map(ToString::to_string).collect(),
    };
    (model, history)
}

fn candidates(base: &FitConfig, grid: &Grid) -> Vec<FitConfig> {
    let or_base = |values: Vec<FitConfig>, apply: &dyn Fn(&FitConfig) -> Vec<FitConfig>| {
        values.iter().flat_map(apply).collect::<Vec<_>>()
    };
    let mut out = vec![base.clone()];
    if !grid.hidden_layers.is_empty() && !base.hidden_layers.is_empty() {
        out = or_base(out, &|c| {
            grid.hidden_layers
                .iter()
                .map(|h| FitConfig {
                    hidden_layers: h.clone(),
                    ..c.clone()
                })
                .collect()
        });
    }
    if !grid.learning_rate.is_empty() {
        out = or_base(out, &|c| {
            grid.learning_rate
                .iter()
                .map(|&lr| FitConfig {
                    learning_rate: lr,
                    ..c.clone()
                })
                .collect()
        });
    }
    if !grid.alpha.is_empty() {
        out = or_base(out, &|c| {
            grid.alpha
                .iter()
                .map(|&a| FitConfig {
                    alpha: a,
                    ..c.clone()
                })
                .collect()
        });
    }
    if !grid.dropout_rate.is_empty() && !base.hidden_layers.is_empty() {
        out = or_base(out, &|c| {
            grid.dropout_rate
                .iter()
                .map(|&d| FitConfig {
                    dropout: d,
                    ..c.clone()
                })
                .collect()
        });
    }
    out
}

/// Stratified k-fold cross-validation of each candidate setting over `rows` (train + val).
fn cross_validate(
    data: &Dataset,
    pool: &[usize],
    settings: &[FitConfig],
    folds: usize,
    seed: u64,
    observer: &mut dyn Observer,
) -> Vec<CvScore> {
    let labels = pick(&data.y, pool);
    let fold_rows = split::stratified_folds(&labels, folds, seed);
    let total = settings.len() * folds;
    let mut scores = Vec::new();
    for (s, setting) in settings.iter().enumerate() {
        let mut accs = Vec::new();
        for (f, (train_local, held_local)) in fold_rows.iter().enumerate() {
            observer.fold(s * folds + f, total);
            let train: Vec<usize> = train_local.iter().map(|&i| pool[i]).collect();
            let held: Vec<usize> = held_local.iter().map(|&i| pool[i]).collect();
            // No separate validation inside a fold: the fit runs its epochs on training loss.
            let (model, _) = fit_on(data, &train, &[], setting, seed, |_| {});
            let p = model.predict_proba(rows(&data.x, &held).view());
            let pred = mlp::argmax_rows(p.view());
            let truth = pick(&data.y, &held);
            let acc = pred.iter().zip(&truth).filter(|(a, b)| a == b).count() as f64
                / truth.len().max(1) as f64;
            accs.push(acc);
        }
        let mean = accs.iter().sum::<f64>() / accs.len() as f64;
        let var = accs.iter().map(|a| (a - mean).powi(2)).sum::<f64>() / accs.len() as f64;
        scores.push(CvScore {
            config: setting.clone(),
            fold_accuracy: accs,
            mean_accuracy: mean,
            std_accuracy: var.sqrt(),
        });
    }
    observer.fold(total, total);
    // Stable sort: ties keep grid order, so the choice is reproducible.
    scores.sort_by(|a, b| b.mean_accuracy.total_cmp(&a.mean_accuracy));
    scores
}

/// The seeded, stratified split `run` trains on: the pipeline checks it for leakage before
/// training.
pub fn split_of(data: &Dataset, cfg: &TrainConfig) -> anyhow::Result<Split> {
    cfg.validate()?;
    let split = split::stratified(&data.y, cfg.ratios(), cfg.random_seed);
    anyhow::ensure!(
        !split.train.is_empty() && !split.test.is_empty(),
        "too few rows ({}) to split into training and test parts",
        data.len()
    );
    Ok(split)
}

/// Splits, optionally cross-validates and grid-searches, fits, and evaluates.
pub fn run(
    data: &Dataset,
    cfg: &TrainConfig,
    observer: &mut dyn Observer,
) -> anyhow::Result<Outcome> {
    let split = split_of(data, cfg)?;
    let base = cfg.fit();
    let mut fit = base.clone();
    let mut cv = Vec::new();
    if cfg.search.folds >= 2 {
        let pool: Vec<usize> = {
            let mut p: Vec<usize> = split.train.iter().chain(&split.val).copied().collect();
            p.sort_unstable();
            p
        };
        let settings = candidates(&base, &cfg.search.grid);
        cv = cross_validate(
            data,
            &pool,
            &settings,
            cfg.search.folds,
            cfg.random_seed,
            observer,
        );
        fit = cv[0].config.clone();
    }
    observer.final_fit(fit.max_epochs);
    let (model, history) = fit_on(data, &split.train, &split.val, &fit, cfg.random_seed, |e| {
        observer.epoch(e)
    });
    let evaluate = |idx: &[usize]| {
        let p = model.predict_proba(rows(&data.x, idx).view());
        metrics::evaluate(p.view(), &pick(&data.y, idx), &model.classes)
    };
    let test = evaluate(&split.test);
    let val = (!split.val.is_empty()).then(|| evaluate(&split.val));
    Ok(Outcome {
        model,
        fit,
        split,
        test,
        val,
        history,
        cv,
    })
}

/// The rows `idx` of the dataset's features.
pub fn select_rows(data: &Dataset, idx: &[usize]) -> Array2<f32> {
    rows(&data.x, idx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scaler_matches_standard_scaler() {
        let x = ndarray::array![[1.0f32, 5.0], [3.0, 5.0]];
        let s = Scaler::fit(x.view());
        assert_eq!(s.mean.to_vec(), vec![2.0, 5.0]);
        assert_eq!(
            s.scale.to_vec(),
            vec![1.0, 1.0],
            "constant column gets scale 1"
        );
        assert_eq!(s.transform(x.view()).row(0).to_vec(), vec![-1.0, 0.0]);
    }

    #[test]
    fn grid_expands_every_combination() {
        let base = FitConfig::default();
        let grid = Grid {
            hidden_layers: vec![vec![8], vec![16, 8]],
            learning_rate: vec![0.01, 0.001],
            ..Default::default()
        };
        let c = candidates(&base, &grid);
        assert_eq!(c.len(), 4);
        assert!(
            c.iter()
                .any(|f| f.hidden_layers == vec![16, 8] && f.learning_rate == 0.01)
        );
    }
}
