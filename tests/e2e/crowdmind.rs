//! The CrowdMind API round trip against a fake of the API on loopback: download CSV and schema
//! with a bearer token, train, and upload the artifacts back.

use std::path::Path;

use crate::fakes::crowdmind::*;

async fn trainer(dir: &Path, args: &[&str]) -> std::process::Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_exposr-trainer"))
        .arg("--registry")
        .arg(dir.join("registry"))
        .args(args)
        .arg("--runs-dir")
        .arg(dir.join("runs"))
        .env_remove("CROWDMIND_TOKEN")
        .output()
        .await
        .unwrap()
}

#[tokio::test]
async fn downloads_trains_and_uploads_back() {
    let fake = Fake::default();
    let base = serve(fake.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let out = trainer(
        dir.path(),
        &[
            "train",
            "--dataset-id",
            "ds-iris",
            "--api-base",
            &base,
            "--token",
            TOKEN,
            "--log-level",
            "INFO",
        ],
    )
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("ds-iris v1"));
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains(TOKEN),
        "the token never reaches the logs"
    );
    let uploads = fake.uploads.lock().unwrap().clone();
    let names: Vec<&str> = uploads.iter().map(|(_, n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "model.onnx",
            "model.int8.onnx",
            "labels.json",
            "meta.json",
            "manifest.json"
        ]
    );
    assert!(
        uploads
            .iter()
            .all(|(id, _, bytes)| id == "ds-iris" && !bytes.is_empty())
    );
    // The uploaded manifest and meta.json are the version as published (v1), not a draft.
    let file = |name: &str| -> serde_json::Value {
        let (_, _, bytes) = uploads.iter().find(|(_, n, _)| n == name).unwrap();
        serde_json::from_slice(bytes).unwrap()
    };
    assert_eq!(file("manifest.json")["version"], "v1");
    assert_eq!(file("meta.json")["version"], "v1", "{}", file("meta.json"));
}

#[tokio::test]
async fn a_refused_token_or_unknown_dataset_is_a_clear_error() {
    let base = serve(Fake::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let out = trainer(
        dir.path(),
        &[
            "train",
            "--dataset-id",
            "ds-iris",
            "--api-base",
            &base,
            "--token",
            "wrong",
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("401") && stderr.contains("token was refused"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("wrong"),
        "the token is not echoed: {stderr}"
    );
    let out = trainer(
        dir.path(),
        &[
            "train",
            "--dataset-id",
            "nope",
            "--api-base",
            &base,
            "--token",
            TOKEN,
        ],
    )
    .await;
    assert!(String::from_utf8_lossy(&out.stderr).contains("404"));
    let out = trainer(
        dir.path(),
        &[
            "train",
            "--dataset-id",
            "../etc",
            "--api-base",
            &base,
            "--token",
            TOKEN,
        ],
    )
    .await;
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid dataset id"));
    assert!(!dir.path().join("registry/models").exists());
}
