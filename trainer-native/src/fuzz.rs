//! Property-based fuzzing of the trainer's parsers of outside input: CSV and its schema, WAV
//! sound samples, gesture JSON and the sources config. Inputs are random bytes or real files with
//! random edits (`registry::conformance::fuzz_inputs`). Nothing may panic, and whatever is accepted
//! must be usable: finite features of the declared width, labels within the classes.
//!
//! `EXPOSR_FUZZ_CASES` sets the cases per parser (100,000 by default).

use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use registry::conformance::{fuzz_cases, fuzz_inputs};

use crate::dataset::{Dataset, Schema, sessions};
use crate::features::sound;

/// Runs `check` over `cases` inputs made from `seed`.
fn fuzz(
    what: &str,
    cases: u32,
    seed: Vec<u8>,
    check: impl Fn(&[u8]) -> Result<bool, TestCaseError>,
) {
    registry::conformance::fuzz(what, cases, fuzz_inputs(seed), |b| check(&b));
}

fn data(name: &str) -> Vec<u8> {
    std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/data/").to_owned() + name).unwrap()
}

fn all_finite(values: &[f32]) -> bool {
    values.iter().all(|v| v.is_finite())
}

#[test]
fn csv_and_schema_are_accepted_only_when_usable() {
    let schema_bytes = data("iris.schema.json");
    let schema = Schema::parse("iris.schema.json", &schema_bytes).unwrap();
    // The header and the first rows of each class.
    let csv: Vec<u8> = String::from_utf8(data("iris.csv"))
        .unwrap()
        .lines()
        .enumerate()
        .filter(|(i, _)| *i == 0 || i % 50 < 4)
        .map(|(_, l)| format!("{l}\n"))
        .collect::<String>()
        .into_bytes();
    Dataset::from_csv("iris.csv", &csv, &schema, &schema_bytes).unwrap();
    fuzz("csv", fuzz_cases(), csv, |b| {
        let Ok(d) = Dataset::from_csv("fuzz.csv", b, &schema, &schema_bytes) else {
            return Ok(false);
        };
        prop_assert_eq!(d.x.nrows(), d.y.len());
        prop_assert_eq!(d.x.ncols(), d.feature_names.len());
        prop_assert!(d.y.iter().all(|&c| c < d.classes.len()));
        prop_assert!(
            d.x.iter().all(|v| v.is_finite()),
            "a non-finite value was accepted"
        );
        Ok(true)
    });
    fuzz("schema", fuzz_cases(), schema_bytes, |b| {
        Ok(Schema::parse("fuzz.schema.json", b).is_ok())
    });
}

#[test]
fn sound_and_gesture_samples_give_finite_features_or_an_error() {
    let mut wav = std::io::Cursor::new(Vec::new());
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 8000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::new(&mut wav, spec).unwrap();
    for i in 0..1600 {
        let t = i as f32 / 8000.0;
        w.write_sample(((t * 440.0 * std::f32::consts::TAU).sin() * 12000.0) as i16)
            .unwrap();
    }
    w.finalize().unwrap();
    let width = sound::feature_names().len();
    let wav = wav.into_inner();
    sound::extract_wav(&wav).expect("the seed WAV is accepted");
    // Each accepted WAV runs the whole mel pipeline; a tenth of the cases keeps the suite short.
    fuzz("wav", fuzz_cases() / 10, wav, |b| {
        let Ok(features) = sound::extract_wav(b) else {
            return Ok(false);
        };
        prop_assert_eq!(features.len(), width);
        prop_assert!(all_finite(&features), "non-finite sound features");
        Ok(true)
    });
    let frames: Vec<Vec<f32>> = (0..20)
        .map(|i| {
            (0..6)
                .map(|c| ((i * 7 + c) % 13) as f32 / 3.0 - 2.0)
                .collect()
        })
        .collect();
    let gesture = serde_json::to_vec(&serde_json::json!({ "frames": frames })).unwrap();
    sessions::gesture_features(&gesture).expect("the seed gesture is accepted");
    fuzz("gesture", fuzz_cases(), gesture, |b| {
        let Ok(features) = sessions::gesture_features(b) else {
            return Ok(false);
        };
        prop_assert!(!features.is_empty());
        prop_assert!(all_finite(&features), "non-finite gesture features");
        Ok(true)
    });
    // The case the fuzzer found: a finite value whose square overflows f32.
    let mut huge = frames.clone();
    huge[0][5] = -3.3e31;
    let huge = serde_json::to_vec(&serde_json::json!({ "frames": huge })).unwrap();
    assert!(sessions::gesture_features(&huge).is_err());
    fuzz(
        "gesture (bare list)",
        fuzz_cases() / 10,
        serde_json::to_vec(&frames).unwrap(),
        |b| {
            let Ok(features) = sessions::gesture_features(b) else {
                return Ok(false);
            };
            prop_assert!(all_finite(&features), "non-finite gesture features");
            Ok(true)
        },
    );
}

#[test]
fn the_sources_config_parses_or_refuses_without_panicking() {
    let yaml = br#"
dataset: photos
datasets:
  - name: iris
    csv: iris.csv
    schema: iris.schema.json
sources:
  - name: unsplash
    enabled: true
    label: real
    queries: ["portrait photography", "street"]
    limit_per_query: 10
    per_page: 4
    rate_limit_per_hour: 50
  - name: civitai
    enabled: false
    label: ai
    queries: ["sort=Newest"]
"#;
    assert!(crate::collect::SourcesConfig::parse(std::str::from_utf8(yaml).unwrap()).is_ok());
    fuzz("sources config", fuzz_cases(), yaml.to_vec(), |b| {
        let Ok(text) = std::str::from_utf8(b) else {
            return Ok(false);
        };
        Ok(crate::collect::SourcesConfig::parse(text).is_ok())
    });
}
