//! The training pipeline as a user runs it: the real binary trains on real data sets, exports,
//! checks and publishes into a temporary registry; onnxruntime cross-checks the files.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::common::data;

struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn registry(&self) -> PathBuf {
        self.dir.path().join("registry")
    }

    fn runs(&self) -> PathBuf {
        self.dir.path().join("runs")
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_exposr-trainer"))
            .arg("--registry")
            .arg(self.registry())
            .args(args)
            .env("EXPOSR_RUNS_DIR", self.runs())
            .env_remove("EXPOSR_REGISTRY")
            .env_remove("RUST_LOG")
            .output()
            .expect("run exposr-trainer")
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn train(&self, set: &str, extra: &[&str]) -> Output {
        let csv = data(&format!("{set}.csv"));
        let schema = data(&format!("{set}.schema.json"));
        let mut args = vec![
            "train",
            "--csv",
            csv.to_str().unwrap(),
            "--schema",
            schema.to_str().unwrap(),
        ];
        args.extend(extra);
        self.run(&args)
    }

    fn train_json(&self, set: &str, extra: &[&str]) -> serde_json::Value {
        let mut args = vec!["--json"];
        args.extend(extra);
        let out = self.train(set, &args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    fn manifest(&self, name: &str, reference: &str) -> serde_json::Value {
        serde_json::from_str(&self.ok(&["show", name, reference])).unwrap()
    }
}

#[test]
fn trains_checks_publishes_and_promotes() {
    let env = Env::new();
    let summary = env.train_json("iris", &[]);
    assert_eq!(summary["version"], "v1");
    assert!(
        summary["test_accuracy"].as_f64().unwrap() > 0.9,
        "{summary}"
    );
    assert_eq!(summary["gate"]["promoted"], true);
    let m = env.manifest("iris", "production");
    assert_eq!(m["version"], "v1");
    let roles: Vec<&str> = m["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["onnx", "onnx_int8", "labels"]);
    assert_eq!(m["golden"].as_array().unwrap().len(), 8);
    assert_eq!(m["features"]["feature_names"][3], "petal_width");
    assert!(
        m["dataset"]["test_split"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );
    assert!(m["metrics"]["int8_accuracy_drop"].as_f64().unwrap() <= 0.02);
    assert!(
        env.ok(&["verify", "iris"])
            .contains("all 3 artifacts verified")
    );

    let run_dir = PathBuf::from(summary["run_dir"].as_str().unwrap());
    for file in [
        "output/model.onnx",
        "output/model.int8.onnx",
        "output/meta.json",
        "data/dataset.csv",
        "data/schema.json",
        "metrics.json",
        "config.yaml",
        "logs/epochs.jsonl",
        "record.json",
    ] {
        assert!(run_dir.join(file).is_file(), "run folder lacks {file}");
    }
    let record = env
        .registry()
        .join("runs")
        .join(summary["run_id"].as_str().unwrap())
        .join("record.json");
    assert!(record.is_file(), "run record stored in the registry");
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run_dir.join("output/meta.json")).unwrap()).unwrap();
    assert_eq!(meta["labels"]["count"], 3);
    assert_eq!(meta["quantization"]["type"], "int8");
}

#[test]
fn same_data_config_and_seed_give_identical_model_bytes() {
    let read = |env: &Env, seed: &str| {
        let s = env.train_json("wine", &["--seed", seed]);
        let out = PathBuf::from(s["run_dir"].as_str().unwrap()).join("output");
        (
            std::fs::read(out.join("model.onnx")).unwrap(),
            std::fs::read(out.join("model.int8.onnx")).unwrap(),
        )
    };
    let (a, b, c) = (Env::new(), Env::new(), Env::new());
    let first = read(&a, "7");
    assert_eq!(first, read(&b, "7"), "same seed, same bytes");
    assert_ne!(first.0, read(&c, "8").0, "another seed, other weights");
}

#[test]
fn the_gate_keeps_production_unless_beaten_or_forced() {
    let env = Env::new();
    env.train_json("iris", &[]);
    let again = env.train_json("iris", &[]);
    assert_eq!(again["version"], "v2");
    assert_eq!(again["gate"]["promoted"], false, "{again}");
    assert_eq!(again["gate"]["baseline"], "v1");
    assert!(
        again["gate"]["reason"]
            .as_str()
            .unwrap()
            .contains("does not beat production v1")
    );
    assert_eq!(env.manifest("iris", "production")["version"], "v1");
    assert_eq!(env.manifest("iris", "v2")["gate"]["promoted"], false);

    let forced = env.train_json("iris", &["--force"]);
    assert_eq!(forced["gate"]["promoted"], true);
    assert_eq!(forced["gate"]["forced"], true);
    assert_eq!(env.manifest("iris", "production")["version"], "v3");

    let strict = env.dir.path().join("strict.yaml");
    std::fs::write(&strict, "gate:\n  min_accuracy: 0.999\n").unwrap();
    let s = env.train_json("wine", &["--config", strict.to_str().unwrap()]);
    assert_eq!(s["gate"]["promoted"], false);
    assert!(
        s["gate"]["reason"]
            .as_str()
            .unwrap()
            .contains("below the minimum")
    );
    let out = env.run(&["show", "wine", "production"]);
    assert_eq!(
        out.status.code(),
        Some(4),
        "no production alias for a model that never passed"
    );
}

#[test]
fn bad_datasets_name_line_and_column_and_publish_nothing() {
    let env = Env::new();
    let dir = env.dir.path();
    let schema = data("iris.schema.json");
    let cases = [
        (
            "sepal_length,sepal_width,petal_length,petal_width,label\n5.1,3.5,1.4,0.2,setosa\n5.0,abc,1.4,0.2,setosa\n",
            "line 3, column \"sepal_width\": \"abc\" is not a number",
        ),
        (
            "sepal_length,sepal_width,petal_length,petal_width,label\n5.1,3.5,inf,0.2,setosa\n",
            "not finite",
        ),
        (
            "sepal_length,sepal_width,petal_length,petal_width,label\n5.1,3.5,1.4,0.2,rose\n",
            "unknown label \"rose\"",
        ),
        (
            "sepal_length,sepal_width,petal_length,label\n5.1,3.5,1.4,setosa\n",
            "column \"petal_width\": missing feature column",
        ),
        (
            "sepal_length,sepal_width,petal_length,petal_width,label,color\n5.1,3.5,1.4,0.2,setosa,red\n",
            "column \"color\": column not in the schema",
        ),
        (
            "sepal_length,sepal_width,petal_length,petal_width,label\n5.1,3.5,1.4,0.2,setosa\n",
            "class \"versicolor\" has no rows",
        ),
    ];
    for (i, (csv, expected)) in cases.iter().enumerate() {
        let path = dir.join(format!("bad{i}.csv"));
        std::fs::write(&path, csv).unwrap();
        let out = env.run(&[
            "train",
            "--csv",
            path.to_str().unwrap(),
            "--schema",
            schema.to_str().unwrap(),
        ]);
        assert_eq!(out.status.code(), Some(1));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(expected),
            "case {i}: expected {expected:?} in {stderr}"
        );
    }
    let bad_schema = dir.join("bad.schema.json");
    std::fs::write(
        &bad_schema,
        r#"{"features": ["a"], "label": "a", "classes": ["x"]}"#,
    )
    .unwrap();
    let out = env.run(&[
        "--json",
        "train",
        "--csv",
        data("iris.csv").to_str().unwrap(),
        "--schema",
        bad_schema.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let text = err["error"].to_string();
    assert!(
        text.contains("the label column is also a feature")
            && text.contains("at least two classes"),
        "{text}"
    );
    assert!(!env.registry().join("models").exists(), "nothing published");
    assert!(!env.runs().exists(), "no run folder for a refused dataset");
}

/// Every exported file passes `onnx.checker` (full check) and onnxruntime agrees with tract.
#[test]
fn onnxruntime_agrees_with_tract_on_every_exported_file() {
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python");
    if !python.exists() {
        assert!(
            std::env::var("EXPOSR_REQUIRE_PYTHON").is_err(),
            "no .venv: run scripts/setup"
        );
        eprintln!("skipped: no .venv with onnxruntime (run scripts/setup)");
        return;
    }
    let env = Env::new();
    let mut folders = Vec::new();
    for (set, family) in [
        ("iris", "mlp"),
        ("wine", "mlp"),
        ("wine", "logistic-regression"),
        ("iris", "logistic-regression"),
    ] {
        let s = env.train_json(
            set,
            &["--family", family, "--model", &format!("{set}-{family}")],
        );
        folders.push(PathBuf::from(s["run_dir"].as_str().unwrap()).join("output"));
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/check_onnx.py");
    let out = Command::new(python)
        .arg(script)
        .args(&folders)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let report = String::from_utf8_lossy(&out.stdout);
    assert_eq!(report.matches("checker ok").count(), 8, "{report}");
}

#[test]
fn export_quantize_and_evaluate_a_published_version() {
    let env = Env::new();
    env.train_json("iris", &[]);
    let out = env.dir.path().join("export");
    let listing = env.ok(&[
        "download",
        "iris",
        "production",
        "--out",
        out.to_str().unwrap(),
    ]);
    for file in [
        "model.onnx",
        "model.int8.onnx",
        "labels.json",
        "manifest.json",
        "meta.json",
        "registry-entry.json",
    ] {
        assert!(out.join(file).is_file(), "{file} missing from {listing}");
    }
    let entry: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("registry-entry.json")).unwrap()).unwrap();
    assert_eq!(entry["model"], "iris");

    let csv = data("iris.csv");
    let schema = data("iris.schema.json");
    let (csv, schema) = (csv.to_str().unwrap(), schema.to_str().unwrap());
    let int8 = env.dir.path().join("requantized.onnx");
    let report: serde_json::Value = serde_json::from_str(&env.ok(&[
        "--json",
        "quantize",
        "--onnx",
        out.join("model.onnx").to_str().unwrap(),
        "--out",
        int8.to_str().unwrap(),
        "--csv",
        csv,
        "--schema",
        schema,
        "--calibration-samples",
        "50",
    ]))
    .unwrap();
    assert_eq!(report["calibration_rows"], 50);
    assert!(
        report["accuracy_drop"].as_f64().unwrap() <= 0.02,
        "{report}"
    );
    assert!(int8.is_file());
    let refused = env.run(&[
        "quantize", "--onnx", csv, "--out", "x.onnx", "--csv", csv, "--schema", schema,
    ]);
    assert_eq!(refused.status.code(), Some(1));

    let eval: serde_json::Value = serde_json::from_str(&env.ok(&[
        "--json", "evaluate", "iris", "--csv", csv, "--schema", schema,
    ]))
    .unwrap();
    assert_eq!(eval["rows"], 150);
    assert!(eval["accuracy"].as_f64().unwrap() > 0.9);
    assert_eq!(eval["confusion_matrix"].as_array().unwrap().len(), 3);
    let human = env.ok(&[
        "evaluate", "iris", "--int8", "--csv", csv, "--schema", schema,
    ]);
    assert!(
        human.contains("onnx_int8") && human.contains("virginica"),
        "{human}"
    );
}

#[test]
fn cross_validated_grid_search_picks_a_setting_and_records_it() {
    let env = Env::new();
    let cfg = env.dir.path().join("search.yaml");
    std::fs::write(
        &cfg,
        "training: {epochs: 30}\nsearch:\n  folds: 3\n  grid:\n    hidden_layers: [[16], [32, 16]]\n    learning_rate: [0.01, 0.001]\n",
    )
    .unwrap();
    let s = env.train_json("wine", &["--config", cfg.to_str().unwrap()]);
    let m = env.manifest("wine", s["version"].as_str().unwrap());
    assert_eq!(m["metrics"]["cv_folds"], 3);
    let mean = m["metrics"]["cv_mean_accuracy"].as_f64().unwrap();
    assert!(mean > 0.8 && mean <= 1.0, "{mean}");
    let metrics: serde_json::Value = serde_json::from_slice(
        &std::fs::read(PathBuf::from(s["run_dir"].as_str().unwrap()).join("metrics.json")).unwrap(),
    )
    .unwrap();
    let cv = metrics["cv"].as_array().unwrap();
    assert_eq!(cv.len(), 4, "every combination is scored");
    let best = cv[0]["mean_accuracy"].as_f64().unwrap();
    assert!(
        cv.iter()
            .all(|c| c["mean_accuracy"].as_f64().unwrap() <= best),
        "best first"
    );
    assert_eq!(
        m["model"]["architecture"]["hidden_layers"], cv[0]["config"]["hidden_layers"],
        "the winner is trained"
    );
}

/// The validator component (the same `.wasm` the functions use) checks what the trainer
/// publishes, and refuses a tampered or truncated artifact.
#[test]
fn the_wasm_validator_checks_published_files_and_refuses_tampered_ones() {
    let validator = std::env::var("EXPOSR_COMPONENTS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(env!("CARGO_BIN_EXE_exposr-trainer"))
                .parent()
                .unwrap()
                .parent()
                .unwrap()
                .join("wasm32-wasip2/release")
        })
        .join("exposr_fn_validator.wasm");
    if !validator.is_file() {
        assert!(
            std::env::var("EXPOSR_REQUIRE_WASM").is_err(),
            "validator not built: run scripts/build-functions"
        );
        eprintln!("skipped: validator component not built");
        return;
    }
    let env = Env::new();
    let s = env.train_json("iris", &[]);
    let run = PathBuf::from(s["run_dir"].as_str().unwrap());
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("record.json")).unwrap()).unwrap();
    let reports = record["validation"]["reports"]
        .as_array()
        .unwrap_or_else(|| panic!("{record}"));
    assert_eq!(reports.len(), 2);
    assert!(
        reports
            .iter()
            .all(|r| r["ok"] == true && r["golden_checked"] == 8),
        "{reports:?}"
    );

    let out = run.join("output");
    let manifest = out.join("manifest.json");
    let good = env.ok(&[
        "--json",
        "validate",
        "--manifest",
        manifest.to_str().unwrap(),
        "--artifact",
        &format!("onnx={}", out.join("model.onnx").display()),
    ]);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&good).unwrap()["ok"],
        true
    );

    let mut bytes = std::fs::read(out.join("model.onnx")).unwrap();
    let truncated = env.dir.path().join("truncated.onnx");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let last = bytes.len() - 10;
    bytes[last] ^= 0xff;
    let tampered = env.dir.path().join("tampered.onnx");
    std::fs::write(&tampered, &bytes).unwrap();
    for file in [truncated, tampered] {
        let out = env.run(&[
            "--json",
            "validate",
            "--manifest",
            manifest.to_str().unwrap(),
            "--artifact",
            &format!("onnx={}", file.display()),
        ]);
        assert_eq!(
            out.status.code(),
            Some(3),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(report["artifacts"][0]["digest_matches"], false);
        assert!(
            report["artifacts"][0]["problems"][0]
                .as_str()
                .unwrap()
                .contains("digest")
        );
    }
    // Right bytes, wrong expectations: the golden outputs no longer reproduce.
    let mut m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&manifest).unwrap()).unwrap();
    m["golden"][0]["expected"][0] =
        serde_json::json!(m["golden"][0]["expected"][0].as_f64().unwrap() + 0.25);
    let forged = env.dir.path().join("forged.json");
    std::fs::write(&forged, m.to_string()).unwrap();
    let out = env.run(&[
        "--json",
        "validate",
        "--manifest",
        forged.to_str().unwrap(),
        "--artifact",
        &format!("onnx={}", out.join("model.onnx").display()),
    ]);
    assert_eq!(out.status.code(), Some(3));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["artifacts"][0]["signature_matches"], true);
    assert!(
        report["artifacts"][0]["problems"][0]
            .as_str()
            .unwrap()
            .contains("golden outputs differ"),
        "{report}"
    );
}
