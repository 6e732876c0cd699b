//! The operator CLI as a user runs it: the real binary over a temporary local registry.

use std::path::Path;
use std::process::{Command, Output};

use crate::common::data;

struct Cli {
    registry: tempfile::TempDir,
}

impl Cli {
    fn new() -> Self {
        Self {
            registry: tempfile::tempdir().unwrap(),
        }
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_exposr-trainer"))
            .arg("--registry")
            .arg(self.registry.path())
            .args(args)
            .env_remove("EXPOSR_REGISTRY")
            .env_remove("RUST_LOG")
            .output()
            .expect("run exposr-trainer")
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "{args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn publish_with(&self, manifest: &Path, extra: &[&str]) -> Output {
        let labels = format!("labels={}", data("iris-labels.json").display());
        let manifest = manifest.display().to_string();
        let mut args = vec!["publish", "--manifest", &manifest, "--artifact", &labels];
        args.extend(extra);
        self.run(&args)
    }

    fn publish(&self, extra: &[&str]) -> Output {
        self.publish_with(&data("iris-manifest.json"), extra)
    }
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

#[test]
fn publish_list_promote_show_verify() {
    let cli = Cli::new();
    let out = cli.publish(&[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("published iris-demo v1"));
    assert!(cli.publish(&[]).status.success());

    let models = cli.ok(&["models"]);
    assert!(
        models.contains("iris-demo") && models.contains("latest=v2"),
        "{models}"
    );
    let versions = cli.ok(&["versions", "iris-demo"]);
    assert!(
        versions.contains("v1") && versions.contains("v2"),
        "{versions}"
    );

    assert!(
        cli.ok(&["promote", "iris-demo", "v1"])
            .contains("production -> v1")
    );
    let manifest = json(&cli.ok(&["show", "iris-demo", "production"]));
    assert_eq!(manifest["version"], "v1");
    assert_eq!(manifest["artifacts"][0]["role"], "labels");

    let entry = json(&cli.ok(&["show", "iris-demo", "v2", "--format", "registry-entry"]));
    assert_eq!(entry["model"], "iris-demo");
    assert_eq!(entry["val_acc"], 0.956);
    let meta = json(&cli.ok(&["show", "iris-demo", "--format", "meta"]));
    assert_eq!(meta["labels"]["mapping"]["2"], "virginica");

    assert!(
        cli.ok(&["verify", "iris-demo", "v1"])
            .contains("all 1 artifacts verified")
    );
    assert_eq!(
        json(&cli.ok(&["--json", "verify", "iris-demo"]))["ok"],
        true
    );
}

#[test]
fn tampered_blob_fails_verification_with_exit_3() {
    let cli = Cli::new();
    assert!(cli.publish(&[]).status.success());
    let blobs = cli.registry.path().join("blobs/sha256");
    let blob = std::fs::read_dir(&blobs).unwrap().next().unwrap().unwrap();
    std::fs::write(blob.path(), b"tampered").unwrap();
    let out = cli.run(&["verify", "iris-demo", "v1"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stdout).contains("CORRUPT"));
}

#[test]
fn errors_are_clear_and_publish_nothing() {
    let cli = Cli::new();
    let out = cli.run(&["versions", "nope"]);
    assert_eq!(out.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&out.stderr).contains("model nope not found"));

    let out = cli.run(&["show", "../etc"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("path separator"));

    let bad = cli.registry.path().join("bad.json");
    let mut manifest = json(&std::fs::read_to_string(data("iris-manifest.json")).unwrap());
    manifest["labels"] = serde_json::json!(["a", "a", "b"]);
    manifest["metrics"]["accuracy"] = serde_json::json!(2.0);
    std::fs::write(&bad, manifest.to_string()).unwrap();
    let out = cli.publish_with(&bad, &["--json"]);
    assert_eq!(out.status.code(), Some(1));
    let err = json(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(err["error"]["code"], "invalid_manifest");
    let message = err["error"].to_string();
    assert!(message.contains("labels must be unique"), "{message}");
    assert!(message.contains("metrics.accuracy"), "{message}");
    assert!(
        !cli.registry.path().join("models").exists(),
        "nothing published"
    );

    assert!(cli.publish(&["--version", "1.0.0"]).status.success());
    manifest["labels"] = serde_json::json!(["setosa", "versicolor", "virginica"]);
    manifest["metrics"]["accuracy"] = serde_json::json!(0.5);
    std::fs::write(&bad, manifest.to_string()).unwrap();
    let out = cli.publish_with(&bad, &["--version", "1.0.0"]);
    assert_eq!(
        out.status.code(),
        Some(5),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("already has a version 1.0.0"));
}

#[test]
fn gc_frees_what_nothing_references_and_retires_old_versions() {
    let cli = Cli::new();
    for version in [None, Some("2.0.0"), Some("3.0.0")] {
        let extra: Vec<&str> = version.map_or(vec![], |v| vec!["--version", v]);
        let out = cli.publish(&extra);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // A blob nothing references, as a publish that died leaves one.
    let stray = cli
        .registry
        .path()
        .join("blobs/sha256")
        .join("ab".repeat(32));
    std::fs::write(&stray, b"orphan").unwrap();

    let dry = json(&cli.ok(&["--json", "gc", "--dry-run", "--grace", "0s"]));
    assert_eq!(dry["dry_run"], true);
    assert_eq!(dry["freed"]["blobs"]["objects"], 1, "{dry}");
    assert!(stray.exists(), "a dry run deletes nothing");

    let report = json(&cli.ok(&["--json", "gc", "--keep-last", "1", "--grace", "0s"]));
    let retired: Vec<&str> = report["retired"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(retired, ["iris-demo v1", "iris-demo 2.0.0"], "{report}");
    assert_eq!(report["freed"]["manifests"]["objects"], 2, "{report}");
    assert_eq!(
        report["freed"]["blobs"]["objects"], 1,
        "the labels blob is still referenced"
    );
    assert!(!stray.exists());
    let index = json(&cli.ok(&["--json", "versions", "iris-demo"]));
    let listed: Vec<&str> = index["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["version"].as_str().unwrap())
        .collect();
    assert_eq!(listed, ["3.0.0"], "{index}");
    assert_eq!(index["retired"], serde_json::json!(["v1", "2.0.0"]));
    let verify = cli.run(&["verify", "iris-demo", "3.0.0"]);
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stderr)
    );

    let refused = cli.run(&["gc", "--keep-last", "0"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--keep-last 0"));
    let help = cli.ok(&["gc", "--help"]);
    assert!(
        help.contains("--dry-run") && help.contains("Examples"),
        "{help}"
    );
}
