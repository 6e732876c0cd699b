//! `train` and `evaluate`: the tabular pipeline from the command line.

use std::collections::BTreeMap;

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};
use registry::ModelName;

use crate::cli::{DatasetArgs, EvaluateArgs, Global, QuantizeArgs, TrainArgs};
use crate::dataset::crowdmind;
use crate::dataset::sessions::{self, Minimum};
use crate::dataset::{Dataset, Schema};
use crate::export::verify;
use crate::output::{print_json, print_table};
use crate::pipeline::{self, Request, RunSummary};
use crate::registry_opts::{reader, writer};
use crate::train::config::TrainConfig;
use crate::train::{Observer, metrics, mlp::Epoch};

/// A loaded dataset with what it came from.
struct Loaded {
    data: Dataset,
    id: String,
    files: Vec<(String, Vec<u8>)>,
}

async fn load(args: &DatasetArgs) -> anyhow::Result<Loaded> {
    let (csv, schema_bytes, id, source) = match (&args.csv, &args.schema, &args.dataset_id) {
        (Some(csv), Some(schema), None) => {
            let csv_bytes =
                std::fs::read(csv).with_context(|| format!("reading {}", csv.display()))?;
            let schema_bytes =
                std::fs::read(schema).with_context(|| format!("reading {}", schema.display()))?;
            let id = csv
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or("dataset")
                .to_owned();
            (csv_bytes, schema_bytes, id, csv.display().to_string())
        }
        (None, None, Some(id)) => {
            let base = args
                .api_base
                .as_deref()
                .context("--api-base is required with --dataset-id")?;
            let token = args
                .token
                .as_deref()
                .context("--token (or CROWDMIND_TOKEN) is required with --dataset-id")?;
            let (csv, schema) = crowdmind::Client::new(base, token)?.download(id).await?;
            (csv, schema, id.clone(), format!("dataset {id}"))
        }
        _ => bail!(
            "give a dataset: --csv FILE --schema FILE, or --dataset-id ID --api-base URL --token T"
        ),
    };
    let schema = Schema::parse(&format!("{source} schema"), &schema_bytes)?;
    let data = Dataset::from_csv(&source, &csv, &schema, &schema_bytes)?;
    Ok(Loaded {
        data,
        id,
        files: vec![
            ("dataset.csv".into(), csv),
            ("schema.json".into(), schema_bytes),
        ],
    })
}

/// Turns a dataset id or file name into a model name: lowercase, unsafe characters as '-'.
fn slug(text: &str) -> String {
    let s: String = text
        .to_ascii_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    s.trim_matches('-').to_owned()
}

/// Progress bars for folds and epochs, on stderr (hidden when it is not a terminal).
#[derive(Default)]
struct Bars {
    folds: Option<ProgressBar>,
    epochs: Option<ProgressBar>,
}

impl Observer for Bars {
    fn fold(&mut self, done: usize, total: usize) {
        let bar = self.folds.get_or_insert_with(|| {
            let bar = ProgressBar::new(total as u64);
            bar.set_style(
                ProgressStyle::with_template(
                    "cross-validation {bar:30} {pos}/{len} fits {elapsed}",
                )
                .expect("valid template"),
            );
            bar
        });
        bar.set_position(done as u64);
        if done == total {
            bar.finish();
        }
    }

    fn final_fit(&mut self, max_epochs: usize) {
        let bar = ProgressBar::new(max_epochs as u64);
        bar.set_style(
            ProgressStyle::with_template("training {bar:30} epoch {pos}/{len} {msg} {elapsed}")
                .expect("valid template"),
        );
        self.epochs = Some(bar);
    }

    fn epoch(&mut self, e: &Epoch) {
        if let Some(bar) = &self.epochs {
            bar.set_position(e.epoch as u64);
            match e.val_loss {
                Some(v) => bar.set_message(format!("loss {:.4} val {v:.4}", e.train_loss)),
                None => bar.set_message(format!("loss {:.4}", e.train_loss)),
            }
        }
    }
}

