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
    /// Feature pipeline name and version.
    pub pipeline: (&'a str, u32),
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
            format!("{}@{}", meta.pipeline.0, meta.pipeline.1),
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
