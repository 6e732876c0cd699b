//! Hand-made forensic features of a normalised image, the same code in training and serving.
//!
//! [`PIPELINE`] names and versions them; a model records it in its manifest, and a function
//! refuses a model whose pipeline version it does not implement. From the 256×256 RGB pixels:
//!
//! - **radial power spectrum** (16): the grey image minus its mean, Hann-windowed, 2-D FFT;
//!   the power summed in 16 rings of width 8 (radius 0–128), as log10 of each ring's share of
//!   the total. Generators and camera pipelines leave different high-frequency energy.
//! - **noise residual** (7): the grey image minus its 3×3 box blur: standard deviation, mean
//!   absolute value, skewness, excess kurtosis; and each channel's residual standard deviation.
//! - **colour** (10): mean and standard deviation of R, G, B; mean and standard deviation of HSV
//!   saturation; the Hasler–Süsstrunk colourfulness; the share of near-saturated pixels.
//!
//! Every value is checked finite; a NaN or infinity is an error naming the feature.

use image::RgbImage;
use rustfft::FftPlanner;
use rustfft::num_complex::Complex;

use crate::normalize::SIDE;

/// Name and version of this feature pipeline.
pub const PIPELINE: registry::manifest::PipelineId =
    registry::manifest::PipelineId::new("image-forensics", 1);
/// Rings of the radial spectrum.
pub const RINGS: usize = 16;

/// The feature names, in vector order.
pub fn names() -> Vec<String> {
    let mut n: Vec<String> = (0..RINGS)
        .map(|i| format!("spectrum_ring_{i:02}"))
        .collect();
    for s in [
        "residual_std",
        "residual_mean_abs",
        "residual_skewness",
        "residual_kurtosis",
        "residual_std_r",
        "residual_std_g",
        "residual_std_b",
        "mean_r",
        "mean_g",
        "mean_b",
        "std_r",
        "std_g",
        "std_b",
        "saturation_mean",
        "saturation_std",
        "colourfulness",
        "saturated_share",
    ] {
        n.push(s.to_owned());
    }
    n
}

/// A feature that came out NaN or infinite.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("feature {name} is not finite ({value})")]
pub struct NotFinite {
    /// The feature.
    pub name: String,
    /// Its value.
    pub value: f32,
}

fn grey(img: &RgbImage) -> Vec<f32> {
    img.pixels()
        .map(|p| 0.299 * f32::from(p[0]) + 0.587 * f32::from(p[1]) + 0.114 * f32::from(p[2]))
        .collect()
}

fn radial_spectrum(g: &[f32], n: usize) -> [f32; RINGS] {
    let mean = g.iter().sum::<f32>() / g.len() as f32;
    let hann: Vec<f32> = (0..n)
        .map(|i| 0.5 - 0.5 * (2.0 * std::f32::consts::PI * i as f32 / n as f32).cos())
        .collect();
    let mut data: Vec<Complex<f32>> = g
        .iter()
        .enumerate()
        .map(|(i, v)| Complex::new((v - mean) * hann[i / n] * hann[i % n], 0.0))
        .collect();
    let fft = FftPlanner::<f32>::new().plan_fft_forward(n);
    for row in data.chunks_exact_mut(n) {
        fft.process(row);
    }
    let mut column = vec![Complex::new(0.0, 0.0); n];
    for x in 0..n {
        for y in 0..n {
            column[y] = data[y * n + x];
        }
        fft.process(&mut column);
        for y in 0..n {
            data[y * n + x] = column[y];
        }
    }
    let mut rings = [0f64; RINGS];
    let half = n as f32 / 2.0;
    let width = half / RINGS as f32;
    for y in 0..n {
        let fy = if y < n / 2 {
            y as f32
        } else {
            y as f32 - n as f32
        };
        for x in 0..n {
            let fx = if x < n / 2 {
                x as f32
            } else {
                x as f32 - n as f32
            };
            let r = (fx * fx + fy * fy).sqrt();
            let ring = (r / width) as usize;
            if ring < RINGS {
                rings[ring] += f64::from(data[y * n + x].norm_sqr());
            }
        }
    }
    let total: f64 = rings.iter().sum::<f64>().max(f64::MIN_POSITIVE);
    rings.map(|p| ((p / total).max(1e-12)).log10() as f32)
}

/// `values` minus their 3×3 box blur (edges replicated).
fn residual(values: &[f32], n: usize) -> Vec<f32> {
    let at = |x: isize, y: isize| {
        let cx = x.clamp(0, n as isize - 1) as usize;
        let cy = y.clamp(0, n as isize - 1) as usize;
        values[cy * n + cx]
    };
    let mut out = Vec::with_capacity(values.len());
    for y in 0..n as isize {
        for x in 0..n as isize {
            let mut s = 0.0;
            for dy in -1..=1 {
                for dx in -1..=1 {
                    s += at(x + dx, y + dy);
                }
            }
            out.push(at(x, y) - s / 9.0);
        }
    }
    out
}