pub async fn train(g: &Global, args: &TrainArgs) -> anyhow::Result<()> {
    let mut config = match &args.config {
        Some(path) => TrainConfig::load(path)?,
        None => TrainConfig::default(),
    };
    if let Some(f) = args.family {
        config.model.family = f;
    }
    if let Some(s) = args.seed {
        config.random_seed = s;
    }
    config.validate()?;
    let mut snapshot_digest = None;
    let mut baseline = None;
    let mut phashes = None;
    let (loaded, name, tags, pipeline) = match (args.modality, &args.sessions) {
        (Some(modality), Some(dir)) => {
            let data = sessions::load(dir, modality, args.user_id.as_deref(), Minimum::default())?;
            let name = match &args.user_id {
                Some(user) => registry::users::user_model(modality.as_str(), user)?,
                None => registry::users::default_model(modality.as_str())?,
            };
            let mut tags = BTreeMap::from([("modality".to_owned(), modality.as_str().to_owned())]);
            if let Some(user) = &args.user_id {
                tags.insert("user_id".into(), user.clone());
            }
            let id = format!("{}/{}", dir.display(), modality.as_str());
            (
                Loaded {
                    data,
                    id,
                    files: vec![],
                },
                name,
                tags,
                modality.pipeline(),
            )
        }
        _ if args.registry_dataset.is_some() => {
            let ds = args.registry_dataset.as_deref().unwrap_or_default();
            let name = registry::layout::DatasetName::new(ds)
                .with_context(|| format!("dataset name {ds:?}"))?;
            // A writer: the features it computes are cached in the registry.
            let reg = crate::registry_opts::writer(g).await?;
            let snapshot = reg.latest_snapshot(&name).await?.with_context(|| {
                format!("dataset {name} has no snapshot: ingest or scrape it first")
            })?;
            let set = crate::collect::training_set(&reg, &snapshot).await?;
            if let Some(note) = &set.note {
                tracing::info!("{note}");
            }
            baseline = set.baseline;
            phashes = set.phashes;
            let (data, files, pipeline) = (set.data, set.files, set.pipeline);
            snapshot_digest = Some(snapshot.digest);
            let model = ModelName::new(args.model.clone().unwrap_or_else(|| name.to_string()))
                .context("choose a model name with --model")?;
            (
                Loaded {
                    data,
                    id: format!("{name}@{}", snapshot.id),
                    files,
                },
                model,
                BTreeMap::new(),
                pipeline,
            )
        }
        _ => {
            let loaded = load(&args.dataset).await?;
            let name = ModelName::new(args.model.clone().unwrap_or_else(|| slug(&loaded.id)))
                .context("choose a model name with --model")?;
            (loaded, name, BTreeMap::new(), pipeline::TABULAR_PIPELINE)
        }
    };
    let reg = writer(g).await?;
    let mut bars = Bars::default();
    let request = Request {
        name,
        data: &loaded.data,
        dataset_id: loaded.id.clone(),
        dataset_files: loaded.files.clone(),
        config,
        runs_dir: args.runs_dir.clone(),
        force: args.force,
        tags,
        pipeline,
        snapshot: snapshot_digest,
        job: None,
        baseline,
        phashes,
        fence: None,
    };
    let summary = pipeline::train_and_publish(&reg, request, &mut bars).await?;
    if let Some(bar) = &bars.epochs {
        bar.finish_and_clear();
    }
    if let (Some(id), false) = (&args.dataset.dataset_id, args.no_upload) {
        upload(&args.dataset, id, &summary).await?;
    }
    if g.json {
        return print_json(&summary);
    }
    print_summary(&summary);
    Ok(())
}

async fn upload(args: &DatasetArgs, id: &str, summary: &RunSummary) -> anyhow::Result<()> {
    let out = summary.run_dir.join("output");
    let mut files = Vec::new();
    for name in [
        "model.onnx",
        "model.int8.onnx",
        "labels.json",
        "meta.json",
        "manifest.json",
    ] {
        let path = out.join(name);
        files.push((
            name.to_owned(),
            std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?,
        ));
    }
    let client = crowdmind::Client::new(
        args.api_base.as_deref().context("--api-base")?,
        args.token.as_deref().context("--token")?,
    )?;
    client
        .upload(id, files)
        .await
        .context("uploading the artifacts to the CrowdMind API")
}

fn print_summary(s: &RunSummary) {
    let pct = |v: f64| format!("{:.2}%", v * 100.0);
    let rows = vec![
        vec![
            "model".into(),
            format!("{} {}", s.name, s.version.as_deref().unwrap_or("-")),
        ],
        vec!["test accuracy (float)".into(), pct(s.test_accuracy)],
        vec!["test accuracy (int8, tract)".into(), pct(s.int8_accuracy)],
        vec!["macro F1".into(), format!("{:.4}", s.f1_macro)],
        vec![
            "ROC AUC".into(),
            s.roc_auc.map_or("-".into(), |v| format!("{v:.4}")),
        ],
        vec![
            "epochs (kept)".into(),
            format!("{} ({})", s.epochs.0, s.epochs.1),
        ],
        vec![
            "ONNX float / int8".into(),
            format!(
                "{} B / {} B ({:.2}x)",
                s.float_bytes,
                s.int8_bytes,
                s.int8_bytes as f64 / s.float_bytes as f64
            ),
        ],
        vec![
            "fit / total time".into(),
            format!("{:.2} s / {:.2} s", s.fit_seconds, s.total_seconds),
        ],
        vec![
            "promoted to production".into(),
            format!(
                "{}{}",
                if s.gate.promoted { "yes" } else { "no" },
                if s.gate.forced { " (forced)" } else { "" }
            ),
        ],
        vec!["gate".into(), s.gate.reason.clone()],
        vec!["run folder".into(), s.run_dir.display().to_string()],
    ];
    print_table(&["", ""], &rows);
}

