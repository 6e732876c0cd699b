//! Pexels: `GET /v1/search` with `Authorization: <key>` (no "Bearer"); follows `next_page` until
//! it is absent; images from `src.large2x`; the Pexels License, photographer credited.

use anyhow::Context;
use async_trait::async_trait;
use serde_json::{Value, json};

use super::{Attribution, Candidate, Endpoint, Fetcher, Page, base};
use crate::collect::http::Polite;

pub struct Pexels {
    base: reqwest::Url,
    key: String,
}

impl Pexels {
    pub fn new(e: Endpoint) -> anyhow::Result<Self> {
        Ok(Self {
            base: base(&e, "https://api.pexels.com")?,
            key: e
                .key
                .context("Pexels needs an API key: set PEXELS_API_KEY")?,
        })
    }
}

#[async_trait]
impl Fetcher for Pexels {
    fn max_per_page(&self) -> u32 {
        80
    }

    fn hosts(&self) -> super::Hosts {
        super::hosts_of(&self.base, &["images.pexels.com"])
    }

    async fn page(
        &self,
        http: &Polite,
        query: &str,
        cursor: Option<&Value>,
        per_page: u32,
    ) -> anyhow::Result<Page> {
        let url = match cursor.and_then(|c| c["next_page"].as_str()) {
            // The API's own next_page link, kept on our host (tests run it on loopback).
            Some(next) => {
                let next = reqwest::Url::parse(next).context("bad next_page")?;
                let mut url = self.base.join("v1/search")?;
                url.set_query(next.query());
                url
            }
            None => {
                let mut url = self.base.join("v1/search")?;
                url.query_pairs_mut()
                    .append_pair("query", query)
                    .append_pair("per_page", &per_page.to_string())
                    .append_pair("page", "1");
                url
            }
        };
        let auth = [("Authorization", self.key.clone())];
        let body = super::json(&http.get(&url, &auth).await?.body, "Pexels search")?;
        let photos = body["photos"]
            .as_array()
            .context("Pexels search: no photos array")?;
        let mut candidates = Vec::new();
        for p in photos {
            let (Some(id), Some(image)) = (p["id"].as_u64(), p["src"]["large2x"].as_str()) else {
                tracing::warn!("Pexels photo without id or src.large2x skipped");
                continue;
            };
            candidates.push(Candidate {
                source_id: id.to_string(),
                image_url: image.to_owned(),
                attribution: Attribution {
                    platform: "Pexels".into(),
                    photographer: p["photographer"].as_str().map(str::to_owned),
                    license: "Pexels License".into(),
                    url: p["url"].as_str().map_or_else(
                        || format!("https://www.pexels.com/photo/{id}/"),
                        str::to_owned,
                    ),
                },
                api_data: json!({
                    "photo_id": id, "width": p["width"], "height": p["height"], "alt": p["alt"],
                    "photographer_url": p["photographer_url"], "avg_color": p["avg_color"],
                }),
                track_url: None,
            });
        }
        let next = body["next_page"]
            .as_str()
            .map(|n| json!({ "next_page": n }));
        Ok(Page { candidates, next })
    }
}
