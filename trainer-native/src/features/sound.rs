//! Sound features, MFCC-style: WAV decoded with `hound`, mixed to mono, cut into 25 ms Hamming
//! windows every 10 ms, power spectra with `rustfft`, 26 triangular mel filters, log energies, a
//! DCT-II to 13 cepstral coefficients; then each coefficient's mean and standard deviation over
//! the frames, plus the mean and spread of the frames' log energy.

use std::io::Cursor;

use anyhow::{Context, bail, ensure};
use rustfft::FftPlanner;
use rustfft::num_complex::Complex;

/// The feature pipeline: name and version.
pub const PIPELINE: registry::manifest::PipelineId =
    registry::manifest::PipelineId::new("sound-mfcc", 1);
const MEL_FILTERS: usize = 26;
const COEFFICIENTS: usize = 13;
/// Longest sound accepted, in seconds.
pub const MAX_SECONDS: f32 = 30.0;

/// Feature names, in vector order.
pub fn feature_names() -> Vec<String> {
    let mut names: Vec<String> = (0..COEFFICIENTS).map(|c| format!("mfcc{c}_mean")).collect();
    names.extend((0..COEFFICIENTS).map(|c| format!("mfcc{c}_std")));
    names.extend(["log_energy_mean".to_owned(), "log_energy_std".to_owned()]);
    names
}

/// Decodes a WAV file to mono samples in [-1, 1] and its sample rate.
pub fn decode_wav(bytes: &[u8]) -> anyhow::Result<(Vec<f32>, u32)> {
    let reader = hound::WavReader::new(Cursor::new(bytes)).context("not a readable WAV file")?;
    let spec = reader.spec();
    ensure!(
        spec.channels > 0 && spec.sample_rate >= 4000,
        "unsupported WAV format {spec:?}"
    );
    let seconds = reader.duration() as f32 / spec.sample_rate as f32;
    ensure!(
        seconds <= MAX_SECONDS,
        "sound is {seconds:.1} s long; at most {MAX_SECONDS} s"
    );
    let raw: Vec<f32> = match spec.sample_format {
        hound::SampleFormat::Float => reader.into_samples::<f32>().collect::<Result<_, _>>()?,
        hound::SampleFormat::Int => {
            let full_scale = (1i64 << (spec.bits_per_sample - 1)) as f32;
            reader
                .into_samples::<i32>()
                .map(|s| s.map(|v| v as f32 / full_scale))
                .collect::<Result<_, _>>()?
        }
    };
    let channels = spec.channels as usize;
    let mono = raw
        .chunks(channels)
        .map(|frame| frame.iter().sum::<f32>() / channels as f32)
        .collect();
    Ok((mono, spec.sample_rate))
}

fn hz_to_mel(hz: f32) -> f32 {
    2595.0 * (1.0 + hz / 700.0).log10()
}

fn mel_to_hz(mel: f32) -> f32 {
    700.0 * (10f32.powf(mel / 2595.0) - 1.0)
}

/// Log mel energies of each frame: (frames, [MEL_FILTERS]).
pub fn mel_energies(samples: &[f32], rate: u32) -> anyhow::Result<Vec<[f32; MEL_FILTERS]>> {
    let window = (rate as usize * 25) / 1000;
    let hop = (rate as usize * 10) / 1000;
    if samples.len() < window {
        bail!("sound is shorter than one 25 ms frame");
    }
    if let Some(v) = samples.iter().find(|v| !v.is_finite()) {
        bail!("sound holds a non-finite sample {v}");
    }
    let n_fft = window.next_power_of_two();
    let fft = FftPlanner::<f32>::new().plan_fft_forward(n_fft);
    let hamming: Vec<f32> = (0..window)
        .map(|i| 0.54 - 0.46 * (2.0 * std::f32::consts::PI * i as f32 / (window - 1) as f32).cos())
        .collect();
    // Triangular filters evenly spaced in mel from 0 Hz to Nyquist, over FFT bins.
    let bins = n_fft / 2 + 1;
    let top = hz_to_mel(rate as f32 / 2.0);
    let edges: Vec<f32> = (0..MEL_FILTERS + 2)
        .map(|i| mel_to_hz(top * i as f32 / (MEL_FILTERS + 1) as f32) * n_fft as f32 / rate as f32)
        .collect();
    let mut out = Vec::new();
    let mut buffer = vec![Complex::new(0.0f32, 0.0); n_fft];
    let mut start = 0;
    while start + window <= samples.len() {
        for (slot, (s, w)) in buffer
            .iter_mut()
            .zip(samples[start..start + window].iter().zip(&hamming))
        {
            *slot = Complex::new(s * w, 0.0);
        }
        buffer[window..].fill(Complex::new(0.0, 0.0));
        fft.process(&mut buffer);
        let power: Vec<f32> = buffer[..bins]
            .iter()
            .map(|c| c.norm_sqr() / n_fft as f32)
            .collect();
        let mut energies = [0.0f32; MEL_FILTERS];
        for (m, e) in energies.iter_mut().enumerate() {
            let (lo, mid, hi) = (edges[m], edges[m + 1], edges[m + 2]);
            let mut sum = 0.0;
            for (bin, p) in power.iter().enumerate() {
                let b = bin as f32;
                let weight = if b > lo && b <= mid {
                    (b - lo) / (mid - lo)
                } else if b > mid && b < hi {
                    (hi - b) / (hi - mid)
                } else {
                    0.0
                };
                sum += weight * p;
            }
            *e = (sum + 1e-10).ln();
        }
        out.push(energies);
        start += hop;
    }
    Ok(out)
}

