//! Images for the authenticity detector, the same code in the trainer and in the WebAssembly
//! functions: decoding with limits, the checks every sample must pass, and the normalisation that
//! makes every image of every class look alike on disk (so that file format, size or encoder
//! cannot leak the label), with the hashes used to find duplicates.

pub mod normalize;

pub use normalize::{Limits, Normalized, Original, Rejected, normalize};
