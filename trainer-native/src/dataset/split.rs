//! Seeded, stratified splits: train/validation/test and k folds. The same labels, ratios and
//! seed always give the same rows.

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use registry::Digest;
use serde::{Deserialize, Serialize};

/// Fractions of the data for each part; they must sum to 1.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Ratios {
    /// Training share.
    pub train: f64,
    /// Validation share (early stopping); may be 0 for a 90/10 train/test split.
    pub val: f64,
    /// Held-out test share.
    pub test: f64,
}

impl Default for Ratios {
    fn default() -> Self {
        Self {
            train: 0.70,
            val: 0.15,
            test: 0.15,
        }
    }
}

impl Ratios {
    /// Checks that every share is in [0, 1), train and test are positive, and they sum to 1.
    pub fn validate(&self) -> Result<(), String> {
        let sum = self.train + self.val + self.test;
        if (sum - 1.0).abs() > 1e-6 {
            return Err(format!("split ratios must sum to 1, they sum to {sum}"));
        }
        if self.train <= 0.0 || self.test <= 0.0 || self.val < 0.0 {
            return Err("train and test ratios must be positive, val not negative".into());
        }
        Ok(())
    }
}

/// Row indices of each part, each sorted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split {
    /// Training rows.
    pub train: Vec<usize>,
    /// Validation rows.
    pub val: Vec<usize>,
    /// Test rows.
    pub test: Vec<usize>,
}

impl Split {
    /// A digest naming exactly which rows of which dataset are the test split, so that quality
    /// gates compare models on the same rows.
    pub fn test_digest(&self, dataset: &Digest) -> Digest {
        let mut h = registry::digest::Hasher::default();
        h.update(dataset.as_bytes());
        for row in &self.test {
            h.update(&(*row as u64).to_le_bytes());
        }
        h.finish()
    }
}

fn by_class(labels: &[usize], seed: u64) -> Vec<Vec<usize>> {
    let classes = labels.iter().max().map_or(0, |m| m + 1);
    let mut groups = vec![Vec::new(); classes];
    for (row, &c) in labels.iter().enumerate() {
        groups[c].push(row);
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    for g in &mut groups {
        g.shuffle(&mut rng);
    }
    groups
}

/// Splits rows per class by `ratios`, so every part keeps the class proportions.
pub fn stratified(labels: &[usize], ratios: Ratios, seed: u64) -> Split {
    let mut split = Split {
        train: Vec::new(),
        val: Vec::new(),
        test: Vec::new(),
    };
    for rows in by_class(labels, seed) {
        let n = rows.len();
        let mut n_test = (n as f64 * ratios.test).round() as usize;
        let mut n_val = (n as f64 * ratios.val).round() as usize;
        // Keep at least one training row per class, then one test row if there are two.
        if n >= 2 {
            n_test = n_test.max(1);
        }
        while n_test + n_val >= n && (n_val > 0 || n_test > 0) {
            if n_val > 0 {
                n_val -= 1;
            } else {
                n_test -= 1;
            }
        }
        split.test.extend_from_slice(&rows[..n_test]);
        split.val.extend_from_slice(&rows[n_test..n_test + n_val]);
        split.train.extend_from_slice(&rows[n_test + n_val..]);
    }
    split.train.sort_unstable();
    split.val.sort_unstable();
    split.test.sort_unstable();
    split
}

/// `k` stratified folds over `labels`: for each fold, (training rows, held-out rows).
pub fn stratified_folds(labels: &[usize], k: usize, seed: u64) -> Vec<(Vec<usize>, Vec<usize>)> {
    let mut fold_of = vec![0usize; labels.len()];
    for rows in by_class(labels, seed) {
        for (i, row) in rows.into_iter().enumerate() {
            fold_of[row] = i % k;
        }
    }
    (0..k)
        .map(|f| {
            let (held, kept): (Vec<usize>, Vec<usize>) =
                (0..labels.len()).partition(|&r| fold_of[r] == f);
            (kept, held)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels() -> Vec<usize> {
        (0..200).map(|i| if i % 4 == 0 { 1 } else { 0 }).collect()
    }

    #[test]
    fn split_is_stratified_disjoint_and_seeded() {
        let y = labels();
        let s = stratified(&y, Ratios::default(), 7);
        assert_eq!(s.train.len() + s.val.len() + s.test.len(), 200);
        assert_eq!(s.test.len(), 31); // 15% of 150 and of 50, each rounded: 23 + 8
        assert_eq!(s.test.iter().filter(|&&r| y[r] == 1).count(), 8); // 15% of 50, rounded
        let mut all: Vec<_> = s
            .train
            .iter()
            .chain(&s.val)
            .chain(&s.test)
            .copied()
            .collect();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), 200, "parts are disjoint and cover every row");
        assert_eq!(s, stratified(&y, Ratios::default(), 7));
        assert_ne!(s.test, stratified(&y, Ratios::default(), 8).test);
    }

    #[test]
    fn ninety_ten_and_tiny_classes() {
        let y = labels();
        let r = Ratios {
            train: 0.9,
            val: 0.0,
            test: 0.1,
        };
        let s = stratified(&y, r, 1);
        assert!(s.val.is_empty());
        assert_eq!(s.test.len(), 20);
        let s = stratified(&[0, 0, 0, 1, 1], Ratios::default(), 1);
        assert!(
            s.train.contains(&3) || s.train.contains(&4),
            "each class keeps a training row"
        );
        assert!(
            Ratios {
                train: 0.5,
                val: 0.1,
                test: 0.1
            }
            .validate()
            .is_err()
        );
    }

    #[test]
    fn folds_partition_the_rows() {
        let y = labels();
        let folds = stratified_folds(&y, 5, 3);
        let mut held: Vec<usize> = folds.iter().flat_map(|(_, h)| h.clone()).collect();
        held.sort_unstable();
        assert_eq!(held, (0..200).collect::<Vec<_>>());
        for (train, test) in &folds {
            assert_eq!(train.len() + test.len(), 200);
            assert_eq!(test.iter().filter(|&&r| y[r] == 1).count(), 10);
        }
    }
}
