//! The outbound allow-list: a component's HTTP requests leave the host only for the origins its
//! `allowed_outbound_hosts` in `spin.toml` names, as Spin enforces them (`scheme://host[:port]`,
//! `*` for any subdomain or port; `{{ variable }}` templates resolved). Anything else is refused
//! with `HttpRequestDenied` before a connection is made.

use std::collections::BTreeMap;

use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks};

/// One allowed origin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    scheme: String,
    /// Lowercase host, or `*.example.com` for its subdomains.
    host: String,
    /// `None`: the scheme's default port; `Some(0)`: any port.
    port: Option<u16>,
}

impl Origin {
    /// Parses `scheme://host[:port]`, with `*` allowed as the first host label or the port.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let (scheme, rest) = text
            .split_once("://")
            .ok_or_else(|| anyhow::anyhow!("{text:?}: an allowed host is scheme://host[:port]"))?;
        let rest = rest.trim_end_matches('/');
        anyhow::ensure!(!rest.contains('/'), "{text:?}: an allowed host has no path");
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, "*")) => (h, Some(0)),
            Some((h, p)) => (
                h,
                Some(
                    p.parse()
                        .map_err(|_| anyhow::anyhow!("{text:?}: bad port"))?,
                ),
            ),
            None => (rest, None),
        };
        anyhow::ensure!(!host.is_empty(), "{text:?}: no host");
        Ok(Self {
            scheme: scheme.to_ascii_lowercase(),
            host: host.to_ascii_lowercase(),
            port,
        })
    }

    fn default_port(scheme: &str) -> Option<u16> {
        match scheme {
            "http" => Some(80),
            "https" => Some(443),
            _ => None,
        }
    }

    /// Whether a request to `scheme://host:port` is allowed by this origin.
    pub fn allows(&self, scheme: &str, host: &str, port: Option<u16>) -> bool {
        let host = host.to_ascii_lowercase();
        let host_ok = match self.host.strip_prefix("*.") {
            Some(parent) => host.ends_with(&format!(".{parent}")),
            None => self.host == "*" || self.host == host,
        };
        let port = port.or_else(|| Self::default_port(scheme));
        let port_ok = match self.port {
            Some(0) => true,
            Some(p) => port == Some(p),
            None => port == Self::default_port(&self.scheme),
        };
        self.scheme == scheme && host_ok && port_ok
    }
}

/// Resolves `{{ name }}` in `text` from `variables`.
pub fn resolve(text: &str, variables: &BTreeMap<String, String>) -> anyhow::Result<String> {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        let end = rest[start..]
            .find("}}")
            .ok_or_else(|| anyhow::anyhow!("{text:?}: an unclosed {{{{"))?;
        let name = rest[start + 2..start + end].trim();
        let value = variables
            .get(name)
            .ok_or_else(|| anyhow::anyhow!("{text:?}: no variable {name:?}"))?;
        out.push_str(&rest[..start]);
        out.push_str(value);
        rest = &rest[start + end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The hooks of one component instance: its allowed origins.
#[derive(Debug, Clone, Default)]
pub struct AllowList {
    origins: Vec<Origin>,
}

impl AllowList {
    /// The allow-list of `hosts` (already resolved).
    pub fn new(hosts: &[String]) -> anyhow::Result<Self> {
        Ok(Self {
            origins: hosts
                .iter()
                .map(|h| Origin::parse(h))
                .collect::<Result<_, _>>()?,
        })
    }

    /// Whether `uri` may be requested.
    pub fn allows(&self, uri: &hyper::Uri) -> bool {
        let (Some(scheme), Some(host)) = (uri.scheme_str(), uri.host()) else {
            return false;
        };
        self.origins
            .iter()
            .any(|o| o.allows(scheme, host, uri.port_u16()))
    }
}

impl WasiHttpHooks for AllowList {
    fn send_request(
        &mut self,
        request: hyper::Request<WasiBody>,
        options: Option<RequestOptions>,
        fut: Box<dyn Future<Output = Result<(), Error>> + Send>,
    ) -> Box<
        dyn Future<
                Output = Result<
                    (
                        hyper::Response<WasiBody>,
                        Box<dyn Future<Output = Result<(), Error>> + Send>,
                    ),
                    Error,
                >,
            > + Send,
    > {
        drop(fut);
        if !self.allows(request.uri()) {
            tracing::warn!(
                "refused an outbound request to {}://{} (not in allowed_outbound_hosts)",
                request.uri().scheme_str().unwrap_or("?"),
                request.uri().authority().map_or("?", |a| a.as_str())
            );
            return Box::new(async { Err(Error::HttpRequestDenied) });
        }
        Box::new(async move {
            use http_body_util::BodyExt;
            let (res, io) = wasmtime_wasi_http::default_send_request(request, options).await?;
            Ok((
                res.map(BodyExt::boxed_unsync),
                Box::new(io) as Box<dyn Future<Output = _> + Send>,
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(hosts: &[&str]) -> AllowList {
        AllowList::new(&hosts.iter().map(|h| h.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn only_the_allowed_origins_pass() {
        let l = list(&[
            "https://s3.eu-west-1.amazonaws.com",
            "http://127.0.0.1:9000",
        ]);
        let ok = |u: &str| l.allows(&u.parse().unwrap());
        assert!(ok("https://s3.eu-west-1.amazonaws.com/bucket/key"));
        assert!(ok("https://s3.eu-west-1.amazonaws.com:443/bucket/key"));
        assert!(ok("http://127.0.0.1:9000/bucket"));
        for bad in [
            "http://s3.eu-west-1.amazonaws.com/bucket",
            "https://s3.eu-west-1.amazonaws.com:8443/bucket",
            "https://evil.example/steal",
            "http://127.0.0.1:9001/bucket",
            "http://169.254.169.254/latest/meta-data/",
        ] {
            assert!(!ok(bad), "{bad}");
        }
        let w = list(&["https://*.amazonaws.com", "http://localhost:*"]);
        assert!(w.allows(&"https://bucket.s3.amazonaws.com/k".parse().unwrap()));
        assert!(!w.allows(&"https://amazonaws.com.evil.example/k".parse().unwrap()));
        assert!(w.allows(&"http://localhost:4566/k".parse().unwrap()));
        assert!(AllowList::default().origins.is_empty());
        assert!(!AllowList::default().allows(&"https://x.example/".parse().unwrap()));
    }

    #[test]
    fn templates_resolve_from_the_variables() {
        let vars = BTreeMap::from([(
            "registry_endpoint".to_owned(),
            "http://127.0.0.1:9000".to_owned(),
        )]);
        assert_eq!(
            resolve("{{ registry_endpoint }}", &vars).unwrap(),
            "http://127.0.0.1:9000"
        );
        assert!(resolve("{{ nope }}", &vars).is_err());
        assert!(Origin::parse("s3.amazonaws.com").is_err());
        assert!(Origin::parse("https://h/path").is_err());
    }
}
