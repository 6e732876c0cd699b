//! Classification with a published image model: the registry's version, its ONNX file in tract,
//! and the same image features the edge computes (`vision`), for files, folders and URLs.

use std::path::Path;
use std::time::Instant;

use anyhow::Context;
use registry::{Manifest, ModelName, Registry};
use serde::Serialize;

use crate::collect::http::{Polite, Politeness};
use crate::validate::tract;

/// A model ready to classify images.
pub struct Classifier {
    name: ModelName,
    manifest: Manifest,
    onnx: tract::Loaded,
    labels: Vec<String>,
    limits: vision::Limits,
    http: Polite,
}

/// One input's result.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Classified {
    /// The input was classified.
    Label {
        /// The file or URL.
        input: String,
        /// The most probable label.
        label: String,
        /// Its probability.
        probability: f32,
        /// Every label's probability.
        probabilities: serde_json::Map<String, serde_json::Value>,
        /// The model.
        model: ModelName,
        /// The version that classified it.
        model_version: registry::Version,
        /// Milliseconds for reading, features and inference.
        ms: f64,
    },
    /// It could not be.
    Failed {
        /// The file or URL.
        input: String,
        /// Why.
        error: String,
    },
}

impl Classifier {
    /// The version `reference` of `name`, which must compute the image features this build does.
    pub async fn open(
        reg: &Registry,
        name: ModelName,
        reference: &str,
        int8: bool,
    ) -> anyhow::Result<Self> {
        let manifest = reg.resolve(&name, reference).await?;
        let pipeline = vision::features::PIPELINE;
        anyhow::ensure!(
            manifest.features.is(pipeline),
            "{name} {} uses feature pipeline {} v{}; this build computes {pipeline} from images",
            manifest.version,
            manifest.features.name,
            manifest.features.version
        );
        let role = if int8 { "onnx_int8" } else { "onnx" };
        let artifact = manifest
            .artifact(role)
            .with_context(|| format!("{name} {} has no {role} artifact", manifest.version))?;
        let onnx = tract::Loaded::new(&reg.blob(&artifact.digest).await?)?;
        let labels = manifest.labels.iter().map(ToString::to_string).collect();
        Ok(Self {
            name,
            manifest,
            onnx,
            labels,
            limits: vision::Limits::default(),
            http: Polite::new(Politeness::default())?,
        })
    }

    /// Classifies one file or http(s) URL.
    pub async fn classify(&self, input: &str) -> Classified {
        let start = Instant::now();
        let outcome = async {
            let bytes = self.read(input).await?;
            let row = vision::features_of_image(&bytes, &self.limits)?;
            let x = ndarray::Array2::from_shape_vec((1, row.len()), row)?;
            anyhow::Ok(self.onnx.predict(x.view())?.row(0).to_vec())
        }
        .await;
        match outcome {
            Ok(p) => {
                let best = (0..p.len()).fold(0, |b, i| if p[i] > p[b] { i } else { b });
                Classified::Label {
                    input: input.to_owned(),
                    label: self.labels.get(best).cloned().unwrap_or_default(),
                    probability: p[best],
                    probabilities: self
                        .labels
                        .iter()
                        .zip(&p)
                        .map(|(l, v)| (l.clone(), serde_json::json!(v)))
                        .collect(),
                    model: self.name.clone(),
                    model_version: self.manifest.version.clone(),
                    ms: start.elapsed().as_secs_f64() * 1e3,
                }
            }
            Err(e) => Classified::Failed {
                input: input.to_owned(),
                error: format!("{e:#}"),
            },
        }
    }

    /// The bytes of an input: a file, or an http(s) URL (fetched politely, size-capped).
    async fn read(&self, input: &str) -> anyhow::Result<Vec<u8>> {
        if input.starts_with("http://") || input.starts_with("https://") {
            let url = reqwest::Url::parse(input).with_context(|| format!("bad URL {input}"))?;
            return Ok(self.http.get(&url, &[]).await?.body.to_vec());
        }
        std::fs::read(input).with_context(|| format!("reading {input}"))
    }
}

/// The inputs with each folder replaced by its files, sorted.
pub fn expand_inputs(inputs: &[String]) -> anyhow::Result<Vec<String>> {
    let mut files = Vec::new();
    for input in inputs {
        let path = Path::new(input);
        if path.is_dir() {
            let mut found: Vec<String> = std::fs::read_dir(path)
                .with_context(|| format!("reading {input}"))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file())
                .map(|p| p.display().to_string())
                .collect();
            found.sort();
            files.extend(found);
        } else {
            files.push(input.clone());
        }
    }
    Ok(files)
}
