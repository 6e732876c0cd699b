//! The Exposr model registry: the contract every other part of the system shares.
//!
//! - checked names and digests ([`ModelName`], [`Version`], [`Alias`], [`Label`], [`Digest`]);
//! - the [`Manifest`] of a version and the model [`ModelIndex`];
//! - the storage [`layout`] as pure key math;
//! - the one I/O seam, [`store::Store`], over a local directory, memory or S3;
//! - the publish protocol, [`Registry`]: content-addressed blobs and manifests written
//!   create-only, then the index by compare-and-swap.
//!
//! It knows nothing of Spin, HTTP or the CLI, and builds for `wasm32-wasip2`.

#![warn(missing_docs)]

pub mod clock;
pub mod datasets;
pub mod digest;
mod error;
pub mod gc;
pub mod history;
pub mod index;
pub mod jobs;
pub mod layout;
pub mod manifest;
pub mod names;
mod registry;
pub mod render;
pub mod runs;
pub mod samples;
pub mod schedule;
pub mod store;
pub mod users;

#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
#[cfg(any(test, feature = "conformance"))]
pub mod sim;

pub use digest::Digest;
pub use error::Error;
pub use index::{IndexEntry, ModelIndex};
pub use manifest::Manifest;
pub use names::{Alias, Label, ModelName, Version};
pub use registry::{
    ArtifactCheck, MAX_CAS_ATTEMPTS, Promotion, Published, Registry, VerifyReport, VersionChoice,
    WritePolicy,
};
pub use runs::{RunId, RunKind};
