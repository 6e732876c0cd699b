//! Garbage collection and retention: what a publish, a scrape or a crash leaves unreferenced is
//! found and removed, beside live publishers and workers.
//!
//! A run lists every object first, then applies retention (`keep_last`: versions that are neither
//! aliased nor among the newest N leave their index and are recorded as retired, so their numbers
//! are never reused), then marks what is reachable: every listed version's manifest and blobs, the
//! blobs of every dataset snapshot, every sample a dataset's index lists, and the blobs of
//! manifests younger than the grace period that no index lists yet (publishes in flight). Jobs,
//! runs, history, schedules, cursors, uploads and anything it does not recognise are never
//! touched. Candidates are unreferenced objects older than the grace period (a retired version's
//! manifest at once). Just before deleting, it marks again, so a version published while it ran
//! keeps its blobs. An object written after the listing is not a candidate at all.
//!
//! A writer that finds an object already stored (a blob of an earlier version, an orphan manifest
//! it adopts) reuses an object that may be unreferenced, old and about to be deleted. No ordering
//! of "check, then delete" closes that race on S3 (there is no conditional delete), so both sides
//! announce themselves and then look for the other: a collection writes a lock
//! (`gc/locks/<id>.json`) before it lists, and reads the writers' intents
//! (`gc/intents/<id>.json`, the keys they reuse) after it marks, sparing those keys; a writer
//! writes its intent, then waits while any collection's lock is live, then checks that what it
//! reuses is still there (putting it back if not). Whichever comes second sees the first.
//!
//! What it relies on: a publish or a scrape finishes within the grace period of writing its first
//! object (24 h by default), a collection within [`GC_RUN_LIMIT`] (it stops deleting when its
//! lock expires), and clocks agree within [`CLOCK_ALLOWANCE`].

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::datasets::{Snapshot, SnapshotLayout};
use crate::digest::Digest;
use crate::error::Error;
use crate::layout::{self, Key};
use crate::manifest::Manifest;
use crate::names::{ModelName, Version};
use crate::registry::{Registry, parse};
use crate::samples::SampleIndex;
use crate::store::ObjectMeta;

/// A collection stops deleting once it has run this long; its lock expires then.
pub const GC_RUN_LIMIT: Duration = Duration::from_secs(300);
/// How far apart two machines' clocks may be for the lock and intent protocol to hold.
pub const CLOCK_ALLOWANCE: Duration = Duration::from_secs(120);

/// `gc/locks/<id>.json`: a collection is running.
#[derive(Debug, Serialize, Deserialize)]
struct GcLock {
    started_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
}

/// `gc/intents/<id>.json`: keys a writer reuses and is about to reference.
#[derive(Debug, Serialize, Deserialize)]
struct Intent {
    created_at: DateTime<Utc>,
    keys: Vec<String>,
}

fn after(t: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    chrono::Duration::from_std(d)
        .ok()
        .and_then(|d| t.checked_add_signed(d))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// How a collection runs.
#[derive(Debug, Clone)]
pub struct GcOptions {
    /// Keep only the newest N versions of each model (plus every aliased one); `None` keeps all.
    pub keep_last: Option<usize>,
    /// Unreferenced objects younger than this are left alone (writes in flight).
    pub grace: Duration,
    /// Report what would be freed; change nothing.
    pub dry_run: bool,
}

impl Default for GcOptions {
    fn default() -> Self {
        Self {
            keep_last: None,
            grace: Duration::from_secs(24 * 3600),
            dry_run: false,
        }
    }
}

/// Objects and bytes of one kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Freed {
    /// Objects.
    pub objects: u64,
    /// Their bytes.
    pub bytes: u64,
}

/// What a collection found (and, unless a dry run, removed).
#[derive(Debug, Clone, Default, Serialize)]
pub struct GcReport {
    /// Objects listed.
    pub scanned: u64,
    /// Versions retired by `keep_last`, as `model version`.
    pub retired: Vec<String>,
    /// What was (or would be) freed, by kind: `blobs`, `manifests`, `samples`, `probes`,
    /// `staging`.
    pub freed: BTreeMap<&'static str, Freed>,
    /// Candidates that the second mark found referenced after all (published meanwhile).
    pub spared: u64,
    /// True when nothing was changed.
    pub dry_run: bool,
    /// True when the run stopped deleting at [`GC_RUN_LIMIT`]; the next run goes on.
    pub incomplete: bool,
}

impl GcReport {
    /// Everything freed, all kinds together.
    pub fn total(&self) -> Freed {
        self.freed.values().fold(Freed::default(), |a, f| Freed {
            objects: a.objects + f.objects,
            bytes: a.bytes + f.bytes,
        })
    }
}

/// What the mark phase found reachable.
#[derive(Debug, Default)]
struct Reachable {
    blobs: BTreeSet<Digest>,
    keys: BTreeSet<Key>,
}

