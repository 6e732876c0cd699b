//! The conditional-write probe: does this store really refuse a second create-only write and a
//! compare-and-swap with a stale ETag? Some S3 servers (Garage 2.x, seen here) accept both
//! silently, and the publish protocol would then lose versions without a word.

use bytes::Bytes;

use super::{ETag, PutMode, Store, StoreError};
use crate::layout;

/// What the probe found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConditionalWrites {
    /// Both `If-None-Match: *` and `If-Match` are enforced.
    Honoured,
    /// At least one is ignored; the text says which.
    Ignored(String),
}

/// Writes a scratch object twice create-only and once with a wrong ETag, then removes it.
/// Costs five round trips; run it once, when opening a store for writing.
pub async fn probe(store: &dyn Store) -> Result<ConditionalWrites, StoreError> {
    let key = layout::probe(&uuid::Uuid::new_v4());
    let verdict = run(store, &key).await;
    let cleanup = store.delete(&key).await;
    let verdict = verdict?;
    cleanup?;
    Ok(verdict)
}

async fn run(store: &dyn Store, key: &layout::Key) -> Result<ConditionalWrites, StoreError> {
    store
        .put(key, Bytes::from_static(b"first"), PutMode::Create)
        .await?;
    match store
        .put(key, Bytes::from_static(b"second"), PutMode::Create)
        .await
    {
        Err(StoreError::AlreadyExists { .. }) => {}
        Ok(_) => {
            return Ok(ConditionalWrites::Ignored(
                "a create-only write (If-None-Match: *) to an existing key succeeded".into(),
            ));
        }
        Err(e) => return Err(e),
    }
    let stale = ETag::new("\"00000000000000000000000000000000\"");
    match store
        .put(key, Bytes::from_static(b"third"), PutMode::IfMatch(stale))
        .await
    {
        Err(StoreError::PreconditionFailed { .. }) => Ok(ConditionalWrites::Honoured),
        Ok(_) => Ok(ConditionalWrites::Ignored(
            "a compare-and-swap write (If-Match) with a stale ETag succeeded".into(),
        )),
        Err(e) => Err(e),
    }
}
