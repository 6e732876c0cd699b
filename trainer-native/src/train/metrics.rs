//! Classification metrics: accuracy, per-class/macro/weighted precision, recall and F1, ROC AUC
//! (binary, and one-vs-rest macro), confusion matrix and log loss.

use ndarray::ArrayView2;
use serde::Serialize;

use super::mlp::{argmax_rows, log_loss};

/// Precision, recall, F1 and support of one class.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClassScores {
    /// The class label.
    pub label: String,
    /// Precision.
    pub precision: f64,
    /// Recall.
    pub recall: f64,
    /// F1.
    pub f1: f64,
    /// Rows of this class.
    pub support: usize,
}

/// Every metric of one evaluation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// Rows evaluated.
    pub rows: usize,
    /// Accuracy.
    pub accuracy: f64,
    /// Macro-averaged precision.
    pub precision_macro: f64,
    /// Macro-averaged recall.
    pub recall_macro: f64,
    /// Macro-averaged F1.
    pub f1_macro: f64,
    /// Support-weighted precision.
    pub precision_weighted: f64,
    /// Support-weighted recall.
    pub recall_weighted: f64,
    /// Support-weighted F1.
    pub f1_weighted: f64,
    /// ROC AUC: binary, or one-vs-rest macro over classes present.
    pub roc_auc: Option<f64>,
    /// The ROC curve of a binary problem (class 1's probability), for plots.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub roc_curve: Option<Vec<RocPoint>>,
    /// Cross-entropy.
    pub log_loss: f64,
    /// Rows: true class; columns: predicted.
    pub confusion_matrix: Vec<Vec<u64>>,
    /// Per-class scores.
    pub per_class: Vec<ClassScores>,
}

/// Evaluates probabilities `proba` (rows × classes) against true classes `y`.
pub fn evaluate(proba: ArrayView2<f32>, y: &[usize], labels: &[String]) -> Report {
    let k = labels.len();
    let pred = argmax_rows(proba);
    let mut cm = vec![vec![0u64; k]; k];
    for (&t, &p) in y.iter().zip(&pred) {
        cm[t][p] += 1;
    }
    let n = y.len();
    let correct: u64 = (0..k).map(|c| cm[c][c]).sum();
    let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
    let per_class: Vec<ClassScores> = (0..k)
        .map(|c| {
            let tp = cm[c][c] as f64;
            let predicted: f64 = (0..k).map(|t| cm[t][c] as f64).sum();
            let actual: f64 = cm[c].iter().sum::<u64>() as f64;
            let precision = ratio(tp, predicted);
            let recall = ratio(tp, actual);
            ClassScores {
                label: labels[c].clone(),
                precision,
                recall,
                f1: ratio(2.0 * precision * recall, precision + recall),
                support: actual as usize,
            }
        })
        .collect();
    let mean = |f: fn(&ClassScores) -> f64| per_class.iter().map(f).sum::<f64>() / k as f64;
    let weighted = |f: fn(&ClassScores) -> f64| {
        ratio(
            per_class.iter().map(|c| f(c) * c.support as f64).sum(),
            n as f64,
        )
    };
    Report {
        rows: n,
        accuracy: ratio(correct as f64, n as f64),
        precision_macro: mean(|c| c.precision),
        recall_macro: mean(|c| c.recall),
        f1_macro: mean(|c| c.f1),
        precision_weighted: weighted(|c| c.precision),
        recall_weighted: weighted(|c| c.recall),
        f1_weighted: weighted(|c| c.f1),
        roc_auc: roc_auc(proba, y),
        roc_curve: (proba.ncols() == 2)
            .then(|| roc_curve(proba.column(1).iter().copied(), y.iter().map(|&c| c == 1)))
            .flatten(),
        log_loss: log_loss(proba, y) as f64,
        confusion_matrix: cm,
        per_class,
    }
}

/// A point of a ROC curve: predicting positive when the score is at least `threshold` gives
/// these false and true positive rates.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RocPoint {
    /// The score threshold.
    pub threshold: f32,
    /// False positive rate.
    pub fpr: f64,
    /// True positive rate.
    pub tpr: f64,
}

/// The ROC curve: one point per distinct score, highest first (the curve starts at (0, 0),
/// which is left out). `None` without both positive and negative rows.
pub fn roc_curve(
    scores: impl Iterator<Item = f32>,
    positive: impl Iterator<Item = bool>,
) -> Option<Vec<RocPoint>> {
    let mut pairs: Vec<(f32, bool)> = scores.zip(positive).collect();
    let n_pos = pairs.iter().filter(|(_, p)| *p).count();
    let n_neg = pairs.len() - n_pos;
    if n_pos == 0 || n_neg == 0 {
        return None;
    }
    pairs.sort_by(|a, b| b.0.total_cmp(&a.0));
    let (mut tp, mut fp) = (0usize, 0usize);
    let mut points = Vec::new();
    for (i, (score, pos)) in pairs.iter().enumerate() {
        if *pos {
            tp += 1;
        } else {
            fp += 1;
        }
        if pairs.get(i + 1).is_none_or(|next| next.0 != *score) {
            points.push(RocPoint {
                threshold: *score,
                fpr: fp as f64 / n_neg as f64,
                tpr: tp as f64 / n_pos as f64,
            });
        }
    }
    Some(points)
}

