//! The artifact set of one trained model: both ONNX files, the label map, and the golden rows
//! (inputs with the trainer's own outputs) that every later runtime is checked against.

use std::collections::BTreeMap;

use ndarray::{Array2, ArrayView2};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use registry::manifest::{GoldenCase, PipelineId};

use super::onnx;
use super::quantize::{self, QuantizedModel};
use crate::dataset::Dataset;
use crate::train::config::TrainConfig;
use crate::train::{self, Model, Outcome};

/// Golden rows stored in the manifest for later validators.
pub const GOLDEN_ROWS: usize = 8;

/// Files of a trained model, ready to check and publish.
pub struct Artifacts {
    /// The float32 ONNX file.
    pub float: Vec<u8>,
    /// The int8 ONNX file.
    pub int8: Vec<u8>,
    /// `labels.json`: index -> label.
    pub labels: Vec<u8>,
    /// Golden rows with the float model's outputs.
    pub golden: Vec<GoldenCase>,
    /// The same rows with the int8 model's outputs.
    pub golden_int8: Vec<GoldenCase>,
    /// The quantization parameters the int8 file was written from.
    pub quantized: QuantizedModel,
}

impl Artifacts {
    /// The trainer's own float and int8 outputs for rows `x`.
    pub fn trainer_outputs(&self, model: &Model, x: ArrayView2<f32>) -> (Array2<f32>, Array2<f32>) {
        (
            model.predict_proba(x),
            self.quantized.predict_proba(model, x),
        )
    }
}

/// Calibrates the int8 scales on a seeded sample of the training rows and writes both files.
pub fn export(
    data: &Dataset,
    outcome: &Outcome,
    cfg: &TrainConfig,
    pipeline: PipelineId,
) -> anyhow::Result<Artifacts> {
    let model = &outcome.model;
    let (quantized, _) = calibrate(
        model,
        data,
        outcome.split.train.clone(),
        cfg.quantization.calibration_samples,
        cfg.random_seed ^ 0x5eed_ca1b,
    );

    let meta = onnx::Metadata {
        feature_names: &model.feature_names,
        labels: &model.classes,
        pipeline,
    };
    let float = onnx::float_model(model, &meta);
    let int8 = onnx::int8_model(model, &quantized, &meta);

    let golden_rows: Vec<usize> = outcome
        .split
        .test
        .iter()
        .copied()
        .take(GOLDEN_ROWS)
        .collect();
    let gx = train::select_rows(data, &golden_rows);
    let cases = |outputs: &Array2<f32>| -> Vec<GoldenCase> {
        gx.rows()
            .into_iter()
            .zip(outputs.rows())
            .map(|(i, e)| GoldenCase {
                input: i.to_vec(),
                expected: e.to_vec(),
            })
            .collect()
    };
    let golden = cases(&model.predict_proba(gx.view()));
    let golden_int8 = cases(&quantized.predict_proba(model, gx.view()));
    let labels: BTreeMap<String, &String> = model
        .classes
        .iter()
        .enumerate()
        .map(|(i, l)| (i.to_string(), l))
        .collect();
    Ok(Artifacts {
        float,
        int8,
        labels: serde_json::to_vec_pretty(&labels)?,
        golden,
        golden_int8,
        quantized,
    })
}

/// Calibrates the int8 scales on `samples` of `rows`, picked with `seed`; returns the
/// parameters and how many rows they came from.
fn calibrate(
    model: &Model,
    data: &Dataset,
    mut rows: Vec<usize>,
    samples: usize,
    seed: u64,
) -> (QuantizedModel, usize) {
    rows.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    rows.truncate(samples);
    rows.sort_unstable();
    let calibration = train::select_rows(data, &rows);
    (quantize::calibrate(model, calibration.view()), rows.len())
}

/// What [`requantize`] wrote and measured.
pub struct Requantized {
    /// The int8 ONNX file.
    pub int8: Vec<u8>,
    /// Rows calibrated on.
    pub calibration_rows: usize,
    /// The quantization parameters it was written from.
    pub quantized: QuantizedModel,
}

/// An int8 file for an exported float model, calibrated on a seeded sample of `data`'s rows
/// (the `quantize` command).
pub fn requantize(
    model: &Model,
    data: &Dataset,
    pipeline: PipelineId,
    calibration_samples: usize,
    seed: u64,
) -> Requantized {
    let (q, calibration_rows) = calibrate(
        model,
        data,
        (0..data.len()).collect(),
        calibration_samples.max(1),
        seed,
    );
    let meta = onnx::Metadata {
        feature_names: &model.feature_names,
        labels: &model.classes,
        pipeline,
    };
    Requantized {
        int8: onnx::int8_model(model, &q, &meta),
        calibration_rows,
        quantized: q,
    }
}