pub async fn evaluate(g: &Global, args: &EvaluateArgs) -> anyhow::Result<()> {
    let name = ModelName::new(&args.name)?;
    let reg = reader(g)?;
    let manifest = reg.resolve(&name, &args.reference).await?;
    let role = if args.int8 { "onnx_int8" } else { "onnx" };
    let artifact = manifest
        .artifact(role)
        .with_context(|| format!("{name} {} has no {role} artifact", manifest.version))?;
    let bytes = reg.blob(&artifact.digest).await?;
    let loaded = load(&args.dataset).await?;
    anyhow::ensure!(
        manifest.features.feature_names == loaded.data.feature_names,
        "the dataset's feature columns differ from the model's ({:?})",
        manifest.features.feature_names
    );
    let proba = verify::run(&bytes, loaded.data.x.view())?;
    let labels: Vec<String> = manifest.labels.iter().map(ToString::to_string).collect();
    let report = metrics::evaluate(proba.view(), &loaded.data.y, &labels);
    if g.json {
        return print_json(&report);
    }
    println!(
        "{name} {} ({role}) on {} rows of {}",
        manifest.version, report.rows, loaded.id
    );
    let rows: Vec<Vec<String>> = report
        .per_class
        .iter()
        .map(|c| {
            vec![
                c.label.clone(),
                format!("{:.4}", c.precision),
                format!("{:.4}", c.recall),
                format!("{:.4}", c.f1),
                c.support.to_string(),
            ]
        })
        .collect();
    print_table(&["CLASS", "PRECISION", "RECALL", "F1", "SUPPORT"], &rows);
    println!(
        "accuracy {:.4}  macro F1 {:.4}  weighted F1 {:.4}  ROC AUC {}  log loss {:.4}",
        report.accuracy,
        report.f1_macro,
        report.f1_weighted,
        report.roc_auc.map_or("-".into(), |v| format!("{v:.4}")),
        report.log_loss
    );
    println!(
        "confusion matrix (rows: true, columns: predicted): {:?}",
        report.confusion_matrix
    );
    Ok(())
}

pub async fn lookup(
    g: &Global,
    modality: crate::features::Modality,
    user: &str,
    alias: &str,
) -> anyhow::Result<()> {
    sessions::check_user_id(user)?;
    let alias = registry::Alias::new(alias)?;
    let found = reader(g)?
        .lookup_user(modality.as_str(), user, &alias)
        .await?;
    let m = &found.manifest;
    if g.json {
        return print_json(&serde_json::json!({
            "name": m.name, "version": m.version, "fell_back": found.fell_back, "manifest": m,
        }));
    }
    let note = if found.fell_back {
        " (no model of this user's: the modality default)"
    } else {
        ""
    };
    println!("{} {}{note}", m.name, m.version);
    Ok(())
}

pub async fn quantize(g: &Global, args: &QuantizeArgs) -> anyhow::Result<()> {
    use rand::SeedableRng;
    use rand::seq::SliceRandom;

    let float =
        std::fs::read(&args.onnx).with_context(|| format!("reading {}", args.onnx.display()))?;
    let model = crate::export::onnx::read_float_model(&float).with_context(|| {
        format!(
            "{} is not a float model written by exposr-trainer",
            args.onnx.display()
        )
    })?;
    let loaded = load(&args.dataset).await?;
    anyhow::ensure!(
        model.feature_names == loaded.data.feature_names,
        "the dataset's feature columns differ from the model's ({:?})",
        model.feature_names
    );
    let mut rows: Vec<usize> = (0..loaded.data.len()).collect();
    rows.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(args.seed));
    rows.truncate(args.calibration_samples.max(1));
    rows.sort_unstable();
    let calibration = crate::train::select_rows(&loaded.data, &rows);
    let q = crate::export::quantize::calibrate(&model, calibration.view());
    let meta = crate::export::onnx::Metadata {
        feature_names: &model.feature_names,
        labels: &model.classes,
        pipeline: pipeline::TABULAR_PIPELINE,
    };
    let int8 = crate::export::onnx::int8_model(&model, &q, &meta);
    let x = loaded.data.x.view();
    verify::check_int8(&int8, x, q.predict_proba(&model, x).view())
        .context("checking the int8 file in tract")?;
    let accuracy = |p: ndarray::Array2<f32>| {
        metrics::evaluate(p.view(), &loaded.data.y, &model.classes).accuracy
    };
    let float_acc = accuracy(verify::run(&float, x)?);
    let int8_acc = accuracy(verify::run(&int8, x)?);
    std::fs::write(&args.out, &int8).with_context(|| format!("writing {}", args.out.display()))?;
    let report = serde_json::json!({
        "out": args.out, "rows": loaded.data.len(), "calibration_rows": rows.len(),
        "float_accuracy": float_acc, "int8_accuracy": int8_acc, "accuracy_drop": float_acc - int8_acc,
        "float_bytes": float.len(), "int8_bytes": int8.len(),
    });
    if g.json {
        return print_json(&report);
    }
    println!(
        "wrote {} ({} B, {:.2}x the float file); accuracy on {} rows: float {:.4}, int8 {:.4}",
        args.out.display(),
        int8.len(),
        int8.len() as f64 / float.len() as f64,
        loaded.data.len(),
        float_acc,
        int8_acc
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn slugs_are_model_names() {
        assert_eq!(super::slug("Iris Data.v2"), "iris-data-v2");
        assert!(registry::ModelName::new(super::slug("My_Set")).is_ok());
    }
}
