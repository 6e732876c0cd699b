//! [`Error`]: what registry operations can fail with.

use crate::digest::Digest;
use crate::layout::Key;
use crate::manifest::ManifestError;
use crate::names::{Alias, ModelName, NameError, Version};
use crate::store::StoreError;

/// Errors returned by registry operations.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No index exists for the model.
    #[error("model {name} not found")]
    ModelNotFound {
        /// The model asked for.
        name: ModelName,
    },
    /// The index does not list the version.
    #[error("model {name} has no version {version}")]
    VersionNotFound {
        /// The model.
        name: ModelName,
        /// The version asked for.
        version: Version,
    },
    /// The index has no such alias.
    #[error("model {name} has no alias {alias}")]
    AliasNotFound {
        /// The model.
        name: ModelName,
        /// The alias asked for.
        alias: Alias,
    },
    /// The version is already published with a different manifest.
    #[error("model {name} already has a version {version} with different content")]
    VersionExists {
        /// The model.
        name: ModelName,
        /// The version taken.
        version: Version,
    },
    /// A conditional promotion found the alias moved since the decision was taken.
    #[error(
        "{alias} of model {name} moved to {} while this version was gated against {}; decide again",
        actual.as_ref().map_or("nothing".to_owned(), ToString::to_string),
        expected.as_ref().map_or("nothing".to_owned(), ToString::to_string)
    )]
    AliasMoved {
        /// The model.
        name: ModelName,
        /// The alias.
        alias: Alias,
        /// Where the decision saw it.
        expected: Option<Version>,
        /// Where it points now.
        actual: Option<Version>,
    },
    /// Other writers kept winning the compare-and-swap.
    #[error("{key} kept changing while we updated it ({attempts} attempts); retry later")]
    Conflict {
        /// The contended key.
        key: Key,
        /// How many times we tried.
        attempts: u32,
    },
    /// Stored bytes do not hash to the digest they are stored or listed under.
    #[error("digest mismatch for {key}: expected {expected}, got {actual}")]
    DigestMismatch {
        /// The key read.
        key: Key,
        /// The digest it should have.
        expected: Digest,
        /// The digest of what was read.
        actual: Digest,
    },
    /// No blob is stored under the digest.
    #[error("blob {digest} not found")]
    BlobNotFound {
        /// The digest asked for.
        digest: Digest,
    },
    /// A stored index or manifest cannot be read as one.
    #[error("{key} is corrupt: {reason}")]
    Corrupt {
        /// The key read.
        key: Key,
        /// What is wrong.
        reason: String,
    },
    /// The manifest breaks its rules.
    #[error(transparent)]
    InvalidManifest(#[from] ManifestError),
    /// A name or version given is not a valid one.
    #[error(transparent)]
    InvalidName(#[from] NameError),
    /// Publish was not given the bytes of an artifact the manifest lists.
    #[error("no file given for artifact {role} ({digest})")]
    MissingArtifact {
        /// The artifact's role.
        role: String,
        /// The digest the manifest gives it.
        digest: Digest,
    },
    /// Publish was given a file the manifest does not list.
    #[error("a file given ({digest}) is not listed in the manifest")]
    UnreferencedBlob {
        /// The file's digest.
        digest: Digest,
    },
    /// The registry was opened read-only (or only for adding job requests and uploads).
    #[error("registry opened read-only for this kind of write")]
    ReadOnly,
    /// The store ignores conditional writes, so concurrent writers could lose versions.
    #[error(
        "refusing to write to {store}: it ignores conditional writes ({detail}), so concurrent \
         publishers could silently overwrite each other's versions. Use a store that enforces \
         If-None-Match/If-Match, or, if this is the only process that ever writes to it, opt \
         into single-writer mode (--single-writer, or EXPOSR_SINGLE_WRITER=1)"
    )]
    UnsafeStore {
        /// The store, as described (no credentials).
        store: String,
        /// What the probe saw.
        detail: String,
    },
    /// A worker's hold on a job ended: another worker took it over, or it was finished.
    #[error("lost the lease on job {job}: {detail}")]
    LeaseLost {
        /// The job.
        job: uuid::Uuid,
        /// What was found instead.
        detail: String,
    },
    /// A dataset already holds as many pending uploads as it may, until ingestion takes some.
    #[error(
        "dataset {dataset} already has {limit} uploads waiting for ingestion; try again after the next scrape"
    )]
    QuotaExceeded {
        /// The dataset.
        dataset: String,
        /// Its quota.
        limit: usize,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}