/// What kind of garbage a key could be, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Blob(Digest),
    Manifest,
    Sample,
    Probe,
}

fn kind_of(key: &Key) -> Option<Kind> {
    let k = key.as_str();
    if let Some(hex) = k.strip_prefix(layout::BLOBS) {
        return Digest::parse(&format!("sha256:{hex}")).ok().map(Kind::Blob);
    }
    if k.starts_with("_probe/") {
        return Some(Kind::Probe);
    }
    let parts: Vec<&str> = k.split('/').collect();
    match parts.as_slice() {
        ["models", _, "versions", file] if file.ends_with(".json") => Some(Kind::Manifest),
        ["datasets", _, "images" | "meta", ..] => Some(Kind::Sample),
        _ => None,
    }
}

fn label(kind: Kind) -> &'static str {
    match kind {
        Kind::Blob(_) => "blobs",
        Kind::Manifest => "manifests",
        Kind::Sample => "samples",
        Kind::Probe => "probes",
    }
}

impl Registry {
    /// Runs one collection. Safe beside publishers, scrapers and workers: see the module docs.
    pub async fn collect_garbage(&self, opts: &GcOptions) -> Result<GcReport, Error> {
        if !opts.dry_run {
            self.check_writable()?;
        }
        let now = self.now();
        let cutoff = chrono::Duration::from_std(opts.grace)
            .ok()
            .and_then(|grace| now.checked_sub_signed(grace))
            .unwrap_or(chrono::DateTime::<chrono::Utc>::MIN_UTC);
        let mut report = GcReport {
            dry_run: opts.dry_run,
            ..GcReport::default()
        };
        // Announce the run before listing: a writer that reuses an object after this waits for
        // it to end, or is seen in the intents read below.
        let lock = match opts.dry_run {
            true => None,
            false => {
                let key = layout::gc_lock(&self.new_id());
                let lock = GcLock {
                    started_at: now,
                    expires_at: after(now, GC_RUN_LIMIT),
                };
                let bytes = Bytes::from(serde_json::to_vec(&lock).expect("serializes"));
                self.create_or_adopt(&key, bytes).await?;
                Some((key, lock.expires_at))
            }
        };
        let result = self
            .collect(opts, cutoff, &mut report, lock.as_ref().map(|l| l.1))
            .await;
        if let Some((key, _)) = &lock
            && let Err(e) = self.delete_retrying(key).await
        {
            tracing::warn!("removing the collection's lock {key}: {e}");
        }
        result?;
        tracing::info!(
            scanned = report.scanned,
            objects = report.total().objects,
            bytes = report.total().bytes,
            dry_run = opts.dry_run,
            "garbage collection"
        );
        Ok(report)
    }

    async fn collect(
        &self,
        opts: &GcOptions,
        cutoff: DateTime<Utc>,
        report: &mut GcReport,
        expires: Option<DateTime<Utc>>,
    ) -> Result<(), Error> {
        let listing = self.retrying(|| self.store().list_meta("")).await?;
        report.scanned = listing.len() as u64;

        let mut retired: BTreeSet<Key> = BTreeSet::new();
        if let Some(n) = opts.keep_last {
            for model in self.models().await? {
                for version in self.retire(&model, n, opts.dry_run).await? {
                    report.retired.push(format!("{model} {version}"));
                    retired.insert(layout::manifest(&model, &version));
                }
            }
        }

        let young_manifests: Vec<&ObjectMeta> = listing
            .iter()
            .filter(|m| kind_of(&m.key) == Some(Kind::Manifest) && m.last_modified >= cutoff)
            .collect();
        let sample_indexes: Vec<Key> = listing
            .iter()
            .filter(|m| {
                let parts: Vec<&str> = m.key.as_str().split('/').collect();
                matches!(parts.as_slice(), ["datasets", _, "index.json"])
            })
            .map(|m| m.key.clone())
            .collect();
        let reachable = self
            .mark(&listing, &young_manifests, &retired, &sample_indexes)
            .await?;
        let candidates: Vec<(&ObjectMeta, Kind)> = listing
            .iter()
            .filter_map(|m| kind_of(&m.key).map(|k| (m, k)))
            .filter(|(m, kind)| {
                let old = m.last_modified < cutoff;
                match kind {
                    Kind::Blob(d) => old && !reachable.blobs.contains(d),
                    Kind::Manifest if retired.contains(&m.key) => true,
                    Kind::Manifest | Kind::Sample => old && !reachable.keys.contains(&m.key),
                    Kind::Probe => old,
                }
            })
            .collect();
        // Mark again: anything published or indexed since the first mark is spared, and so is
        // everything a writer announced it reuses.
        let (again, intended) = if candidates.is_empty() {
            (Reachable::default(), BTreeSet::new())
        } else {
            let again = self.mark_live(&retired, &sample_indexes).await?;
            (
                again,
                self.intended(&listing, cutoff, opts.dry_run, report)
                    .await?,
            )
        };
        for (meta, kind) in candidates {
            let spared = intended.contains(&meta.key)
                || match kind {
                    Kind::Blob(d) => again.blobs.contains(&d),
                    Kind::Manifest | Kind::Sample => again.keys.contains(&meta.key),
                    Kind::Probe => false,
                };
            if spared {
                report.spared += 1;
                continue;
            }
            if let Some(expires) = expires
                && self.now() >= expires
            {
                report.incomplete = true;
                break;
            }
            if !opts.dry_run {
                self.delete_retrying(&meta.key).await?;
            }
            let freed = report.freed.entry(label(kind)).or_default();
            freed.objects += 1;
            freed.bytes += meta.size;
        }
        let scratch = self.store().clean_scratch(cutoff, opts.dry_run).await?;
        if scratch.files > 0 {
            report.freed.insert(
                "staging",
                Freed {
                    objects: scratch.files,
                    bytes: scratch.bytes,
                },
            );
        }
        Ok(())
    }

