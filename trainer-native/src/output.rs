//! How the CLI talks: logs on stderr, results on stdout (tables, or JSON with `--json`), and one
//! place that turns an error into a message and an exit code.

use std::process::ExitCode;

use serde::Serialize;
use tracing_subscriber::EnvFilter;

use crate::cli::Global;

/// Exit code: verification found a missing or corrupt artifact.
pub const EXIT_VERIFY_FAILED: u8 = 3;
const EXIT_NOT_FOUND: u8 = 4;
const EXIT_REFUSED: u8 = 5;

/// A check that ran and failed; its details were already printed.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CheckFailed(pub String);

/// Logs go to stderr, at `--log-level` unless RUST_LOG says otherwise.
pub fn init_logging(global: &Global) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(global.log_level.to_ascii_lowercase()));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Prints `value` as pretty JSON on stdout.
pub fn print_json(value: &impl Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// Prints rows as an aligned table with a header.
pub fn print_table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", padded.join("  ").trim_end());
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

/// Prints the error chain (as JSON on stdout with `--json`) and picks the exit code.
pub fn report_error(err: &anyhow::Error, json: bool) -> ExitCode {
    let (code, kind) = classify(err);
    let reported = err
        .chain()
        .any(|c| c.downcast_ref::<CheckFailed>().is_some());
    if json && reported {
        // The check's JSON report, with `"ok": false`, is already on stdout: one document only.
        eprintln!("error: {err}");
    } else if json {
        let causes: Vec<String> = err.chain().skip(1).map(ToString::to_string).collect();
        let body = serde_json::json!({
            "error": { "code": kind, "message": err.to_string(), "causes": causes }
        });
        println!("{body:#}");
    } else {
        eprintln!("error: {err}");
        for cause in err.chain().skip(1) {
            eprintln!("  caused by: {cause}");
        }
    }
    ExitCode::from(code)
}

fn classify(err: &anyhow::Error) -> (u8, &'static str) {
    use registry::Error as E;
    for cause in err.chain() {
        if cause
            .downcast_ref::<crate::dataset::sessions::TooFewSamples>()
            .is_some()
        {
            return (1, "too_few_samples");
        }
        if cause
            .downcast_ref::<crate::dataset::DatasetError>()
            .is_some()
        {
            return (1, "invalid_dataset");
        }
        if cause.downcast_ref::<CheckFailed>().is_some() {
            return (EXIT_VERIFY_FAILED, "verification_failed");
        }
        if let Some(e) = cause.downcast_ref::<E>() {
            return match e {
                E::ModelNotFound { .. } => (EXIT_NOT_FOUND, "model_not_found"),
                E::VersionNotFound { .. } => (EXIT_NOT_FOUND, "version_not_found"),
                E::AliasNotFound { .. } => (EXIT_NOT_FOUND, "alias_not_found"),
                E::BlobNotFound { .. } => (EXIT_NOT_FOUND, "blob_not_found"),
                E::Conflict { .. } => (EXIT_REFUSED, "conflict"),
                E::VersionExists { .. } => (EXIT_REFUSED, "version_exists"),
                E::UnsafeStore { .. } => (EXIT_REFUSED, "unsafe_store"),
                E::DigestMismatch { .. } => (EXIT_VERIFY_FAILED, "digest_mismatch"),
                E::InvalidManifest(_) => (1, "invalid_manifest"),
                E::InvalidName(_) => (1, "invalid_name"),
                _ => (1, "registry_error"),
            };
        }
    }
    (1, "error")
}
