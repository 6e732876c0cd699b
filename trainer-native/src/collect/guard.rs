//! Where the fetchers may connect: the hosts a source names (its API, its image CDN), never a
//! private, loopback or link-local address unless the config allows it (tests on loopback do),
//! and the same check on every redirect hop and on every address a name resolves to (so a DNS
//! answer cannot point a fetch at the metadata service or the cluster's own network).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use reqwest::Url;

/// The most redirects one fetch follows.
const MAX_REDIRECTS: usize = 5;

/// What a client may reach.
#[derive(Debug, Clone, Default)]
pub struct Guard {
    /// Hosts allowed, each with its subdomains; empty: any public host.
    pub hosts: Vec<String>,
    /// Whether private, loopback and link-local addresses may be reached.
    pub allow_private: bool,
}

impl Guard {
    /// Only `hosts` (and their subdomains).
    pub fn hosts(hosts: impl IntoIterator<Item = String>, allow_private: bool) -> Self {
        Self {
            hosts: hosts.into_iter().map(|h| h.to_ascii_lowercase()).collect(),
            allow_private,
        }
    }

    /// Any public host (and private ones too, if allowed).
    pub fn public(allow_private: bool) -> Self {
        Self {
            hosts: Vec::new(),
            allow_private,
        }
    }

    /// Whether `url` may be fetched: http(s), an allowed host, and not a private address literal.
    pub fn check(&self, url: &Url) -> Result<(), String> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!("{url}: only http and https URLs are fetched"));
        }
        let Some(host) = url.host_str() else {
            return Err(format!("{url}: no host"));
        };
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase();
        if !self.hosts.is_empty()
            && !self
                .hosts
                .iter()
                .any(|h| host == *h || host.ends_with(&format!(".{h}")))
        {
            return Err(format!(
                "{}: not one of this source's hosts ({})",
                url.origin().ascii_serialization(),
                self.hosts.join(", ")
            ));
        }
        if let Ok(ip) = host.parse::<IpAddr>()
            && !self.allow_private
            && !is_public(ip)
        {
            return Err(format!("{host} is a private or local address"));
        }
        Ok(())
    }

    /// The redirect policy: each hop checked like the first URL, at most [`MAX_REDIRECTS`].
    pub fn redirect_policy(&self) -> reqwest::redirect::Policy {
        let guard = self.clone();
        reqwest::redirect::Policy::custom(move |attempt| {
            if attempt.previous().len() >= MAX_REDIRECTS {
                return attempt.error(format!("more than {MAX_REDIRECTS} redirects"));
            }
            match guard.check(attempt.url()) {
                Ok(()) => attempt.follow(),
                Err(why) => attempt.error(format!("redirect refused: {why}")),
            }
        })
    }

    /// The resolver: every address a name resolves to must be public, unless private ones are
    /// allowed.
    pub fn resolver(&self) -> Arc<PublicResolver> {
        Arc::new(PublicResolver {
            allow_private: self.allow_private,
        })
    }
}

/// A DNS resolver that refuses names resolving to private or local addresses.
pub struct PublicResolver {
    allow_private: bool,
}

impl reqwest::dns::Resolve for PublicResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let allow_private = self.allow_private;
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if !allow_private && let Some(a) = addrs.iter().find(|a| !is_public(a.ip())) {
                return Err(
                    format!("{host} resolves to {}, a private or local address", a.ip()).into(),
                );
            }
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// Whether `ip` is a public address: not loopback, private, link-local, shared (CGNAT),
/// documentation, multicast or unspecified (IPv4-mapped IPv6 judged as IPv4).
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_broadcast()
                || v4.is_documentation()
                || v4.is_unspecified()
                || v4.is_multicast()
                || a == 0
                || (a == 100 && (64..128).contains(&b)))
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn only_the_sources_hosts_and_no_private_addresses() {
        let g = Guard::hosts(["api.unsplash.com".into(), "unsplash.com".into()], false);
        assert!(
            g.check(&url("https://api.unsplash.com/search/photos"))
                .is_ok()
        );
        assert!(g.check(&url("https://images.unsplash.com/photo-1")).is_ok());
        for bad in [
            "https://evil.example/steal",
            "https://unsplash.com.evil.example/x",
            "ftp://api.unsplash.com/x",
            "file:///etc/passwd",
        ] {
            assert!(g.check(&url(bad)).is_err(), "{bad}");
        }
        let any = Guard::public(false);
        for private in [
            "http://127.0.0.1:9000/",
            "http://10.0.0.5/",
            "http://169.254.169.254/latest/meta-data/",
            "http://192.168.1.1/",
            "http://100.64.0.1/",
            "http://0.0.0.0/",
            "http://[::1]/",
            "http://[fd00::1]/",
            "http://[fe80::1]/",
            "http://[::ffff:127.0.0.1]/",
        ] {
            assert!(any.check(&url(private)).is_err(), "{private}");
            assert!(
                Guard::public(true).check(&url(private)).is_ok(),
                "{private}"
            );
        }
        assert!(any.check(&url("https://93.184.215.14/")).is_ok());
    }

    #[tokio::test]
    async fn names_resolving_to_private_addresses_are_refused() {
        use reqwest::dns::Resolve;
        let name: reqwest::dns::Name = "localhost".parse().map_err(|_| ()).unwrap();
        let refused = Guard::public(false).resolver().resolve(name).await;
        assert!(refused.is_err());
        let name: reqwest::dns::Name = "localhost".parse().map_err(|_| ()).unwrap();
        assert!(Guard::public(true).resolver().resolve(name).await.is_ok());
    }
}
