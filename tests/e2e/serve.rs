//! The HTTP API as a client sees it: the real built `.wasm` components under the embedded
//! wasmtime host (`exposr-trainer serve`), over a registry the trainer just published to: a
//! directory, and the moto S3 server the components reach over outbound HTTP.

use crate::common::*;

#[tokio::test]
async fn routes_answer_as_documented() {
    let Some(server) = start() else { return };
    let http = reqwest::Client::new();
    let get = |path: &str| http.get(format!("{}{path}", server.base)).send();

    let health = get("/health").await.unwrap();
    assert_eq!(health.status(), 200);
    assert_eq!(
        health.json::<serde_json::Value>().await.unwrap()["status"],
        "ok"
    );

    let status: serde_json::Value = get("/status").await.unwrap().json().await.unwrap();
    for field in ["uptime", "last_scrape", "last_train", "dataset_counts"] {
        assert!(
            status.get(field).is_some(),
            "/status lacks {field}: {status}"
        );
    }
    assert!(status["last_train"].is_string(), "{status}");
    assert_eq!(status["dataset_counts"]["total"], 0);

    let models: serde_json::Value = get("/models").await.unwrap().json().await.unwrap();
    assert_eq!(models["models"][0]["name"], "iris");

    let latest = get("/models/latest").await.unwrap();
    assert_eq!(latest.status(), 200);
    let etag = latest.headers()["etag"].to_str().unwrap().to_owned();
    let body: serde_json::Value = latest.json().await.unwrap();
    for field in ["model_version", "timestamp", "metrics", "download_url"] {
        assert!(
            body.get(field).is_some(),
            "/models/latest lacks {field}: {body}"
        );
    }
    assert_eq!(body["model_version"], "v1");

    let again = http
        .get(format!("{}/models/latest", server.base))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(
        again.status(),
        304,
        "an unchanged model costs a poller nothing"
    );

    let download = get(body["download_url"].as_str().unwrap()).await.unwrap();
    assert_eq!(download.status(), 200);
    let bytes = download.bytes().await.unwrap();
    let digest = registry_digest(&bytes);
    assert_eq!(
        body["digest"], digest,
        "the download matches the manifest digest"
    );

    let manifest: serde_json::Value = get("/models/iris/production")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(manifest["version"], "v1");
    assert_eq!(get("/models/iris/versions/v1").await.unwrap().status(), 200);
    assert_eq!(
        get("/models/iris")
            .await
            .unwrap()
            .json::<serde_json::Value>()
            .await
            .unwrap()["aliases"]["production"],
        "v1"
    );
}

