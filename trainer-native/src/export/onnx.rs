//! ONNX graphs from a trained model, written with tract-onnx's protobuf types (prost), not by
//! hand-encoding bytes. Raw features in, probabilities out:
//!
//! ```text
//! features -> Sub(mean) -> Div(scale) -> [Gemm -> Relu]* -> Gemm -> Softmax -> probabilities
//! ```
//!
//! The int8 graph puts QuantizeLinear/DequantizeLinear pairs on every Gemm's activation input and
//! stores weights as int8 behind a per-channel DequantizeLinear (axis 1); Softmax stays in float
//! (a Q/DQ pair after Softmax gives all-1.0 outputs in tract 0.23). The batch dimension stays
//! symbolic.

use prost::Message;
use tract_onnx::pb::{
    self, AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto,
    StringStringEntryProto, TensorProto, TypeProto, ValueInfoProto, attribute_proto,
    tensor_proto::DataType, tensor_shape_proto, type_proto,
};

use super::quantize::QuantizedModel;
use crate::train::Model;

/// Opset and IR version of every file we write.
const OPSET: i64 = 13;
const IR_VERSION: i64 = 7;
/// Graph input and output names (the manifest's signature repeats them).
pub const INPUT: &str = "features";
/// See [`INPUT`].
pub const OUTPUT: &str = "probabilities";

/// Descriptive metadata stored in the file.
pub struct Metadata<'a> {
    /// Feature names, in input order.
    pub feature_names: &'a [String],
    /// Class labels, in output order.
    pub labels: &'a [String],
    /// The feature pipeline that computes the inputs.
    pub pipeline: registry::manifest::PipelineId,
}

#[derive(Default)]
struct Graph {
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
}

impl Graph {
    fn f32(&mut self, name: &str, dims: &[usize], data: &[f32]) -> String {
        self.initializers.push(TensorProto {
            name: name.into(),
            dims: dims.iter().map(|&d| d as i64).collect(),
            data_type: DataType::Float as i32,
            raw_data: data.iter().flat_map(|v| v.to_le_bytes()).collect(),
            ..Default::default()
        });
        name.into()
    }

    fn i8(&mut self, name: &str, dims: &[usize], data: &[i8]) -> String {
        self.initializers.push(TensorProto {
            name: name.into(),
            dims: dims.iter().map(|&d| d as i64).collect(),
            data_type: DataType::Int8 as i32,
            raw_data: data.iter().map(|&v| v as u8).collect(),
            ..Default::default()
        });
        name.into()
    }

    fn node(
        &mut self,
        op: &str,
        inputs: &[&str],
        output: &str,
        attributes: Vec<AttributeProto>,
    ) -> String {
        self.nodes.push(NodeProto {
            op_type: op.into(),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![output.into()],
            attribute: attributes,
            ..Default::default()
        });
        output.into()
    }

    /// Quantize then dequantize `x` with a scalar scale and int8 zero point.
    fn qdq(&mut self, x: &str, tag: &str, scale: f32, zero_point: i8) -> String {
        let s = self.f32(&format!("{tag}_scale"), &[], &[scale]);
        let z = self.i8(&format!("{tag}_zp"), &[], &[zero_point]);
        let q = self.node("QuantizeLinear", &[x, &s, &z], &format!("{tag}_q"), vec![]);
        self.node(
            "DequantizeLinear",
            &[&q, &s, &z],
            &format!("{tag}_dq"),
            vec![],
        )
    }
}

fn int_attr(name: &str, value: i64) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: attribute_proto::AttributeType::Int as i32,
        i: value,
        ..Default::default()
    }
}

