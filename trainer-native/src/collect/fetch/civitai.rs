//! CivitAI `GET /api/v1/images`: SFW only (`browsingLevel=1`), `withMeta=true`, cursor paging
//! through `metadata.nextCursor`. A query is a set of the endpoint's filters as `key=value&…`
//! (e.g. `sort=Most Reactions&period=Week`, `modelId=4201`), since it has no text search. `meta`
//! comes in three forms (null, flat, nested under `meta`), all accepted.

use anyhow::Context;
use async_trait::async_trait;
use serde_json::{Value, json};

use super::{Attribution, Candidate, Endpoint, Fetcher, Page, base};
use crate::collect::http::Polite;

/// Filters the endpoint takes; anything else in a query is refused.
const FILTERS: &[&str] = &[
    "postId",
    "modelId",
    "modelVersionId",
    "username",
    "userId",
    "tags",
    "baseModels",
    "period",
    "sort",
    "type",
];

pub struct Civitai {
    base: reqwest::Url,
    key: Option<String>,
}

impl Civitai {
    pub fn new(e: Endpoint) -> anyhow::Result<Self> {
        Ok(Self {
            base: base(&e, "https://civitai.com/api/v1")?,
            key: e.key,
        })
    }

    fn auth(&self) -> Vec<(&'static str, String)> {
        self.key
            .iter()
            .map(|k| ("Authorization", format!("Bearer {k}")))
            .collect()
    }
}

/// `meta` in its flat form, whichever form the API sent.
pub fn flat_meta(meta: &Value) -> Value {
    match meta {
        Value::Object(m) if m.contains_key("meta") && m.get("id").is_some_and(Value::is_number) => {
            m["meta"].clone()
        }
        other => other.clone(),
    }
}

#[async_trait]
impl Fetcher for Civitai {
    fn max_per_page(&self) -> u32 {
        200
    }

    fn hosts(&self) -> super::Hosts {
        super::hosts_of(&self.base, &["image.civitai.com"])
    }

    async fn page(
        &self,
        http: &Polite,
        query: &str,
        cursor: Option<&Value>,
        per_page: u32,
    ) -> anyhow::Result<Page> {
        let mut url = self.base.join("images")?;
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("limit", &per_page.to_string())
                .append_pair("browsingLevel", "1")
                .append_pair("withMeta", "true");
            for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
                anyhow::ensure!(
                    FILTERS.contains(&k.as_ref()),
                    "CivitAI query {query:?}: {k:?} is not a filter of /images (use key=value \
                     pairs of: {})",
                    FILTERS.join(", ")
                );
                q.append_pair(&k, &v);
            }
            if let Some(c) = cursor.and_then(|c| c["cursor"].as_str()) {
                q.append_pair("cursor", c);
            }
        }
        let body = super::json(&http.get(&url, &self.auth()).await?.body, "CivitAI images")?;
        let items = body["items"]
            .as_array()
            .context("CivitAI images: no items array")?;
        let mut candidates = Vec::new();
        for it in items {
            let (Some(id), Some(image)) = (it["id"].as_u64(), it["url"].as_str()) else {
                continue;
            };
            if it["type"].as_str().is_some_and(|t| t != "image")
                || it["browsingLevel"].as_u64() > Some(1)
            {
                continue;
            }
            let meta = flat_meta(&it["meta"]);
            candidates.push(Candidate {
                source_id: id.to_string(),
                image_url: image.to_owned(),
                attribution: Attribution {
                    platform: "CivitAI".into(),
                    photographer: it["username"].as_str().map(str::to_owned),
                    license: "CivitAI Terms of Service (user upload)".into(),
                    url: format!("https://civitai.com/images/{id}"),
                },
                api_data: json!({
                    "photo_id": id, "width": it["width"], "height": it["height"],
                    "base_model": it["baseModel"], "model": meta["Model"],
                    "model_version_ids": it["modelVersionIds"], "meta": meta,
                    "created_at": it["createdAt"],
                }),
                track_url: None,
            });
        }
        let next = body["metadata"]["nextCursor"]
            .as_str()
            .map(|c| json!({ "cursor": c }))
            .or_else(|| {
                body["metadata"]["nextCursor"]
                    .as_u64()
                    .map(|c| json!({ "cursor": c.to_string() }))
            });
        Ok(Page { candidates, next })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_in_all_three_forms() {
        assert_eq!(flat_meta(&Value::Null), Value::Null);
        let flat = json!({"prompt": "a cat", "Model": "sdxl"});
        assert_eq!(flat_meta(&flat), flat);
        let nested = json!({"id": 9173928, "meta": {"prompt": "a cat", "Model": "sdxl"}});
        assert_eq!(flat_meta(&nested), flat);
    }
}
