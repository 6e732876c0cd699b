//! The network: a multilayer perceptron (ReLU hidden layers, softmax output) trained with Adam
//! on mini-batches, with inverted dropout, L2 regularisation and early stopping on validation
//! loss. With no hidden layers it is multinomial logistic regression.
//!
//! Written on ndarray rather than a deep-learning crate: the models are a few thousand weights,
//! and owning the loop keeps training bit-reproducible for a seed, single-threaded and
//! dependency-light.

use ndarray::{Array1, Array2, ArrayView1, ArrayView2, Axis, Zip};
use rand::Rng;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// One dense layer: `out = input · w + b`, with `w` of shape (inputs, outputs).
#[derive(Debug, Clone, PartialEq)]
pub struct Dense {
    /// Weights, (inputs, outputs).
    pub w: Array2<f32>,
    /// Biases, (outputs).
    pub b: Array1<f32>,
}

/// The trained network: hidden layers with ReLU, then a softmax output layer.
#[derive(Debug, Clone, PartialEq)]
pub struct Network {
    /// Layers in order; the last produces logits.
    pub layers: Vec<Dense>,
}

/// Hyperparameters of one fit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FitConfig {
    /// Hidden layer widths; empty for logistic regression.
    pub hidden_layers: Vec<usize>,
    // Settings are f64, as the user wrote them (a record shows 0.2, not 0.20000000298023224);
    // the arithmetic narrows them to f32 where it uses them.
    /// Dropout rate on hidden activations during training.
    pub dropout: f64,
    /// Adam step size.
    pub learning_rate: f64,
    /// L2 penalty (as scikit-learn's `alpha`).
    pub alpha: f64,
    /// Rows per mini-batch.
    pub batch_size: usize,
    /// Upper bound on epochs.
    pub max_epochs: usize,
    /// Epochs without a validation-loss improvement of at least `tol` before stopping.
    pub patience: usize,
    /// Minimum improvement that counts.
    pub tol: f64,
    /// What early stopping watches.
    pub monitor: Monitor,
}

/// The validation figure early stopping watches (training loss when there is no validation set).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Monitor {
    /// Validation cross-entropy: stop when it stops falling.
    ValLoss,
    /// Validation accuracy: stop when it stops rising (scikit-learn's `early_stopping` rule).
    ValAccuracy,
}

impl Default for FitConfig {
    fn default() -> Self {
        Self {
            hidden_layers: vec![64, 32],
            dropout: 0.2,
            learning_rate: 0.001,
            alpha: 0.0001,
            batch_size: 32,
            max_epochs: 100,
            patience: 10,
            tol: 1e-4,
            monitor: Monitor::ValLoss,
        }
    }
}

/// Per-epoch figures.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Epoch {
    /// 1-based epoch number.
    pub epoch: usize,
    /// Mean training loss over the epoch's batches (with dropout).
    pub train_loss: f32,
    /// Validation loss (cross-entropy, no penalty), if there is a validation set.
    pub val_loss: Option<f32>,
    /// Validation accuracy, if there is a validation set.
    pub val_accuracy: Option<f32>,
}

/// What happened during a fit.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct History {
    /// Every epoch run.
    pub epochs: Vec<Epoch>,
    /// The epoch whose weights were kept.
    pub best_epoch: usize,
    /// Whether early stopping ended the fit before `max_epochs`.
    pub stopped_early: bool,
}

impl Network {
    /// Glorot-uniform weights and biases (as scikit-learn initialises ReLU networks), drawn
    /// from `rng`, for layer widths `sizes` (inputs first, classes last).
    pub fn init(sizes: &[usize], rng: &mut ChaCha8Rng) -> Self {
        let layers = sizes
            .windows(2)
            .map(|w| {
                let (fan_in, fan_out) = (w[0], w[1]);
                let bound = (6.0 / (fan_in + fan_out) as f32).sqrt();
                let weights = Array2::from_shape_simple_fn((fan_in, fan_out), || {
                    rng.random_range(-bound..bound)
                });
                let biases =
                    Array1::from_shape_simple_fn(fan_out, || rng.random_range(-bound..bound));
                Dense {
                    w: weights,
                    b: biases,
                }
            })
            .collect();
        Self { layers }
    }

