//! Command-line definitions (clap).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

const AFTER_HELP: &str = "\
Registry location: a directory path (default ./registry-data), file://PATH, memory://, or
s3://BUCKET/PREFIX. For S3 the usual AWS variables apply: AWS_ACCESS_KEY_ID,
AWS_SECRET_ACCESS_KEY, AWS_REGION, AWS_ENDPOINT_URL (an http:// endpoint allows plain HTTP).

Exit codes: 0 success, 1 error, 2 bad usage, 3 verification failed, 4 not found,
5 refused: conflict or a store that ignores conditional writes.";

/// Exposr Trainer: collect data, train small classifiers, and publish them to a content-addressed
/// model registry.
#[derive(Debug, Parser)]
#[command(name = "exposr-trainer", version, about, after_help = AFTER_HELP)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command takes.
#[derive(Debug, Args)]
pub struct Global {
    /// Where the registry lives (directory, file://, memory://, s3://bucket/prefix).
    #[arg(
        long,
        global = true,
        env = "EXPOSR_REGISTRY",
        default_value = "registry-data"
    )]
    pub registry: String,

    /// Allow writing to a store that ignores conditional writes. Only safe if this is the only
    /// process that ever writes to the registry.
    #[arg(long, global = true, env = "EXPOSR_SINGLE_WRITER")]
    pub single_writer: bool,

    /// Print results (and errors) as JSON on stdout.
    #[arg(long, global = true)]
    pub json: bool,

    /// Log level on stderr: error, warn, info, debug, trace (RUST_LOG overrides).
    #[arg(long, global = true, default_value = "warn", env = "EXPOSR_LOG_LEVEL")]
    pub log_level: String,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// List models with their version count and aliases.
    Models,
    /// List the versions of a model, oldest first.
    Versions {
        /// Model name.
        name: String,
    },
    /// Print a version's manifest.
    Show {
        /// Model name.
        name: String,
        /// Version or alias.
        #[arg(default_value = "latest")]
        reference: String,
        /// Output format: the manifest, the seeds' registry.json entry, or CrowdMind's meta.json.
        #[arg(long, value_enum, default_value_t = ShowFormat::Manifest)]
        format: ShowFormat,
    },
    /// Point an alias (default: production) at a published version.
    Promote {
        /// Model name.
        name: String,
        /// Version to point at.
        version: String,
        /// Alias to move.
        #[arg(long, default_value = "production")]
        alias: String,
    },
    /// Read every artifact of a version and check its size and digest.
    Verify {
        /// Model name.
        name: String,
        /// Version or alias.
        #[arg(default_value = "latest")]
        reference: String,
    },
    /// Publish artifact files with a manifest. The manifest is JSON in the registry's format;
    /// `artifacts`, `version`, `created_at` and `schema_version` may be left out and are filled in
    /// from the files given and the registry.
    Publish {
        /// The manifest (JSON).
        #[arg(long)]
        manifest: PathBuf,
        /// An artifact file as ROLE=PATH (e.g. onnx=model.onnx); repeat for each file.
        #[arg(long = "artifact", value_name = "ROLE=PATH", required = true)]
        artifacts: Vec<String>,
        /// Publish as exactly this version instead of the next free v<N>.
        #[arg(long)]
        version: Option<String>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ShowFormat {
    /// The registry's manifest.
    Manifest,
    /// The seeds' registry.json entry (Exposr-Core).
    RegistryEntry,
    /// CrowdMind's meta.json.
    Meta,
}
