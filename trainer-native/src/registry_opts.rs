//! Opening the registry from the global options and the environment (the CLI's edge: the
//! registry library never reads the environment itself).

use anyhow::Context;
use registry::{Registry, WritePolicy, store};

use crate::cli::Global;

/// S3 settings from the usual AWS variables, passed through to the store.
fn aws_options() -> Vec<(String, String)> {
    std::env::vars()
        .filter(|(k, _)| k.starts_with("AWS_"))
        .collect()
}

/// The registry for reading only.
pub fn reader(global: &Global) -> anyhow::Result<Registry> {
    let store = store::open(&global.registry, &aws_options())
        .with_context(|| format!("opening registry {}", global.registry))?;
    Ok(Registry::read_only(store))
}

/// The registry for writing; probes the store's conditional writes first.
pub async fn writer(global: &Global) -> anyhow::Result<Registry> {
    let store = store::open(&global.registry, &aws_options())
        .with_context(|| format!("opening registry {}", global.registry))?;
    let policy = if global.single_writer {
        WritePolicy::SingleWriter
    } else {
        WritePolicy::Concurrent
    };
    let described = store.describe();
    Registry::open(store, policy)
        .await
        .with_context(|| format!("checking that {described} is writable"))
}
