//! Registry commands: models, versions, show, promote, verify, publish.

use std::path::Path;

use anyhow::{Context, bail};
use bytes::Bytes;
use registry::manifest::{Artifact, SCHEMA_VERSION};
use registry::render::{RegistryEntry, crowdmind_meta};
use registry::{Alias, ArtifactCheck, Manifest, ModelName, Version, VersionChoice};
use serde_json::{Value, json};

use crate::cli::{Global, ShowFormat};
use crate::output::{CheckFailed, print_json, print_table};
use crate::registry_opts::{reader, writer};

pub async fn models(g: &Global) -> anyhow::Result<()> {
    let reg = reader(g)?;
    let mut rows = Vec::new();
    let mut out = Vec::new();
    for name in reg.models().await? {
        let index = reg.index(&name).await?;
        let aliases: Vec<String> = index
            .aliases
            .iter()
            .map(|(a, v)| format!("{a}={v}"))
            .collect();
        rows.push(vec![
            name.to_string(),
            index.versions.len().to_string(),
            aliases.join(" "),
        ]);
        out.push(
            json!({ "name": name, "versions": index.versions.len(), "aliases": index.aliases }),
        );
    }
    if g.json {
        print_json(&out)
    } else {
        print_table(&["MODEL", "VERSIONS", "ALIASES"], &rows);
        Ok(())
    }
}

pub async fn versions(g: &Global, name: &str) -> anyhow::Result<()> {
    let name = ModelName::new(name)?;
    let index = reader(g)?.index(&name).await?;
    if g.json {
        return print_json(&index);
    }
    let rows: Vec<Vec<String>> = index
        .versions
        .iter()
        .map(|e| {
            let aliases: Vec<String> = index
                .aliases
                .iter()
                .filter(|(_, v)| *v == &e.version)
                .map(|(a, _)| a.to_string())
                .collect();
            vec![
                e.version.to_string(),
                e.published_at
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                aliases.join(","),
                e.manifest.to_string(),
            ]
        })
        .collect();
    print_table(&["VERSION", "PUBLISHED", "ALIASES", "MANIFEST"], &rows);
    Ok(())
}

pub async fn show(
    g: &Global,
    name: &str,
    reference: &str,
    format: ShowFormat,
) -> anyhow::Result<()> {
    let name = ModelName::new(name)?;
    let manifest = reader(g)?
        .resolve(&name, reference)
        .await
        .with_context(|| format!("resolving {name} {reference}"))?;
    match format {
        ShowFormat::Manifest => print_json(&manifest),
        ShowFormat::RegistryEntry => print_json(&RegistryEntry::from(&manifest)),
        ShowFormat::Meta => print_json(&crowdmind_meta(&manifest)),
    }
}

pub async fn promote(g: &Global, name: &str, version: &str, alias: &str) -> anyhow::Result<()> {
    let (name, version, alias) = (
        ModelName::new(name)?,
        Version::new(version)?,
        Alias::new(alias)?,
    );
    let previous = writer(g)
        .await?
        .promote(&name, &alias, &version)
        .await
        .with_context(|| format!("promoting {name} {version} to {alias}"))?;
    if g.json {
        return print_json(&json!({
            "name": name, "alias": alias, "version": version, "previous": previous
        }));
    }
    match previous {
        Some(p) if p != version => println!("{name}: {alias} {p} -> {version}"),
        Some(_) => println!("{name}: {alias} already at {version}"),
        None => println!("{name}: {alias} -> {version}"),
    }
    Ok(())
}