/// The feature vector of a WAV file.
pub fn extract_wav(bytes: &[u8]) -> anyhow::Result<Vec<f32>> {
    let (samples, rate) = decode_wav(bytes)?;
    extract(&samples, rate)
}

/// The feature vector of mono samples at `rate`.
pub fn extract(samples: &[f32], rate: u32) -> anyhow::Result<Vec<f32>> {
    let frames = mel_energies(samples, rate)?;
    let n = frames.len() as f32;
    let mut cepstra: Vec<[f32; COEFFICIENTS]> = Vec::with_capacity(frames.len());
    let mut log_energy = Vec::with_capacity(frames.len());
    for e in &frames {
        let mut c = [0.0f32; COEFFICIENTS];
        for (k, ck) in c.iter_mut().enumerate() {
            *ck = e
                .iter()
                .enumerate()
                .map(|(m, v)| {
                    v * (std::f32::consts::PI * k as f32 * (m as f32 + 0.5) / MEL_FILTERS as f32)
                        .cos()
                })
                .sum();
        }
        cepstra.push(c);
        log_energy.push(e.iter().map(|v| v.exp()).sum::<f32>().max(1e-10).ln());
    }
    let mut out = Vec::with_capacity(2 * COEFFICIENTS + 2);
    let mean_std = |values: &mut dyn Iterator<Item = f32>| {
        let v: Vec<f32> = values.collect();
        let mean = v.iter().sum::<f32>() / n;
        let std = (v.iter().map(|x| (x - mean).powi(2)).sum::<f32>() / n).sqrt();
        (mean, std)
    };
    let stats: Vec<(f32, f32)> = (0..COEFFICIENTS)
        .map(|k| mean_std(&mut cepstra.iter().map(|c| c[k])))
        .collect();
    out.extend(stats.iter().map(|s| s.0));
    out.extend(stats.iter().map(|s| s.1));
    let (m, s) = mean_std(&mut log_energy.iter().copied());
    out.extend([m, s]);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(hz: f32, rate: u32, seconds: f32) -> Vec<f32> {
        (0..(rate as f32 * seconds) as usize)
            .map(|i| (2.0 * std::f32::consts::PI * hz * i as f32 / rate as f32).sin() * 0.5)
            .collect()
    }

    #[test]
    fn a_pure_tone_peaks_in_the_mel_band_that_holds_its_frequency() {
        let rate = 16000;
        for hz in [300.0f32, 1000.0, 3000.0] {
            let frames = mel_energies(&tone(hz, rate, 0.5), rate).unwrap();
            let peak = (0..MEL_FILTERS)
                .max_by(|&a, &b| frames[10][a].total_cmp(&frames[10][b]))
                .unwrap();
            let top = hz_to_mel(rate as f32 / 2.0);
            let centre = |m: usize| mel_to_hz(top * (m + 1) as f32 / (MEL_FILTERS + 1) as f32);
            let nearest = (0..MEL_FILTERS)
                .min_by(|&a, &b| (centre(a) - hz).abs().total_cmp(&(centre(b) - hz).abs()))
                .unwrap();
            assert!(
                peak.abs_diff(nearest) <= 1,
                "{hz} Hz peaks in band {peak}, nearest centre {nearest}"
            );
        }
    }

    #[test]
    fn wav_round_trip_and_limits() {
        let spec = hound::WavSpec {
            channels: 2,
            sample_rate: 8000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut bytes = Cursor::new(Vec::new());
        {
            let mut w = hound::WavWriter::new(&mut bytes, spec).unwrap();
            for s in tone(440.0, 8000, 0.2) {
                let v = (s * 32767.0) as i16;
                w.write_sample(v).unwrap();
                w.write_sample(v).unwrap();
            }
            w.finalize().unwrap();
        }
        let f = extract_wav(bytes.get_ref()).unwrap();
        assert_eq!(f.len(), feature_names().len());
        assert!(f.iter().all(|v| v.is_finite()));
        assert!(extract_wav(b"RIFF nonsense").is_err());
        assert!(
            extract(&[0.0; 10], 16000)
                .unwrap_err()
                .to_string()
                .contains("shorter than one")
        );
        let silence = extract(&vec![0.0; 16000], 16000).unwrap();
        assert!(
            silence.iter().all(|v| v.is_finite()),
            "silence gives finite features"
        );
    }
}
