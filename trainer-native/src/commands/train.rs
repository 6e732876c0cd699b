//! `train`, `evaluate`, `lookup` and `quantize`: parse the options into the library's terms,
//! call one function, print.

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};
use registry::ModelName;

use crate::cli::{DatasetArgs, EvaluateArgs, Global, QuantizeArgs, TrainArgs};
use crate::dataset::crowdmind;
use crate::dataset::sessions;
use crate::dataset::source::{self, TabularSource};
use crate::job::{self, DataSource, JobSpec};
use crate::output::{print_json, print_table};
use crate::pipeline::{self, RunSummary};
use crate::publish::run_folder;
use crate::registry_opts::{reader, writer};
use crate::train::config::TrainConfig;
use crate::train::{Observer, metrics, mlp::Epoch};
use crate::validate::tract;

/// The tabular source the options name.
fn tabular(args: &DatasetArgs) -> anyhow::Result<TabularSource> {
    match (&args.csv, &args.schema, &args.dataset_id) {
        (Some(csv), Some(schema), None) => Ok(TabularSource::Files {
            csv: csv.clone(),
            schema: schema.clone(),
        }),
        (None, None, Some(id)) => Ok(TabularSource::CrowdMind {
            id: id.clone(),
            client: crowdmind_client(args)?,
        }),
        _ => bail!(
            "give a dataset: --csv FILE --schema FILE, or --dataset-id ID --api-base URL --token T"
        ),
    }
}

fn crowdmind_client(args: &DatasetArgs) -> anyhow::Result<crowdmind::Client> {
    let base = args
        .api_base
        .as_deref()
        .context("--api-base is required with --dataset-id")?;
    let token = args
        .token
        .as_deref()
        .context("--token (or CROWDMIND_TOKEN) is required with --dataset-id")?;
    crowdmind::Client::new(base, token)
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
    // Refuses an unsafe store before anything else; features computed from a registry dataset
    // are cached through it.
    let reg = writer(g).await?;
    let source = match (args.modality, &args.sessions, &args.registry_dataset) {
        (Some(modality), Some(dir), _) => DataSource::Sessions {
            dir: dir.clone(),
            modality,
            user_id: args.user_id.clone(),
        },
        (_, _, Some(ds)) => {
            let name = registry::layout::DatasetName::new(ds)
                .with_context(|| format!("dataset name {ds:?}"))?;
            DataSource::Snapshot(job::latest_snapshot(&reg, &name).await?)
        }
        _ => DataSource::Tabular(tabular(&args.dataset)?),
    };
    let spec = JobSpec {
        source,
        model: args.model.clone(),
        config,
        force: args.force,
        runs_dir: args.runs_dir.clone(),
        job: None,
        fence: None,
    };
    let train_job = job::prepare(&reg, spec).await?;
    if let Some(note) = &train_job.note {
        tracing::info!("{note}");
    }
    let mut bars = Bars::default();
    let trained = pipeline::run(&reg, &train_job, &mut bars).await?;
    if let Some(bar) = &bars.epochs {
        bar.finish_and_clear();
    }
    if let (Some(id), false) = (&args.dataset.dataset_id, args.no_upload) {
        let files = run_folder::UPLOADED
            .iter()
            .filter_map(|want| trained.outputs.iter().find(|(name, _)| name == want))
            .map(|(name, bytes)| ((*name).to_owned(), bytes.clone()))
            .collect();
        crowdmind_client(&args.dataset)?
            .upload(id, files)
            .await
            .context("uploading the artifacts to the CrowdMind API")?;
    }
    if g.json {
        return print_json(&trained.summary);
    }
    print_summary(&trained.summary);
    Ok(())
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
    let loaded = source::load(&tabular(&args.dataset)?).await?;
    anyhow::ensure!(
        manifest.features.feature_names == loaded.data.feature_names,
        "the dataset's feature columns differ from the model's ({:?})",
        manifest.features.feature_names
    );
    let proba = tract::run(&bytes, loaded.data.x.view())?;
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
    let float =
        std::fs::read(&args.onnx).with_context(|| format!("reading {}", args.onnx.display()))?;
    let model = crate::export::onnx::read_float_model(&float).with_context(|| {
        format!(
            "{} is not a float model written by exposr-trainer",
            args.onnx.display()
        )
    })?;
    let loaded = source::load(&tabular(&args.dataset)?).await?;
    anyhow::ensure!(
        model.feature_names == loaded.data.feature_names,
        "the dataset's feature columns differ from the model's ({:?})",
        model.feature_names
    );
    let q = crate::export::artifacts::requantize(
        &model,
        &loaded.data,
        crate::dataset::TABULAR_PIPELINE,
        args.calibration_samples,
        args.seed,
    );
    let x = loaded.data.x.view();
    tract::check_int8(&q.int8, x, q.quantized.predict_proba(&model, x).view())
        .context("checking the int8 file in tract")?;
    let accuracy = |bytes: &[u8]| -> anyhow::Result<f64> {
        let p = tract::run(bytes, x)?;
        Ok(metrics::evaluate(p.view(), &loaded.data.y, &model.classes).accuracy)
    };
    let float_acc = accuracy(&float)?;
    let int8_acc = accuracy(&q.int8).context("running the int8 file in tract")?;
    std::fs::write(&args.out, &q.int8)
        .with_context(|| format!("writing {}", args.out.display()))?;
    let report = serde_json::json!({
        "out": args.out, "rows": loaded.data.len(), "calibration_rows": q.calibration_rows,
        "float_accuracy": float_acc, "int8_accuracy": int8_acc, "accuracy_drop": float_acc - int8_acc,
        "float_bytes": float.len(), "int8_bytes": q.int8.len(),
    });
    if g.json {
        return print_json(&report);
    }
    println!(
        "wrote {} ({} B, {:.2}x the float file); accuracy on {} rows: float {:.4}, int8 {:.4}",
        args.out.display(),
        q.int8.len(),
        q.int8.len() as f64 / float.len() as f64,
        loaded.data.len(),
        float_acc,
        int8_acc
    );
    Ok(())
}