pub async fn gc(
    g: &Global,
    dry_run: bool,
    keep_last: Option<usize>,
    grace: std::time::Duration,
) -> anyhow::Result<()> {
    anyhow::ensure!(
        keep_last != Some(0),
        "--keep-last 0 would retire every version that no alias points at; give 1 or more"
    );
    let reg = if dry_run {
        reader(g)?
    } else {
        writer(g).await?
    };
    let opts = registry::gc::GcOptions {
        keep_last,
        grace,
        dry_run,
    };
    let started = std::time::Instant::now();
    let report = reg
        .collect_garbage(&opts)
        .await
        .context("collecting garbage")?;
    let seconds = started.elapsed().as_secs_f64();
    if g.json {
        let mut value = serde_json::to_value(&report)?;
        value["seconds"] = json!(seconds);
        return print_json(&value);
    }
    let verb = if dry_run { "would free" } else { "freed" };
    let total = report.total();
    println!(
        "scanned {} objects in {seconds:.2} s; {verb} {} objects, {} bytes",
        report.scanned, total.objects, total.bytes
    );
    for (kind, freed) in &report.freed {
        println!(
            "  {kind:<10} {:>8} objects {:>12} bytes",
            freed.objects, freed.bytes
        );
    }
    for retired in &report.retired {
        println!("  retired {retired}");
    }
    if report.spared > 0 {
        println!(
            "  spared {} objects referenced while collecting",
            report.spared
        );
    }
    Ok(())
}

pub async fn verify(g: &Global, name: &str, reference: &str) -> anyhow::Result<()> {
    let name = ModelName::new(name)?;
    let reg = reader(g)?;
    let version = reg.resolve(&name, reference).await?.version;
    let report = reg
        .verify(&name, &version)
        .await
        .with_context(|| format!("verifying {name} {version}"))?;
    let describe = |c: &ArtifactCheck| match c {
        ArtifactCheck::Ok => "ok".to_owned(),
        ArtifactCheck::Missing => "MISSING".to_owned(),
        ArtifactCheck::Corrupt { reason } => format!("CORRUPT: {reason}"),
    };
    if g.json {
        let artifacts: Vec<Value> = report
            .artifacts
            .iter()
            .map(|(role, digest, check)| json!({"role": role, "digest": digest, "result": describe(check)}))
            .collect();
        print_json(
            &json!({"name": name, "version": version, "ok": report.is_ok(), "artifacts": artifacts}),
        )?;
    } else {
        let rows: Vec<Vec<String>> = report
            .artifacts
            .iter()
            .map(|(role, digest, check)| vec![role.clone(), digest.to_string(), describe(check)])
            .collect();
        print_table(&["ROLE", "DIGEST", "RESULT"], &rows);
    }
    if !report.is_ok() {
        return Err(CheckFailed(format!("{name} {version} failed verification")).into());
    }
    if !g.json {
        println!(
            "{name} {version}: all {} artifacts verified",
            report.artifacts.len()
        );
    }
    Ok(())
}

pub async fn publish(
    g: &Global,
    manifest_path: &Path,
    artifacts: &[String],
    version: Option<&str>,
) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(manifest_path)
        .with_context(|| format!("reading manifest {}", manifest_path.display()))?;
    let mut value: Value = serde_json::from_str(&text)
        .with_context(|| format!("{} is not valid JSON", manifest_path.display()))?;
    let Some(object) = value.as_object_mut() else {
        bail!(
            "{}: a manifest must be a JSON object",
            manifest_path.display()
        );
    };
    let mut described = Vec::new();
    let mut blobs = Vec::new();
    for spec in artifacts {
        let (role, path) = spec
            .split_once('=')
            .with_context(|| format!("--artifact {spec:?}: expected ROLE=PATH"))?;
        let path = Path::new(path);
        let bytes =
            std::fs::read(path).with_context(|| format!("reading artifact {}", path.display()))?;
        let file_name = path
            .file_name()
            .and_then(|n| n.to_str())
            .with_context(|| format!("{}: not a file name", path.display()))?;
        described.push(Artifact::describe(
            role,
            file_name,
            media_type(path),
            &bytes,
        ));
        blobs.push(Bytes::from(bytes));
    }
    object.insert("artifacts".into(), serde_json::to_value(&described)?);
    object
        .entry("schema_version")
        .or_insert(json!(SCHEMA_VERSION));
    // Replaced by the registry's numbering (or --version) on publish.
    object.entry("version").or_insert(json!("v0"));
    object
        .entry("created_at")
        .or_insert(json!(chrono::Utc::now()));
    let manifest: Manifest = serde_json::from_value(value)
        .with_context(|| format!("{} is not a valid manifest", manifest_path.display()))?;
    let choice = match version {
        Some(v) => VersionChoice::Exact(Version::new(v)?),
        None => VersionChoice::Next,
    };
    let name = manifest.name.clone();
    let published = writer(g)
        .await?
        .publish(manifest, &blobs, choice)
        .await
        .with_context(|| format!("publishing {name}"))?;
    let v = &published.manifest.version;
    if g.json {
        return print_json(&json!({
            "name": name, "version": v, "manifest_digest": published.manifest_digest,
            "created": published.created, "artifacts": published.manifest.artifacts,
        }));
    }
    if published.created {
        println!("published {name} {v} ({})", published.manifest_digest);
    } else {
        println!("{name} {v} was already published with this manifest");
    }
    Ok(())
}

