//! The one HTTP client every request goes through: hyper over rustls (ring) for Google, or plain
//! HTTP for an emulator; and the few requests google-drive3 does not make for us (OAuth forms,
//! resumable upload sessions).

use std::sync::Arc;
use std::time::Duration;

use google_drive3::common::{self, Body};
use http_body_util::BodyExt;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use sealback_plugin_api::ProviderError;

use crate::failure::error_chain;

pub(crate) type Connector = HttpsConnector<HttpConnector>;
pub(crate) type Client = common::Client<Connector>;

/// A client that speaks https (the system's roots) and http (an emulator on loopback).
pub(crate) fn client(timeout: Duration) -> Result<Client, ProviderError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    // Other code in the process may build TLS configurations without naming a provider.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|err| ProviderError::permanent(format!("TLS setup: {err}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(timeout));
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Ok(hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build(connector))
}

/// `application/x-www-form-urlencoded` from pairs.
pub(crate) fn form(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", k, utf8_percent_encode(v, NON_ALPHANUMERIC)))
        .collect::<Vec<_>>()
        .join("&")
}

/// An answer read whole: status, headers and at most `limit` bytes of body.
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) headers: hyper::HeaderMap,
    pub(crate) body: Vec<u8>,
}

/// Sends `request` and reads its answer, bounded by `timeout` and `limit` bytes.
pub(crate) async fn send(
    client: &Client,
    what: &str,
    request: hyper::Request<Body>,
    timeout: Duration,
    limit: u64,
) -> Result<Answer, ProviderError> {
    let exchange = async {
        let response = client
            .request(request)
            .await
            .map_err(|err| ProviderError::transient(format!("{what}: {}", error_chain(&err))))?;
        let status = response.status().as_u16();
        let (parts, body) = response.into_parts();
        let body = read_limited(what, body, limit).await?;
        Ok(Answer {
            status,
            headers: parts.headers,
            body,
        })
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .unwrap_or_else(|_| {
            Err(ProviderError::transient(format!(
                "{what}: no answer within {} (the `timeout` option)",
                humantime::format_duration(timeout)
            )))
        })
}

/// Reads a body, refusing more than `limit` bytes (the storage is not trusted to stop).
pub(crate) async fn read_limited<B>(
    what: &str,
    mut body: B,
    limit: u64,
) -> Result<Vec<u8>, ProviderError>
where
    B: hyper::body::Body<Data = hyper::body::Bytes> + Unpin,
    B::Error: std::error::Error,
{
    let mut out = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|err| {
            ProviderError::transient(format!("{what}: reading the answer: {}", error_chain(&err)))
        })?;
        if let Ok(data) = frame.into_data() {
            if out.len() as u64 + data.len() as u64 > limit {
                return Err(ProviderError::permanent(format!(
                    "{what}: the answer is longer than {limit} bytes: refusing it"
                )));
            }
            out.extend_from_slice(&data);
        }
    }
    Ok(out)
}

/// A request body from bytes.
pub(crate) fn body(bytes: impl Into<hyper::body::Bytes>) -> Body {
    common::to_body(Some(bytes.into()))
}