    /// The keys of live intents (read now, after the lock and the marks). Intents older than
    /// the grace period are a crashed writer's: removed, and locks of crashed collections too.
    async fn intended(
        &self,
        listing: &[ObjectMeta],
        cutoff: DateTime<Utc>,
        dry_run: bool,
        report: &mut GcReport,
    ) -> Result<BTreeSet<Key>, Error> {
        let mut keys = BTreeSet::new();
        let intents = self
            .retrying(|| self.store().list(layout::GC_INTENTS))
            .await?;
        for key in intents {
            let Some(object) = self.get_retrying(&key).await? else {
                continue;
            };
            let Ok(intent) = parse::<Intent>(&key, &object.bytes) else {
                continue;
            };
            if intent.created_at < cutoff && listing.iter().any(|m| m.key == key) {
                if !dry_run {
                    self.delete_retrying(&key).await?;
                }
                report.freed.entry("intents").or_default().objects += 1;
                continue;
            }
            keys.extend(intent.keys.into_iter().map(Key::from_store));
        }
        let now = self.now();
        for key in self
            .retrying(|| self.store().list(layout::GC_LOCKS))
            .await?
        {
            let Some(object) = self.get_retrying(&key).await? else {
                continue;
            };
            if let Ok(lock) = parse::<GcLock>(&key, &object.bytes)
                && after(lock.expires_at, CLOCK_ALLOWANCE) < now
                && !dry_run
            {
                self.delete_retrying(&key).await?;
            }
        }
        Ok(keys)
    }