    /// Number of input features.
    pub fn inputs(&self) -> usize {
        self.layers[0].w.nrows()
    }

    /// Number of classes.
    pub fn classes(&self) -> usize {
        self.layers.last().expect("at least one layer").w.ncols()
    }

    /// Class probabilities for each row of `x` (already scaled).
    pub fn predict_proba(&self, x: ArrayView2<f32>) -> Array2<f32> {
        let mut a = x.to_owned();
        let last = self.layers.len() - 1;
        for (i, layer) in self.layers.iter().enumerate() {
            let mut z = a.dot(&layer.w);
            z += &layer.b;
            if i < last {
                z.mapv_inplace(|v| v.max(0.0));
            }
            a = z;
        }
        softmax_rows(&mut a);
        a
    }

    /// One forward and backward pass on a batch: returns the loss (cross-entropy plus the L2
    /// penalty) and the gradients of every layer. `dropout` masks hidden activations.
    pub fn gradients(
        &self,
        x: ArrayView2<f32>,
        y: &[usize],
        alpha: f32,
        dropout: Option<(f32, &mut ChaCha8Rng)>,
    ) -> (f32, Vec<Dense>) {
        let n = x.nrows() as f32;
        let last = self.layers.len() - 1;
        let mut dropout = dropout;
        // Activations entering each layer, and each hidden layer's combined ReLU/dropout mask.
        let mut inputs: Vec<Array2<f32>> = Vec::with_capacity(self.layers.len());
        let mut masks: Vec<Array2<f32>> = Vec::with_capacity(last);
        let mut a = x.to_owned();
        for (i, layer) in self.layers.iter().enumerate() {
            let mut z = a.dot(&layer.w);
            z += &layer.b;
            inputs.push(a);
            if i < last {
                let mut mask = z.mapv(|v| if v > 0.0 { 1.0 } else { 0.0 });
                if let Some((rate, rng)) = dropout.as_mut()
                    && *rate > 0.0
                {
                    let keep = 1.0 - *rate;
                    mask.mapv_inplace(|m| {
                        if rng.random::<f32>() < keep {
                            m / keep
                        } else {
                            0.0
                        }
                    });
                }
                z *= &mask;
                masks.push(mask);
            }
            a = z;
        }
        softmax_rows(&mut a);
        let mut loss = 0.0f32;
        for (row, &class) in a.rows().into_iter().zip(y) {
            loss -= row[class].max(1e-12).ln();
        }
        loss /= n;
        let penalty: f32 = self
            .layers
            .iter()
            .map(|l| l.w.iter().map(|w| w * w).sum::<f32>())
            .sum();
        loss += 0.5 * alpha * penalty / n;

        // d loss / d logits = (P - Y) / n
        let mut delta = a;
        for (mut row, &class) in delta.rows_mut().into_iter().zip(y) {
            row[class] -= 1.0;
        }
        delta /= n;
        let mut grads = Vec::with_capacity(self.layers.len());
        for i in (0..self.layers.len()).rev() {
            let layer = &self.layers[i];
            let mut gw = inputs[i].t().dot(&delta);
            gw.scaled_add(alpha / n, &layer.w);
            let gb = delta.sum_axis(Axis(0));
            if i > 0 {
                let mut upstream = delta.dot(&layer.w.t());
                upstream *= &masks[i - 1];
                delta = upstream;
            }
            grads.push(Dense { w: gw, b: gb });
        }
        grads.reverse();
        (loss, grads)
    }
}

/// Cross-entropy of probabilities against labels, averaged over rows.
pub fn log_loss(proba: ArrayView2<f32>, y: &[usize]) -> f32 {
    let total: f64 = proba
        .rows()
        .into_iter()
        .zip(y)
        .map(|(row, &c)| -(row[c].max(1e-12) as f64).ln())
        .sum();
    (total / y.len().max(1) as f64) as f32
}

fn softmax_rows(z: &mut Array2<f32>) {
    for mut row in z.rows_mut() {
        let max = row.fold(f32::NEG_INFINITY, |m, &v| m.max(v));
        row.mapv_inplace(|v| (v - max).exp());
        let sum = row.sum();
        row /= sum;
    }
}

