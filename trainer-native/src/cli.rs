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
    #[arg(
        long,
        global = true,
        default_value = "warn",
        env = "EXPOSR_LOG_LEVEL",
        ignore_case = true
    )]
    pub log_level: String,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Train on a tabular dataset, export ONNX float32 and int8, check both in tract, and
    /// publish through the quality gate (promoted to production only if it passes).
    Train(Box<TrainArgs>),
    /// Evaluate a published model's ONNX file on a dataset (tract), printing every metric.
    Evaluate(Box<EvaluateArgs>),
    /// Write a published version's artifacts (each checked against its digest) to a folder, with
    /// its manifest, CrowdMind's meta.json and the seeds' registry entry. (`export` is the old
    /// name, still accepted.)
    #[command(alias = "export")]
    Download {
        /// Model name.
        name: String,
        /// Version or alias.
        #[arg(default_value = "production")]
        reference: String,
        /// The folder to write to (created if missing).
        #[arg(long)]
        out: PathBuf,
    },
    /// Quantize a float32 ONNX file written by `train` to int8 (static, calibrated on dataset rows),
    /// check it in tract, and report both files' accuracy on the dataset.
    Quantize(Box<QuantizeArgs>),
    /// Serve the HTTP API: the project's WebAssembly components under wasmtime, with the routes of
    /// spin.toml, over the local registry directory (the embedded host).
    Serve {
        /// The Spin manifest giving routes, components, environment and mounts.
        #[arg(long, default_value = "spin.toml")]
        manifest: PathBuf,
        /// Folder holding the built .wasm files (default: the paths in the manifest).
        #[arg(long, env = "EXPOSR_COMPONENTS_DIR")]
        components: Option<PathBuf>,
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8001")]
        listen: std::net::SocketAddr,
        /// Bearer token for authenticated routes.
        #[arg(long, env = "TRAINER_API_KEY", hide_env_values = true)]
        token: Option<String>,
        /// Admin token: the API token's rights and the gate overrides of POST /train (force,
        /// config.gate). Without it, no request may override the gate.
        #[arg(long, env = "TRAINER_ADMIN_KEY", hide_env_values = true)]
        admin_token: Option<String>,
        #[command(flatten)]
        limits: ServeLimits,
    },
    /// Compose a component with the components it imports (wac plug): the build uses it to plug
    /// the validator into the models function, so one self-contained .wasm runs on every host.
    Compose {
        /// The component whose imports are to be satisfied.
        socket: PathBuf,
        /// A component whose exports satisfy them; repeat for each.
        #[arg(long = "plug", required = true)]
        plugs: Vec<PathBuf>,
        /// Where to write the composed component.
        #[arg(long, short)]
        out: PathBuf,
    },
    /// Validate artifact files against a manifest with the validator component (wit/validator.wit)
    /// under wasmtime: digest, size, signature, golden outputs.
    Validate {
        /// The manifest (JSON), e.g. a run folder's output/manifest.json or `show` output.
        #[arg(long)]
        manifest: PathBuf,
        /// An artifact as ROLE=PATH (e.g. onnx=model.onnx); repeat for each.
        #[arg(long = "artifact", value_name = "ROLE=PATH", required = true)]
        artifacts: Vec<String>,
    },
    /// List models with their version count and aliases.
    Models,
    /// Find a user's model for a modality, falling back to the modality's default model.
    Lookup {
        /// The modality.
        #[arg(long, value_enum)]
        modality: crate::features::Modality,
        /// The user.
        #[arg(long)]
        user_id: String,
        /// Alias to resolve.
        #[arg(long, default_value = "production")]
        alias: String,
    },
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
    /// Remove what nothing references any more: blobs of no version or snapshot, manifests of
    /// retired versions and of publishes that never finished, sample files no index lists,
    /// stale probe and staging files. Safe beside running publishers and workers: objects
    /// younger than --grace are left alone.
    ///
    /// Examples: `exposr-trainer gc --dry-run` (what would go); `exposr-trainer gc --keep-last 5`
    /// (also retire all but the newest 5 versions of each model, aliased ones kept).
    Gc {
        /// Report what would be freed; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Keep only the newest N versions of each model, plus every aliased one; the others
        /// leave the index for good (their version numbers are never reused).
        #[arg(long)]
        keep_last: Option<usize>,
        /// Leave unreferenced objects younger than this (publishes and scrapes in flight).
        #[arg(long, default_value = "24h", value_parser = humantime::parse_duration)]
        grace: std::time::Duration,
    },
    /// Read every artifact of a version and check its size and digest.
    Verify {
        /// Model name.
        name: String,
        /// Version or alias.
        #[arg(default_value = "latest")]
        reference: String,
    },
    /// Run jobs: enqueue what the schedule kept in the registry says is due, then claim queued
    /// scrape and train jobs (a lease on each, renewed while it runs) and run them. Safe to kill
    /// at any moment; run it from cron, a Kubernetes CronJob or a systemd timer.
    Worker(Box<WorkerArgs>),
    /// Add data to a dataset in the registry and snapshot it: a folder of images (checked,
    /// normalised, deduplicated) with --label, a CSV with its schema, or the uploads waiting
    /// from POST /uploads (--pending).
    Ingest {
        /// A folder of image files (JPEG, PNG, WEBP), searched recursively.
        #[arg(required_unless_present_any = ["csv", "pending"])]
        dir: Option<PathBuf>,
        /// The label of the folder's images: real or ai_generated.
        #[arg(long, requires = "dir")]
        label: Option<String>,
        /// The licence the folder's images come under, for their metadata.
        #[arg(long, default_value = "unknown", requires = "dir")]
        license: String,
        /// Dataset name in the registry (default: authenticity, the image dataset).
        #[arg(long)]
        dataset: Option<String>,
        /// A CSV file to snapshot (with --schema and --dataset).
        #[arg(long, requires_all = ["schema", "dataset"], conflicts_with = "dir")]
        csv: Option<PathBuf>,
        /// The CSV's schema.json.
        #[arg(long, requires = "csv")]
        schema: Option<PathBuf>,
        /// Ingest the uploads waiting in the dataset.
        #[arg(long, conflicts_with_all = ["dir", "csv"])]
        pending: bool,
    },
    /// Collect images from the photo APIs of the sources config (and tabular sources), with a
    /// progress bar per source and a summary: fetched, new, duplicates, rejected and why,
    /// rate-limit waits. Keys come from UNSPLASH_ACCESS_KEY, PEXELS_API_KEY, CIVITAI_API_URL
    /// (and CIVITAI_API_KEY); a killed scrape resumes where it stopped.
    Scrape {
        /// Only this source (a name in the config, or `uploads`).
        #[arg(long)]
        source: Option<String>,
        /// Images per query at most, overriding limit_per_query.
        #[arg(long)]
        limit: Option<u64>,
        /// The sources config (seed 001's config/sources.yaml shape).
        #[arg(long, env = "EXPOSR_SOURCES", default_value = "config/sources.yaml")]
        sources: PathBuf,
    },
    /// Classify images (files, folders, http(s) URLs) as real or AI-generated with a published
    /// detector: each image decoded, checked, normalised and measured exactly as for training,
    /// then run in tract (seed 002's inference).
    Classify {
        /// Image files, folders of images, or http(s) URLs.
        #[arg(required = true)]
        inputs: Vec<String>,
        /// The detector model.
        #[arg(long, default_value = "authenticity")]
        model: String,
        /// Version or alias.
        #[arg(long, default_value = "production")]
        reference: String,
        /// Run the int8 file instead of the float one.
        #[arg(long)]
        int8: bool,
    },
    /// Queue a job, as POST /scrape and POST /train do.
    Enqueue {
        /// What the job does.
        #[arg(value_enum)]
        kind: JobKindArg,
        /// A parameter as KEY=VALUE (VALUE is JSON, or else a string); repeat for each.
        #[arg(long = "param", value_name = "KEY=VALUE")]
        params: Vec<String>,
    },
    /// List jobs not yet finished, or show one job.
    Jobs {
        /// A job id.
        id: Option<uuid::Uuid>,
    },
    /// Show the schedule kept in the registry, or change it.
    Schedule {
        /// Enqueue a scrape this often (e.g. 12h).
        #[arg(long, value_parser = humantime::parse_duration)]
        scrape_every: Option<std::time::Duration>,
        /// Enqueue a training run this often (e.g. 7days).
        #[arg(long, value_parser = humantime::parse_duration)]
        train_every: Option<std::time::Duration>,
        /// Parameters of scheduled train jobs, as KEY=VALUE (see `enqueue`).
        #[arg(long = "train-param", value_name = "KEY=VALUE")]
        train_params: Vec<String>,
    },
    /// A model's performance history: every training run with its dataset snapshot, metrics and
    /// decision (promoted, kept, skipped, failed), oldest first.
    #[command(visible_alias = "report")]
    History {
        /// Model name (default: every model).
        model: Option<String>,
        /// Show only the last N runs of each model.
        #[arg(long)]
        limit: Option<usize>,
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

/// Where a tabular dataset comes from: local files, or the CrowdMind API.
#[derive(Debug, Args)]
pub struct DatasetArgs {
    /// The dataset CSV file (with --schema).
    #[arg(long, requires = "schema", conflicts_with = "dataset_id")]
    pub csv: Option<PathBuf>,
    /// The dataset's schema.json (feature columns, label column, classes).
    #[arg(long, requires = "csv")]
    pub schema: Option<PathBuf>,
    /// CrowdMind dataset id: download CSV and schema from the API (with --api-base, --token).
    #[arg(long, requires = "api_base")]
    pub dataset_id: Option<String>,
    /// CrowdMind API base URL.
    #[arg(long, env = "CROWDMIND_API_BASE")]
    pub api_base: Option<String>,
    /// CrowdMind API token (bearer).
    #[arg(long, env = "CROWDMIND_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

/// Options of `train`.
#[derive(Debug, Args)]
pub struct TrainArgs {
    #[command(flatten)]
    pub dataset: DatasetArgs,
    /// Training configuration (YAML; CrowdMind's configs/train.yaml shape is accepted).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Registry model name (default: the dataset id or CSV file name).
    #[arg(long)]
    pub model: Option<String>,
    /// Model family, overriding the config.
    #[arg(long, value_enum)]
    pub family: Option<crate::train::config::Family>,
    /// Random seed, overriding the config.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Where run folders go.
    #[arg(long, default_value = "runs", env = "EXPOSR_RUNS_DIR")]
    pub runs_dir: PathBuf,
    /// Promote to production whatever the quality gate says (recorded as forced).
    #[arg(long)]
    pub force: bool,
    /// With --dataset-id: do not upload the artifacts back to the API.
    #[arg(long)]
    pub no_upload: bool,
    /// Train on the newest snapshot of this registry dataset (tabular, or images: the
    /// forensic features of every sample, cached per sample).
    #[arg(long, conflicts_with_all = ["csv", "dataset_id", "modality"])]
    pub registry_dataset: Option<String>,
    /// Per-user training (A3CP): the modality of the samples under --sessions.
    #[arg(long, value_enum, requires = "sessions", conflicts_with_all = ["csv", "dataset_id"])]
    pub modality: Option<crate::features::Modality>,
    /// Labelled sessions, laid out as <dir>/<modality>/<user_id>/<label>/<sample> (JSON frames
    /// for gestures, WAV for sounds).
    #[arg(long, requires = "modality")]
    pub sessions: Option<PathBuf>,
    /// The user whose model to train; without it, the modality's default model is trained on
    /// every user's samples.
    #[arg(long, requires = "modality")]
    pub user_id: Option<String>,
}

/// Options of `quantize`.
#[derive(Debug, Args)]
pub struct QuantizeArgs {
    /// The float32 ONNX file (e.g. a run folder's output/model.onnx).
    #[arg(long)]
    pub onnx: PathBuf,
    /// Where to write the int8 file.
    #[arg(long)]
    pub out: PathBuf,
    #[command(flatten)]
    pub dataset: DatasetArgs,
    /// Rows used for calibration.
    #[arg(long, default_value_t = 100)]
    pub calibration_samples: usize,
    /// Seed for picking calibration rows.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
}

/// Options of `evaluate`.
#[derive(Debug, Args)]
pub struct EvaluateArgs {
    /// Model name.
    pub name: String,
    /// Version or alias.
    #[arg(default_value = "production")]
    pub reference: String,
    #[command(flatten)]
    pub dataset: DatasetArgs,
    /// Evaluate the int8 file instead of the float one.
    #[arg(long)]
    pub int8: bool,
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

/// Job kinds on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum JobKindArg {
    /// Collect data from the configured sources.
    Scrape,
    /// Train on the newest snapshots, through the quality gate.
    Train,
}

/// Options of `worker`.
#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// Run what is claimable now, then exit (for cron and Kubernetes CronJobs).
    #[arg(long)]
    pub once: bool,
    /// How long to sleep when the queue is empty (without --once).
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub poll_interval: std::time::Duration,
    /// How long a claim holds a job; renewed every third of it while the job runs. A killed
    /// worker's job is taken over this long after its last renewal.
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration, env = "EXPOSR_LEASE")]
    pub lease: std::time::Duration,
    /// Attempts a job gets before it is failed with its last error.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_attempts: u32,
    /// Wait before the first retry of a failed job; doubled for each further attempt.
    #[arg(long, default_value = "1m", value_parser = humantime::parse_duration)]
    pub retry_after: std::time::Duration,
    /// Longest one attempt at a job may run; past it the attempt fails (and is retried).
    #[arg(long, default_value = "2h", value_parser = humantime::parse_duration)]
    pub job_timeout: std::time::Duration,
    /// Stop after this many jobs.
    #[arg(long)]
    pub max_jobs: Option<usize>,
    /// Do not enqueue scheduled jobs; only run queued ones.
    #[arg(long)]
    pub no_schedule: bool,
    /// Scrape period for a registry that has no schedule yet (seed 001's variable).
    #[arg(long, env = "SCRAPE_EVERY_HOURS")]
    pub scrape_every_hours: Option<f64>,
    /// Training period for a registry that has no schedule yet (seed 001's variable).
    #[arg(long, env = "TRAIN_EVERY_DAYS")]
    pub train_every_days: Option<f64>,
    /// The sources config for scrape jobs (seed 001's config/sources.yaml shape).
    #[arg(long, env = "EXPOSR_SOURCES", default_value = "config/sources.yaml")]
    pub sources: PathBuf,
    /// Where local run folders go.
    #[arg(long, default_value = "runs", env = "EXPOSR_RUNS_DIR")]
    pub runs_dir: PathBuf,
    /// This worker's name in job leases (default: host name and process id).
    #[arg(long, env = "EXPOSR_WORKER_ID")]
    pub id: Option<String>,
}

