//! `object_store`'s HTTP client over the host's outbound HTTP (`wasi:http/outgoing-handler`), so
//! that components reach S3 through the registry's own code: the same layout, SigV4 signing and
//! compare-and-swap protocol as the native trainer.
//!
//! The call blocks on the host's pollable instead of awaiting it: nothing is held across an
//! await, so the future is `Send` as `object_store` requires, and a component instance serves one
//! request at a time, so blocking costs nothing.

use async_trait::async_trait;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use object_store::ClientOptions;
use object_store::client::{
    HttpClient, HttpConnector, HttpError, HttpErrorKind, HttpRequest, HttpResponse,
    HttpResponseBody, HttpService,
};
use wasi::http::types::{Fields, IncomingBody, Method, OutgoingBody, OutgoingRequest, Scheme};
use wasi::io::streams::StreamError;

/// Headers a WASI host sets itself and refuses from a guest.
const HOST_SET: [&str; 7] = [
    "host",
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "transfer-encoding",
    "upgrade",
];

/// Largest write a WASI output stream takes in one blocking call.
const WRITE_CHUNK: usize = 4096;

/// The host's outbound HTTP as an `object_store` client.
#[derive(Debug, Default, Clone, Copy)]
pub struct WasiHttp;

impl HttpConnector for WasiHttp {
    fn connect(&self, _options: &ClientOptions) -> object_store::Result<HttpClient> {
        Ok(HttpClient::new(WasiHttp))
    }
}

fn failed(kind: HttpErrorKind, message: String) -> HttpError {
    HttpError::new(kind, std::io::Error::other(message))
}

#[async_trait]
impl HttpService for WasiHttp {
    async fn call(&self, req: HttpRequest) -> Result<HttpResponse, HttpError> {
        let (parts, body) = req.into_parts();
        let body = body.collect().await?.to_bytes();
        let (status, headers, bytes) =
            send(&parts, &body).map_err(|e| failed(HttpErrorKind::Request, e))?;
        let mut response = http::Response::builder().status(status);
        for (name, value) in headers {
            response = response.header(name, value);
        }
        let body = HttpResponseBody::new(Full::new(bytes).map_err(|never| match never {}));
        response
            .body(body)
            .map_err(|e| failed(HttpErrorKind::Decode, e.to_string()))
    }
}

type Received = (u16, Vec<(String, Vec<u8>)>, Bytes);

fn send(parts: &http::request::Parts, body: &[u8]) -> Result<Received, String> {
    let entries: Vec<(String, Vec<u8>)> = parts
        .headers
        .iter()
        .filter(|(name, _)| !HOST_SET.contains(&name.as_str()))
        .map(|(name, value)| (name.as_str().to_owned(), value.as_bytes().to_vec()))
        .collect();
    let fields = Fields::from_list(&entries).map_err(|e| format!("request headers: {e:?}"))?;
    let request = OutgoingRequest::new(fields);
    let method = match parts.method.as_str() {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        "PUT" => Method::Put,
        "POST" => Method::Post,
        "DELETE" => Method::Delete,
        other => Method::Other(other.to_owned()),
    };
    let scheme = match parts.uri.scheme_str() {
        Some("https") => Scheme::Https,
        Some("http") => Scheme::Http,
        other => Scheme::Other(other.unwrap_or_default().to_owned()),
    };
    request
        .set_method(&method)
        .and_then(|()| request.set_scheme(Some(&scheme)))
        .and_then(|()| request.set_authority(parts.uri.authority().map(|a| a.as_str())))
        .and_then(|()| request.set_path_with_query(parts.uri.path_and_query().map(|p| p.as_str())))
        .map_err(|()| format!("the host refused the request line {}", parts.uri))?;
    let outgoing = request
        .body()
        .map_err(|()| "request body taken".to_owned())?;
    {
        let stream = outgoing
            .write()
            .map_err(|()| "request body stream taken".to_owned())?;
        for chunk in body.chunks(WRITE_CHUNK) {
            stream
                .blocking_write_and_flush(chunk)
                .map_err(|e| format!("writing the request body: {e:?}"))?;
        }
    }
    OutgoingBody::finish(outgoing, None).map_err(|e| format!("finishing the request: {e:?}"))?;
    let future = wasi::http::outgoing_handler::handle(request, None)
        .map_err(|e| format!("sending to {}: {e:?}", parts.uri.host().unwrap_or("?")))?;
    future.subscribe().block();
    let response = future
        .get()
        .ok_or("no response after the pollable was ready")?
        .map_err(|()| "response taken twice".to_owned())?
        .map_err(|e| format!("{} {}: {e:?}", parts.method, parts.uri.path()))?;
    let status = response.status();
    let headers = response.headers().entries();
    let incoming = response
        .consume()
        .map_err(|()| "response body taken".to_owned())?;
    let mut bytes = Vec::new();
    {
        let stream = incoming
            .stream()
            .map_err(|()| "response body stream taken".to_owned())?;
        loop {
            match stream.blocking_read(64 * 1024) {
                Ok(chunk) => bytes.extend_from_slice(&chunk),
                Err(StreamError::Closed) => break,
                Err(e) => return Err(format!("reading the response body: {e:?}")),
            }
        }
    }
    IncomingBody::finish(incoming);
    Ok((status, headers, Bytes::from(bytes)))
}
