//! Opening a store from a URL: a local directory (the default), `memory://`, or `s3://bucket/prefix`.
//!
//! Natively [`open`] reaches S3 with `object_store`'s own HTTP client. [`open_with_http`] takes
//! the HTTP client from the caller and signs with [`RustCrypto`]: that is how WebAssembly
//! components reach S3 through their host's outbound HTTP, with the same layout and protocol.

use std::str::FromStr;
use std::sync::Arc;

use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::client::HttpConnector;
use object_store::prefix::PrefixStore;
use object_store::{BackoffConfig, RetryConfig};

use super::{DirStore, ObjectStoreBackend, RustCrypto, Store};

/// A store URL that cannot be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The URL's scheme is not one we know.
    #[error(
        "unsupported registry URL scheme {scheme:?} (use a directory path, file://, memory:// or s3://)"
    )]
    UnsupportedScheme {
        /// The scheme given.
        scheme: String,
    },
    /// The URL is malformed.
    #[error("invalid registry URL {url:?}: {reason}")]
    BadUrl {
        /// The URL given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The backend refused its configuration.
    #[error("cannot open {url}")]
    Backend {
        /// The URL given.
        url: String,
        /// What the backend said.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// Opens the store at `location`.
///
/// `options` are S3 settings as `(name, value)` pairs named like the usual AWS variables
/// (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, `AWS_ENDPOINT_URL`,
/// `AWS_ALLOW_HTTP`, …, in any case); names that are not S3 settings are ignored. An explicit
/// `http://` endpoint allows plain HTTP (a local server). The caller reads them from wherever its
/// configuration lives: this library never reads the environment.
#[cfg(not(target_arch = "wasm32"))]
pub fn open(location: &str, options: &[(String, String)]) -> Result<Arc<dyn Store>, OpenError> {
    open_url(location, options, |b| b)
}

/// Like [`open`], but S3 requests go through `http` and are signed by [`RustCrypto`], with no
/// retries (a retry sleeps on a tokio timer, which a WebAssembly component does not have; the
/// registry's own CAS loop retries conflicts).
pub fn open_with_http(
    location: &str,
    options: &[(String, String)],
    http: impl HttpConnector,
) -> Result<Arc<dyn Store>, OpenError> {
    open_url(location, options, |b| {
        b.with_http_connector(http)
            .with_crypto_provider(Arc::new(RustCrypto))
            .with_retry(RetryConfig {
                backoff: BackoffConfig::default(),
                max_retries: 0,
                retry_timeout: std::time::Duration::from_secs(30),
            })
    })
}

fn open_url(
    location: &str,
    options: &[(String, String)],
    customize: impl FnOnce(AmazonS3Builder) -> AmazonS3Builder,
) -> Result<Arc<dyn Store>, OpenError> {
    let Some((scheme, rest)) = location.split_once("://") else {
        return dir(location, location);
    };
    match scheme {
        "file" => dir(location, rest),
        "memory" => Ok(Arc::new(ObjectStoreBackend::in_memory())),
        "s3" => s3(location, rest, options, customize),
        other => Err(OpenError::UnsupportedScheme {
            scheme: other.to_owned(),
        }),
    }
}

fn dir(url: &str, path: &str) -> Result<Arc<dyn Store>, OpenError> {
    if path.is_empty() {
        return Err(OpenError::BadUrl {
            url: url.to_owned(),
            reason: "empty directory path".into(),
        });
    }
    DirStore::new(path)
        .map(|s| Arc::new(s) as Arc<dyn Store>)
        .map_err(|e| OpenError::Backend {
            url: url.to_owned(),
            source: e.into(),
        })
}

fn s3(
    url: &str,
    rest: &str,
    options: &[(String, String)],
    customize: impl FnOnce(AmazonS3Builder) -> AmazonS3Builder,
) -> Result<Arc<dyn Store>, OpenError> {
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    let prefix = prefix.trim_matches('/');
    if bucket.is_empty() {
        return Err(OpenError::BadUrl {
            url: url.to_owned(),
            reason: "no bucket name".into(),
        });
    }
    let mut builder = AmazonS3Builder::new().with_bucket_name(bucket);
    for (name, value) in options {
        if let Ok(key) = AmazonS3ConfigKey::from_str(&name.to_ascii_lowercase()) {
            if matches!(key, AmazonS3ConfigKey::Endpoint) && value.starts_with("http://") {
                builder = builder.with_allow_http(true);
            }
            builder = builder.with_config(key, value);
        }
    }
    let s3 = customize(builder).build().map_err(|e| OpenError::Backend {
        url: url.to_owned(),
        source: e.into(),
    })?;
    let label = format!("s3://{bucket}/{prefix}");
    let s3 = Arc::new(s3);
    let store: Arc<dyn object_store::ObjectStore> = if prefix.is_empty() {
        s3.clone()
    } else {
        Arc::new(PrefixStore::new(s3.clone(), prefix))
    };
    Ok(Arc::new(
        ObjectStoreBackend::new(store, label).with_signer(s3, prefix),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_pick_their_backend() {
        assert!(
            open("memory://", &[])
                .unwrap()
                .describe()
                .starts_with("memory")
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("reg");
        let store = open(path.to_str().unwrap(), &[]).unwrap();
        assert!(store.describe().starts_with("file://"));
        assert!(path.join(".staging").is_dir());
        let s3 = open(
            "s3://bucket/some/prefix",
            &[("AWS_REGION".into(), "eu-west-1".into())],
        )
        .unwrap();
        assert_eq!(s3.describe(), "s3://bucket/some/prefix");
        assert!(matches!(
            open("ftp://x", &[]),
            Err(OpenError::UnsupportedScheme { .. })
        ));
        assert!(matches!(open("s3://", &[]), Err(OpenError::BadUrl { .. })));
    }
}
