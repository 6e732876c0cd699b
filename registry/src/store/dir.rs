//! [`DirStore`]: the registry in a local directory, the default backend.
//!
//! Written by hand because `object_store`'s `LocalFileSystem` does not implement
//! `PutMode::Update` (compare-and-swap), which the index protocol needs. Writes go to a staging
//! file first and are then published atomically: a hard link for create-only puts (fails if the
//! key exists), a rename for the rest. A compare-and-swap holds an exclusive lock on the key's
//! lock file while it compares and renames, so it is atomic against every other process that
//! uses this store on the same machine. ETags are the SHA-256 of the content.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use bytes::Bytes;

use chrono::{DateTime, Utc};

use super::{ETag, Object, ObjectMeta, PutMode, Scratch, Store, StoreError};
use crate::digest::Digest;
use crate::layout::Key;

const STAGING: &str = ".staging";
const LOCKS: &str = ".locks";

/// A registry store rooted at a local directory.
#[derive(Debug, Clone)]
pub struct DirStore {
    root: PathBuf,
}

impl DirStore {
    /// Opens (and creates, if needed) the directory `root`.
    pub fn new(root: impl Into<PathBuf>) -> io::Result<Self> {
        let root = root.into();
        fs::create_dir_all(root.join(STAGING))?;
        fs::create_dir_all(root.join(LOCKS))?;
        Ok(Self { root })
    }

    /// Opens the existing directory `root` without creating anything: for readers, such as a
    /// WebAssembly component given a read-only preopened directory.
    pub fn open_existing(root: impl Into<PathBuf>) -> io::Result<Self> {
        let root = root.into();
        if !root.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("registry directory {} does not exist", root.display()),
            ));
        }
        Ok(Self { root })
    }

    /// The directory this store lives in.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn file(&self, key: &Key) -> io::Result<PathBuf> {
        let mut path = self.root.clone();
        for segment in key.as_str().split('/') {
            // Keys are built from checked names, but this is the last line before the file
            // system: refuse anything that could leave the root or reach our own dot-folders.
            if segment.is_empty() || segment.starts_with('.') || segment.contains('\\') {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("unsafe key {key}"),
                ));
            }
            path.push(segment);
        }
        Ok(path)
    }

    fn stage(&self, bytes: &[u8]) -> io::Result<PathBuf> {
        let staging = self.root.join(STAGING);
        fs::create_dir_all(&staging)?;
        let staged = staging.join(uuid::Uuid::new_v4().simple().to_string());
        let mut file = fs::File::create_new(&staged)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        Ok(staged)
    }

    fn get_sync(&self, key: &Key) -> io::Result<Option<Object>> {
        match fs::read(self.file(key)?) {
            Ok(bytes) => Ok(Some(Object {
                etag: etag_of(&bytes),
                bytes: bytes.into(),
            })),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn put_sync(&self, key: &Key, bytes: &[u8], mode: &PutMode) -> Result<ETag, StoreError> {
        let io_err = |e| StoreError::backend("put", key, e);
        let dest = self.file(key).map_err(io_err)?;
        if let Some(parent) = dest.parent() {
            fs::create_dir_all(parent).map_err(io_err)?;
        }
        let staged = self.stage(bytes).map_err(io_err)?;
        let outcome = match mode {
            PutMode::Overwrite => fs::rename(&staged, &dest).map_err(io_err),
            PutMode::Create => match fs::hard_link(&staged, &dest) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    Err(StoreError::AlreadyExists { key: key.clone() })
                }
                Err(e) => Err(io_err(e)),
            },
            PutMode::IfMatch(expected) => self.swap_sync(key, &staged, &dest, expected),
        };
        // After a rename the staged file is gone already; after a link or a failure it is not.
        let _ = fs::remove_file(&staged);
        outcome?;
        // The new name is durable only once its directory is: without this, a power cut can
        // lose a write that was reported done (and an index that lists it).
        if let Some(parent) = dest.parent() {
            sync_dir(parent).map_err(io_err)?;
        }
        Ok(etag_of(bytes))
    }

    fn swap_sync(
        &self,
        key: &Key,
        staged: &Path,
        dest: &Path,
        expected: &ETag,
    ) -> Result<(), StoreError> {
        let io_err = |e| StoreError::backend("put", key, e);
        let lock_name = Digest::of(key.as_str().as_bytes()).hex();
        fs::create_dir_all(self.root.join(LOCKS)).map_err(io_err)?;
        let lock = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.root.join(LOCKS).join(lock_name))
            .map_err(io_err)?;
        lock.lock().map_err(io_err)?;
        let current = match fs::read(dest) {
            Ok(bytes) => Some(etag_of(&bytes)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(io_err(e)),
        };
        if current.as_ref() != Some(expected) {
            return Err(StoreError::PreconditionFailed { key: key.clone() });
        }
        fs::rename(staged, dest).map_err(io_err)
        // The lock is released when `lock` is dropped, after the rename.
    }

    fn list_meta_sync(&self, prefix: &str) -> io::Result<Vec<ObjectMeta>> {
        let keys = self.list_sync(prefix)?;
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            let meta = match fs::metadata(self.file(&key)?) {
                Ok(meta) => meta,
                // Removed between the listing and now.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            out.push(ObjectMeta {
                key,
                size: meta.len(),
                last_modified: DateTime::<Utc>::from(meta.modified()?),
            });
        }
        Ok(out)
    }

    fn clean_staging_sync(&self, older_than: DateTime<Utc>, dry_run: bool) -> io::Result<Scratch> {
        let mut found = Scratch::default();
        let entries = match fs::read_dir(self.root.join(STAGING)) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(found),
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            let meta = entry.metadata()?;
            if !meta.is_file() || DateTime::<Utc>::from(meta.modified()?) >= older_than {
                continue;
            }
            found.files += 1;
            found.bytes += meta.len();
            if !dry_run {
                match fs::remove_file(entry.path()) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                    _ => {}
                }
            }
        }
        Ok(found)
    }

    fn list_sync(&self, prefix: &str) -> io::Result<Vec<Key>> {
        let folder = prefix.rsplit_once('/').map_or("", |(folder, _)| folder);
        let start = if folder.is_empty() {
            self.root.clone()
        } else {
            self.file(&Key::from_store(folder.to_owned()))?
        };
        let mut keys = Vec::new();
        let mut pending = vec![(start, folder.to_owned())];
        while let Some((dir, rel)) = pending.pop() {
            let entries = match fs::read_dir(&dir) {
                Ok(entries) => entries,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            for entry in entries {
                let entry = entry?;
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.starts_with('.') {
                    continue;
                }
                let key = if rel.is_empty() {
                    name
                } else {
                    format!("{rel}/{name}")
                };
                if entry.file_type()?.is_dir() {
                    pending.push((entry.path(), key));
                } else if key.starts_with(prefix) {
                    keys.push(Key::from_store(key));
                }
            }
        }
        keys.sort();
        Ok(keys)
    }
}

