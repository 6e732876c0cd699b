//! Gesture features: a variable-length sequence of frames (one value per sensor channel) becomes
//! each channel resampled to a fixed number of keyframes by linear interpolation, plus per-channel
//! summary statistics (mean, standard deviation, minimum, maximum, mean absolute first difference).

use anyhow::{bail, ensure};

/// The feature pipeline: name and version.
pub const PIPELINE: registry::manifest::PipelineId =
    registry::manifest::PipelineId::new("gesture-keyframes", 1);
/// Keyframes per channel.
pub const KEYFRAMES: usize = 16;
const STATS: [&str; 5] = ["mean", "std", "min", "max", "motion"];

/// Feature names for `channels` channels, in vector order.
pub fn feature_names(channels: usize) -> Vec<String> {
    let mut names = Vec::with_capacity(channels * (KEYFRAMES + STATS.len()));
    for c in 0..channels {
        names.extend((0..KEYFRAMES).map(|k| format!("ch{c}_k{k}")));
    }
    for c in 0..channels {
        names.extend(STATS.iter().map(|s| format!("ch{c}_{s}")));
    }
    names
}

/// Largest magnitude of a gesture value.
pub const MAX_VALUE: f32 = 1e6;

/// Features of one sequence of `frames` (each frame one value per channel).
pub fn extract(frames: &[Vec<f32>]) -> anyhow::Result<Vec<f32>> {
    ensure!(
        frames.len() >= 2,
        "a gesture needs at least 2 frames, got {}",
        frames.len()
    );
    let channels = frames[0].len();
    ensure!(channels > 0, "frames have no channels");
    for (i, f) in frames.iter().enumerate() {
        if f.len() != channels {
            bail!("frame {i} has {} channels, frame 0 has {channels}", f.len());
        }
        if let Some(v) = f.iter().find(|v| !v.is_finite()) {
            bail!("frame {i} holds a non-finite value {v}");
        }
        // Sensor readings (g, deg/s, normalised landmarks) are small; beyond this the statistics
        // overflow f32 (found by the fuzz test: a variance of -3.3e31 was infinite).
        if let Some(v) = f.iter().find(|v| v.abs() > MAX_VALUE) {
            bail!("frame {i} holds {v}, beyond the ±{MAX_VALUE:e} a gesture value may have");
        }
    }
    let n = frames.len();
    let columns: Vec<Vec<f32>> = (0..channels)
        .map(|c| frames.iter().map(|f| f[c]).collect())
        .collect();
    let mut out = Vec::with_capacity(channels * (KEYFRAMES + STATS.len()));
    for values in &columns {
        for k in 0..KEYFRAMES {
            let t = k as f32 * (n - 1) as f32 / (KEYFRAMES - 1) as f32;
            let (i, frac) = (t.floor() as usize, t.fract());
            let next = (i + 1).min(n - 1);
            out.push(values[i] * (1.0 - frac) + values[next] * frac);
        }
    }
    for values in &columns {
        let mean = values.iter().sum::<f32>() / n as f32;
        let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / n as f32;
        let min = values.iter().copied().fold(f32::INFINITY, f32::min);
        let max = values.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let motion = values.windows(2).map(|w| (w[1] - w[0]).abs()).sum::<f32>() / (n - 1) as f32;
        out.extend([mean, var.sqrt(), min, max, motion]);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resampling_and_stats_match_hand_values() {
        // One channel rising 0, 1, 2, 3: keyframes spread evenly from 0 to 3.
        let frames: Vec<Vec<f32>> = (0..4).map(|i| vec![i as f32]).collect();
        let f = extract(&frames).unwrap();
        assert_eq!(f.len(), KEYFRAMES + 5);
        assert_eq!(f[0], 0.0);
        assert_eq!(f[KEYFRAMES - 1], 3.0);
        assert!((f[5] - 1.0).abs() < 1e-6, "keyframe 5 of 15 is at t = 1.0");
        let stats = &f[KEYFRAMES..];
        assert_eq!(stats[0], 1.5);
        assert!((stats[1] - 1.25f32.sqrt()).abs() < 1e-6);
        assert_eq!((stats[2], stats[3], stats[4]), (0.0, 3.0, 1.0));
        assert_eq!(feature_names(1).len(), f.len());
    }

    #[test]
    fn bad_sequences_are_refused() {
        assert!(extract(&[vec![1.0]]).is_err());
        assert!(
            extract(&[vec![1.0, 2.0], vec![1.0]])
                .unwrap_err()
                .to_string()
                .contains("frame 1")
        );
        assert!(extract(&[vec![1.0], vec![f32::NAN]]).is_err());
    }
}
