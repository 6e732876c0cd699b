//! [`Registry`]: reads and the publish protocol over a [`Store`].
//!
//! Publishing a version writes, in this order: every blob create-only, the manifest create-only,
//! then the model index by compare-and-swap on its ETag. A version is visible only once the index
//! lists it, so a crash at any point leaves no half-published version, at most unreferenced blobs
//! and an orphan manifest that a rerun adopts (same bytes) or steps over (numbered versions).
//!
//! Every write is written for a store that may apply a call and then report it failed (a 5xx or
//! a timeout after the write, or the 412 / "already exists" that a client's retry of its own
//! applied write gets): a create-only write that finds the key taken compares the bytes there
//! with its own, a compare-and-swap that loses re-reads and recognises its own write, and backend
//! failures are retried a few times with backoff.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};

use crate::clock::{Clock, SystemClock};
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
/// How many times a store call that failed in the backend (5xx, timeout) is tried in all.
pub(crate) const BACKEND_ATTEMPTS: u32 = 4;
/// How many of the newest index entries a numbered publish checks for its own manifest (a retry
/// of a publish whose index write was applied but reported failed).
const OWN_ENTRY_WINDOW: usize = 16;

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
    /// Only create-only writes under fresh random keys (job requests, uploads): safe on any store.
    FreshKeysOnly,
    Refused(String),
}

/// A promotion made by the same index write as a publish: `alias` moves to the new version only
/// if it still points where the quality gate took its decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Promotion {
    /// The alias to move (usually `production`).
    pub alias: Alias,
    /// Where the gate saw it point (`None`: nowhere yet).
    pub expected: Option<Version>,
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
    /// True when the publish moved the alias of its [`Promotion`].
    pub promoted: bool,
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
    clock: Arc<dyn Clock>,
}

impl Registry {
    fn with_writes(store: Arc<dyn Store>, writes: Writes) -> Self {
        Self {
            store,
            writes,
            clock: Arc::new(SystemClock),
        }
    }

    /// A registry that only reads; no probe, no writes.
    pub fn read_only(store: Arc<dyn Store>) -> Self {
        Self::with_writes(store, Writes::ReadOnly)
    }

    /// A registry that may only add job requests and uploads: create-only writes under fresh
    /// random keys, which no store can get wrong, so it needs no probe (the HTTP triggers). Every
    /// other write is refused.
    pub fn appender(store: Arc<dyn Store>) -> Self {
        Self::with_writes(store, Writes::FreshKeysOnly)
    }

    /// The same registry reading time, pauses and fresh ids from `clock`.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The time by this registry's clock.
    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// A fresh UUIDv7 from this registry's clock.
    pub(crate) fn new_id(&self) -> uuid::Uuid {
        self.clock.new_id()
    }

    /// Sleeps on this registry's clock.
    pub(crate) async fn clock_sleep(&self, pause: Duration) {
        self.clock.sleep(pause).await;
    }

    /// Waits before retry `attempt` (0-based): jittered, doubling, capped at 100 ms.
    pub(crate) async fn backoff(&self, attempt: u32) {
        let cap_ms = (2u64 << attempt.min(6)).min(100);
        let pause = Duration::from_micros(fastrand::u64(500..=cap_ms * 1000));
        self.clock.sleep(pause).await;
    }