/// Mean, standard deviation, skewness and excess kurtosis.
fn moments(v: &[f32]) -> (f32, f32, f32, f32) {
    let n = v.len() as f64;
    let mean = v.iter().map(|&x| f64::from(x)).sum::<f64>() / n;
    let (mut m2, mut m3, mut m4) = (0.0, 0.0, 0.0);
    for &x in v {
        let d = f64::from(x) - mean;
        m2 += d * d;
        m3 += d * d * d;
        m4 += d * d * d * d;
    }
    let (m2, m3, m4) = (m2 / n, m3 / n, m4 / n);
    let std = m2.sqrt();
    let skew = if m2 > 0.0 { m3 / m2.powf(1.5) } else { 0.0 };
    let kurt = if m2 > 0.0 { m4 / (m2 * m2) - 3.0 } else { 0.0 };
    (mean as f32, std as f32, skew as f32, kurt as f32)
}

/// The feature vector of a normalised (`SIDE`×`SIDE`) image.
pub fn extract(img: &RgbImage) -> Result<Vec<f32>, NotFinite> {
    let n = SIDE as usize;
    assert_eq!(
        img.dimensions(),
        (SIDE, SIDE),
        "features take normalised images"
    );
    let g = grey(img);
    let mut out: Vec<f32> = radial_spectrum(&g, n).to_vec();
    let r = residual(&g, n);
    let (_, std, skew, kurt) = moments(&r);
    let mean_abs = r.iter().map(|v| v.abs()).sum::<f32>() / r.len() as f32;
    out.extend([std, mean_abs, skew, kurt]);
    let channels: Vec<Vec<f32>> = (0..3)
        .map(|c| img.pixels().map(|p| f32::from(p[c])).collect())
        .collect();
    for ch in &channels {
        out.push(moments(&residual(ch, n)).1);
    }
    let stats: Vec<(f32, f32)> = channels
        .iter()
        .map(|ch| {
            let (m, s, _, _) = moments(ch);
            (m, s)
        })
        .collect();
    out.extend(stats.iter().map(|s| s.0));
    out.extend(stats.iter().map(|s| s.1));
    let sat: Vec<f32> = img
        .pixels()
        .map(|p| {
            let max = p.0.iter().copied().max().unwrap_or(0);
            let min = p.0.iter().copied().min().unwrap_or(0);
            if max == 0 {
                0.0
            } else {
                f32::from(max - min) / f32::from(max)
            }
        })
        .collect();
    let (sm, ss, _, _) = moments(&sat);
    out.extend([sm, ss]);
    // Hasler and Süsstrunk (2003): rg = R - G, yb = (R + G)/2 - B.
    let rg: Vec<f32> = img
        .pixels()
        .map(|p| f32::from(p[0]) - f32::from(p[1]))
        .collect();
    let yb: Vec<f32> = img
        .pixels()
        .map(|p| 0.5 * (f32::from(p[0]) + f32::from(p[1])) - f32::from(p[2]))
        .collect();
    let (rgm, rgs, _, _) = moments(&rg);
    let (ybm, ybs, _, _) = moments(&yb);
    out.push((rgs * rgs + ybs * ybs).sqrt() + 0.3 * (rgm * rgm + ybm * ybm).sqrt());
    out.push(sat.iter().filter(|&&s| s > 0.9).count() as f32 / sat.len() as f32);
    for (value, name) in out.iter().zip(names()) {
        if !value.is_finite() {
            return Err(NotFinite {
                name,
                value: *value,
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::Rgb;

    fn image(mut f: impl FnMut(u32, u32) -> [u8; 3]) -> RgbImage {
        RgbImage::from_fn(SIDE, SIDE, |x, y| Rgb(f(x, y)))
    }

    #[test]
    fn a_sinusoid_has_its_spectral_peak_in_its_ring() {
        // 44 cycles across 256 px: radius 44, in ring 5 (radii 40 to 48).
        let img = image(|x, _| {
            let v = 127.5 + 100.0 * (2.0 * std::f32::consts::PI * 44.0 * x as f32 / 256.0).sin();
            [v as u8; 3]
        });
        let f = extract(&img).unwrap();
        let ring = f[..RINGS]
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .unwrap()
            .0;
        assert_eq!(ring, 5, "{:?}", &f[..RINGS]);
        assert!(
            f[5] > -0.05,
            "the ring holds nearly all the power: {}",
            f[5]
        );
    }

    #[test]
    fn flat_images_have_no_residual_and_grey_has_no_colour() {
        let f = extract(&image(|_, _| [90, 90, 90])).unwrap();
        let names = names();
        let get = |n: &str| f[names.iter().position(|x| x == n).unwrap()];
        assert_eq!(get("residual_std"), 0.0);
        assert_eq!(get("saturation_mean"), 0.0);
        assert_eq!(get("colourfulness"), 0.0);
        assert!((get("mean_r") - 90.0).abs() < 1e-4);
        assert_eq!(f.len(), names.len());
        let red = extract(&image(|_, _| [250, 0, 0])).unwrap();
        assert!(red[names.iter().position(|x| x == "saturated_share").unwrap()] > 0.99);
    }

    #[test]
    fn noise_raises_the_residual_and_the_high_rings() {
        let mut rng = 12345u64;
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            (rng % 256) as u8
        };
        let noisy = image(|_, _| {
            let v = next();
            [v, v, v]
        });
        let smooth = image(|x, y| [(x / 2) as u8, (y / 2) as u8, 128]);
        let (a, b) = (extract(&noisy).unwrap(), extract(&smooth).unwrap());
        assert!(
            a[RINGS] > 10.0 * b[RINGS],
            "residual std {} vs {}",
            a[RINGS],
            b[RINGS]
        );
        assert!(a[RINGS - 1] > b[RINGS - 1], "outer ring share");
    }
}
