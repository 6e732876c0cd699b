//! Validation: every exported file is run in tract (the runtime the serving functions use) and
//! must reproduce the trainer's outputs, and the validator component checks it against its
//! manifest the way the functions will. Nothing is published that fails here.

pub mod component;
pub mod tract;

use anyhow::Context;
use ndarray::Array2;
use serde_json::json;

use crate::dataset::Dataset;
use crate::export::artifacts::Artifacts;
use crate::train::{self, Outcome};

/// Test rows written to `golden.json` for cross-checks with other runtimes.
const CROSSCHECK_ROWS: usize = 64;

/// What the checks in tract measured.
pub struct Checked {
    /// Int8 test accuracy, running the int8 file in tract.
    pub int8_accuracy: f64,
    /// Max |tract - trainer| on the golden rows, float file.
    pub float_max_diff: f32,
    /// Cross-check rows for other runtimes: inputs, and the trainer's and tract's outputs for
    /// both files (`golden.json` in the run folder).
    pub crosscheck: serde_json::Value,
}

/// Runs both files in tract: the golden rows must match the trainer, and the int8 file is scored
/// on the test rows.
pub fn check(data: &Dataset, outcome: &Outcome, a: &Artifacts) -> anyhow::Result<Checked> {
    let model = &outcome.model;
    let inputs = |cases: &[registry::manifest::GoldenCase]| -> anyhow::Result<Array2<f32>> {
        let rows: Vec<f32> = cases.iter().flat_map(|c| c.input.iter().copied()).collect();
        Ok(Array2::from_shape_vec(
            (cases.len(), model.net.inputs()),
            rows,
        )?)
    };
    let expected = |cases: &[registry::manifest::GoldenCase]| -> anyhow::Result<Array2<f32>> {
        let rows: Vec<f32> = cases
            .iter()
            .flat_map(|c| c.expected.iter().copied())
            .collect();
        Ok(Array2::from_shape_vec(
            (cases.len(), model.net.classes()),
            rows,
        )?)
    };
    let gx = inputs(&a.golden)?;
    let float_max_diff = tract::check_float(&a.float, gx.view(), expected(&a.golden)?.view())
        .context("checking the float ONNX file in tract")?;
    tract::check_int8(&a.int8, gx.view(), expected(&a.golden_int8)?.view())
        .context("checking the int8 ONNX file in tract")?;

    let tx = train::select_rows(data, &outcome.split.test);
    let truth: Vec<usize> = outcome.split.test.iter().map(|&i| data.y[i]).collect();
    let int8_accuracy = accuracy(&tract::run(&a.int8, tx.view())?, &truth);

    let check_rows: Vec<usize> = outcome
        .split
        .test
        .iter()
        .copied()
        .take(CROSSCHECK_ROWS)
        .collect();
    let cx = train::select_rows(data, &check_rows);
    let (float_out, int8_out) = a.trainer_outputs(model, cx.view());
    let crosscheck = json!({
        "inputs": rows_of(&cx),
        "float": { "trainer": rows_of(&float_out), "tract": rows_of(&tract::run(&a.float, cx.view())?) },
        "int8": { "trainer": rows_of(&int8_out), "tract": rows_of(&tract::run(&a.int8, cx.view())?) },
    });
    Ok(Checked {
        int8_accuracy,
        float_max_diff,
        crosscheck,
    })
}

fn rows_of(a: &Array2<f32>) -> Vec<Vec<f32>> {
    a.outer_iter().map(|r| r.to_vec()).collect()
}

/// The share of rows whose most probable class is the true one.
pub fn accuracy(proba: &Array2<f32>, truth: &[usize]) -> f64 {
    let pred = train::mlp::argmax_rows(proba.view());
    pred.iter().zip(truth).filter(|(a, b)| a == b).count() as f64 / truth.len().max(1) as f64
}