/// Adam's moment estimates for every parameter.
struct Adam {
    m: Vec<Dense>,
    v: Vec<Dense>,
    t: i32,
    lr: f32,
}

impl Adam {
    const BETA1: f32 = 0.9;
    const BETA2: f32 = 0.999;
    const EPS: f32 = 1e-8;

    fn new(net: &Network, lr: f32) -> Self {
        let zeros = |net: &Network| {
            net.layers
                .iter()
                .map(|l| Dense {
                    w: Array2::zeros(l.w.raw_dim()),
                    b: Array1::zeros(l.b.raw_dim()),
                })
                .collect::<Vec<_>>()
        };
        Self {
            m: zeros(net),
            v: zeros(net),
            t: 0,
            lr,
        }
    }

    fn step(&mut self, net: &mut Network, grads: &[Dense]) {
        self.t += 1;
        let step =
            self.lr * (1.0 - Self::BETA2.powi(self.t)).sqrt() / (1.0 - Self::BETA1.powi(self.t));
        for (((layer, g), m), v) in net
            .layers
            .iter_mut()
            .zip(grads)
            .zip(&mut self.m)
            .zip(&mut self.v)
        {
            update(&mut layer.w, &g.w, &mut m.w, &mut v.w, step);
            update(&mut layer.b, &g.b, &mut m.b, &mut v.b, step);
        }
    }
}

fn update<D: ndarray::Dimension>(
    param: &mut ndarray::Array<f32, D>,
    grad: &ndarray::Array<f32, D>,
    m: &mut ndarray::Array<f32, D>,
    v: &mut ndarray::Array<f32, D>,
    step: f32,
) {
    Zip::from(param)
        .and(grad)
        .and(m)
        .and(v)
        .for_each(|p, &g, m, v| {
            *m = Adam::BETA1 * *m + (1.0 - Adam::BETA1) * g;
            *v = Adam::BETA2 * *v + (1.0 - Adam::BETA2) * g * g;
            *p -= step * *m / (v.sqrt() + Adam::EPS);
        });
}

/// Training data for one fit: scaled features and class indices.
pub struct FitData<'a> {
    /// Training rows.
    pub x: ArrayView2<'a, f32>,
    /// Training labels.
    pub y: &'a [usize],
    /// Validation rows for early stopping, if any.
    pub val: Option<(ArrayView2<'a, f32>, &'a [usize])>,
    /// Number of classes.
    pub classes: usize,
}