/// ROC AUC: for two classes, of class 1's probability; for more, the macro mean of one-vs-rest
/// AUCs over classes that have both positive and negative rows. `None` when undefined.
pub fn roc_auc(proba: ArrayView2<f32>, y: &[usize]) -> Option<f64> {
    let k = proba.ncols();
    if k == 2 {
        return binary_auc(proba.column(1).iter().copied(), y.iter().map(|&c| c == 1));
    }
    let aucs: Vec<f64> = (0..k)
        .filter_map(|c| binary_auc(proba.column(c).iter().copied(), y.iter().map(|&t| t == c)))
        .collect();
    (!aucs.is_empty()).then(|| aucs.iter().sum::<f64>() / aucs.len() as f64)
}

/// The Mann–Whitney form of the AUC, with tied scores counted as half.
fn binary_auc(
    scores: impl Iterator<Item = f32>,
    positive: impl Iterator<Item = bool>,
) -> Option<f64> {
    let mut pairs: Vec<(f32, bool)> = scores.zip(positive).collect();
    let n_pos = pairs.iter().filter(|(_, p)| *p).count();
    let n_neg = pairs.len() - n_pos;
    if n_pos == 0 || n_neg == 0 {
        return None;
    }
    pairs.sort_by(|a, b| a.0.total_cmp(&b.0));
    // Sum of the (average, 1-based) ranks of the positives.
    let mut rank_sum = 0.0f64;
    let mut i = 0;
    while i < pairs.len() {
        let mut j = i;
        while j + 1 < pairs.len() && pairs[j + 1].0 == pairs[i].0 {
            j += 1;
        }
        let avg_rank = (i + j) as f64 / 2.0 + 1.0;
        rank_sum += avg_rank * pairs[i..=j].iter().filter(|(_, p)| *p).count() as f64;
        i = j + 1;
    }
    let u = rank_sum - (n_pos * (n_pos + 1)) as f64 / 2.0;
    Some(u / (n_pos * n_neg) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn binary_metrics_match_hand_counts() {
        // scores for class 1: 0.1 0.4 0.35 0.8, truth 0 0 1 1 (scikit-learn's roc_auc example: 0.75)
        let p = array![[0.9f32, 0.1], [0.6, 0.4], [0.65, 0.35], [0.2, 0.8]];
        let y = [0, 0, 1, 1];
        let labels = vec!["neg".to_string(), "pos".to_string()];
        let r = evaluate(p.view(), &y, &labels);
        assert!((r.roc_auc.unwrap() - 0.75).abs() < 1e-12);
        // scikit-learn's roc_curve on the same scores: fpr 0 0 .5 .5 1, tpr 0 .5 .5 1 1.
        let curve = r.roc_curve.as_ref().unwrap();
        let fpr: Vec<f64> = curve.iter().map(|p| p.fpr).collect();
        let tpr: Vec<f64> = curve.iter().map(|p| p.tpr).collect();
        assert_eq!(fpr, [0.0, 0.5, 0.5, 1.0]);
        assert_eq!(tpr, [0.5, 0.5, 1.0, 1.0]);
        assert_eq!(r.confusion_matrix, vec![vec![2, 0], vec![1, 1]]);
        assert!((r.accuracy - 0.75).abs() < 1e-12);
        assert!((r.per_class[1].precision - 1.0).abs() < 1e-12);
        assert!((r.per_class[1].recall - 0.5).abs() < 1e-12);
        assert!((r.per_class[0].precision - 2.0 / 3.0).abs() < 1e-12);
        assert!((r.f1_macro - (0.8 + 2.0 / 3.0) / 2.0).abs() < 1e-12);
    }

    #[test]
    fn ties_count_half_and_multiclass_is_one_vs_rest() {
        assert_eq!(
            binary_auc([0.5f32, 0.5].into_iter(), [true, false].into_iter()),
            Some(0.5)
        );
        assert_eq!(binary_auc([0.5f32].into_iter(), [true].into_iter()), None);
        let p = array![[0.8f32, 0.1, 0.1], [0.1, 0.8, 0.1], [0.1, 0.1, 0.8]];
        let r = roc_auc(p.view(), &[0, 1, 2]).unwrap();
        assert!((r - 1.0).abs() < 1e-12);
    }
}
