//! [`Registry`]: reads and the publish protocol over a [`Store`].
//!
//! Publishing a version writes, in this order: every blob create-only, the manifest create-only,
//! then the model index by compare-and-swap on its ETag. A version is visible only once the index
//! lists it, so a crash at any point leaves no half-published version, at most unreferenced blobs
//! and an orphan manifest that a rerun adopts (same bytes) or steps over (numbered versions).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::Utc;

use crate::digest::Digest;
use crate::error::Error;
use crate::index::{IndexEntry, ModelIndex};
use crate::layout::{self, Key};
use crate::manifest::Manifest;
use crate::names::{Alias, ModelName, Version};
use crate::store::{self, ConditionalWrites, ETag, PutMode, Store, StoreError};

/// How many times an index update is tried against concurrent writers before giving up.
pub const MAX_CAS_ATTEMPTS: u32 = 64;
/// How many taken version numbers a numbered publish steps over before giving up.
const MAX_NUMBER_PROBES: u64 = 1000;

/// How this process intends to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WritePolicy {
    /// Any number of writers; requires a store that enforces conditional writes.
    Concurrent,
    /// The operator guarantees this is the only writer; allowed on stores that ignore
    /// conditional writes (where a second writer could silently overwrite the index).
    SingleWriter,
}

#[derive(Debug, Clone)]
enum Writes {
    ReadOnly,
    Allowed,
    Refused(String),
}

/// Which version a publish gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VersionChoice {
    /// The next free `v{n}`.
    Next,
    /// Exactly this one; fails if it is taken by a different manifest.
    Exact(Version),
}

/// The outcome of a publish.
#[derive(Debug, Clone)]
pub struct Published {
    /// The manifest as stored (with its version filled in).
    pub manifest: Manifest,
    /// Digest of the stored manifest bytes.
    pub manifest_digest: Digest,
    /// False when the same manifest was already published (an idempotent rerun).
    pub created: bool,
}

/// The result of checking one artifact of a version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArtifactCheck {
    /// Present, right size, right digest.
    Ok,
    /// No blob under the digest.
    Missing,
    /// The bytes do not match the manifest.
    Corrupt {
        /// What is wrong.
        reason: String,
    },
}

/// Per-artifact results of [`Registry::verify`].
#[derive(Debug, Clone)]
pub struct VerifyReport {
    /// The manifest checked.
    pub manifest: Manifest,
    /// One entry per artifact, in manifest order: role, digest, result.
    pub artifacts: Vec<(String, Digest, ArtifactCheck)>,
}

impl VerifyReport {
    /// True when every artifact checked out.
    pub fn is_ok(&self) -> bool {
        self.artifacts
            .iter()
            .all(|(_, _, c)| *c == ArtifactCheck::Ok)
    }
}

/// A model registry over one store.
#[derive(Debug, Clone)]
pub struct Registry {
    store: Arc<dyn Store>,
    writes: Writes,
}

impl Registry {
    /// A registry that only reads; no probe, no writes.
    pub fn read_only(store: Arc<dyn Store>) -> Self {
        Self {
            store,
            writes: Writes::ReadOnly,
        }
    }

    /// Opens `store` for reading and writing. Probes whether it enforces conditional writes; if
    /// it does not, writes are refused unless `policy` is [`WritePolicy::SingleWriter`].
    pub async fn open(store: Arc<dyn Store>, policy: WritePolicy) -> Result<Self, Error> {
        let writes = match store::probe(store.as_ref()).await? {
            ConditionalWrites::Honoured => Writes::Allowed,
            ConditionalWrites::Ignored(_) if policy == WritePolicy::SingleWriter => {
                tracing::warn!(
                    store = %store.describe(),
                    "store ignores conditional writes; single-writer mode: never run two writers"
                );
                Writes::Allowed
            }
            ConditionalWrites::Ignored(detail) => Writes::Refused(detail),
        };
        Ok(Self { store, writes })
    }