/// Fits a network. `on_epoch` sees every epoch as it ends (for progress bars).
pub fn fit(
    data: &FitData<'_>,
    cfg: &FitConfig,
    seed: u64,
    mut on_epoch: impl FnMut(&Epoch),
) -> (Network, History) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut sizes = vec![data.x.ncols()];
    sizes.extend(&cfg.hidden_layers);
    sizes.push(data.classes);
    let mut net = Network::init(&sizes, &mut rng);
    let mut adam = Adam::new(&net, cfg.learning_rate as f32);
    let mut order: Vec<usize> = (0..data.x.nrows()).collect();
    let batch = cfg.batch_size.clamp(1, order.len().max(1));
    let mut history = History {
        epochs: Vec::new(),
        best_epoch: 0,
        stopped_early: false,
    };
    let mut best: Option<(f32, Network)> = None;
    let mut stale = 0;
    let mut xb = Array2::<f32>::zeros((batch, data.x.ncols()));
    let mut yb = Vec::with_capacity(batch);
    for epoch in 1..=cfg.max_epochs {
        order.shuffle(&mut rng);
        let mut loss_sum = 0.0f64;
        let mut seen = 0usize;
        for chunk in order.chunks(batch) {
            if xb.nrows() != chunk.len() {
                xb = Array2::zeros((chunk.len(), data.x.ncols()));
            }
            yb.clear();
            for (mut dst, &row) in xb.rows_mut().into_iter().zip(chunk) {
                dst.assign(&data.x.row(row));
                yb.push(data.y[row]);
            }
            let (loss, grads) = net.gradients(
                xb.view(),
                &yb,
                cfg.alpha as f32,
                Some((cfg.dropout as f32, &mut rng)),
            );
            adam.step(&mut net, &grads);
            loss_sum += loss as f64 * chunk.len() as f64;
            seen += chunk.len();
        }
        let (val_loss, val_accuracy) = match data.val.filter(|(vx, _)| vx.nrows() > 0) {
            Some((vx, vy)) => {
                let p = net.predict_proba(vx);
                let hits = argmax_rows(p.view())
                    .iter()
                    .zip(vy)
                    .filter(|(a, b)| a == b)
                    .count();
                (
                    Some(log_loss(p.view(), vy)),
                    Some(hits as f32 / vy.len() as f32),
                )
            }
            None => (None, None),
        };
        let stats = Epoch {
            epoch,
            train_loss: (loss_sum / seen.max(1) as f64) as f32,
            val_loss,
            val_accuracy,
        };
        on_epoch(&stats);
        history.epochs.push(stats);
        // Lower is better: loss as is, accuracy negated.
        let score = match (cfg.monitor, val_loss, val_accuracy) {
            (Monitor::ValAccuracy, _, Some(acc)) => -acc,
            (_, Some(loss), _) => loss,
            _ => stats.train_loss,
        };
        match &best {
            Some((b, _)) if score > b - cfg.tol as f32 => {
                stale += 1;
                if stale >= cfg.patience {
                    history.stopped_early = true;
                    break;
                }
            }
            _ => {
                best = Some((score, net.clone()));
                history.best_epoch = epoch;
                stale = 0;
            }
        }
    }
    let net = best.map_or(net, |(_, n)| n);
    (net, history)
}

/// The index of the largest value of each row.
pub fn argmax_rows(p: ArrayView2<f32>) -> Vec<usize> {
    p.rows().into_iter().map(argmax).collect()
}

