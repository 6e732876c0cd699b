//! Export: the trained model as ONNX float32 and as statically quantized int8 ONNX (QDQ), with
//! the scaler inside the graph, and the check that tract reproduces the trainer's outputs.

pub mod onnx;
pub mod quantize;
pub mod verify;
