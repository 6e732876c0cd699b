//! [`ObjectStoreBackend`]: the seam over any `object_store` backend (in-memory, S3 and its kin).

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::signer::Signer;
use object_store::{ObjectStore, ObjectStoreExt, PutOptions, PutPayload, UpdateVersion};

use super::{ETag, Object, ObjectMeta, PutMode, Store, StoreError};
use crate::layout::Key;

/// A registry store over an `object_store` backend.
#[derive(Debug, Clone)]
pub struct ObjectStoreBackend {
    inner: Arc<dyn ObjectStore>,
    label: String,
    /// Presigns GETs, with the prefix `inner` adds to keys (S3 only).
    signer: Option<(Arc<dyn Signer>, String)>,
}

impl ObjectStoreBackend {
    /// Wraps `inner`; `label` names it in messages and must not contain credentials.
    pub fn new(inner: Arc<dyn ObjectStore>, label: impl Into<String>) -> Self {
        Self {
            inner,
            label: label.into(),
            signer: None,
        }
    }

    /// Lets [`Store::presigned_get`] answer: `signer` signs the unprefixed bucket's keys, and
    /// `prefix` is what `inner` puts before every key.
    pub fn with_signer(mut self, signer: Arc<dyn Signer>, prefix: impl Into<String>) -> Self {
        self.signer = Some((signer, prefix.into()));
        self
    }

    /// A fresh, empty in-memory store (tests, dry runs).
    pub fn in_memory() -> Self {
        Self::new(Arc::new(object_store::memory::InMemory::new()), "memory://")
    }
}

fn path(op: &'static str, key: &Key) -> Result<Path, StoreError> {
    Path::parse(key.as_str()).map_err(|e| StoreError::backend(op, key, e))
}

#[async_trait]
impl Store for ObjectStoreBackend {
    async fn get(&self, key: &Key) -> Result<Option<Object>, StoreError> {
        let location = path("get", key)?;
        let result = match self.inner.get(&location).await {
            Ok(result) => result,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(StoreError::backend("get", key, e)),
        };
        let etag = result.meta.e_tag.clone();
        let bytes = result
            .bytes()
            .await
            .map_err(|e| StoreError::backend("get", key, e))?;
        let etag = etag.ok_or_else(|| StoreError::backend("get", key, "store returned no ETag"))?;
        Ok(Some(Object {
            bytes,
            etag: ETag::new(etag),
        }))
    }

    async fn put(&self, key: &Key, bytes: Bytes, mode: PutMode) -> Result<ETag, StoreError> {
        let location = path("put", key)?;
        let mode = match mode {
            PutMode::Overwrite => object_store::PutMode::Overwrite,
            PutMode::Create => object_store::PutMode::Create,
            PutMode::IfMatch(etag) => object_store::PutMode::Update(UpdateVersion {
                e_tag: Some(etag.0),
                version: None,
            }),
        };
        let options = PutOptions {
            mode,
            ..Default::default()
        };
        match self
            .inner
            .put_opts(&location, PutPayload::from_bytes(bytes), options)
            .await
        {
            // A compare-and-swap needs the tag of what we wrote: a store that gives none (or an
            // empty one) cannot be used for one, and must not be taken to have given "".
            Ok(result) => match result.e_tag.filter(|t| !t.is_empty()) {
                Some(tag) => Ok(ETag::new(tag)),
                None => Err(StoreError::backend("put", key, "store returned no ETag")),
            },
            Err(object_store::Error::AlreadyExists { .. }) => {
                Err(StoreError::AlreadyExists { key: key.clone() })
            }
            Err(object_store::Error::Precondition { .. }) => {
                Err(StoreError::PreconditionFailed { key: key.clone() })
            }
            Err(e) => Err(StoreError::backend("put", key, e)),
        }
    }

    async fn exists(&self, key: &Key) -> Result<bool, StoreError> {
        let location = path("head", key)?;
        match self.inner.head(&location).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(StoreError::backend("head", key, e)),
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<Key>, StoreError> {
        Ok(self
            .list_meta(prefix)
            .await?
            .into_iter()
            .map(|m| m.key)
            .collect())
    }

    async fn list_meta(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StoreError> {
        let folder = prefix.trim_end_matches('/');
        let as_key = Key::from_store(prefix.to_owned());
        let location = if folder.is_empty() {
            None
        } else {
            Some(path("list", &as_key)?)
        };
        let metas: Vec<_> = self
            .inner
            .list(location.as_ref())
            .try_collect()
            .await
            .map_err(|e| StoreError::backend("list", &as_key, e))?;
        // The listing is by folder; a prefix may end inside a name.
        let mut found: Vec<ObjectMeta> = metas
            .into_iter()
            .map(|m| ObjectMeta {
                key: Key::from_store(m.location.to_string()),
                size: m.size,
                last_modified: m.last_modified,
            })
            .filter(|m| m.key.as_str().starts_with(prefix))
            .collect();
        found.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(found)
    }

    async fn delete(&self, key: &Key) -> Result<(), StoreError> {
        let location = path("delete", key)?;
        match self.inner.delete(&location).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(StoreError::backend("delete", key, e)),
        }
    }

    fn describe(&self) -> String {
        self.label.clone()
    }

    async fn presigned_get(
        &self,
        key: &Key,
        expires_in: std::time::Duration,
    ) -> Result<Option<String>, StoreError> {
        let Some((signer, prefix)) = &self.signer else {
            return Ok(None);
        };
        let full = if prefix.is_empty() {
            key.as_str().to_owned()
        } else {
            format!("{prefix}/{}", key.as_str())
        };
        let location = Path::parse(&full).map_err(|e| StoreError::backend("presign", key, e))?;
        let url = signer
            .signed_url(object_store::signer::Method::GET, &location, expires_in)
            .await
            .map_err(|e| StoreError::backend("presign", key, e))?;
        Ok(Some(url.to_string()))
    }
}
