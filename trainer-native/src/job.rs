//! One train job: what to train, on which data, with which config, seed and gate. The CLI, the
//! worker and the CrowdMind path each build a [`JobSpec`]; [`prepare`] loads and checks its data,
//! and every refusal (bad data, too few samples, a bad name or config) happens there, before the
//! pipeline writes anything.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use registry::datasets::Snapshot;
use registry::manifest::PipelineId;
use registry::{Digest, ModelName, Registry};

use crate::dataset::sessions::{self, Minimum};
use crate::dataset::snapshot::training_set;
use crate::dataset::source::{self, TabularSource};
use crate::dataset::{Dataset, TABULAR_PIPELINE};
use crate::features::Modality;
use crate::train::config::TrainConfig;

/// Where a job's data comes from.
pub enum DataSource {
    /// A CSV file and its schema, or a CrowdMind dataset.
    Tabular(TabularSource),
    /// A folder of per-user session samples of one modality (A3CP).
    Sessions {
        /// The folder.
        dir: PathBuf,
        /// The modality, which picks the feature pipeline.
        modality: Modality,
        /// Train this user's model only; `None` trains the modality's default model.
        user_id: Option<String>,
    },
    /// A dataset snapshot in the registry (tabular or images).
    Snapshot(Snapshot),
}

/// A check made right before the publish: fails if this run must not publish any more (a
/// worker renews its lease there, so that a worker whose job was taken over cannot publish).
pub trait Fence: Send + Sync {
    /// Ok while the run may publish.
    fn check(&self) -> futures::future::BoxFuture<'_, anyhow::Result<()>>;
}

/// What a caller asks for.
pub struct JobSpec {
    /// The data.
    pub source: DataSource,
    /// The model name; derived from the data when `None`.
    pub model: Option<String>,
    /// The training configuration (seed and gate included).
    pub config: TrainConfig,
    /// Promote whatever the gate says.
    pub force: bool,
    /// Run folders go here.
    pub runs_dir: PathBuf,
    /// The worker job running this, if one is.
    pub job: Option<uuid::Uuid>,
    /// Checked right before publishing.
    pub fence: Option<Arc<dyn Fence>>,
}

/// Where the data came from, for the manifest, the run folder and the history.
pub struct Lineage {
    /// Dataset id or file name (`iris`, `authenticity@<snapshot>`).
    pub id: String,
    /// The registry snapshot the data came from, if it did.
    pub snapshot: Option<Digest>,
    /// Raw dataset files to keep in the run folder: (file name, bytes).
    pub files: Vec<(String, Vec<u8>)>,
}

impl Lineage {
    /// The snapshot digest, or the data's own digest when it came from files.
    pub fn snapshot_or(&self, data: &Dataset) -> Digest {
        self.snapshot.unwrap_or(data.digest)
    }
}

/// A job ready to run: its data loaded and checked.
pub struct TrainJob {
    /// The model's registry name.
    pub name: ModelName,
    /// The dataset.
    pub data: Dataset,
    /// Where it came from.
    pub lineage: Lineage,
    /// The feature pipeline that computed the data's columns.
    pub pipeline: PipelineId,
    /// Training configuration, validated.
    pub config: TrainConfig,
    /// Promote whatever the gate says.
    pub force: bool,
    /// Tags for the manifest (user_id, modality, …).
    pub tags: BTreeMap<String, String>,
    /// The format-only reference set (images): the same samples described by their file format
    /// alone, whose score the report shows next to the model's.
    pub format_only: Option<Dataset>,
    /// Each row's perceptual hash (images): no near-duplicate pair may straddle the split.
    pub phashes: Option<Vec<Option<u64>>>,
    /// Run folders go here.
    pub runs_dir: PathBuf,
    /// The worker job running this, if one is.
    pub job: Option<uuid::Uuid>,
    /// Checked right before publishing.
    pub fence: Option<Arc<dyn Fence>>,
    /// One line on where the features came from, for logs.
    pub note: Option<String>,
}

/// Loads and checks the data of `spec`; refuses before anything is written.
pub async fn prepare(reg: &Registry, spec: JobSpec) -> anyhow::Result<TrainJob> {
    spec.config.validate()?;
    let named = |default: String| -> anyhow::Result<ModelName> {
        ModelName::new(spec.model.clone().unwrap_or(default))
            .context("choose a model name with --model")
    };
    let mut tags = BTreeMap::new();
    let (name, data, lineage, pipeline, format_only, phashes, note) = match spec.source {
        DataSource::Tabular(source) => {
            let loaded = source::load(&source).await?;
            let name = named(source::model_name_for(&loaded.id))?;
            let lineage = Lineage {
                id: loaded.id,
                snapshot: None,
                files: loaded.files,
            };
            (
                name,
                loaded.data,
                lineage,
                TABULAR_PIPELINE,
                None,
                None,
                None,
            )
        }
        DataSource::Sessions {
            dir,
            modality,
            user_id,
        } => {
            let data = sessions::load(&dir, modality, user_id.as_deref(), Minimum::default())?;
            let name = match &user_id {
                Some(user) => registry::users::user_model(modality.as_str(), user)?,
                None => registry::users::default_model(modality.as_str())?,
            };
            tags.insert("modality".to_owned(), modality.as_str().to_owned());
            if let Some(user) = user_id {
                tags.insert("user_id".into(), user);
            }
            let lineage = Lineage {
                id: format!("{}/{}", dir.display(), modality.as_str()),
                snapshot: None,
                files: Vec::new(),
            };
            (name, data, lineage, modality.pipeline(), None, None, None)
        }
        DataSource::Snapshot(snapshot) => {
            let name = named(snapshot.dataset.to_string())?;
            let set = training_set(reg, &snapshot).await?;
            let lineage = Lineage {
                id: format!("{}@{}", snapshot.dataset, snapshot.id),
                snapshot: Some(snapshot.digest),
                files: set.files,
            };
            let (data, pipeline) = (set.data, set.pipeline);
            (
                name,
                data,
                lineage,
                pipeline,
                set.format_only,
                set.phashes,
                set.note,
            )
        }
    };
    Ok(TrainJob {
        name,
        data,
        lineage,
        pipeline,
        config: spec.config,
        force: spec.force,
        tags,
        format_only,
        phashes,
        runs_dir: spec.runs_dir,
        job: spec.job,
        fence: spec.fence,
        note,
    })
}

/// The newest snapshot of `dataset`, or an error that says how to make one.
pub async fn latest_snapshot(
    reg: &Registry,
    dataset: &registry::layout::DatasetName,
) -> anyhow::Result<Snapshot> {
    reg.latest_snapshot(dataset).await?.with_context(|| {
        format!("dataset {dataset} has no snapshot: ingest it or scrape its source first")
    })
}
