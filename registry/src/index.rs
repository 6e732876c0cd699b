//! The model index: the list of a model's published versions and its aliases. It is the only
//! mutable object of a model, and it changes only by compare-and-swap.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::names::{Alias, ModelName, Version};

/// `models/<name>/index.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelIndex {
    /// Index format version.
    pub schema_version: u32,
    /// The model.
    pub name: ModelName,
    /// Published versions, oldest first.
    pub versions: Vec<IndexEntry>,
    /// Aliases and the versions they point at.
    pub aliases: BTreeMap<Alias, Version>,
    /// Versions removed by retention (`gc --keep-last`): never published again, and their
    /// numbers never reused.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retired: Vec<Version>,
}

/// One published version, as the index lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexEntry {
    /// The version.
    pub version: Version,
    /// Digest of the manifest's bytes; every manifest read is checked against it.
    pub manifest: Digest,
    /// When the index entry was written.
    pub published_at: DateTime<Utc>,
    /// The manifest's tags, copied here so lookups by tag need no manifest reads.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

impl ModelIndex {
    /// An index with no versions.
    pub fn empty(name: ModelName) -> Self {
        Self {
            schema_version: 1,
            name,
            versions: Vec::new(),
            aliases: BTreeMap::new(),
            retired: Vec::new(),
        }
    }

    /// The entry of `version`, if published.
    pub fn entry(&self, version: &Version) -> Option<&IndexEntry> {
        self.versions.iter().find(|e| &e.version == version)
    }

    /// The version `alias` points at.
    pub fn alias(&self, alias: &Alias) -> Option<&Version> {
        self.aliases.get(alias)
    }

    /// True when retention removed `version`.
    pub fn is_retired(&self, version: &Version) -> bool {
        self.retired.contains(version)
    }

    /// The next registry-numbered version: one past the highest `v{n}` listed or retired.
    pub fn next_number(&self) -> u64 {
        self.versions
            .iter()
            .map(|e| &e.version)
            .chain(&self.retired)
            .filter_map(Version::number)
            .max()
            .unwrap_or(0)
            + 1
    }

    /// Appends `entry` and points `latest` at it, unless `latest` is a higher numbered version:
    /// of two concurrent publishers the one with the lower number may write the index last, and
    /// `latest` must not go backwards.
    pub(crate) fn add(&mut self, entry: IndexEntry) {
        let latest = Alias::latest();
        let behind = match (
            self.aliases.get(&latest).and_then(Version::number),
            entry.version.number(),
        ) {
            (Some(current), Some(new)) => new < current,
            _ => false,
        };
        if !behind {
            self.aliases.insert(latest, entry.version.clone());
        }
        self.versions.push(entry);
    }

    /// Removes `versions` (never an aliased one) and records them as retired.
    pub(crate) fn retire(&mut self, versions: &[Version]) {
        self.versions.retain(|e| !versions.contains(&e.version));
        for v in versions {
            if !self.retired.contains(v) {
                self.retired.push(v.clone());
            }
        }
    }

    /// Canonical bytes, as stored.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = serde_json::to_vec_pretty(self).expect("an index always serializes");
        bytes.push(b'\n');
        bytes
    }
}
