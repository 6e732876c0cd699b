//! Unsplash: `GET /search/photos` with `Authorization: Client-ID <key>` and `Accept-Version: v1`;
//! pages by number until `total_pages`; images hotlinked from `urls.regular`; the required
//! download-tracking call to `links.download_location` once an image is kept.

use anyhow::Context;
use async_trait::async_trait;
use serde_json::{Value, json};

use super::{Attribution, Candidate, Endpoint, Fetcher, Page, base};
use crate::collect::http::Polite;

pub struct Unsplash {
    base: reqwest::Url,
    key: String,
}

impl Unsplash {
    pub fn new(e: Endpoint) -> anyhow::Result<Self> {
        Ok(Self {
            base: base(&e, "https://api.unsplash.com")?,
            key: e
                .key
                .context("Unsplash needs an access key: set UNSPLASH_ACCESS_KEY")?,
        })
    }

    fn auth(&self) -> Vec<(&'static str, String)> {
        vec![
            ("Authorization", format!("Client-ID {}", self.key)),
            ("Accept-Version", "v1".into()),
        ]
    }
}

#[async_trait]
impl Fetcher for Unsplash {
    fn max_per_page(&self) -> u32 {
        30
    }

    fn hosts(&self) -> super::Hosts {
        super::hosts_of(&self.base, &["images.unsplash.com", "plus.unsplash.com"])
    }

    async fn page(
        &self,
        http: &Polite,
        query: &str,
        cursor: Option<&Value>,
        per_page: u32,
    ) -> anyhow::Result<Page> {
        let page = cursor.and_then(|c| c["page"].as_u64()).unwrap_or(1);
        let mut url = self.base.join("search/photos")?;
        url.query_pairs_mut()
            .append_pair("query", query)
            .append_pair("page", &page.to_string())
            .append_pair("per_page", &per_page.to_string())
            .append_pair("content_filter", "high");
        let body = super::json(&http.get(&url, &self.auth()).await?.body, "Unsplash search")?;
        let results = body["results"]
            .as_array()
            .context("Unsplash search: no results array")?;
        let mut candidates = Vec::new();
        for r in results {
            let (Some(id), Some(image)) = (r["id"].as_str(), r["urls"]["regular"].as_str()) else {
                tracing::warn!("Unsplash result without id or urls.regular skipped");
                continue;
            };
            let user = &r["user"];
            candidates.push(Candidate {
                source_id: id.to_owned(),
                image_url: image.to_owned(),
                attribution: Attribution {
                    platform: "Unsplash".into(),
                    photographer: user["name"].as_str().map(str::to_owned),
                    license: "Unsplash License".into(),
                    url: r["links"]["html"].as_str().map_or_else(
                        || format!("https://unsplash.com/photos/{id}"),
                        str::to_owned,
                    ),
                },
                api_data: json!({
                    "photo_id": id, "width": r["width"], "height": r["height"],
                    "description": r["alt_description"], "user": user["username"],
                    "user_url": user["links"]["html"],
                }),
                track_url: r["links"]["download_location"].as_str().map(str::to_owned),
            });
        }
        let total_pages = body["total_pages"].as_u64().unwrap_or(page);
        let next = (page < total_pages && !results.is_empty()).then(|| json!({ "page": page + 1 }));
        Ok(Page { candidates, next })
    }

    async fn track(&self, http: &Polite, candidate: &Candidate) -> anyhow::Result<()> {
        if let Some(url) = &candidate.track_url {
            let url = reqwest::Url::parse(url).context("bad download_location")?;
            // `http` is the API client, whose guard allows the API's host alone: a
            // download_location naming another host gets neither the key nor a request.
            http.get(&url, &self.auth()).await?;
        }
        Ok(())
    }
}
