//! Loading exported files with tract (the runtime the serving functions use) and checking that
//! they reproduce the trainer's own outputs on golden rows.

use anyhow::{Context, ensure};
use ndarray::{Array2, ArrayView2};
use tract_onnx::prelude::*;

/// Largest accepted difference between the float file's outputs and the trainer's.
pub const FLOAT_TOLERANCE: f32 = 1e-5;

/// An ONNX file loaded and planned by tract (optimized, symbolic batch), to run many times.
pub struct Loaded(std::sync::Arc<TypedSimplePlan>);

impl Loaded {
    /// Reads, optimizes and plans `bytes`.
    pub fn new(bytes: &[u8]) -> anyhow::Result<Self> {
        let model = tract_onnx::onnx()
            .model_for_read(&mut &bytes[..])
            .context("tract cannot read the ONNX file")?
            .into_optimized()
            .context("tract cannot optimize the graph")?
            .into_runnable()
            .context("tract cannot plan the graph")?;
        Ok(Self(model))
    }

    /// The model's outputs (probabilities) for the rows of `x`.
    pub fn predict(&self, x: ArrayView2<f32>) -> anyhow::Result<Array2<f32>> {
        let data: Vec<f32> = x.iter().copied().collect();
        let input = Tensor::from_shape(&[x.nrows(), x.ncols()], &data)?;
        let outputs = self.0.run(tvec!(input.into()))?;
        let out = outputs[0].to_plain_array_view::<f32>()?;
        let shape = out.shape().to_vec();
        ensure!(
            shape.len() == 2 && shape[0] == x.nrows(),
            "unexpected output shape {shape:?}"
        );
        Ok(Array2::from_shape_vec(
            (shape[0], shape[1]),
            out.iter().copied().collect(),
        )?)
    }
}

/// Runs the ONNX file `bytes` on `x` with tract (optimized, symbolic batch).
pub fn run(bytes: &[u8], x: ArrayView2<f32>) -> anyhow::Result<Array2<f32>> {
    Loaded::new(bytes)?.predict(x)
}

/// Runs `bytes` on `x` and checks the output has `expected`'s shape.
fn run_like(
    bytes: &[u8],
    x: ArrayView2<f32>,
    expected: ArrayView2<f32>,
) -> anyhow::Result<Array2<f32>> {
    let got = run(bytes, x)?;
    ensure!(
        got.dim() == expected.dim(),
        "output shape {:?}, expected {:?}",
        got.dim(),
        expected.dim()
    );
    Ok(got)
}

fn max_abs_diff(a: &Array2<f32>, b: ArrayView2<f32>) -> f32 {
    a.iter()
        .zip(b.iter())
        .fold(0.0f32, |m, (x, y)| m.max((x - y).abs()))
}

/// Checks the float file against `expected` (max absolute difference); returns the difference.
pub fn check_float(
    bytes: &[u8],
    x: ArrayView2<f32>,
    expected: ArrayView2<f32>,
) -> anyhow::Result<f32> {
    let diff = max_abs_diff(&run_like(bytes, x, expected)?, expected);
    ensure!(
        diff <= FLOAT_TOLERANCE,
        "tract's outputs differ from the trainer's by {diff:e} (tolerance {FLOAT_TOLERANCE:e})"
    );
    Ok(diff)
}

/// Checks that the int8 file picks the same class as `expected` on every row; returns the
/// largest probability difference for the record.
pub fn check_int8(
    bytes: &[u8],
    x: ArrayView2<f32>,
    expected: ArrayView2<f32>,
) -> anyhow::Result<f32> {
    let got = run_like(bytes, x, expected)?;
    let a = crate::train::mlp::argmax_rows(got.view());
    let b = crate::train::mlp::argmax_rows(expected);
    let disagree: Vec<usize> = (0..a.len()).filter(|&i| a[i] != b[i]).collect();
    ensure!(
        disagree.is_empty(),
        "tract's int8 predictions differ from the trainer's on golden rows {disagree:?}"
    );
    Ok(max_abs_diff(&got, expected))
}
