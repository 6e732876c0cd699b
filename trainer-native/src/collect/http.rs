//! A polite HTTP client for one source: a request rate from config, the server's own rate-limit
//! headers (`X-Ratelimit-Remaining`/`Reset`), `429` and `503` with `Retry-After`, other `5xx` and
//! network errors with exponential backoff and jitter, timeouts, a size cap, and truncated bodies
//! (fewer bytes than `Content-Length`) detected and retried.
//!
//! reqwest does the HTTP; the waiting policy is written here because it mixes a configured pace
//! with headers that each API spells differently, which no general retry crate models.

use super::guard::Guard;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::{StatusCode, Url};
use serde::Serialize;

/// The project's User-Agent: Wikimedia requires a descriptive one with contact details.
pub const USER_AGENT: &str = concat!(
    "exposr-trainer/",
    env!("CARGO_PKG_VERSION"),
    " (https://github.com/exposr/exposr-trainer; dataset collection for an AI-image detector) reqwest"
);

/// How one source is paced and retried.
#[derive(Debug, Clone)]
pub struct Politeness {
    /// Requests per hour at most (seed 001's `rate_limit_per_hour`); 0 for no pacing.
    pub per_hour: u32,
    /// Retries of one request after 429, 5xx, network errors and truncated bodies.
    pub max_retries: u32,
    /// First backoff delay; doubled on each retry, with jitter.
    pub backoff: Duration,
    /// Longest wait this client accepts for a `Retry-After` or rate-limit reset.
    pub max_wait: Duration,
    /// Timeout of one request, body included.
    pub timeout: Duration,
    /// Largest body accepted.
    pub max_bytes: usize,
    /// Which hosts and addresses may be reached (every redirect hop included).
    pub guard: Guard,
}

impl Default for Politeness {
    fn default() -> Self {
        Self {
            per_hour: 0,
            max_retries: 5,
            backoff: Duration::from_millis(500),
            max_wait: Duration::from_secs(15 * 60),
            timeout: Duration::from_secs(60),
            max_bytes: 25 << 20,
            guard: Guard::public(false),
        }
    }
}

/// What the client waited for and retried.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Waits {
    /// Requests sent, retries included.
    pub requests: u32,
    /// Waits for the configured pace or the server's rate limit.
    pub rate_limit_waits: u32,
    /// Seconds spent in those waits.
    pub rate_limit_seconds: f64,
    /// Retries after 429, 5xx, network errors or truncated bodies.
    pub retries: u32,
}

/// A successful response, read in full.
#[derive(Debug)]
pub struct Fetched {
    /// The whole body.
    pub body: Bytes,
}

/// A paced, retrying client for one source.
pub struct Polite {
    client: reqwest::Client,
    rules: Politeness,
    pace: Mutex<Pace>,
    waits: Mutex<Waits>,
}

struct Pace {
    next: Instant,
    blocked_until: Option<Instant>,
}

/// An error answer that retrying will not fix (4xx but 429), with the API's message.
#[derive(Debug, thiserror::Error)]
#[error("{url} answered {status}: {message}")]
pub struct Refused {
    /// The URL (without query, which may carry a key).
    pub url: String,
    /// The status.
    pub status: StatusCode,
    /// The API's error message, if it gave one.
    pub message: String,
}

