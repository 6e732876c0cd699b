//! The registry's one I/O seam: an object store with create-only and compare-and-swap writes.
//!
//! The registry needs five calls of a store, and exact semantics for two of them: a create-only
//! put that fails if the key exists, and a put that succeeds only if the object still has the
//! ETag we read. Backends: [`ObjectStoreBackend`] (in-memory and S3 through `object_store`) and
//! [`DirStore`] (a local directory; `object_store`'s own local backend cannot compare-and-swap).
//! [`open`] (native) and [`open_with_http`] (any target, the caller's HTTP client) pick one by URL.

mod crypto;
mod dir;
mod object;
mod open;
mod probe;

use std::fmt;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};

use crate::layout::Key;

pub use crypto::RustCrypto;
pub use dir::DirStore;
pub use object::ObjectStoreBackend;
#[cfg(not(target_arch = "wasm32"))]
pub use open::open;
pub use open::{OpenError, open_with_http};
pub use probe::{ConditionalWrites, probe};

/// An opaque object version tag, as the store reports it.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ETag(String);

impl ETag {
    /// Wraps the store's tag.
    pub fn new(tag: impl Into<String>) -> Self {
        Self(tag.into())
    }

    /// The tag as the store reported it.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ETag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ETag({})", self.0)
    }
}

/// How a put treats an object that already exists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PutMode {
    /// Replace whatever is there.
    Overwrite,
    /// Fail with [`StoreError::AlreadyExists`] if the key exists (`If-None-Match: *`).
    Create,
    /// Fail with [`StoreError::PreconditionFailed`] unless the object still has this ETag
    /// (`If-Match`).
    IfMatch(ETag),
}

/// An object's bytes and the ETag they were read at.
#[derive(Debug, Clone)]
pub struct Object {
    /// The whole object.
    pub bytes: Bytes,
    /// Its version tag, for a later [`PutMode::IfMatch`].
    pub etag: ETag,
}

/// A listed object: its key, size and when the store last wrote it (the store's clock).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    /// The object's key.
    pub key: Key,
    /// Its size in bytes.
    pub size: u64,
    /// When it was last written, by the store's clock.
    pub last_modified: DateTime<Utc>,
}

/// What [`Store::clean_scratch`] found: abandoned scratch files of the store itself.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Scratch {
    /// Files found (and removed, unless it was a dry run).
    pub files: u64,
    /// Their bytes.
    pub bytes: u64,
}

/// Errors of a store call.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A create-only put found the key taken.
    #[error("{key} already exists")]
    AlreadyExists {
        /// The key that exists.
        key: Key,
    },
    /// A compare-and-swap put found the object changed (or gone).
    #[error("{key} changed since it was read")]
    PreconditionFailed {
        /// The key whose ETag no longer matches.
        key: Key,
    },
    /// The backend failed: network, permissions, disk.
    #[error("store call {op} on {key} failed")]
    Backend {
        /// The call that failed.
        op: &'static str,
        /// The key it was about.
        key: Key,
        /// What the backend said.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl StoreError {
    pub(crate) fn backend(
        op: &'static str,
        key: &Key,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Self::Backend {
            op,
            key: key.clone(),
            source: source.into(),
        }
    }
}

/// The calls the registry makes of a store. Implementations must make `Create` and `IfMatch`
/// atomic, or fail [`probe`] so that the registry knows not to rely on them.
#[async_trait]
pub trait Store: fmt::Debug + Send + Sync {
    /// The whole object at `key`, or `None` if there is none.
    async fn get(&self, key: &Key) -> Result<Option<Object>, StoreError>;

    /// Writes `bytes` at `key` under `mode`; returns the new ETag.
    async fn put(&self, key: &Key, bytes: Bytes, mode: PutMode) -> Result<ETag, StoreError>;

    /// Whether `key` exists, without reading it (a HEAD where the backend has one).
    async fn exists(&self, key: &Key) -> Result<bool, StoreError> {
        Ok(self.get(key).await?.is_some())
    }

    /// Every key under `prefix`, sorted.
    async fn list(&self, prefix: &str) -> Result<Vec<Key>, StoreError>;

    /// Every object under `prefix` with its size and age, sorted by key (for garbage collection).
    async fn list_meta(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StoreError>;

    /// Removes `key`; removing a missing key is not an error.
    async fn delete(&self, key: &Key) -> Result<(), StoreError>;

    /// Where the store lives, for messages (never includes credentials).
    fn describe(&self) -> String;

    /// Removes the store's own scratch files (a directory store's staging files) last written
    /// before `older_than`: what a crash between staging and publishing a write leaves behind.
    /// Stores without scratch files have nothing to do.
    async fn clean_scratch(
        &self,
        _older_than: DateTime<Utc>,
        _dry_run: bool,
    ) -> Result<Scratch, StoreError> {
        Ok(Scratch::default())
    }

    /// A URL through which anyone may GET `key` for `expires_in`, for stores that can presign
    /// one (S3); `None` for the others, whose bytes are served through the API.
    async fn presigned_get(
        &self,
        _key: &Key,
        _expires_in: std::time::Duration,
    ) -> Result<Option<String>, StoreError> {
        Ok(None)
    }
}
