//! Photo API fetchers behind one trait. Adding a source is one module here, one line in
//! [`fetcher`], and one entry in `config/sources.yaml`.

mod civitai;
mod pexels;
mod unsplash;
mod wikimedia;

use async_trait::async_trait;
use serde::Serialize;
use serde_json::Value;

use super::http::Polite;

/// Who made an image and under which licence (seed 001's `attribution`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Attribution {
    /// The platform (Unsplash, Pexels, Wikimedia Commons, CivitAI, …).
    pub platform: String,
    /// The author, as the platform names them.
    pub photographer: Option<String>,
    /// The licence or terms the image comes under.
    pub license: String,
    /// The image's page on the platform.
    pub url: String,
}

/// One image a search returned.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// The platform's id of the image.
    pub source_id: String,
    /// Where to download it.
    pub image_url: String,
    /// Credit and licence.
    pub attribution: Attribution,
    /// What the API said about it (id, size, and platform-specific fields).
    pub api_data: Value,
    /// A URL to call once the image is used (Unsplash's download tracking).
    pub track_url: Option<String>,
}

/// One page of results and where the next one starts.
#[derive(Debug, Clone)]
pub struct Page {
    /// The images.
    pub candidates: Vec<Candidate>,
    /// The cursor of the next page, `None` on the last one.
    pub next: Option<Value>,
}

/// A photo API.
#[async_trait]
pub trait Fetcher: Send + Sync {
    /// The largest page the API serves.
    fn max_per_page(&self) -> u32;

    /// The page at `cursor` (`None`: the first) of `query`'s results.
    async fn page(
        &self,
        http: &Polite,
        query: &str,
        cursor: Option<&Value>,
        per_page: u32,
    ) -> anyhow::Result<Page>;

    /// The hosts its fetches may reach.
    fn hosts(&self) -> Hosts;

    /// Headers for downloading an image (none by default).
    fn image_headers(&self) -> Vec<(&'static str, String)> {
        Vec::new()
    }

    /// Tells the platform an image was used, where its guidelines ask for it.
    async fn track(&self, _http: &Polite, _candidate: &Candidate) -> anyhow::Result<()> {
        Ok(())
    }
}

/// Settings a fetcher is built from: its base URL and key.
#[derive(Debug, Clone, Default)]
pub struct Endpoint {
    /// The API's base URL (tests point it at a fake server).
    pub base_url: Option<String>,
    /// The API key, where one is needed.
    pub key: Option<String>,
}

/// The fetcher of source `name`.
pub fn fetcher(name: &str, endpoint: Endpoint) -> anyhow::Result<Box<dyn Fetcher>> {
    Ok(match name {
        "unsplash" => Box::new(unsplash::Unsplash::new(endpoint)?),
        "pexels" => Box::new(pexels::Pexels::new(endpoint)?),
        "wikimedia" => Box::new(wikimedia::Wikimedia::new(endpoint)?),
        "civitai" => Box::new(civitai::Civitai::new(endpoint)?),
        other => {
            anyhow::bail!("unknown source {other:?} (known: unsplash, pexels, wikimedia, civitai)")
        }
    })
}

/// The hosts a source's fetches may reach: its API (the only host that sees its key), and where
/// its images are served from.
pub struct Hosts {
    /// The API's host.
    pub api: Vec<String>,
    /// The image hosts: the platform's CDN, and the API's host (fakes and proxies serve both).
    pub images: Vec<String>,
}

fn hosts_of(api: &reqwest::Url, cdns: &[&str]) -> Hosts {
    let api: Vec<String> = api.host_str().map(str::to_owned).into_iter().collect();
    let mut images: Vec<String> = cdns.iter().map(|h| (*h).to_owned()).collect();
    images.extend(api.iter().cloned());
    Hosts { api, images }
}

/// Parses `base` (or `default`) as a URL.
fn base(endpoint: &Endpoint, default: &str) -> anyhow::Result<reqwest::Url> {
    let text = endpoint.base_url.as_deref().unwrap_or(default);
    let text = text.trim_end_matches('/');
    reqwest::Url::parse(&format!("{text}/"))
        .map_err(|e| anyhow::anyhow!("bad base URL {text:?}: {e}"))
}

/// The JSON body of a response.
fn json(body: &[u8], what: &str) -> anyhow::Result<Value> {
    serde_json::from_slice(body).map_err(|e| anyhow::anyhow!("{what}: not the expected JSON: {e}"))
}
