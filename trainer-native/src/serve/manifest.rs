//! The parts of `spin.toml` the embedded host honours: HTTP routes, and per component its
//! `.wasm` source, environment and mounted files.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, bail};
use serde::Deserialize;

/// A parsed `spin.toml` (manifest version 2).
#[derive(Debug, Deserialize)]
pub struct SpinManifest {
    /// Must be 2.
    pub spin_manifest_version: u32,
    /// Triggers; only `http` is served.
    #[serde(default)]
    pub trigger: Triggers,
    /// Components by id.
    #[serde(default)]
    pub component: BTreeMap<String, ComponentSpec>,
    /// Application variables (`[variables]`): defaults for `{{ name }}` templates.
    #[serde(default)]
    pub variables: BTreeMap<String, Variable>,
}

/// One application variable.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Variable {
    /// Its value unless the environment gives one (`SPIN_VARIABLE_<NAME>`). (`secret` and
    /// `required` are Spin's to enforce; the host never prints a value.)
    pub default: Option<String>,
}

/// `[[trigger.http]]` entries.
#[derive(Debug, Default, Deserialize)]
pub struct Triggers {
    /// HTTP routes.
    #[serde(default)]
    pub http: Vec<HttpTrigger>,
}

/// One route.
#[derive(Debug, Clone, Deserialize)]
pub struct HttpTrigger {
    /// `/exact` or `/prefix/...`.
    pub route: String,
    /// The component that serves it.
    pub component: String,
}

/// `[component.<id>]`.
#[derive(Debug, Clone, Deserialize)]
pub struct ComponentSpec {
    /// Path of the `.wasm`, relative to the manifest.
    pub source: String,
    /// Environment variables.
    #[serde(default)]
    pub environment: BTreeMap<String, String>,
    /// Mounted files: `{ source, destination }`.
    #[serde(default)]
    pub files: Vec<FileMount>,
    /// Application variables the component may read (`[component.<id>.variables]`). The host
    /// gives the API token only to components that declare `api_token`, and checks the bearer
    /// token of their requests itself before reading a body.
    #[serde(default)]
    pub variables: BTreeMap<String, String>,
    /// The origins its outbound HTTP may reach (`scheme://host[:port]`, templates allowed).
    #[serde(default)]
    pub allowed_outbound_hosts: Vec<String>,
}

impl ComponentSpec {
    /// Whether the component's routes need the bearer token (it declares `api_token`).
    pub fn authenticated(&self) -> bool {
        self.variables.contains_key("api_token")
    }
}

/// A directory mounted into the component.
#[derive(Debug, Clone, Deserialize)]
pub struct FileMount {
    /// Host path, relative to the manifest.
    pub source: String,
    /// Guest path.
    pub destination: String,
}

impl SpinManifest {
    /// Reads and checks `path`.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let m: Self = toml::from_str(&text)
            .with_context(|| format!("{} is not a Spin manifest", path.display()))?;
        if m.spin_manifest_version != 2 {
            bail!(
                "{}: spin_manifest_version {} (only 2 is supported)",
                path.display(),
                m.spin_manifest_version
            );
        }
        for t in &m.trigger.http {
            if !m.component.contains_key(&t.component) {
                bail!("route {} names unknown component {}", t.route, t.component);
            }
            if !t.route.starts_with('/') {
                bail!("route {:?} must start with /", t.route);
            }
        }
        Ok(m)
    }
}

/// Routes in Spin's matching order: exact routes first, then wildcards, longest prefix first.
#[derive(Debug, Clone)]
pub struct Router {
    exact: BTreeMap<String, String>,
    prefixes: Vec<(String, String)>,
}

impl Router {
    /// From the manifest's HTTP triggers.
    pub fn new(triggers: &[HttpTrigger]) -> Self {
        let mut exact = BTreeMap::new();
        let mut prefixes = Vec::new();
        for t in triggers {
            match t.route.strip_suffix("/...") {
                Some(prefix) => prefixes.push((prefix.to_owned(), t.component.clone())),
                None => {
                    exact.insert(t.route.clone(), t.component.clone());
                }
            }
        }
        prefixes.sort_by_key(|p| std::cmp::Reverse(p.0.len()));
        Self { exact, prefixes }
    }

    /// The component serving `path`.
    pub fn route(&self, path: &str) -> Option<&str> {
        if let Some(c) = self.exact.get(path) {
            return Some(c);
        }
        self.prefixes
            .iter()
            .find(|(p, _)| {
                path == p
                    || path
                        .strip_prefix(p.as_str())
                        .is_some_and(|rest| rest.starts_with('/'))
                    || p.is_empty()
            })
            .map(|(_, c)| c.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_project_manifest_parses_and_routes() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../spin.toml");
        let m = SpinManifest::load(&path).unwrap();
        let r = Router::new(&m.trigger.http);
        assert_eq!(r.route("/health"), Some("status"));
        assert_eq!(r.route("/models"), Some("models"));
        assert_eq!(r.route("/models/iris/versions/v1"), Some("models"));
        assert_eq!(r.route("/modelsx"), None);
        assert_eq!(r.route("/nope"), None);
    }
}
