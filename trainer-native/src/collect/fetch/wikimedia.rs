//! Wikimedia Commons: the MediaWiki API with `generator=search` over the File namespace, one
//! request at a time with `maxlag=5` and the descriptive User-Agent the policy requires; every key
//! of `continue` is merged into the next request; the licence and author come per file from
//! `extmetadata` (HTML stripped).

use anyhow::Context;
use async_trait::async_trait;
use serde_json::{Value, json};

use super::{Attribution, Candidate, Endpoint, Fetcher, Page, base};
use crate::collect::http::Polite;

pub struct Wikimedia {
    api: reqwest::Url,
}

impl Wikimedia {
    pub fn new(e: Endpoint) -> anyhow::Result<Self> {
        Ok(Self {
            api: base(&e, "https://commons.wikimedia.org")?.join("w/api.php")?,
        })
    }
}

/// Text of an `extmetadata` value, tags removed and entities decoded for the common cases.
fn text(meta: &Value, key: &str) -> Option<String> {
    let raw = meta[key]["value"].as_str()?;
    let mut out = String::with_capacity(raw.len());
    let mut in_tag = false;
    for c in raw.chars() {
        match c {
            '<' => in_tag = true,
            '>' => in_tag = false,
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    let out = out
        .replace("&amp;", "&")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">");
    let out = out.split_whitespace().collect::<Vec<_>>().join(" ");
    (!out.is_empty()).then_some(out)
}

#[async_trait]
impl Fetcher for Wikimedia {
    fn max_per_page(&self) -> u32 {
        50
    }

    fn hosts(&self) -> super::Hosts {
        super::hosts_of(&self.api, &["upload.wikimedia.org"])
    }

    async fn page(
        &self,
        http: &Polite,
        query: &str,
        cursor: Option<&Value>,
        per_page: u32,
    ) -> anyhow::Result<Page> {
        let mut url = self.api.clone();
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("action", "query")
                .append_pair("format", "json")
                .append_pair("formatversion", "2")
                .append_pair("generator", "search")
                .append_pair("gsrsearch", &format!("filetype:bitmap {query}"))
                .append_pair("gsrnamespace", "6")
                .append_pair("gsrlimit", &per_page.to_string())
                .append_pair("prop", "imageinfo")
                .append_pair("iiprop", "url|size|mime|extmetadata")
                .append_pair("iiurlwidth", "1024")
                .append_pair(
                    "iiextmetadatafilter",
                    "LicenseShortName|LicenseUrl|Artist|Credit|AttributionRequired|UsageTerms|ImageDescription|DateTimeOriginal",
                )
                .append_pair("maxlag", "5");
            if let Some(Value::Object(cont)) = cursor.map(|c| &c["continue"]) {
                for (k, v) in cont {
                    let v = v.as_str().map_or_else(|| v.to_string(), str::to_owned);
                    q.append_pair(k, &v);
                }
            }
        }
        let body = super::json(&http.get(&url, &[]).await?.body, "Wikimedia query")?;
        if let Some(err) = body.get("error") {
            anyhow::bail!(
                "Wikimedia API error: {}",
                err["info"].as_str().unwrap_or("unknown")
            );
        }
        // formatversion=2 gives a list; version 1 an object keyed by page id.
        let pages: Vec<&Value> = match &body["query"]["pages"] {
            Value::Array(list) => list.iter().collect(),
            Value::Object(map) => map.values().collect(),
            _ => Vec::new(),
        };
        let mut pages = pages;
        pages.sort_by_key(|p| p["index"].as_u64().unwrap_or(u64::MAX));
        let mut candidates = Vec::new();
        for p in pages {
            let Some(info) = p["imageinfo"].get(0) else {
                continue;
            };
            let Some(image) = info["thumburl"].as_str().or(info["url"].as_str()) else {
                continue;
            };
            let meta = &info["extmetadata"];
            let Some(license) = text(meta, "LicenseShortName") else {
                tracing::warn!("Wikimedia file without a licence skipped: {}", p["title"]);
                continue;
            };
            let id = p["pageid"]
                .as_u64()
                .context("Wikimedia page without pageid")?;
            candidates.push(Candidate {
                source_id: id.to_string(),
                image_url: image.to_owned(),
                attribution: Attribution {
                    platform: "Wikimedia Commons".into(),
                    photographer: text(meta, "Artist"),
                    license,
                    url: info["descriptionurl"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                },
                api_data: json!({
                    "photo_id": id, "title": p["title"], "width": info["width"],
                    "height": info["height"], "mime": info["mime"],
                    "license_url": text(meta, "LicenseUrl"),
                    "attribution_required": text(meta, "AttributionRequired"),
                    "credit": text(meta, "Credit"),
                }),
                track_url: None,
            });
        }
        let next = body.get("continue").map(|c| json!({ "continue": c }));
        Ok(Page { candidates, next })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_is_stripped_from_extmetadata() {
        let meta = json!({"Artist": {"value": "<a href=\"//commons.wikimedia.org/wiki/User:X\">X &amp; Y</a>\n"}});
        assert_eq!(text(&meta, "Artist").as_deref(), Some("X & Y"));
        assert_eq!(text(&meta, "Missing"), None);
    }
}
