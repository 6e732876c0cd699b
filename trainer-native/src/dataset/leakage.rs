//! Leakage checks made before anything is written: a near-duplicate pair on both sides of the
//! train/test split would inflate the test score.

use registry::samples::NEAR_DUPLICATE_BITS;

use super::split::Split;

/// Pairs (test row, training or validation row) whose perceptual hashes are within the
/// near-duplicate threshold of ingestion.
pub fn near_duplicates_across(hashes: &[Option<u64>], split: &Split) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    for &t in &split.test {
        let Some(a) = hashes.get(t).copied().flatten() else {
            continue;
        };
        for &o in split.train.iter().chain(&split.val) {
            if let Some(b) = hashes.get(o).copied().flatten()
                && (a ^ b).count_ones() <= NEAR_DUPLICATE_BITS
            {
                out.push((t, o));
            }
        }
    }
    out
}

/// Refuses a split that a near-duplicate pair straddles.
pub fn check_split(hashes: &[Option<u64>], split: &Split) -> anyhow::Result<()> {
    let straddling = near_duplicates_across(hashes, split);
    anyhow::ensure!(
        straddling.is_empty(),
        "{} near-duplicate pairs straddle the train/test split (rows {:?}): the test score \
         would be inflated",
        straddling.len(),
        &straddling[..straddling.len().min(5)]
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(train: &[usize], val: &[usize], test: &[usize]) -> Split {
        Split {
            train: train.to_vec(),
            val: val.to_vec(),
            test: test.to_vec(),
        }
    }

    #[test]
    fn pairs_within_the_threshold_across_the_split_are_found() {
        let near = (1u64 << NEAR_DUPLICATE_BITS) - 1; // exactly NEAR_DUPLICATE_BITS bits set
        let far = (1u64 << (NEAR_DUPLICATE_BITS + 1)) - 1;
        let hashes = [Some(0), Some(near), Some(far), None, Some(0)];
        // Row 0 (test) and row 1 (train) are near; row 2 is one bit too far; row 3 has no hash.
        let s = split(&[1, 2, 3], &[], &[0]);
        assert_eq!(near_duplicates_across(&hashes, &s), vec![(0, 1)]);
        assert!(check_split(&hashes, &s).is_err());
        // Validation rows count as training's side; two test rows may be alike.
        let s = split(&[3], &[4], &[0, 1]);
        assert_eq!(near_duplicates_across(&hashes, &s), vec![(0, 4), (1, 4)]);
        // Rows 1 and 2 differ in one bit: near, whichever side of the split each is on.
        let s = split(&[2], &[], &[0]);
        assert!(check_split(&hashes, &s).is_ok());
        let s = split(&[2], &[], &[1]);
        assert_eq!(near_duplicates_across(&hashes, &s), vec![(1, 2)]);
        let s = split(&[3], &[], &[0, 1, 4]);
        assert!(check_split(&hashes, &s).is_ok());
    }
}