/// What one request may use under `serve` (README, "Security").
#[derive(Debug, Clone, clap::Args)]
pub struct ServeLimits {
    /// Largest request body of a JSON route.
    #[arg(long, default_value = "256KiB", value_parser = parse_bytes, help_heading = "Limits")]
    pub max_json_body: usize,
    /// Largest request body of an image route (/classify, /uploads).
    #[arg(long, default_value = "10MiB", value_parser = parse_bytes, help_heading = "Limits")]
    pub max_image_body: usize,
    /// Largest linear memory of one component instance.
    #[arg(long, default_value = "512MiB", value_parser = parse_bytes, help_heading = "Limits")]
    pub memory_limit: usize,
    /// CPU time one request may spend running WebAssembly.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration, help_heading = "Limits")]
    pub cpu_time: std::time::Duration,
    /// Wall time for a whole request (body, component, response head).
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration, help_heading = "Limits")]
    pub request_timeout: std::time::Duration,
    /// Requests served at once; more wait up to --queue-wait, then get a 503.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=4096), help_heading = "Limits")]
    pub concurrency: u32,
    /// How long a request waits for a free slot.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration, help_heading = "Limits")]
    pub queue_wait: std::time::Duration,
    /// Time a client has to send a request's headers.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration, help_heading = "Limits")]
    pub header_timeout: std::time::Duration,
}

impl ServeLimits {
    /// The host's limits.
    pub fn limits(&self) -> crate::serve::Limits {
        crate::serve::Limits {
            json_body: self.max_json_body,
            image_body: self.max_image_body,
            memory: self.memory_limit,
            cpu_time: self.cpu_time,
            deadline: self.request_timeout,
            concurrency: self.concurrency as usize,
            queue_wait: self.queue_wait,
            header_read: self.header_timeout,
            ..crate::serve::Limits::default()
        }
    }
}

/// `512`, `256KiB`, `10MiB`, `1GiB`: a size in bytes.
fn parse_bytes(text: &str) -> Result<usize, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let n: usize = number
        .parse()
        .map_err(|_| format!("{text:?} is not a size (e.g. 512, 256KiB, 10MiB)"))?;
    let scale = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        other => return Err(format!("unknown unit {other:?} (use B, KiB, MiB or GiB)")),
    };
    n.checked_mul(scale)
        .ok_or_else(|| format!("{text:?} is too large"))
}