impl Polite {
    /// A client with these rules.
    pub fn new(rules: Politeness) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .connect_timeout(Duration::from_secs(10))
            .timeout(rules.timeout)
            .dns_resolver(rules.guard.resolver())
            .redirect(rules.guard.redirect_policy())
            .build()
            .context("building the HTTP client")?;
        Ok(Self {
            client,
            rules,
            pace: Mutex::new(Pace {
                next: Instant::now(),
                blocked_until: None,
            }),
            waits: Mutex::new(Waits::default()),
        })
    }

    /// What it waited for so far.
    pub fn waits(&self) -> Waits {
        self.waits.lock().expect("lock").clone()
    }

    /// GETs `url` with `headers`, pacing and retrying as configured.
    pub async fn get(&self, url: &Url, headers: &[(&str, String)]) -> anyhow::Result<Fetched> {
        let shown = format!("{}{}", url.origin().ascii_serialization(), url.path());
        self.rules.guard.check(url).map_err(anyhow::Error::msg)?;
        let mut attempt = 0u32;
        loop {
            self.wait_turn().await;
            self.waits.lock().expect("lock").requests += 1;
            let mut req = self.client.get(url.clone());
            for (k, v) in headers {
                req = req.header(*k, v);
            }
            let outcome = match req.send().await {
                Ok(resp) => self.read(resp, &shown).await,
                Err(e) => Err(Retry::After(None, format!("{shown}: {e}"))),
            };
            let (wait, why) = match outcome {
                Ok(fetched) => return Ok(fetched),
                Err(Retry::Never(e)) => return Err(e),
                Err(Retry::After(wait, why)) => (wait, why),
            };
            if attempt >= self.rules.max_retries {
                anyhow::bail!("{why} (gave up after {} attempts)", attempt + 1);
            }
            let backoff = wait.unwrap_or_else(|| {
                let base = self.rules.backoff.saturating_mul(1 << attempt.min(10));
                // Full jitter: spreads retries of many clients apart.
                base.mul_f64(0.5 + fastrand::f64() * 0.5)
            });
            anyhow::ensure!(
                backoff <= self.rules.max_wait,
                "{why}: asked to wait {backoff:?}, longer than {:?}",
                self.rules.max_wait
            );
            tracing::warn!("{why}; retrying in {:.1} s", backoff.as_secs_f64());
            {
                let mut w = self.waits.lock().expect("lock");
                w.retries += 1;
                if wait.is_some() {
                    w.rate_limit_waits += 1;
                    w.rate_limit_seconds += backoff.as_secs_f64();
                }
            }
            tokio::time::sleep(backoff).await;
            attempt += 1;
        }
    }

    async fn read(&self, resp: reqwest::Response, shown: &str) -> Result<Fetched, Retry> {
        let status = resp.status();
        let headers = resp.headers().clone();
        if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
            let wait = retry_after(&headers).or_else(|| reset_wait(&headers));
            return Err(Retry::After(wait, format!("{shown} answered {status}")));
        }
        if !status.is_success() {
            let body = resp.bytes().await.unwrap_or_default();
            return Err(Retry::Never(
                Refused {
                    url: shown.to_owned(),
                    status,
                    message: api_message(&body),
                }
                .into(),
            ));
        }
        let expected = resp.content_length();
        if expected.is_some_and(|n| n as usize > self.rules.max_bytes) {
            return Err(Retry::Never(anyhow::anyhow!(
                "{shown}: body of {} bytes is over the limit of {}",
                expected.unwrap_or_default(),
                self.rules.max_bytes
            )));
        }
        let mut body = Vec::with_capacity(expected.unwrap_or(0).min(1 << 20) as usize);
        let mut resp = resp;
        loop {
            match resp.chunk().await {
                Ok(Some(chunk)) => {
                    body.extend_from_slice(&chunk);
                    if body.len() > self.rules.max_bytes {
                        return Err(Retry::Never(anyhow::anyhow!(
                            "{shown}: body over the limit of {} bytes",
                            self.rules.max_bytes
                        )));
                    }
                }
                Ok(None) => break,
                Err(e) => return Err(Retry::After(None, format!("{shown}: body cut short: {e}"))),
            }
        }
        if let Some(n) = expected
            && body.len() as u64 != n
        {
            return Err(Retry::After(
                None,
                format!("{shown}: body cut short ({} of {n} bytes)", body.len()),
            ));
        }
        self.note_limits(&headers);
        Ok(Fetched {
            body: Bytes::from(body),
        })
    }

    /// After a success: if the server says no requests remain, hold off until its reset.
    fn note_limits(&self, headers: &HeaderMap) {
        let remaining = header_u64(headers, "x-ratelimit-remaining");
        if remaining == Some(0)
            && let Some(wait) = reset_wait(headers)
        {
            self.pace.lock().expect("lock").blocked_until = Some(Instant::now() + wait);
        }
    }

    async fn wait_turn(&self) {
        let wait = {
            let mut pace = self.pace.lock().expect("lock");
            let now = Instant::now();
            let mut at = pace.next.max(now);
            if let Some(b) = pace.blocked_until.take() {
                at = at.max(b);
            }
            let interval = match self.rules.per_hour {
                0 => Duration::ZERO,
                n => Duration::from_secs_f64(3600.0 / f64::from(n)),
            };
            pace.next = at + interval;
            at - now
        };
        if !wait.is_zero() {
            {
                let mut w = self.waits.lock().expect("lock");
                w.rate_limit_waits += 1;
                w.rate_limit_seconds += wait.as_secs_f64();
            }
            tokio::time::sleep(wait).await;
        }
    }
}