fn tensor_info(name: &str, width: usize) -> ValueInfoProto {
    use tensor_shape_proto::{Dimension, dimension::Value};
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: DataType::Float as i32,
                shape: Some(pb::TensorShapeProto {
                    dim: vec![
                        Dimension {
                            value: Some(Value::DimParam("batch".into())),
                            ..Default::default()
                        },
                        Dimension {
                            value: Some(Value::DimValue(width as i64)),
                            ..Default::default()
                        },
                    ],
                }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The float32 ONNX file of `model`.
pub fn float_model(model: &Model, meta: &Metadata<'_>) -> Vec<u8> {
    build(model, None, meta)
}

/// The int8 (QDQ) ONNX file of `model` with the quantization parameters of `q`.
pub fn int8_model(model: &Model, q: &QuantizedModel, meta: &Metadata<'_>) -> Vec<u8> {
    build(model, Some(q), meta)
}

fn build(model: &Model, q: Option<&QuantizedModel>, meta: &Metadata<'_>) -> Vec<u8> {
    let mut g = Graph::default();
    let n_features = model.net.inputs();
    let mean = g.f32(
        "scaler_mean",
        &[n_features],
        model.scaler.mean.as_slice().expect("contiguous"),
    );
    let scale = g.f32(
        "scaler_scale",
        &[n_features],
        model.scaler.scale.as_slice().expect("contiguous"),
    );
    let centered = g.node("Sub", &[INPUT, &mean], "centered", vec![]);
    let mut h = g.node("Div", &[&centered, &scale], "scaled", vec![]);
    let last = model.net.layers.len() - 1;
    for (i, layer) in model.net.layers.iter().enumerate() {
        let dims = [layer.w.nrows(), layer.w.ncols()];
        let (x, w) = match q {
            None => {
                let w = g.f32(
                    &format!("w{i}"),
                    &dims,
                    &layer.w.iter().copied().collect::<Vec<_>>(),
                );
                (h.clone(), w)
            }
            Some(q) => {
                let lq = &q.layers[i];
                let x = g.qdq(&h, &format!("x{i}"), lq.input_scale, lq.input_zero_point);
                let wq = g.i8(&format!("w{i}q"), &dims, &lq.weights);
                let ws = g.f32(&format!("w{i}s"), &[dims[1]], &lq.weight_scales);
                // The zero points are all 0, but onnxruntime's fused QGemm needs them spelled out.
                let wz = g.i8(&format!("w{i}z"), &[dims[1]], &vec![0; dims[1]]);
                let w = g.node(
                    "DequantizeLinear",
                    &[&wq, &ws, &wz],
                    &format!("w{i}"),
                    vec![int_attr("axis", 1)],
                );
                (x, w)
            }
        };
        let b = g.f32(
            &format!("b{i}"),
            &[layer.b.len()],
            layer.b.as_slice().expect("contiguous"),
        );
        let z = g.node("Gemm", &[&x, &w, &b], &format!("z{i}"), vec![]);
        h = if i < last {
            g.node("Relu", &[&z], &format!("h{i}"), vec![])
        } else {
            g.node("Softmax", &[&z], OUTPUT, vec![int_attr("axis", 1)])
        };
    }
    let props = [
        (
            "labels",
            serde_json::to_string(meta.labels).expect("strings serialize"),
        ),
        (
            "feature_names",
            serde_json::to_string(meta.feature_names).expect("strings serialize"),
        ),
        (
            "feature_pipeline",
            format!("{}@{}", meta.pipeline.name, meta.pipeline.version),
        ),
        (
            "quantization",
            if q.is_some() {
                "int8-qdq-static"
            } else {
                "none"
            }
            .to_owned(),
        ),
    ];
    let model_proto = ModelProto {
        ir_version: IR_VERSION,
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: OPSET,
        }],
        producer_name: "exposr-trainer".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        graph: Some(GraphProto {
            name: "classifier".into(),
            node: g.nodes,
            initializer: g.initializers,
            input: vec![tensor_info(INPUT, n_features)],
            output: vec![tensor_info(OUTPUT, model.net.classes())],
            ..Default::default()
        }),
        metadata_props: props
            .into_iter()
            .map(|(k, v)| StringStringEntryProto {
                key: k.into(),
                value: v,
            })
            .collect(),
        ..Default::default()
    };
    model_proto.encode_to_vec()
}

/// Reads back a float32 file written by [`float_model`]: the scaler, the layers, and the names in
/// its metadata. Refuses files of any other shape (this is not a general ONNX importer).
pub fn read_float_model(bytes: &[u8]) -> anyhow::Result<Model> {
    use anyhow::{Context, bail};
    use ndarray::{Array1, Array2};
    use std::collections::HashMap;

    use crate::train::Scaler;
    use crate::train::mlp::{Dense, Network};

    let proto = ModelProto::decode(bytes).context("not an ONNX file")?;
    let graph = proto.graph.context("ONNX file has no graph")?;
    let tensors: HashMap<&str, &TensorProto> = graph
        .initializer
        .iter()
        .map(|t| (t.name.as_str(), t))
        .collect();
    let floats = |name: &str| -> anyhow::Result<(Vec<usize>, Vec<f32>)> {
        let t = tensors.get(name).with_context(|| {
            format!("no initializer {name}: not a float model exported by exposr-trainer")
        })?;
        if t.data_type != DataType::Float as i32 || t.raw_data.len() % 4 != 0 {
            bail!("initializer {name} is not raw float32");
        }
        let data = t
            .raw_data
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        Ok((t.dims.iter().map(|&d| d as usize).collect(), data))
    };
    let meta: HashMap<&str, &str> = proto
        .metadata_props
        .iter()
        .map(|p| (p.key.as_str(), p.value.as_str()))
        .collect();
    let names = |key: &str| -> anyhow::Result<Vec<String>> {
        serde_json::from_str(
            meta.get(key)
                .with_context(|| format!("no {key} in the file's metadata"))?,
        )
        .with_context(|| format!("metadata {key} is not a list of strings"))
    };
    let (_, mean) = floats("scaler_mean")?;
    let (_, scale) = floats("scaler_scale")?;
    let mut layers = Vec::new();
    while tensors.contains_key(format!("w{}", layers.len()).as_str()) {
        let i = layers.len();
        let (dims, w) = floats(&format!("w{i}"))?;
        let (_, b) = floats(&format!("b{i}"))?;
        if dims.len() != 2 || dims[1] != b.len() {
            bail!("layer {i} has inconsistent shapes");
        }
        layers.push(Dense {
            w: Array2::from_shape_vec((dims[0], dims[1]), w)?,
            b: Array1::from(b),
        });
    }
    if layers.is_empty() {
        bail!("no layers found: not a float model exported by exposr-trainer");
    }
    Ok(Model {
        scaler: Scaler {
            mean: Array1::from(mean),
            scale: Array1::from(scale),
        },
        net: Network { layers },
        feature_names: names("feature_names")?,
        classes: names("labels")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::Scaler;
    use crate::train::mlp::Network;
    use rand::SeedableRng;

    #[test]
    fn a_written_float_model_reads_back_identically() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        let model = Model {
            scaler: Scaler {
                mean: ndarray::array![1.0, 2.0],
                scale: ndarray::array![0.5, 4.0],
            },
            net: Network::init(&[2, 4, 3], &mut rng),
            feature_names: vec!["a".into(), "b".into()],
            classes: vec!["x".into(), "y".into(), "z".into()],
        };
        let meta = Metadata {
            feature_names: &model.feature_names,
            labels: &model.classes,
            pipeline: crate::dataset::TABULAR_PIPELINE,
        };
        let bytes = float_model(&model, &meta);
        assert_eq!(read_float_model(&bytes).unwrap(), model);
        assert!(read_float_model(b"garbage").is_err());
    }
}
