//! The running functions against their OpenAPI document (`openapi.yaml`), with schemathesis.

use std::path::Path;
use std::process::Command;

use crate::common::*;

/// schemathesis (a property-based API tester) against the running functions: every documented
/// route, generated inputs both valid and invalid; no 5xx, and every response (status, content
/// type, headers, body) matches `openapi.yaml`.
#[test]
fn the_running_api_matches_its_openapi_document() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let tool = root.join(".venv/bin/schemathesis");
    if !tool.exists() {
        assert!(
            std::env::var("EXPOSR_REQUIRE_PYTHON").is_err(),
            "no .venv with schemathesis: run scripts/setup"
        );
        eprintln!("skipped: no .venv with schemathesis (run scripts/setup)");
        return;
    }
    // The document itself first: schemathesis accepts documents that break the OpenAPI schema
    // (a comma in a flow-style description once turned into stray keys).
    let spec = Command::new(root.join(".venv/bin/python"))
        .args([
            "-c",
            "import sys, yaml; from openapi_spec_validator import validate; \
             validate(yaml.safe_load(open(sys.argv[1])))",
        ])
        .arg(root.join("openapi.yaml"))
        .output()
        .unwrap();
    assert!(
        spec.status.success(),
        "openapi.yaml is not a valid OpenAPI document:\n{}",
        String::from_utf8_lossy(&spec.stderr)
    );
    let Some(server) = start() else { return };
    let out = Command::new(&tool)
        .arg("run")
        .arg(root.join("openapi.yaml"))
        .args(["--url", &server.base])
        .args(["--header", &format!("Authorization: Bearer {TOKEN}")])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,\
             response_headers_conformance,response_schema_conformance",
        ])
        .args(["--max-examples", "20", "--seed", "7", "--workers", "1"])
        .args(["--generation-database", "none", "--no-color"])
        .env("SCHEMATHESIS_HOOKS", "")
        .current_dir(server.dir.path())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "schemathesis found problems:\n{text}");
    assert!(
        text.contains("passed"),
        "schemathesis ran no test case:\n{text}"
    );
}