/// Flushes a directory's entries to disk (a no-op where directories cannot be opened, as on
/// WASI preopens that are read-only).
fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        fs::File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

fn etag_of(bytes: &[u8]) -> ETag {
    ETag::new(Digest::of(bytes).hex())
}

/// Runs blocking file work off the async executor where there is a thread pool to run it on.
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    #[cfg(not(target_arch = "wasm32"))]
    {
        tokio::task::spawn_blocking(work)
            .await
            .expect("blocking store task panicked")
    }
    #[cfg(target_arch = "wasm32")]
    {
        work()
    }
}

#[async_trait]
impl Store for DirStore {
    async fn get(&self, key: &Key) -> Result<Option<Object>, StoreError> {
        let (this, k) = (self.clone(), key.clone());
        blocking(move || this.get_sync(&k))
            .await
            .map_err(|e| StoreError::backend("get", key, e))
    }

    async fn put(&self, key: &Key, bytes: Bytes, mode: PutMode) -> Result<ETag, StoreError> {
        let (this, k) = (self.clone(), key.clone());
        blocking(move || this.put_sync(&k, &bytes, &mode)).await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<Key>, StoreError> {
        let (this, p) = (self.clone(), prefix.to_owned());
        blocking(move || this.list_sync(&p))
            .await
            .map_err(|e| StoreError::backend("list", &Key::from_store(prefix.to_owned()), e))
    }

    async fn exists(&self, key: &Key) -> Result<bool, StoreError> {
        let path = self
            .file(key)
            .map_err(|e| StoreError::backend("head", key, e))?;
        Ok(path.is_file())
    }

    async fn list_meta(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StoreError> {
        let (this, p) = (self.clone(), prefix.to_owned());
        blocking(move || this.list_meta_sync(&p))
            .await
            .map_err(|e| StoreError::backend("list", &Key::from_store(prefix.to_owned()), e))
    }

    async fn clean_scratch(
        &self,
        older_than: DateTime<Utc>,
        dry_run: bool,
    ) -> Result<Scratch, StoreError> {
        let this = self.clone();
        blocking(move || this.clean_staging_sync(older_than, dry_run))
            .await
            .map_err(|e| StoreError::backend("clean", &Key::from_store(STAGING.to_owned()), e))
    }

    async fn delete(&self, key: &Key) -> Result<(), StoreError> {
        let path = self
            .file(key)
            .map_err(|e| StoreError::backend("delete", key, e))?;
        blocking(move || match fs::remove_file(path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        })
        .await
        .map_err(|e| StoreError::backend("delete", key, e))
    }

    fn describe(&self) -> String {
        format!("file://{}", self.root.display())
    }
}