    /// Protects objects a writer found already stored and is about to reference (`reused`, with
    /// their bytes): announces them in an intent, waits while a collection that may not have
    /// seen it runs, then puts back any that a collection deleted meanwhile. Returns the intent,
    /// for [`Registry::release`] once the reference is written. Nothing to do, and no round
    /// trip, when nothing was reused.
    pub(crate) async fn protect_reused(
        &self,
        reused: Vec<(Key, Bytes)>,
    ) -> Result<Option<Key>, Error> {
        if reused.is_empty() {
            return Ok(None);
        }
        let key = layout::gc_intent(&self.new_id());
        let intent = Intent {
            created_at: self.now(),
            keys: reused.iter().map(|(k, _)| k.to_string()).collect(),
        };
        let bytes = Bytes::from(serde_json::to_vec(&intent).expect("serializes"));
        self.create_or_adopt(&key, bytes).await?;
        // A collection whose lock is there now may have read the intents before ours was
        // written: wait until those are gone (a crashed one's lock expires after GC_RUN_LIMIT).
        // A collection that locks after this read reads the intents after it, and sees ours.
        let running = self.live_collections().await?;
        let give_up = after(self.now(), GC_RUN_LIMIT + CLOCK_ALLOWANCE);
        let mut pause = Duration::from_millis(50);
        while !running.is_empty() && self.now() < give_up {
            let live = self.live_collections().await?;
            if !running.iter().any(|k| live.contains(k)) {
                break;
            }
            tracing::info!(
                "waiting for a garbage collection to finish before reusing stored objects"
            );
            self.clock_sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(5));
        }
        for (k, bytes) in &reused {
            if !self.retrying(|| self.store().exists(k)).await? {
                tracing::warn!(%k, "a collection removed an object being reused; putting it back");
                self.create_or_adopt(k, bytes.clone()).await?;
            }
        }
        Ok(Some(key))
    }

    /// Removes an intent once its references are written (or given up); a failure leaves it to
    /// expire.
    pub(crate) async fn release(&self, intent: Option<Key>) {
        if let Some(key) = intent
            && let Err(e) = self.delete_retrying(&key).await
        {
            tracing::warn!("removing the intent {key}: {e}");
        }
    }

    /// The locks of collections that have not expired (by this clock, with the allowance for
    /// skew).
    async fn live_collections(&self) -> Result<Vec<Key>, Error> {
        let now = self.now();
        let mut live = Vec::new();
        for key in self
            .retrying(|| self.store().list(layout::GC_LOCKS))
            .await?
        {
            if let Some(object) = self.get_retrying(&key).await?
                && let Ok(lock) = parse::<GcLock>(&key, &object.bytes)
                && after(lock.expires_at, CLOCK_ALLOWANCE) > now
            {
                live.push(key);
            }
        }
        Ok(live)
    }

    /// Retires the versions of `model` that are neither aliased nor among its newest `keep`.
    async fn retire(
        &self,
        model: &ModelName,
        keep: usize,
        dry_run: bool,
    ) -> Result<Vec<Version>, Error> {
        let pick = |index: &crate::ModelIndex| -> Vec<Version> {
            let aliased: BTreeSet<&Version> = index.aliases.values().collect();
            let newest = index.versions.len().saturating_sub(keep);
            index.versions[..newest]
                .iter()
                .map(|e| &e.version)
                .filter(|v| !aliased.contains(v))
                .cloned()
                .collect()
        };
        if dry_run {
            return Ok(self
                .index_at(model)
                .await?
                .map(|(index, _)| pick(&index))
                .unwrap_or_default());
        }
        let mut retired = Vec::new();
        self.update_index(model, None, |index| {
            retired = pick(index);
            if retired.is_empty() {
                return Ok(false);
            }
            index.retire(&retired);
            Ok(true)
        })
        .await?;
        Ok(retired)
    }

    /// Marks from the listing: indexes, their manifests, young unindexed manifests, snapshots
    /// and sample indexes.
    async fn mark(
        &self,
        listing: &[ObjectMeta],
        young_manifests: &[&ObjectMeta],
        retired: &BTreeSet<Key>,
        sample_indexes: &[Key],
    ) -> Result<Reachable, Error> {
        let mut reachable = self.mark_live(retired, sample_indexes).await?;
        for meta in young_manifests {
            if reachable.keys.contains(&meta.key) || retired.contains(&meta.key) {
                continue;
            }
            // A publish in flight: its blobs must stay, whatever their age.
            if let Some(object) = self.get_retrying(&meta.key).await?
                && let Ok(manifest) = parse::<Manifest>(&meta.key, &object.bytes)
            {
                reachable.keys.insert(meta.key.clone());
                reachable
                    .blobs
                    .extend(manifest.artifacts.iter().map(|a| a.digest));
            }
        }
        for meta in listing {
            let k = meta.key.as_str();
            if k.starts_with("datasets/") && k.contains("/snapshots/") && k.ends_with(".json") {
                let Some(object) = self.get_retrying(&meta.key).await? else {
                    continue;
                };
                let snapshot: Snapshot = parse(&meta.key, &object.bytes)?;
                if snapshot.layout == SnapshotLayout::Blobs {
                    reachable
                        .blobs
                        .extend(snapshot.entries.iter().map(|e| e.digest));
                }
            }
        }
        Ok(reachable)
    }

    /// Marks what the live indexes reach: every listed version's manifest and blobs, and every
    /// sample of the sample indexes (a dataset whose index appeared after the listing has no
    /// candidates: all its files are younger than the listing).
    async fn mark_live(
        &self,
        retired: &BTreeSet<Key>,
        sample_indexes: &[Key],
    ) -> Result<Reachable, Error> {
        let mut reachable = Reachable::default();
        for model in self.models().await? {
            let Some((index, _)) = self.index_at(&model).await? else {
                continue;
            };
            for entry in &index.versions {
                let key = layout::manifest(&model, &entry.version);
                if retired.contains(&key) {
                    continue;
                }
                let manifest = self.manifest_in(&index, &entry.version).await?;
                reachable.keys.insert(key);
                reachable
                    .blobs
                    .extend(manifest.artifacts.iter().map(|a| a.digest));
            }
        }
        for key in sample_indexes {
            let Some(dataset) = key
                .as_str()
                .strip_prefix("datasets/")
                .and_then(|rest| rest.strip_suffix("/index.json"))
            else {
                continue;
            };
            let Some(object) = self.get_retrying(key).await? else {
                continue;
            };
            let index: SampleIndex = parse(key, &object.bytes)?;
            for sample in &index.samples {
                for path in [sample.path.clone(), sample.meta_path()] {
                    reachable
                        .keys
                        .insert(Key::from_store(format!("datasets/{dataset}/{path}")));
                }
            }
        }
        Ok(reachable)
    }
}
