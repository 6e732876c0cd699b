//! The CrowdMind API client: download a dataset (CSV + schema) and upload trained artifacts back.
//!
//! `GET /datasets/{id}/download` (CSV), `GET /datasets/{id}/schema` (JSON), and
//! `POST /datasets/{id}/models` (multipart: model files and meta.json), all with a bearer token.

use std::time::Duration;

use anyhow::{Context, bail};
use reqwest::StatusCode;

/// Largest dataset download accepted.
const MAX_DOWNLOAD: u64 = 512 * 1024 * 1024;

/// A client for one API base URL and token.
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
}

/// A dataset id: letters, digits, `-` and `_` only, so it is safe in a URL path.
fn check_id(id: &str) -> anyhow::Result<()> {
    if id.is_empty()
        || id.len() > 128
        || !id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        bail!("invalid dataset id {id:?}: use letters, digits, '-' and '_'");
    }
    Ok(())
}

impl Client {
    /// A client for `base` (e.g. `https://api.crowdmind.example.com`).
    pub fn new(base: &str, token: &str) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(120))
            .user_agent(concat!("exposr-trainer/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            http,
            base: base.trim_end_matches('/').to_owned(),
            token: token.to_owned(),
        })
    }

    async fn get(&self, id: &str, what: &str) -> anyhow::Result<Vec<u8>> {
        check_id(id)?;
        let url = format!("{}/datasets/{id}/{what}", self.base);
        let response = self
            .http
            .get(&url)
            .bearer_auth(&self.token)
            .send()
            .await
            .with_context(|| format!("GET {url}"))?;
        let status = response.status();
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            bail!("GET {url}: {status}: the API token was refused");
        }
        if !status.is_success() {
            bail!("GET {url}: {status}");
        }
        if response.content_length().is_some_and(|n| n > MAX_DOWNLOAD) {
            bail!("GET {url}: larger than {MAX_DOWNLOAD} bytes");
        }
        let body = response
            .bytes()
            .await
            .with_context(|| format!("reading {url}"))?;
        Ok(body.to_vec())
    }

    /// The dataset's CSV and schema bytes.
    pub async fn download(&self, id: &str) -> anyhow::Result<(Vec<u8>, Vec<u8>)> {
        let csv = self.get(id, "download").await?;
        let schema = self.get(id, "schema").await?;
        Ok((csv, schema))
    }

    /// Uploads `files` (name, bytes) as one multipart request.
    pub async fn upload(&self, id: &str, files: Vec<(String, Vec<u8>)>) -> anyhow::Result<()> {
        check_id(id)?;
        let url = format!("{}/datasets/{id}/models", self.base);
        let mut form = reqwest::multipart::Form::new();
        for (name, bytes) in files {
            let part = reqwest::multipart::Part::bytes(bytes).file_name(name.clone());
            form = form.part(name, part);
        }
        let response = self
            .http
            .post(&url)
            .bearer_auth(&self.token)
            .multipart(form)
            .send()
            .await
            .with_context(|| format!("POST {url}"))?;
        if !response.status().is_success() {
            bail!("POST {url}: {}", response.status());
        }
        Ok(())
    }
}
