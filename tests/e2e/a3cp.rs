//! Per-user, per-modality training (A3CP): gesture sequences and WAV sounds laid out per user,
//! per-user models, the modality default, refusal on sparse data, and lookup with fallback.

use std::path::Path;
use std::process::{Command, Output};

/// A small seeded generator, so the sessions are the same on every run.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> f32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
}

fn write_gestures(root: &Path, user: &str, per_label: usize, seed: u64) {
    let mut rng = Lcg(seed);
    for (g, label) in ["wave", "circle", "tap"].iter().enumerate() {
        let dir = root.join("gesture").join(user).join(label);
        std::fs::create_dir_all(&dir).unwrap();
        for i in 0..per_label {
            let len = 20 + (rng.next().abs() * 40.0) as usize;
            let frames: Vec<Vec<f32>> = (0..len)
                .map(|t| {
                    let phase = t as f32 / len as f32 * std::f32::consts::TAU;
                    let (x, y, z) = match g {
                        0 => ((phase * 3.0).sin(), 0.1, 0.0),
                        1 => (phase.sin(), phase.cos(), 0.2),
                        _ => (
                            0.0,
                            0.0,
                            if (t * 4 / len).is_multiple_of(2) {
                                1.0
                            } else {
                                -1.0
                            },
                        ),
                    };
                    vec![
                        x + 0.15 * rng.next(),
                        y + 0.15 * rng.next(),
                        z + 0.15 * rng.next(),
                    ]
                })
                .collect();
            let body = serde_json::json!({ "session_id": format!("s{i}"), "frames": frames });
            std::fs::write(dir.join(format!("{i}.json")), body.to_string()).unwrap();
        }
    }
}

fn write_sounds(root: &Path, user: &str, per_label: usize) {
    let mut rng = Lcg(99);
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 16000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    for (k, label) in ["low", "high", "hiss"].iter().enumerate() {
        let dir = root.join("sound").join(user).join(label);
        std::fs::create_dir_all(&dir).unwrap();
        for i in 0..per_label {
            let hz = [220.0, 2500.0, 0.0][k] * (1.0 + 0.1 * rng.next());
            let mut w = hound::WavWriter::create(dir.join(format!("{i}.wav")), spec).unwrap();
            for n in 0..8000 {
                let t = n as f32 / 16000.0;
                let v = if hz > 0.0 {
                    (std::f32::consts::TAU * hz * t).sin() * 0.5
                } else {
                    0.0
                };
                w.write_sample(((v + 0.05 * rng.next()) * 30000.0) as i16)
                    .unwrap();
            }
            w.finalize().unwrap();
        }
    }
}

fn trainer(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_exposr-trainer"))
        .arg("--registry")
        .arg(dir.join("registry"))
        .args(args)
        .env("EXPOSR_RUNS_DIR", dir.join("runs"))
        .output()
        .unwrap()
}

fn json(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn per_user_gesture_models_with_fallback_to_the_default() {
    let dir = tempfile::tempdir().unwrap();
    let sessions = dir.path().join("sessions");
    write_gestures(&sessions, "u1", 10, 1);
    write_gestures(&sessions, "u2", 10, 2);
    write_gestures(&sessions, "u3", 2, 3);
    let s = sessions.to_str().unwrap();

    let u1 = json(&trainer(
        dir.path(),
        &[
            "--json",
            "train",
            "--modality",
            "gesture",
            "--sessions",
            s,
            "--user-id",
            "u1",
        ],
    ));
    assert_eq!(u1["name"], "gesture-user-u1");
    assert!(u1["test_accuracy"].as_f64().unwrap() >= 0.85, "{u1}");
    let default = json(&trainer(
        dir.path(),
        &["--json", "train", "--modality", "gesture", "--sessions", s],
    ));
    assert_eq!(default["name"], "gesture-default");

    let refused = trainer(
        dir.path(),
        &[
            "--json",
            "train",
            "--modality",
            "gesture",
            "--sessions",
            s,
            "--user-id",
            "u3",
        ],
    );
    assert_eq!(refused.status.code(), Some(1));
    let err: serde_json::Value = serde_json::from_slice(&refused.stdout).unwrap();
    assert_eq!(err["error"]["code"], "too_few_samples");
    let message = err["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("user u3 has too few gesture samples") && message.contains("circle: 2"),
        "{message}"
    );

    let own = json(&trainer(
        dir.path(),
        &[
            "--json",
            "lookup",
            "--modality",
            "gesture",
            "--user-id",
            "u1",
        ],
    ));
    assert_eq!(
        (own["name"].as_str(), own["fell_back"].as_bool()),
        (Some("gesture-user-u1"), Some(false))
    );
    assert_eq!(own["manifest"]["tags"]["user_id"], "u1");
    assert_eq!(own["manifest"]["features"]["name"], "gesture-keyframes");
    let fallback = json(&trainer(
        dir.path(),
        &[
            "--json",
            "lookup",
            "--modality",
            "gesture",
            "--user-id",
            "u3",
        ],
    ));
    assert_eq!(
        (fallback["name"].as_str(), fallback["fell_back"].as_bool()),
        (Some("gesture-default"), Some(true))
    );

    let unsafe_user = trainer(
        dir.path(),
        &[
            "train",
            "--modality",
            "gesture",
            "--sessions",
            s,
            "--user-id",
            "../u1",
        ],
    );
    assert!(String::from_utf8_lossy(&unsafe_user.stderr).contains("invalid user id"));
}

#[test]
fn per_user_sound_model_from_wav_files() {
    let dir = tempfile::tempdir().unwrap();
    let sessions = dir.path().join("sessions");
    write_sounds(&sessions, "s1", 8);
    let out = trainer(
        dir.path(),
        &[
            "--json",
            "train",
            "--modality",
            "sound",
            "--sessions",
            sessions.to_str().unwrap(),
            "--user-id",
            "s1",
        ],
    );
    let summary = json(&out);
    assert_eq!(summary["name"], "sound-user-s1");
    assert!(
        summary["test_accuracy"].as_f64().unwrap() >= 0.85,
        "{summary}"
    );
    let broken = sessions.join("sound/s1/low/broken.wav");
    std::fs::write(&broken, b"RIFF not really").unwrap();
    let out = trainer(
        dir.path(),
        &[
            "train",
            "--modality",
            "sound",
            "--sessions",
            sessions.to_str().unwrap(),
            "--user-id",
            "s1",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("broken.wav"),
        "the bad file is named"
    );
}
