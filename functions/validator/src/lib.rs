//! The validator component (`wit/validator.wit`): checks an artifact's digest and size against
//! the manifest, loads it with tract, checks the signature, and reproduces the golden outputs.
//! The trainer runs this same `.wasm` under wasmtime before it publishes, so nothing is published
//! that the serving runtime would refuse; the models function is composed with it, and runs
//! classifications through its `infer` interface, so serving and validation share one tract.

// `generate!` and `export!` emit the canonical-ABI glue, which is `unsafe` code.
#![allow(unsafe_code)]

use registry::manifest::GoldenCase;
use registry::{Digest, Manifest};
use tract_onnx::prelude::*;

wit_bindgen::generate!({ path: "../../wit", world: "validator" });

use exports::exposr::validator::infer::{self, Outputs};
use exports::exposr::validator::validate::{Guest, Report};

/// Largest difference accepted between the float file's outputs and the golden ones.
const FLOAT_TOLERANCE: f32 = 1e-5;

struct Validator;

impl Guest for Validator {
    fn validate(manifest_json: String, role: String, artifact: Vec<u8>) -> Result<Report, String> {
        let manifest: Manifest =
            serde_json::from_str(&manifest_json).map_err(|e| format!("manifest: {e}"))?;
        let entry = manifest
            .artifact(&role)
            .ok_or_else(|| format!("the manifest has no artifact with role {role:?}"))?;
        let digest = Digest::of(&artifact);
        let mut report = Report {
            ok: false,
            digest: digest.to_string(),
            digest_matches: digest == entry.digest,
            size_matches: artifact.len() as u64 == entry.size,
            signature_matches: false,
            golden_checked: 0,
            golden_max_abs_diff: 0.0,
            golden_argmax_agree: 0,
            problems: Vec::new(),
        };
        if !report.digest_matches {
            report.problems.push(format!(
                "digest {digest} differs from the manifest's {}",
                entry.digest
            ));
        }
        if !report.size_matches {
            report.problems.push(format!(
                "{} bytes, the manifest says {}",
                artifact.len(),
                entry.size
            ));
        }
        if report.digest_matches
            && report.size_matches
            && let Err(e) = run(&manifest, &role, &artifact, &mut report)
        {
            report.problems.push(e);
        }
        report.ok = report.problems.is_empty();
        Ok(report)
    }
}

impl infer::Guest for Validator {
    fn run(model: Vec<u8>, width: u32, features: Vec<f32>) -> Result<Outputs, String> {
        let width = width as usize;
        if width == 0 || features.is_empty() || !features.len().is_multiple_of(width) {
            return Err(format!(
                "{} values do not make whole rows of {width}",
                features.len()
            ));
        }
        let model = load(&model)?;
        let (values, cols) = run_rows(&model, width, &features)?;
        Ok(Outputs {
            rows: (features.len() / width) as u32,
            width: cols as u32,
            values,
        })
    }
}

type Runnable = std::sync::Arc<TypedRunnableModel>;

fn load(bytes: &[u8]) -> Result<Runnable, String> {
    tract_onnx::onnx()
        .model_for_read(&mut &bytes[..])
        .and_then(|m| m.into_optimized())
        .and_then(|m| m.into_runnable())
        .map_err(|e| format!("tract cannot load the model: {e}"))
}

/// Runs `data` (rows of `n_in`) and returns the first output row-major, with its width.
fn run_rows(model: &Runnable, n_in: usize, data: &[f32]) -> Result<(Vec<f32>, usize), String> {
    let rows = data.len() / n_in;
    let input = Tensor::from_shape(&[rows, n_in], data).map_err(|e| e.to_string())?;
    let out = model
        .run(tvec!(input.into()))
        .map_err(|e| format!("tract cannot run the model: {e}"))?;
    let view = out[0]
        .to_plain_array_view::<f32>()
        .map_err(|e| e.to_string())?;
    match view.shape() {
        [r, cols] if *r == rows => Ok((view.iter().copied().collect(), *cols)),
        other => Err(format!("output shape {other:?}, expected [{rows}, width]")),
    }
}

fn width(shape: &[Option<u64>]) -> Option<usize> {
    shape.last().copied().flatten().map(|w| w as usize)
}

fn run(manifest: &Manifest, role: &str, bytes: &[u8], report: &mut Report) -> Result<(), String> {
    let model = load(bytes)?;
    let inputs = manifest
        .signature
        .inputs
        .first()
        .and_then(|t| width(&t.shape));
    let outputs = manifest
        .signature
        .outputs
        .first()
        .and_then(|t| width(&t.shape));
    let (Some(n_in), Some(n_out)) = (inputs, outputs) else {
        return Err("the manifest's signature has no fixed input and output widths".into());
    };
    let int8 = role.ends_with("int8");
    let cases: &[GoldenCase] = if int8 && !manifest.golden_int8.is_empty() {
        &manifest.golden_int8
    } else {
        &manifest.golden
    };
    // A probe row checks the signature even without golden cases.
    let probe = [GoldenCase {
        input: vec![0.0; n_in],
        expected: vec![],
    }];
    let rows = if cases.is_empty() { &probe[..] } else { cases };
    let data: Vec<f32> = rows.iter().flat_map(|c| c.input.iter().copied()).collect();
    if data.len() != rows.len() * n_in {
        return Err(format!("golden inputs do not all have {n_in} values"));
    }
    let (values, cols) = run_rows(&model, n_in, &data)?;
    if cols != n_out {
        return Err(format!(
            "output width {cols}, the signature says [batch, {n_out}]"
        ));
    }
    report.signature_matches = true;
    for (i, case) in cases.iter().enumerate() {
        let got = &values[i * n_out..(i + 1) * n_out];
        // A NaN or infinity on either side is the largest difference there is (f32::max would
        // skip a NaN and let a model that outputs NaN pass).
        let diff = got
            .iter()
            .zip(&case.expected)
            .map(|(a, b)| (a - b).abs())
            .fold(
                0.0f32,
                |m, d| if d.is_nan() { f32::INFINITY } else { m.max(d) },
            );
        let diff = if case.expected.len() == got.len() {
            diff
        } else {
            f32::INFINITY
        };
        report.golden_max_abs_diff = report.golden_max_abs_diff.max(diff);
        if diff.is_finite() && argmax(got) == argmax(&case.expected) {
            report.golden_argmax_agree += 1;
        }
        report.golden_checked += 1;
    }
    if !int8 && report.golden_max_abs_diff > FLOAT_TOLERANCE {
        report.problems.push(format!(
            "golden outputs differ by {:e} (tolerance {FLOAT_TOLERANCE:e})",
            report.golden_max_abs_diff
        ));
    }
    if int8 && report.golden_argmax_agree != report.golden_checked {
        report.problems.push(format!(
            "{} of {} golden cases pick another class",
            report.golden_checked - report.golden_argmax_agree,
            report.golden_checked
        ));
    }
    Ok(())
}

fn argmax(v: &[f32]) -> usize {
    (0..v.len()).fold(0, |best, i| if v[i] > v[best] { i } else { best })
}

export!(Validator);
