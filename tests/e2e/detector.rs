//! The real-vs-AI detector end to end on the offline images of DATA.md (`scripts/data/fetch.py
//! images`): ingested and normalised, trained on the forensic features (cached per sample), the
//! format-only baseline at chance, and images classified by the WebAssembly models function with
//! the same features as the native code computes.

use std::path::{Path, PathBuf};

use crate::common::{SendJson, start, trainer};
use serde_json::Value;

fn images() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.cache/data/images");
    if dir.join("real").is_dir() && dir.join("ai_generated").is_dir() {
        return Some(dir);
    }
    assert!(
        std::env::var("EXPOSR_REQUIRE_IMAGES").is_err(),
        "no images in {}: run scripts/data/fetch.py images",
        dir.display()
    );
    eprintln!("skipped: run scripts/data/fetch.py images");
    None
}

fn ok(out: std::process::Output) -> Value {
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_detector_trains_honestly_and_classifies_images_in_webassembly() {
    let Some(images) = images() else {
        return;
    };
    let Some(server) = start() else {
        return;
    };
    let registry = server.dir.path().join("registry");
    let reg = registry.to_str().unwrap();
    for (folder, label) in [("real", "real"), ("ai_generated", "ai_generated")] {
        let report = ok(trainer(reg, &[])
            .args(["--json", "ingest"])
            .arg(images.join(folder))
            .args(["--label", label])
            .output()
            .unwrap());
        assert!(report["tally"]["new"].as_u64().unwrap() > 10, "{report}");
    }
    let train = |extra: &[&str]| {
        let mut c = trainer(reg, &[]);
        c.args([
            "--json",
            "train",
            "--registry-dataset",
            "authenticity",
            "--model",
            "detector",
        ])
        .arg("--runs-dir")
        .arg(server.dir.path().join("runs"))
        .args(extra);
        ok(c.output().unwrap())
    };
    let summary = train(&["--force"]);
    assert_eq!(summary["version"], "v1");
    let manifest: Value = ok(trainer(reg, &[])
        .args(["show", "detector", "v1"])
        .output()
        .unwrap());
    assert_eq!(manifest["features"]["name"], "image-forensics");
    assert_eq!(manifest["features"]["version"], 1);
    assert_eq!(
        manifest["labels"],
        serde_json::json!(["ai_generated", "real"])
    );
    let baseline = &manifest["metrics"]["format_only_baseline"];
    let chance = baseline["majority_share"].as_f64().unwrap();
    let base_acc = baseline["test_accuracy"].as_f64().unwrap();
    assert!(
        base_acc <= chance + 1e-9,
        "format-only features must score at chance: {base_acc} vs {chance}"
    );
    assert_eq!(baseline["roc_auc"].as_f64(), Some(0.5), "{baseline}");
    assert_eq!(manifest["metrics"]["near_duplicates_across_split"], 0);
    let curve = manifest["metrics"]["roc_curve"].as_array().unwrap();
    assert!(curve.last().unwrap()["tpr"] == 1.0 && curve.last().unwrap()["fpr"] == 1.0);
    assert!(manifest["metrics"]["confusion_matrix"].is_array());
    let accuracy = manifest["metrics"]["accuracy"].as_f64().unwrap();
    assert!(accuracy >= chance, "{accuracy} vs chance {chance}");

    // Every sample's features are cached; a second run computes none.
    let cached =
        std::fs::read_dir(registry.join("datasets/authenticity/features/image-forensics-v1"))
            .unwrap()
            .count();
    assert_eq!(cached as u64, manifest["dataset"]["size"].as_u64().unwrap());

    let http = reqwest::Client::new();
    let photo = std::fs::read(images.join("real/chelsea.png")).unwrap();
    let answer = http
        .post(format!(
            "{}/classify?model=detector&version=v1&features=true",
            server.base
        ))
        .header("content-type", "image/png")
        .body(photo.clone())
        .send_json()
        .await;
    assert!(
        ["real", "ai_generated"].contains(&answer["label"].as_str().unwrap()),
        "{answer}"
    );
    assert_eq!(answer["model_version"], "v1");
    assert!(answer["timings"]["features_ms"].as_f64().unwrap() > 0.0);
    let served: Vec<f32> = serde_json::from_value(answer["features"]["values"].clone()).unwrap();
    let native = vision::features_of_image(&photo, &vision::Limits::default()).unwrap();
    assert_eq!(served.len(), native.len());
    let worst = served
        .iter()
        .zip(&native)
        .map(|(a, b)| (a - b).abs() / b.abs().max(1.0))
        .fold(0f32, f32::max);
    assert!(
        worst <= 1e-5,
        "WebAssembly and native features differ by {worst}"
    );

    // The CLI classifies files in a batch, with the same label as the function, and says which
    // inputs it could not read.
    let out = trainer(reg, &[])
        .args([
            "--json",
            "classify",
            "--model",
            "detector",
            "--reference",
            "v1",
        ])
        .arg(images.join("real/chelsea.png"))
        .arg(server.dir.path().join("registry/schedule-missing.png"))
        .output()
        .unwrap();
    assert!(!out.status.success(), "a missing input is an error");
    // The results, then the error, as two JSON documents.
    let mut docs = serde_json::Deserializer::from_slice(&out.stdout).into_iter::<Value>();
    let cli = docs.next().unwrap().unwrap();
    assert!(
        docs.next().unwrap().unwrap()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("1 of 2 inputs")
    );
    assert_eq!(cli[0]["label"], answer["label"]);
    let p = cli[0]["probability"].as_f64().unwrap() - answer["probability"].as_f64().unwrap();
    assert!(p.abs() < 1e-4, "CLI and function disagree by {p}");
    assert!(cli[1]["error"].as_str().unwrap().contains("reading"));

    // Bad images are clear 4xx answers.
    let post = |body: Vec<u8>, query: &str| {
        http.post(format!("{}/classify?{query}", server.base))
            .header("content-type", "image/jpeg")
            .body(body)
            .send()
    };
    let corrupt = post(
        b"\xff\xd8\xff\xe0 not a jpeg at all".to_vec(),
        "model=detector",
    )
    .await
    .unwrap();
    assert_eq!(corrupt.status(), 400);
    let huge = post(vec![0xff; 11 * 1024 * 1024], "model=detector")
        .await
        .unwrap();
    assert_eq!(huge.status(), 413);
    // Decompression bombs: real 7,000 x 7,000 images (49 MP) of a few hundred KiB at most, in
    // each accepted format, refused from their headers by the pixel budget.
    for (format, media) in [
        (image::ImageFormat::Png, "image/png"),
        (image::ImageFormat::Jpeg, "image/jpeg"),
        (image::ImageFormat::WebP, "image/webp"),
    ] {
        let mut out = std::io::Cursor::new(Vec::new());
        image::DynamicImage::ImageRgb8(image::RgbImage::new(7_000, 7_000))
            .write_to(&mut out, format)
            .unwrap();
        let bomb = out.into_inner();
        assert!(bomb.len() < 10 << 20, "{format:?}: {} bytes", bomb.len());
        let refused = http
            .post(format!("{}/classify?model=detector", server.base))
            .header("content-type", media)
            .body(bomb)
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), 413, "{format:?}");
        let problem: Value = refused.json().await.unwrap();
        assert_eq!(
            problem["code"], "image_too_many_pixels",
            "{format:?}: {problem}"
        );
    }
    let health = http
        .get(format!("{}/health", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let tabular = post(photo.clone(), "model=iris").await.unwrap();
    assert_eq!(tabular.status(), 422, "iris does not take images");
    let problem: Value = tabular.json().await.unwrap();
    assert_eq!(problem["code"], "unsupported_pipeline");
}