    /// The store underneath.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    fn check_writable(&self) -> Result<(), Error> {
        match &self.writes {
            Writes::Allowed => Ok(()),
            Writes::ReadOnly => Err(Error::ReadOnly),
            Writes::Refused(detail) => Err(Error::UnsafeStore {
                store: self.store.describe(),
                detail: detail.clone(),
            }),
        }
    }

    /// The names of every model with an index, sorted.
    pub async fn models(&self) -> Result<Vec<ModelName>, Error> {
        let keys = self.store.list(layout::MODELS).await?;
        Ok(keys.iter().filter_map(layout::model_of_index_key).collect())
    }

    /// The model's index and the ETag it was read at, or `None` if the model does not exist.
    pub async fn index_at(&self, name: &ModelName) -> Result<Option<(ModelIndex, ETag)>, Error> {
        let key = layout::model_index(name);
        let Some(object) = self.store.get(&key).await? else {
            return Ok(None);
        };
        let index: ModelIndex = parse(&key, &object.bytes)?;
        if &index.name != name {
            return Err(Error::Corrupt {
                key,
                reason: format!("index names model {}", index.name),
            });
        }
        Ok(Some((index, object.etag)))
    }

    /// The model's index.
    pub async fn index(&self, name: &ModelName) -> Result<ModelIndex, Error> {
        match self.index_at(name).await? {
            Some((index, _)) => Ok(index),
            None => Err(Error::ModelNotFound { name: name.clone() }),
        }
    }

    /// The manifest of a published `version`, checked against the digest the index lists.
    pub async fn manifest(&self, name: &ModelName, version: &Version) -> Result<Manifest, Error> {
        let index = self.index(name).await?;
        self.manifest_in(&index, version).await
    }

    async fn manifest_in(&self, index: &ModelIndex, version: &Version) -> Result<Manifest, Error> {
        let name = &index.name;
        let entry = index.entry(version).ok_or_else(|| Error::VersionNotFound {
            name: name.clone(),
            version: version.clone(),
        })?;
        let key = layout::manifest(name, version);
        let object = self.store.get(&key).await?.ok_or_else(|| Error::Corrupt {
            key: key.clone(),
            reason: "listed in the index but missing".into(),
        })?;
        let actual = Digest::of(&object.bytes);
        if actual != entry.manifest {
            return Err(Error::DigestMismatch {
                key,
                expected: entry.manifest,
                actual,
            });
        }
        let manifest: Manifest = parse(&key, &object.bytes)?;
        if &manifest.name != name || &manifest.version != version {
            return Err(Error::Corrupt {
                key,
                reason: format!("manifest is for {} {}", manifest.name, manifest.version),
            });
        }
        Ok(manifest)
    }

    /// Resolves `reference`, an alias (`latest`, `production`, …) or a version, to its manifest.
    /// An alias wins over a version of the same spelling.
    pub async fn resolve(&self, name: &ModelName, reference: &str) -> Result<Manifest, Error> {
        let index = self.index(name).await?;
        if let Ok(alias) = Alias::new(reference)
            && let Some(version) = index.alias(&alias)
        {
            return self.manifest_in(&index, &version.clone()).await;
        }
        let version = Version::new(reference)?;
        self.manifest_in(&index, &version).await
    }

    /// The manifest `alias` points at.
    pub async fn by_alias(&self, name: &ModelName, alias: &Alias) -> Result<Manifest, Error> {
        let index = self.index(name).await?;
        let version = index
            .alias(alias)
            .cloned()
            .ok_or_else(|| Error::AliasNotFound {
                name: name.clone(),
                alias: alias.clone(),
            })?;
        self.manifest_in(&index, &version).await
    }

    /// The bytes of the blob `digest`, refused unless they hash to it.
    pub async fn blob(&self, digest: &Digest) -> Result<Bytes, Error> {
        let key = layout::blob(digest);
        let object = self
            .store
            .get(&key)
            .await?
            .ok_or(Error::BlobNotFound { digest: *digest })?;
        let actual = Digest::of(&object.bytes);
        if &actual != digest {
            return Err(Error::DigestMismatch {
                key,
                expected: *digest,
                actual,
            });
        }
        Ok(object.bytes)
    }

    /// A URL through which a consumer may download the blob `digest` directly from the store
    /// for `expires_in` (presigned S3); `None` when the store cannot presign one. Consumers check
    /// what they download against the digest.
    pub async fn download_url(
        &self,
        digest: &Digest,
        expires_in: std::time::Duration,
    ) -> Result<Option<String>, Error> {
        Ok(self
            .store
            .presigned_get(&layout::blob(digest), expires_in)
            .await?)
    }

    /// Reads every artifact of a version and checks its size and digest.
    pub async fn verify(&self, name: &ModelName, version: &Version) -> Result<VerifyReport, Error> {
        let manifest = self.manifest(name, version).await?;
        let mut artifacts = Vec::with_capacity(manifest.artifacts.len());
        for artifact in &manifest.artifacts {
            let check = match self.blob(&artifact.digest).await {
                Ok(bytes) if bytes.len() as u64 == artifact.size => ArtifactCheck::Ok,
                Ok(bytes) => ArtifactCheck::Corrupt {
                    reason: format!("{} bytes, manifest says {}", bytes.len(), artifact.size),
                },
                Err(Error::BlobNotFound { .. }) => ArtifactCheck::Missing,
                Err(Error::DigestMismatch { actual, .. }) => ArtifactCheck::Corrupt {
                    reason: format!("content hashes to {actual}"),
                },
                Err(other) => return Err(other),
            };
            artifacts.push((artifact.role.clone(), artifact.digest, check));
        }
        Ok(VerifyReport {
            manifest,
            artifacts,
        })
    }

    /// Publishes `manifest` with the bytes of its artifacts (`blobs`, in any order).
    ///
    /// Round trips: one index read, one create-only put per blob, one for the manifest, one
    /// compare-and-swap of the index (plus one read and one put per lost race).
    pub async fn publish(
        &self,
        mut manifest: Manifest,
        blobs: &[Bytes],
        version: VersionChoice,
    ) -> Result<Published, Error> {
        self.check_writable()?;
        if let VersionChoice::Exact(v) = &version {
            manifest.version = v.clone();
        }
        manifest.validate()?;
        let blobs = match_blobs(&manifest, blobs)?;
        let name = manifest.name.clone();
        let seed = self.index_at(&name).await?;

        if let (VersionChoice::Exact(v), Some((index, _))) = (&version, &seed)
            && let Some(entry) = index.entry(v)
        {
            return if entry.manifest == Digest::of(&manifest.to_bytes()) {
                Ok(Published {
                    manifest_digest: entry.manifest,
                    manifest,
                    created: false,
                })
            } else {
                Err(Error::VersionExists {
                    name,
                    version: v.clone(),
                })
            };
        }

        self.put_blobs(blobs.iter().map(|(d, b)| (*d, b.clone())))
            .await?;

        let manifest_bytes = match version {
            VersionChoice::Exact(_) => self.create_manifest(&manifest).await?,
            VersionChoice::Next => {
                let first = seed.as_ref().map_or(1, |(index, _)| index.next_number());
                self.create_numbered_manifest(&mut manifest, first).await?
            }
        };
        let manifest_digest = Digest::of(&manifest_bytes);

        let entry = IndexEntry {
            version: manifest.version.clone(),
            manifest: manifest_digest,
            published_at: Utc::now(),
            tags: manifest.tags.clone(),
        };
        let created = self
            .update_index(&name, Some(seed), |index| {
                match index.entry(&entry.version) {
                    Some(existing) if existing.manifest == entry.manifest => Ok(false),
                    Some(_) => Err(Error::VersionExists {
                        name: name.clone(),
                        version: entry.version.clone(),
                    }),
                    None => {
                        index.add(entry.clone());
                        Ok(true)
                    }
                }
            })
            .await?;
        tracing::info!(model = %name, version = %manifest.version, %manifest_digest, created, "published");
        Ok(Published {
            manifest,
            manifest_digest,
            created,
        })
    }

    /// Points `alias` at `version` (which must be published). Returns what it pointed at before.
    pub async fn promote(
        &self,
        name: &ModelName,
        alias: &Alias,
        version: &Version,
    ) -> Result<Option<Version>, Error> {
        self.check_writable()?;
        let seed = self.index_at(name).await?;
        if seed.is_none() {
            return Err(Error::ModelNotFound { name: name.clone() });
        }
        let mut previous = None;
        self.update_index(name, Some(seed), |index| {
            if index.entry(version).is_none() {
                return Err(Error::VersionNotFound {
                    name: name.clone(),
                    version: version.clone(),
                });
            }
            previous = index.aliases.insert(alias.clone(), version.clone());
            Ok(previous.as_ref() != Some(version))
        })
        .await?;
        tracing::info!(model = %name, %alias, %version, "promoted");
        Ok(previous)
    }

    /// Writes content-addressed blobs create-only, concurrently; a blob that exists is fine.
    pub(crate) async fn put_blobs(
        &self,
        blobs: impl IntoIterator<Item = (Digest, Bytes)>,
    ) -> Result<(), Error> {
        let puts = blobs.into_iter().map(|(digest, bytes)| async move {
            match self
                .store
                .put(&layout::blob(&digest), bytes, PutMode::Create)
                .await
            {
                // Content-addressed: whoever wrote it first wrote the same bytes.
                Ok(_) | Err(StoreError::AlreadyExists { .. }) => Ok(()),
                Err(e) => Err(e),
            }
        });
        futures::future::try_join_all(puts).await?;
        Ok(())
    }

    /// Writes the manifest create-only. Returns its bytes if it is now stored (written by us, or
    /// already there byte for byte: a rerun after a crash between manifest and index adopts its
    /// own), `None` if the key holds a different manifest.
    async fn put_manifest(&self, manifest: &Manifest) -> Result<Option<Vec<u8>>, Error> {
        let bytes = manifest.to_bytes();
        let key = layout::manifest(&manifest.name, &manifest.version);
        match self
            .store
            .put(&key, bytes.clone().into(), PutMode::Create)
            .await
        {
            Ok(_) => Ok(Some(bytes)),
            Err(StoreError::AlreadyExists { .. }) => {
                let existing = self.store.get(&key).await?;
                Ok(existing.is_some_and(|o| o.bytes == bytes).then_some(bytes))
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn create_manifest(&self, manifest: &Manifest) -> Result<Vec<u8>, Error> {
        self.put_manifest(manifest)
            .await?
            .ok_or_else(|| Error::VersionExists {
                name: manifest.name.clone(),
                version: manifest.version.clone(),
            })
    }

    /// Reserves the first free `v{n}` from `first` on by creating its manifest (a number taken by
    /// a concurrent publisher is stepped over).
    async fn create_numbered_manifest(
        &self,
        manifest: &mut Manifest,
        first: u64,
    ) -> Result<Vec<u8>, Error> {
        for n in first..first + MAX_NUMBER_PROBES {
            manifest.version = Version::numbered(n);
            if let Some(bytes) = self.put_manifest(manifest).await? {
                return Ok(bytes);
            }
        }
        Err(Error::Conflict {
            key: layout::model_index(&manifest.name),
            attempts: MAX_NUMBER_PROBES as u32,
        })
    }

    /// Applies `change` to the index by compare-and-swap, rereading and retrying (with jittered
    /// backoff) when another writer got there first. `change` returns whether it changed
    /// anything; an unchanged index is not written.
    async fn update_index(
        &self,
        name: &ModelName,
        mut seed: Option<Option<(ModelIndex, ETag)>>,
        mut change: impl FnMut(&mut ModelIndex) -> Result<bool, Error>,
    ) -> Result<bool, Error> {
        let key = layout::model_index(name);
        for attempt in 0..MAX_CAS_ATTEMPTS {
            let current = match seed.take() {
                Some(current) => current,
                None => self.index_at(name).await?,
            };
            let (mut index, mode) = match current {
                Some((index, etag)) => (index, PutMode::IfMatch(etag)),
                None => (ModelIndex::empty(name.clone()), PutMode::Create),
            };
            if !change(&mut index)? {
                return Ok(false);
            }
            match self.store.put(&key, index.to_bytes().into(), mode).await {
                Ok(_) => return Ok(true),
                Err(StoreError::PreconditionFailed { .. } | StoreError::AlreadyExists { .. }) => {
                    tracing::debug!(%key, attempt, "index changed under us; retrying");
                    backoff(attempt).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(Error::Conflict {
            key,
            attempts: MAX_CAS_ATTEMPTS,
        })
    }
}

/// Pairs each artifact with its bytes; every artifact needs one, and no blob may be left over.
fn match_blobs(manifest: &Manifest, blobs: &[Bytes]) -> Result<BTreeMap<Digest, Bytes>, Error> {
    let mut given: BTreeMap<Digest, Bytes> =
        blobs.iter().map(|b| (Digest::of(b), b.clone())).collect();
    let mut matched = BTreeMap::new();
    for artifact in &manifest.artifacts {
        let bytes = given
            .remove(&artifact.digest)
            .or_else(|| matched.get(&artifact.digest).cloned())
            .ok_or_else(|| Error::MissingArtifact {
                role: artifact.role.clone(),
                digest: artifact.digest,
            })?;
        if bytes.len() as u64 != artifact.size {
            return Err(Error::InvalidManifest(crate::manifest::ManifestError {
                problems: vec![format!(
                    "artifact {}: size {} but the file has {} bytes",
                    artifact.role,
                    artifact.size,
                    bytes.len()
                )],
            }));
        }
        matched.insert(artifact.digest, bytes);
    }
    if let Some(digest) = given.keys().next() {
        return Err(Error::UnreferencedBlob { digest: *digest });
    }
    Ok(matched)
}

pub(crate) fn parse<T: serde::de::DeserializeOwned>(key: &Key, bytes: &[u8]) -> Result<T, Error> {
    serde_json::from_slice(bytes).map_err(|e| Error::Corrupt {
        key: key.clone(),
        reason: e.to_string(),
    })
}

async fn backoff(attempt: u32) {
    let cap_ms = (2u64 << attempt.min(6)).min(100);
    let pause = Duration::from_micros(fastrand::u64(500..=cap_ms * 1000));
    #[cfg(not(target_arch = "wasm32"))]
    tokio::time::sleep(pause).await;
    // A WebAssembly component handles one request at a time: blocking here blocks no one else.
    #[cfg(target_arch = "wasm32")]
    std::thread::sleep(pause);
}