fn argmax(row: ArrayView1<f32>) -> usize {
    let mut best = 0;
    for (i, &v) in row.iter().enumerate() {
        if v > row[best] {
            best = i;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    /// 2 inputs -> 2 hidden (ReLU) -> 2 classes, with weights chosen by hand.
    fn tiny() -> Network {
        Network {
            layers: vec![
                Dense {
                    w: array![[0.5, -1.0], [0.25, 1.0]],
                    b: array![0.0, 0.5],
                },
                Dense {
                    w: array![[1.0, -1.0], [2.0, 0.0]],
                    b: array![0.0, 0.0],
                },
            ],
        }
    }

    #[test]
    fn forward_and_backward_match_a_hand_computation() {
        // x = [2, 4]: z1 = [2*0.5 + 4*0.25, 2*-1 + 4*1 + 0.5] = [2, 2.5]; relu keeps both.
        // logits = [2*1 + 2.5*2, 2*-1 + 0] = [7, -2]; p = softmax = [e^9/(e^9+1), 1/(e^9+1)].
        let net = tiny();
        let x = array![[2.0f32, 4.0]];
        let p = net.predict_proba(x.view());
        let p1 = 1.0 / (1.0 + 9f32.exp());
        assert!((p[[0, 1]] - p1).abs() < 1e-7);
        // Label 1: dlogits = p - y = [1 - p1, p1 - 1] = [q, -q] with q = 1 - p1.
        // dW2 = a1^T dlogits = [[2q, -2q], [2.5q, -2.5q]]; db2 = [q, -q].
        // da1 = dlogits W2^T = [q*1 + -q*-1, q*2 + -q*0] = [2q, 2q]; relu' = 1 for both.
        // dW1 = x^T da1 = [[4q, 4q], [8q, 8q]]; db1 = [2q, 2q].
        let (loss, g) = net.gradients(x.view(), &[1], 0.0, None);
        let q = 1.0 - p1;
        assert!((loss - -(p1.ln())).abs() < 1e-4, "loss {loss}");
        let close = |a: &Array2<f32>, b: Array2<f32>| {
            a.iter().zip(b.iter()).all(|(x, y)| (x - y).abs() < 1e-5)
        };
        assert!(
            close(&g[1].w, array![[2.0 * q, -2.0 * q], [2.5 * q, -2.5 * q]]),
            "{:?}",
            g[1].w
        );
        assert!((g[1].b[0] - q).abs() < 1e-6 && (g[1].b[1] + q).abs() < 1e-6);
        assert!(
            close(&g[0].w, array![[4.0 * q, 4.0 * q], [8.0 * q, 8.0 * q]]),
            "{:?}",
            g[0].w
        );
        assert!((g[0].b[0] - 2.0 * q).abs() < 1e-5);
    }

    #[test]
    fn gradients_match_finite_differences() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let net = Network::init(&[3, 5, 4, 3], &mut rng);
        let x = Array2::from_shape_fn((6, 3), |(i, j)| ((i * 3 + j) as f32 * 0.37).sin());
        let y = [0, 1, 2, 1, 0, 2];
        let alpha = 0.1;
        let (_, grads) = net.gradients(x.view(), &y, alpha, None);
        let eps = 1e-2f32;
        let mut worst = 0.0f32;
        for (l, grad) in grads.iter().enumerate() {
            for idx in 0..net.layers[l].w.len() {
                let (r, c) = (idx / net.layers[l].w.ncols(), idx % net.layers[l].w.ncols());
                let mut plus = net.clone();
                plus.layers[l].w[[r, c]] += eps;
                let mut minus = net.clone();
                minus.layers[l].w[[r, c]] -= eps;
                let numeric = (plus.gradients(x.view(), &y, alpha, None).0
                    - minus.gradients(x.view(), &y, alpha, None).0)
                    / (2.0 * eps);
                let analytic = grad.w[[r, c]];
                worst =
                    worst.max((numeric - analytic).abs() / (numeric.abs() + analytic.abs() + 1e-3));
            }
        }
        assert!(worst < 2e-2, "worst relative gradient error {worst}");
    }

    fn blobs() -> (Array2<f32>, Vec<usize>) {
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        let mut x = Array2::zeros((300, 2));
        let mut y = Vec::new();
        for i in 0..300 {
            let c = i % 3;
            let (cx, cy) = [(0.0, 0.0), (3.0, 0.0), (0.0, 3.0)][c];
            x[[i, 0]] = cx + rng.random_range(-1.0..1.0);
            x[[i, 1]] = cy + rng.random_range(-1.0..1.0);
            y.push(c);
        }
        (x, y)
    }

    #[test]
    fn fit_learns_and_is_reproducible() {
        let (x, y) = blobs();
        let data = FitData {
            x: x.view(),
            y: &y,
            val: Some((x.view(), &y)),
            classes: 3,
        };
        let cfg = FitConfig {
            max_epochs: 60,
            ..Default::default()
        };
        let (net, history) = fit(&data, &cfg, 42, |_| {});
        let pred = argmax_rows(net.predict_proba(x.view()).view());
        let acc = pred.iter().zip(&y).filter(|(p, t)| p == t).count() as f32 / 300.0;
        assert!(acc > 0.95, "accuracy {acc}");
        assert!(history.epochs[0].train_loss > history.epochs.last().unwrap().train_loss);
        let (again, _) = fit(&data, &cfg, 42, |_| {});
        assert_eq!(
            net, again,
            "same data, config and seed give the same weights"
        );
        let (other, _) = fit(&data, &cfg, 43, |_| {});
        assert_ne!(net, other);
    }

    #[test]
    fn logistic_regression_is_a_network_without_hidden_layers() {
        let (x, y) = blobs();
        let data = FitData {
            x: x.view(),
            y: &y,
            val: None,
            classes: 3,
        };
        let cfg = FitConfig {
            hidden_layers: vec![],
            dropout: 0.0,
            learning_rate: 0.05,
            max_epochs: 50,
            ..Default::default()
        };
        let (net, _) = fit(&data, &cfg, 1, |_| {});
        assert_eq!(net.layers.len(), 1);
        let pred = argmax_rows(net.predict_proba(x.view()).view());
        let acc = pred.iter().zip(&y).filter(|(p, t)| p == t).count() as f32 / 300.0;
        assert!(acc > 0.9, "accuracy {acc}");
    }
}