enum Retry {
    Never(anyhow::Error),
    After(Option<Duration>, String),
}

fn header_u64(headers: &HeaderMap, name: &str) -> Option<u64> {
    headers.get(name)?.to_str().ok()?.trim().parse().ok()
}

/// The longest wait a server's header can impose: past it the fetcher tries again (and meets the
/// limit again, if it still holds). Also keeps `Instant + wait` from overflowing on a hostile or
/// broken header (`X-Ratelimit-Reset: 18446744073709551615`).
const MAX_SERVER_WAIT: Duration = Duration::from_secs(3600);

/// `Retry-After` in seconds or as an HTTP date, at most [`MAX_SERVER_WAIT`].
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    let wait = match value.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => {
            let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
            (at.to_utc() - chrono::Utc::now()).to_std().ok()?
        }
    };
    Some(wait.min(MAX_SERVER_WAIT))
}

/// `X-Ratelimit-Reset`: a Unix time (Pexels) or seconds from now (small values), at most
/// [`MAX_SERVER_WAIT`].
fn reset_wait(headers: &HeaderMap) -> Option<Duration> {
    let reset = header_u64(headers, "x-ratelimit-reset")?;
    let now = chrono::Utc::now().timestamp().max(0) as u64;
    let secs = if reset > 1_000_000_000 {
        reset.saturating_sub(now)
    } else {
        reset
    };
    Some(Duration::from_secs(secs).min(MAX_SERVER_WAIT))
}

/// The message of an API's error body: Unsplash `{"errors": [..]}`, Pexels and CivitAI
/// `{"error": ..}`, others `{"message": ..}`; else the start of the text.
fn api_message(body: &[u8]) -> String {
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) {
        if let Some(list) = v["errors"].as_array() {
            return list
                .iter()
                .map(|e| e.as_str().map_or_else(|| e.to_string(), str::to_owned))
                .collect::<Vec<_>>()
                .join("; ");
        }
        for key in ["error", "message"] {
            match &v[key] {
                serde_json::Value::Null => {}
                serde_json::Value::String(s) => return s.clone(),
                other => return other.to_string(),
            }
        }
    }
    String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_errors_read_in_each_shape() {
        assert_eq!(
            api_message(br#"{"errors": ["OAuth error", "bad"]}"#),
            "OAuth error; bad"
        );
        assert_eq!(api_message(br#"{"error": "Not found"}"#), "Not found");
        assert_eq!(api_message(br#"{"message": "nope"}"#), "nope");
        assert_eq!(api_message(b"plain"), "plain");
    }

    #[test]
    fn waits_come_from_retry_after_and_resets() {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, "2".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(2)));
        let mut h = HeaderMap::new();
        let at = chrono::Utc::now().timestamp() + 30;
        h.insert("x-ratelimit-reset", at.to_string().parse().unwrap());
        let wait = reset_wait(&h).unwrap();
        assert!((28..=30).contains(&wait.as_secs()), "{wait:?}");
        // Hostile values wait at most an hour and never overflow an Instant.
        for huge in [u64::MAX.to_string(), "99999999999999".into()] {
            let mut h = HeaderMap::new();
            h.insert("x-ratelimit-reset", huge.parse().unwrap());
            h.insert(RETRY_AFTER, huge.parse().unwrap());
            assert_eq!(reset_wait(&h), Some(MAX_SERVER_WAIT));
            assert_eq!(retry_after(&h), Some(MAX_SERVER_WAIT));
            let _ = Instant::now() + reset_wait(&h).unwrap();
        }
    }
}