fn media_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()) {
        Some("onnx") => "application/onnx",
        Some("tflite") => "application/vnd.tflite",
        Some("json") => "application/json",
        Some("csv") => "text/csv",
        _ => "application/octet-stream",
    }
}

pub async fn download(g: &Global, name: &str, reference: &str, out: &Path) -> anyhow::Result<()> {
    let name = ModelName::new(name)?;
    let reg = reader(g)?;
    let manifest = reg.resolve(&name, reference).await?;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let mut written = Vec::new();
    for artifact in &manifest.artifacts {
        // The bytes are checked against their digest by `blob`; the name is checked here, since a
        // manifest read back from a store is only as trustworthy as whoever could write there.
        anyhow::ensure!(
            registry::manifest::is_plain_file_name(&artifact.file_name),
            "{name} {}: artifact {} has the file name {:?}, which is not a plain file name; not writing it",
            manifest.version,
            artifact.role,
            artifact.file_name
        );
        let bytes = reg.blob(&artifact.digest).await?;
        let path = out.join(&artifact.file_name);
        std::fs::write(&path, &bytes).with_context(|| format!("writing {}", path.display()))?;
        written.push(path);
    }
    let renderings = [
        ("manifest.json", serde_json::to_vec_pretty(&manifest)?),
        (
            "meta.json",
            serde_json::to_vec_pretty(&crowdmind_meta(&manifest))?,
        ),
        (
            "registry-entry.json",
            serde_json::to_vec_pretty(&RegistryEntry::from(&manifest))?,
        ),
    ];
    for (file, bytes) in renderings {
        let path = out.join(file);
        std::fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))?;
        written.push(path);
    }
    if g.json {
        return print_json(&json!({ "name": name, "version": manifest.version, "files": written }));
    }
    for path in &written {
        println!("{}", path.display());
    }
    Ok(())
}

pub async fn validate(
    g: &Global,
    manifest_path: &Path,
    artifacts: &[String],
) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(manifest_path)
        .with_context(|| format!("reading manifest {}", manifest_path.display()))?;
    let manifest: Manifest = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a valid manifest", manifest_path.display()))?;
    let mut files = Vec::new();
    for spec in artifacts {
        let (role, path) = spec
            .split_once('=')
            .with_context(|| format!("--artifact {spec:?}: expected ROLE=PATH"))?;
        let bytes = std::fs::read(path).with_context(|| format!("reading artifact {path}"))?;
        files.push((role.to_owned(), bytes));
    }
    let path = crate::validate::component::locate()
        .context("the validator component is not built: run scripts/build-functions (or set EXPOSR_COMPONENTS_DIR)")?;
    let reports = tokio::task::spawn_blocking(move || {
        crate::validate::component::WasmValidator::load(&path)?.validate_each(&manifest, &files)
    })
    .await??;
    let ok = reports.iter().all(|v| v.report.ok);
    if g.json {
        print_json(&json!({ "ok": ok, "artifacts": reports }))?;
    } else {
        let rows: Vec<Vec<String>> = reports
            .iter()
            .map(|v| {
                let r = &v.report;
                vec![
                    v.role.clone(),
                    if r.ok { "ok".into() } else { "REFUSED".into() },
                    format!("{}/{}", r.golden_argmax_agree, r.golden_checked),
                    format!("{:.1e}", r.golden_max_abs_diff),
                    r.problems.join("; "),
                ]
            })
            .collect();
        print_table(&["ROLE", "RESULT", "GOLDEN", "MAX DIFF", "PROBLEMS"], &rows);
    }
    if !ok {
        return Err(CheckFailed("the validator refused an artifact".into()).into());
    }
    Ok(())
}
