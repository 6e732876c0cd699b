//! Export: the trained model as ONNX float32 and as statically quantized int8 ONNX (QDQ), with
//! the scaler inside the graph; [`artifacts`] builds the set a version publishes. Checking the
//! files in another runtime is the next step's work ([`crate::validate`]).

pub mod artifacts;
pub mod onnx;
pub mod quantize;