    /// Runs a store call, trying again after a backend failure (a 5xx, a timeout) up to
    /// [`BACKEND_ATTEMPTS`] times in all. Only for calls whose repetition is harmless or
    /// recognised by the caller (reads, create-only and compare-and-swap writes, deletes).
    pub(crate) async fn retrying<T, F, Fut>(&self, mut call: F) -> Result<T, StoreError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, StoreError>>,
    {
        let mut attempt = 0;
        loop {
            match call().await {
                Err(StoreError::Backend { op, key, source }) if attempt + 1 < BACKEND_ATTEMPTS => {
                    tracing::debug!(%key, op, attempt, "store call failed, retrying: {source}");
                    self.backoff(attempt).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    /// Reads `key`, retrying backend failures.
    pub(crate) async fn get_retrying(
        &self,
        key: &Key,
    ) -> Result<Option<store::Object>, StoreError> {
        self.retrying(|| self.store.get(key)).await
    }

    /// Writes `bytes` at `key` create-only. A key that already holds exactly these bytes counts
    /// as written: it is this call's own write whose answer was lost, or an identical one
    /// (`Ok(false)`: adopted, not created). Anything else there is [`StoreError::AlreadyExists`].
    pub(crate) async fn create_or_adopt(
        &self,
        key: &Key,
        bytes: Bytes,
    ) -> Result<bool, StoreError> {
        match self
            .retrying(|| self.store.put(key, bytes.clone(), PutMode::Create))
            .await
        {
            Ok(_) => Ok(true),
            // Every try failed in the backend, the last perhaps after it was applied: look.
            Err(e @ StoreError::Backend { .. }) => match self.store.get(key).await {
                Ok(Some(object)) if object.bytes == bytes => Ok(true),
                _ => Err(e),
            },
            Err(StoreError::AlreadyExists { .. }) => match self.get_retrying(key).await? {
                Some(object) if object.bytes == bytes => Ok(false),
                _ => Err(StoreError::AlreadyExists { key: key.clone() }),
            },
            Err(e) => Err(e),
        }
    }

    /// Deletes `key`, retrying backend failures.
    pub(crate) async fn delete_retrying(&self, key: &Key) -> Result<(), StoreError> {
        self.retrying(|| self.store.delete(key)).await
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
        Ok(Self::with_writes(store, writes))
    }

    /// The store underneath. Crate-private: everything outside reads and writes through the
    /// registry's own calls, which check names, digests and the protocol.
    pub(crate) fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Refuses a write that relies on conditional writes unless the store was probed (or the
    /// operator vouched for being the only writer).
    pub(crate) fn check_writable(&self) -> Result<(), Error> {
        match &self.writes {
            Writes::Allowed => Ok(()),
            Writes::ReadOnly | Writes::FreshKeysOnly => Err(Error::ReadOnly),
            Writes::Refused(detail) => Err(Error::UnsafeStore {
                store: self.store.describe(),
                detail: detail.clone(),
            }),
        }
    }

    /// Refuses a create-only write under a fresh random key on a read-only registry or an
    /// unsafe store.
    pub(crate) fn check_fresh_writes(&self) -> Result<(), Error> {
        match &self.writes {
            Writes::FreshKeysOnly => Ok(()),
            _ => self.check_writable(),
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
        let Some(object) = self.get_retrying(&key).await? else {
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

    pub(crate) async fn manifest_in(
        &self,
        index: &ModelIndex,
        version: &Version,
    ) -> Result<Manifest, Error> {
        let name = &index.name;
        let entry = index.entry(version).ok_or_else(|| Error::VersionNotFound {
            name: name.clone(),
            version: version.clone(),
        })?;
        let key = layout::manifest(name, version);
        let object = self
            .get_retrying(&key)
            .await?
            .ok_or_else(|| Error::Corrupt {
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
            .get_retrying(&key)
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

    /// The stored bytes of blob `digest` without checking them against it: for a validator,
    /// which must see tampered or truncated bytes to report them rather than fail to read them.
    /// `None` when the blob is missing.
    pub async fn blob_unchecked(&self, digest: &Digest) -> Result<Option<Bytes>, Error> {
        Ok(self
            .get_retrying(&layout::blob(digest))
            .await?
            .map(|o| o.bytes))
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
        manifest: Manifest,
        blobs: &[Bytes],
        version: VersionChoice,
    ) -> Result<Published, Error> {
        self.publish_with(manifest, blobs, version, None).await
    }

    /// Publishes like [`Registry::publish`] and, in the same index write, moves
    /// `promotion.alias` to the new version if it still points at `promotion.expected`. If it
    /// moved meanwhile, nothing becomes visible and the error is [`Error::AliasMoved`]: the
    /// decision must be taken again against the version now there.
    pub async fn publish_promoted(
        &self,
        manifest: Manifest,
        blobs: &[Bytes],
        version: VersionChoice,
        promotion: Promotion,
    ) -> Result<Published, Error> {
        self.publish_with(manifest, blobs, version, Some(promotion))
            .await
    }

    async fn publish_with(
        &self,
        mut manifest: Manifest,
        blobs: &[Bytes],
        version: VersionChoice,
        promotion: Option<Promotion>,
    ) -> Result<Published, Error> {
        self.check_writable()?;
        if let VersionChoice::Exact(v) = &version {
            manifest.version = v.clone();
        }
        manifest.validate()?;
        let blobs = match_blobs(&manifest, blobs)?;
        let name = manifest.name.clone();
        let seed = self.index_at(&name).await?;

        // A rerun of a publish that already went through (its index write applied, its answer
        // lost) finds its own manifest listed and stops there.
        if let Some((index, _)) = &seed
            && let Some(entry) = own_entry(index, &manifest, &version)
        {
            return Ok(Published {
                promoted: promotion
                    .as_ref()
                    .is_some_and(|p| index.alias(&p.alias) == Some(&entry.version)),
                manifest_digest: entry.manifest,
                manifest: with_version(&manifest, &entry.version),
                created: false,
            });
        }
        if let (VersionChoice::Exact(v), Some((index, _))) = (&version, &seed)
            && (index.entry(v).is_some() || index.is_retired(v))
        {
            return Err(Error::VersionExists {
                name,
                version: v.clone(),
            });
        }

        let reused = self
            .put_blobs(blobs.iter().map(|(d, b)| (*d, b.clone())))
            .await?;

        let stored = match version {
            VersionChoice::Exact(_) => self.create_manifest(&manifest).await?,
            VersionChoice::Next => {
                let first = seed.as_ref().map_or(1, |(index, _)| index.next_number());
                self.create_numbered_manifest(&mut manifest, first).await?
            }
        };
        let manifest_digest = Digest::of(&stored.bytes);
        // Blobs found already stored (and an orphan manifest adopted) may be unreferenced ones
        // that a garbage collection is about to delete: protect them before referencing them.
        let mut reused: Vec<(Key, Bytes)> = reused
            .into_iter()
            .map(|(d, b)| (layout::blob(&d), b))
            .collect();
        if stored.adopted {
            reused.push((stored.key.clone(), Bytes::from(stored.bytes.clone())));
        }
        let intent = self.protect_reused(reused).await?;

        let entry = IndexEntry {
            version: manifest.version.clone(),
            manifest: manifest_digest,
            published_at: self.now(),
            tags: manifest.tags.clone(),
        };
        let mut promoted = false;
        let created = self
            .update_index(&name, Some(seed), |index| {
                match index.entry(&entry.version) {
                    Some(existing) if existing.manifest == entry.manifest => {
                        promoted = promotion
                            .as_ref()
                            .is_some_and(|p| index.alias(&p.alias) == Some(&entry.version));
                        return Ok(false);
                    }
                    Some(_) => {
                        return Err(Error::VersionExists {
                            name: name.clone(),
                            version: entry.version.clone(),
                        });
                    }
                    None if index.is_retired(&entry.version) => {
                        return Err(Error::VersionExists {
                            name: name.clone(),
                            version: entry.version.clone(),
                        });
                    }
                    None => {}
                }
                promoted = false;
                if let Some(p) = &promotion {
                    let actual = index.alias(&p.alias).cloned();
                    if actual != p.expected {
                        return Err(Error::AliasMoved {
                            name: name.clone(),
                            alias: p.alias.clone(),
                            expected: p.expected.clone(),
                            actual,
                        });
                    }
                    index.aliases.insert(p.alias.clone(), entry.version.clone());
                    promoted = true;
                }
                index.add(entry.clone());
                Ok(true)
            })
            .await;
        self.release(intent).await;
        let created = created?;
        tracing::info!(model = %name, version = %manifest.version, %manifest_digest, created, promoted, "published");
        Ok(Published {
            manifest,
            manifest_digest,
            created,
            promoted,
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
        // Set by the attempt that changes the index. A later attempt that finds the alias
        // already moved (our own write applied, its answer lost) must not overwrite it.
        let mut previous: Option<Option<Version>> = None;
        self.update_index(name, Some(seed), |index| {
            if index.entry(version).is_none() {
                return Err(Error::VersionNotFound {
                    name: name.clone(),
                    version: version.clone(),
                });
            }
            let before = index.alias(alias).cloned();
            if before.as_ref() == Some(version) {
                previous.get_or_insert(before);
                return Ok(false);
            }
            previous = Some(before);
            index.aliases.insert(alias.clone(), version.clone());
            Ok(true)
        })
        .await?;
        tracing::info!(model = %name, %alias, %version, "promoted");
        Ok(previous.flatten())
    }

    /// Writes content-addressed blobs create-only, concurrently; a blob that exists is fine.
    /// Returns the blobs that were already there (reused), which the caller must protect
    /// ([`Registry::protect_reused`]) before it references them.
    pub(crate) async fn put_blobs(
        &self,
        blobs: impl IntoIterator<Item = (Digest, Bytes)>,
    ) -> Result<Vec<(Digest, Bytes)>, Error> {
        let puts = blobs.into_iter().map(|(digest, bytes)| async move {
            let key = layout::blob(&digest);
            match self
                .retrying(|| self.store.put(&key, bytes.clone(), PutMode::Create))
                .await
            {
                Ok(_) => Ok(None),
                // Content-addressed: whoever wrote it first wrote the same bytes.
                Err(StoreError::AlreadyExists { .. }) => Ok(Some((digest, bytes))),
                Err(e) => Err(e),
            }
        });
        Ok(futures::future::try_join_all(puts)
            .await?
            .into_iter()
            .flatten()
            .collect())
    }

    /// Writes the manifest create-only. Returns its bytes if it is now stored (written by us, or
    /// already there byte for byte: a rerun after a crash between manifest and index adopts its
    /// own, and must protect it like a reused blob), `None` if the key holds a different manifest.
    async fn put_manifest(&self, manifest: &Manifest) -> Result<Option<Stored>, Error> {
        let bytes = manifest.to_bytes();
        let key = layout::manifest(&manifest.name, &manifest.version);
        match self.create_or_adopt(&key, bytes.clone().into()).await {
            Ok(created) => Ok(Some(Stored {
                bytes,
                adopted: !created,
                key,
            })),
            Err(StoreError::AlreadyExists { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn create_manifest(&self, manifest: &Manifest) -> Result<Stored, Error> {
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
    ) -> Result<Stored, Error> {
        for n in first..first + MAX_NUMBER_PROBES {
            manifest.version = Version::numbered(n);
            if let Some(stored) = self.put_manifest(manifest).await? {
                return Ok(stored);
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
    ///
    /// A write reported failed may have been applied: after a backend failure, or a 412 that may
    /// answer the store client's own retry, the index is read again, and if it holds exactly the
    /// bytes we wrote, the write counts as ours.
    pub(crate) async fn update_index(
        &self,
        name: &ModelName,
        mut seed: Option<Option<(ModelIndex, ETag)>>,
        mut change: impl FnMut(&mut ModelIndex) -> Result<bool, Error>,
    ) -> Result<bool, Error> {
        let key = layout::model_index(name);
        let mut backend_failures = 0;
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
            let bytes = Bytes::from(index.to_bytes());
            let failure = match self.store.put(&key, bytes.clone(), mode).await {
                Ok(_) => return Ok(true),
                Err(e @ StoreError::Backend { .. }) => {
                    backend_failures += 1;
                    e
                }
                Err(
                    e @ (StoreError::PreconditionFailed { .. } | StoreError::AlreadyExists { .. }),
                ) => e,
            };
            tracing::debug!(%key, attempt, "index write not acknowledged ({failure}); rereading");
            match self.get_retrying(&key).await? {
                Some(object) if object.bytes == bytes => return Ok(true),
                // Still failing after every try, and not applied.
                _ if backend_failures >= BACKEND_ATTEMPTS => return Err(failure.into()),
                Some(object) => {
                    let index: ModelIndex = parse(&key, &object.bytes)?;
                    seed = Some(Some((index, object.etag)));
                }
                None => seed = Some(None),
            }
            self.backoff(attempt).await;
        }
        Err(Error::Conflict {
            key,
            attempts: MAX_CAS_ATTEMPTS,
        })
    }
}

/// A manifest as stored.
struct Stored {
    bytes: Vec<u8>,
    /// It was there already, byte for byte (a rerun's own orphan).
    adopted: bool,
    key: Key,
}

/// `manifest` as it reads with `version` filled in.
fn with_version(manifest: &Manifest, version: &Version) -> Manifest {
    let mut m = manifest.clone();
    m.version = version.clone();
    m
}

/// The entry among the newest of `index` that lists exactly `manifest` (with the entry's
/// version filled in): a publish already done.
fn own_entry<'a>(
    index: &'a ModelIndex,
    manifest: &Manifest,
    choice: &VersionChoice,
) -> Option<&'a IndexEntry> {
    let candidates: Vec<&IndexEntry> = match choice {
        VersionChoice::Exact(v) => index.entry(v).into_iter().collect(),
        VersionChoice::Next => index
            .versions
            .iter()
            .rev()
            .filter(|e| e.version.number().is_some())
            .take(OWN_ENTRY_WINDOW)
            .collect(),
    };
    candidates
        .into_iter()
        .find(|e| Digest::of(&with_version(manifest, &e.version).to_bytes()) == e.manifest)
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

#[cfg(test)]
impl Registry {
    /// A writable registry over an empty in-memory store, for unit tests.
    pub(crate) async fn in_memory_writer() -> Self {
        Self::open(
            Arc::new(crate::store::ObjectStoreBackend::in_memory()),
            WritePolicy::Concurrent,
        )
        .await
        .expect("the in-memory store enforces conditional writes")
    }
}