#[tokio::test]
async fn errors_are_json_with_stable_codes() {
    let Some(server) = start() else { return };
    let http = reqwest::Client::new();
    let cases = [
        ("/models/nope", 404, "model_not_found"),
        ("/models/iris/versions/v9", 404, "version_not_found"),
        ("/models/iris/staging", 404, "alias_not_found"),
        ("/models/Bad..Name", 400, "invalid_name"),
        (
            "/models/iris/versions/v1/artifacts/tflite",
            404,
            "artifact_not_found",
        ),
        ("/models/lookup?modality=gesture", 400, "bad_query"),
        ("/nothing-here", 404, "not_found"),
    ];
    for (path, status, code) in cases {
        let r = http
            .get(format!("{}{path}", server.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), status, "{path}");
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["code"], code, "{path}: {body}");
        assert!(body["message"].is_string());
    }
    let post = http
        .post(format!("{}/health", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(post.status(), 405);
    assert_eq!(post.headers()["allow"], "GET");
}

#[tokio::test]
async fn authenticated_routes_enqueue_jobs_and_report_metrics() {
    let Some(server) = start() else { return };
    let http = reqwest::Client::new();
    let url = |path: &str| format!("{}{path}", server.base);
    let auth = format!("Bearer {TOKEN}");

    for header in [None, Some("Bearer wrong"), Some(TOKEN)] {
        let mut r = http.get(url("/metrics"));
        if let Some(h) = header {
            r = r.header("authorization", h);
        }
        let r = r.send().await.unwrap();
        assert_eq!(r.status(), 401, "{header:?}");
        assert_eq!(r.headers()["www-authenticate"], "Bearer");
        let body = r.text().await.unwrap();
        assert!(
            body.contains("unauthorized") && !body.contains(TOKEN),
            "{body}"
        );
    }

    let metrics: serde_json::Value = http
        .get(url("/metrics"))
        .header("authorization", &auth)
        .send_json()
        .await;
    assert_eq!(metrics["models_trained"], 1);
    assert!(
        metrics["validation_accuracy"].as_f64().unwrap() > 0.9,
        "{metrics}"
    );
    for field in ["total_images", "last_training"] {
        assert!(metrics.get(field).is_some(), "{metrics}");
    }
    let text = http
        .get(url("/metrics"))
        .header("authorization", &auth)
        .header("accept", "text/plain")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.contains("exposr_models_trained 1"), "{text}");

    let queued = http
        .post(url("/train"))
        .header("authorization", &auth)
        .body(r#"{"model": "iris"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(queued.status(), 202);
    let queued: serde_json::Value = queued.json().await.unwrap();
    let id = queued["id"].as_str().unwrap().to_owned();
    let job: serde_json::Value = http
        .get(url(&format!("/jobs/{id}")))
        .header("authorization", &auth)
        .send_json()
        .await;
    assert_eq!(
        (job["state"].as_str(), job["kind"].as_str()),
        (Some("queued"), Some("train"))
    );
    assert_eq!(job["params"]["model"], "iris");
    assert!(
        server
            .dir
            .path()
            .join(format!("registry/jobs/{id}.json"))
            .is_file(),
        "the job is in the registry"
    );
    let scrape = http
        .post(url("/scrape"))
        .header("authorization", &auth)
        .send()
        .await
        .unwrap();
    assert_eq!(scrape.status(), 202, "an empty body is fine");

    let cases = [
        (http.post(url("/scrape")).body("{not json"), 400, "bad_json"),
        (
            http.post(url("/train")).body(vec![b' '; 70 * 1024]),
            413,
            "body_too_large",
        ),
        (http.get(url("/jobs/not-a-uuid")), 400, "invalid_job_id"),
        (
            http.get(url("/jobs/00000000-0000-4000-8000-000000000000")),
            404,
            "job_not_found",
        ),
        (http.get(url("/train")), 405, "method_not_allowed"),
    ];
    for (request, status, code) in cases {
        let r = request.header("authorization", &auth).send().await.unwrap();
        assert_eq!(r.status(), status, "{code}");
        assert_eq!(r.json::<serde_json::Value>().await.unwrap()["code"], code);
    }
}

#[tokio::test]
async fn classify_reproduces_the_golden_outputs() {
    let Some(server) = start() else { return };
    let http = reqwest::Client::new();
    let url = format!("{}/classify", server.base);
    let m = manifest(&http, &server.base).await;
    let labels: Vec<&str> = m["labels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    for (golden, int8) in [(&m["golden"], false), (&m["golden_int8"], true)] {
        let cases = golden.as_array().unwrap();
        assert!(!cases.is_empty(), "the manifest carries golden cases");
        let rows: Vec<&serde_json::Value> = cases.iter().map(|c| &c["input"]).collect();
        let r = http
            .post(&url)
            .json(&serde_json::json!({"model": "iris", "features": rows, "int8": int8}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["model_version"], "v1");
        assert!(body["timings"]["inference_ms"].as_f64().unwrap() >= 0.0);
        let predictions = body["predictions"].as_array().unwrap();
        assert_eq!(predictions.len(), cases.len());
        for (case, p) in cases.iter().zip(predictions) {
            let expected: Vec<f64> = case["expected"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap())
                .collect();
            let got: Vec<f64> = labels
                .iter()
                .map(|l| p["probabilities"][l].as_f64().unwrap())
                .collect();
            assert_eq!(p["label"], labels[argmax(&expected)], "int8={int8}");
            if !int8 {
                let diff = got
                    .iter()
                    .zip(&expected)
                    .fold(0.0f64, |d, (a, b)| d.max((a - b).abs()));
                assert!(diff <= 1e-5, "float outputs differ by {diff}");
            }
        }
    }

    // Named features, in any order, are put in the model's input order.
    let names = m["features"]["feature_names"].as_array().unwrap();
    let row = m["golden"][0]["input"].as_array().unwrap();
    let named: serde_json::Map<String, serde_json::Value> = names
        .iter()
        .rev()
        .zip(row.iter().rev())
        .map(|(n, v)| (n.as_str().unwrap().to_owned(), v.clone()))
        .collect();
    let by_name: serde_json::Value = http
        .post(&url)
        .json(&serde_json::json!({"model": "iris", "features": named}))
        .send_json()
        .await;
    let expected = m["golden"][0]["expected"].as_array().unwrap();
    let best = argmax(
        &expected
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect::<Vec<_>>(),
    );
    assert_eq!(by_name["label"], labels[best], "{by_name}");

    let cases = [
        (http.post(&url).body("{not json"), 400, "bad_request"),
        (
            http.post(&url)
                .json(&serde_json::json!({"model": "iris", "features": [1.0, 2.0]})),
            400,
            "bad_request",
        ),
        (
            http.post(&url)
                .json(&serde_json::json!({"model": "iris", "features": {"petal": 1.0}})),
            400,
            "bad_request",
        ),
        (
            http.post(&url)
                .json(&serde_json::json!({"model": "../etc", "features": [1.0]})),
            400,
            "invalid_name",
        ),
        (
            http.post(&url)
                .json(&serde_json::json!({"model": "nope", "features": [1.0]})),
            404,
            "model_not_found",
        ),
        (
            http.post(&url).body(vec![b' '; 300 * 1024]),
            413,
            "body_too_large",
        ),
        (http.get(&url), 405, "method_not_allowed"),
    ];
    for (request, status, code) in cases {
        let r = request.send().await.unwrap();
        assert_eq!(r.status(), status, "{code}");
        assert_eq!(r.json::<serde_json::Value>().await.unwrap()["code"], code);
    }
}

#[tokio::test]
async fn the_validator_refuses_tampered_and_truncated_artifacts() {
    let Some(server) = start() else { return };
    let http = reqwest::Client::new();
    let validate = || {
        http.post(format!("{}/models/iris/versions/v1/validate", server.base))
            .send()
    };
    let report: serde_json::Value = validate().await.unwrap().json().await.unwrap();
    assert_eq!(report["ok"], true, "{report}");
    let artifacts = report["artifacts"].as_array().unwrap();
    assert_eq!(artifacts.len(), 2, "float and int8: {report}");
    for a in artifacts {
        assert!(a["golden_checked"].as_u64().unwrap() > 0, "{a}");
        assert_eq!(a["signature_matches"], true);
    }

    let m = manifest(&http, &server.base).await;
    let blob = |role: &str| {
        let a = m["artifacts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["role"] == role)
            .unwrap();
        let hex = a["digest"]
            .as_str()
            .unwrap()
            .strip_prefix("sha256:")
            .unwrap();
        server
            .dir
            .path()
            .join(format!("registry/blobs/sha256/{hex}"))
    };
    // Truncate the float file; flip one byte of the int8 file.
    let float = blob("onnx");
    let bytes = std::fs::read(&float).unwrap();
    std::fs::write(&float, &bytes[..bytes.len() / 2]).unwrap();
    let int8 = blob("onnx_int8");
    let mut bytes = std::fs::read(&int8).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x55;
    std::fs::write(&int8, &bytes).unwrap();

    let report: serde_json::Value = validate().await.unwrap().json().await.unwrap();
    assert_eq!(report["ok"], false, "{report}");
    for a in report["artifacts"].as_array().unwrap() {
        assert_eq!(a["ok"], false, "{a}");
        assert_eq!(a["digest_matches"], false, "{a}");
        assert!(!a["problems"].as_array().unwrap().is_empty(), "{a}");
    }
    // Classification never runs a model whose bytes fail their digest.
    let r = http
        .post(format!("{}/classify", server.base))
        .json(&serde_json::json!({"model": "iris", "features": [5.1, 3.5, 1.4, 0.2]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 500);
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap()["code"],
        "artifact_corrupt"
    );
    let missing = http
        .post(format!("{}/models/iris/versions/v7/validate", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
}

/// The same components over an S3 registry: they sign and send their own requests through the
/// host's outbound HTTP (`wasi:http/outgoing-handler`), reading what the trainer published and
/// writing job objects create-only.
#[tokio::test]
async fn components_serve_an_s3_registry_over_outbound_http() {
    let Some(server) = start_on(Backend::S3) else {
        return;
    };
    let http = reqwest::Client::new();
    let url = |path: &str| format!("{}{path}", server.base);
    let latest: serde_json::Value = http.get(url("/models/latest?name=iris")).send_json().await;
    assert_eq!(latest["model_version"], "v1", "{latest}");
    let download = latest["download_url"].as_str().unwrap();
    assert!(
        download.starts_with(&std::env::var("EXPOSR_TEST_S3_ENDPOINT").unwrap())
            && download.contains("X-Amz-Signature="),
        "a presigned S3 URL: {download}"
    );
    // Straight from the store, no credentials: the presigned URL carries the authorization.
    let bytes = http
        .get(download)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(latest["digest"], registry_digest(&bytes));
    let report: serde_json::Value = http
        .post(url("/models/iris/versions/v1/validate"))
        .send_json()
        .await;
    assert_eq!(report["ok"], true, "{report}");
    let classified: serde_json::Value = http
        .post(url("/classify"))
        .json(&serde_json::json!({"model": "iris", "features": [5.1, 3.5, 1.4, 0.2]}))
        .send_json()
        .await;
    assert_eq!(classified["label"], "setosa", "{classified}");
    let status: serde_json::Value = http.get(url("/status")).send_json().await;
    assert!(status["last_train"].is_string(), "{status}");
    let id = enqueue_train(&http, &server.base).await;
    let job: serde_json::Value = http
        .get(url(&format!("/jobs/{id}")))
        .header("authorization", format!("Bearer {TOKEN}"))
        .send_json()
        .await;
    assert_eq!(job["state"], "queued", "{job}");
}
