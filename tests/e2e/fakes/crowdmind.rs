//! A fake of the CrowdMind API on loopback: CSV and schema downloads and the model upload, each
//! behind a bearer token, recording what was uploaded.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Multipart, Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};

pub const TOKEN: &str = "s3cret-token";

/// Files the fake received: (dataset id, file name, bytes).
pub type Uploads = Arc<Mutex<Vec<(String, String, Vec<u8>)>>>;

#[derive(Clone, Default)]
pub struct Fake {
    pub uploads: Uploads,
}

fn authorized(headers: &HeaderMap) -> bool {
    headers.get("authorization").and_then(|v| v.to_str().ok()) == Some(&format!("Bearer {TOKEN}"))
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(crate::common::data(name)).unwrap()
}

async fn download(UrlPath(id): UrlPath<String>, headers: HeaderMap) -> Result<Vec<u8>, StatusCode> {
    if !authorized(&headers) {
        return Err(StatusCode::UNAUTHORIZED);
    }
    if id != "ds-iris" {
        return Err(StatusCode::NOT_FOUND);
    }
    Ok(fixture("iris.csv"))
}

async fn schema(UrlPath(id): UrlPath<String>, headers: HeaderMap) -> Result<Vec<u8>, StatusCode> {
    if !authorized(&headers) {
        return Err(StatusCode::UNAUTHORIZED);
    }
    if id != "ds-iris" {
        return Err(StatusCode::NOT_FOUND);
    }
    Ok(fixture("iris.schema.json"))
}

async fn upload(
    State(fake): State<Fake>,
    UrlPath(id): UrlPath<String>,
    headers: HeaderMap,
    mut form: Multipart,
) -> StatusCode {
    if !authorized(&headers) {
        return StatusCode::UNAUTHORIZED;
    }
    while let Ok(Some(field)) = form.next_field().await {
        let name = field.file_name().unwrap_or_default().to_owned();
        let bytes = field.bytes().await.unwrap();
        fake.uploads
            .lock()
            .unwrap()
            .push((id.clone(), name, bytes.to_vec()));
    }
    StatusCode::CREATED
}

pub async fn serve(fake: Fake) -> String {
    let app = Router::new()
        .route("/datasets/{id}/download", get(download))
        .route("/datasets/{id}/schema", get(schema))
        .route("/datasets/{id}/models", post(upload))
        .with_state(fake);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}
