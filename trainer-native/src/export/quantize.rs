//! Static post-training int8 quantization: activation ranges calibrated on training rows,
//! symmetric per-channel int8 weights (one scale per output column), and a native simulation of the QDQ graph's arithmetic so
//! the trainer knows the int8 model's own predictions before any runtime loads it.

use ndarray::{Array2, ArrayView2};

use crate::train::Model;

/// Quantization parameters of one layer.
#[derive(Debug, Clone, PartialEq)]
pub struct QuantLayer {
    /// Scale of the layer's input activations.
    pub input_scale: f32,
    /// Zero point of the layer's input activations.
    pub input_zero_point: i8,
    /// Scale of each output column's weights (symmetric: zero point 0), per channel.
    pub weight_scales: Vec<f32>,
    /// Quantized weights, row-major (inputs, outputs).
    pub weights: Vec<i8>,
}

/// The int8 model: the float model's scaler and biases with these layers' parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct QuantizedModel {
    /// One entry per dense layer.
    pub layers: Vec<QuantLayer>,
}

/// ONNX QuantizeLinear: `saturate(round_half_even(x / scale) + zero_point)`.
fn quantize(x: f32, scale: f32, zero_point: i8) -> i8 {
    ((x / scale).round_ties_even() + zero_point as f32).clamp(-128.0, 127.0) as i8
}

fn dequantize(q: i8, scale: f32, zero_point: i8) -> f32 {
    (q as i32 - zero_point as i32) as f32 * scale
}

/// Asymmetric int8 parameters covering `[min, max]` (widened to include 0).
fn activation_params(min: f32, max: f32) -> (f32, i8) {
    let (lo, hi) = (min.min(0.0), max.max(0.0));
    let scale = if hi > lo { (hi - lo) / 255.0 } else { 1.0 };
    let zero_point = (-128.0 - lo / scale).round_ties_even().clamp(-128.0, 127.0) as i8;
    (scale, zero_point)
}

/// Calibrates on `calibration` (raw feature rows, typically 100 training rows).
pub fn calibrate(model: &Model, calibration: ArrayView2<f32>) -> QuantizedModel {
    let mut a = model.scaler.transform(calibration);
    let last = model.net.layers.len() - 1;
    let mut layers = Vec::new();
    for (i, layer) in model.net.layers.iter().enumerate() {
        let (min, max) = a
            .iter()
            .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| {
                (lo.min(v), hi.max(v))
            });
        let (input_scale, input_zero_point) = activation_params(min, max);
        let weight_scales: Vec<f32> = layer
            .w
            .columns()
            .into_iter()
            .map(|col| {
                let max = col.iter().fold(0.0f32, |m, &v| m.max(v.abs()));
                if max > 0.0 { max / 127.0 } else { 1.0 }
            })
            .collect();
        let cols = layer.w.ncols();
        let weights = layer
            .w
            .iter()
            .enumerate()
            .map(|(i, &w)| quantize(w, weight_scales[i % cols], 0))
            .collect();
        layers.push(QuantLayer {
            input_scale,
            input_zero_point,
            weight_scales,
            weights,
        });
        let mut z = a.dot(&layer.w);
        z += &layer.b;
        if i < last {
            z.mapv_inplace(|v| v.max(0.0));
        }
        a = z;
    }
    QuantizedModel { layers }
}

impl QuantizedModel {
    /// Probabilities of the int8 graph for raw rows, computed as its operators define them.
    pub fn predict_proba(&self, model: &Model, x: ArrayView2<f32>) -> Array2<f32> {
        let mut a = model.scaler.transform(x);
        let last = self.layers.len() - 1;
        for (i, (lq, layer)) in self.layers.iter().zip(&model.net.layers).enumerate() {
            a.mapv_inplace(|v| {
                dequantize(
                    quantize(v, lq.input_scale, lq.input_zero_point),
                    lq.input_scale,
                    lq.input_zero_point,
                )
            });
            let w = Array2::from_shape_vec(
                layer.w.raw_dim(),
                lq.weights
                    .iter()
                    .enumerate()
                    .map(|(i, &q)| dequantize(q, lq.weight_scales[i % lq.weight_scales.len()], 0))
                    .collect(),
            )
            .expect("same shape as the float weights");
            let mut z = a.dot(&w);
            z += &layer.b;
            if i < last {
                z.mapv_inplace(|v| v.max(0.0));
            } else {
                for mut row in z.rows_mut() {
                    let max = row.fold(f32::NEG_INFINITY, |m, &v| m.max(v));
                    row.mapv_inplace(|v| (v - max).exp());
                    let sum = row.sum();
                    row /= sum;
                }
            }
            a = z;
        }
        a
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantize_rounds_half_to_even_and_saturates() {
        assert_eq!(quantize(2.5, 1.0, 0), 2);
        assert_eq!(quantize(3.5, 1.0, 0), 4);
        assert_eq!(quantize(1000.0, 1.0, 0), 127);
        assert_eq!(quantize(-1000.0, 1.0, 0), -128);
        let (s, z) = activation_params(0.0, 2.55);
        assert_eq!(z, -128);
        assert!((s - 0.01).abs() < 1e-7);
        assert!((dequantize(quantize(1.234, s, z), s, z) - 1.23).abs() < 0.006);
    }
}
