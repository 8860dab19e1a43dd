//! The vault over HTTPS: rustls, HTTP/1.1 (hyper), JSON ([`sealback_vault_client::protocol::wire`]).
//!
//! [`run`] takes its listener and its shutdown as arguments. Each connection is a task; each
//! request is a task of its own, so that a client hanging up cannot cancel a request the
//! vault has begun (a login start always finishes writing its guess). The vault's work
//! (store, HSM, OPAQUE) runs on blocking threads, at most [`MAX_CONCURRENT_REQUESTS`] at a
//! time; the rest wait their turn.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sealback_vault_client::protocol::vault_proof;
use sealback_vault_client::protocol::wire::{ErrorCode, path};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use zeroize::Zeroizing;

use crate::keyvault::{KeyVault, Refusal};

/// Requests worked on at once; more wait.
pub const MAX_CONCURRENT_REQUESTS: usize = 256;
const MAX_BODY: usize = 64 * 1024;
/// Connections open at once; a connection past it is closed at once (and logged).
pub const MAX_CONNECTIONS: usize = 1024;
/// Files the vault keeps open beyond its connections: the store, the audit log, sessions
/// with the HSM, connections to etcd, with room to spare.
pub const SPARE_FILES: u64 = 256;
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a connection may take to send a request's headers, counted from when the vault
/// is ready to read them: also how long an idle keep-alive connection stays open.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a request's body may take to arrive.
const BODY_READ_TIMEOUT: Duration = Duration::from_secs(10);
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// The TLS configuration from PEM files: a certificate chain (leaf first) and its key.
pub fn tls_config(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> Result<Arc<ServerConfig>, String> {
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|err| format!("tls_cert {}: {err}", cert.display()))?;
    if certs.is_empty() {
        return Err(format!("tls_cert {}: no certificate in it", cert.display()));
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|err| format!("tls_key {}: {err}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|err| format!("TLS: {err}"))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|err| format!("TLS certificate and key: {err}"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Serves `vault` on `listener` until `shutdown` completes; then stops accepting, lets
/// connections finish their current request (for a few seconds at most) and returns.
pub async fn run(
    listener: TcpListener,
    tls: Arc<ServerConfig>,
    vault: Arc<KeyVault>,
    shutdown: impl Future<Output = ()>,
) {
    let acceptor = TlsAcceptor::from(tls);
    let limiter = Arc::new(Semaphore::new(MAX_CONCURRENT_REQUESTS));
    let open_connections = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let (stop, stopped) = watch::channel(false);
    let mut connections = JoinSet::new();
    let sweeper = tokio::spawn(sweep(vault.clone(), stopped.clone()));
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => {
                let (socket, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(err) => {
                        tracing::warn!("accept: {err}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                // Every connection holds a permit until it closes: a flood of connections
                // that never send anything costs at most MAX_CONNECTIONS sockets, each for
                // at most the TLS handshake's or the header read's timeout.
                let Ok(permit) = open_connections.clone().try_acquire_owned() else {
                    tracing::warn!("refused a connection from {peer}: {MAX_CONNECTIONS} connections are open");
                    continue;
                };
                let _ = socket.set_nodelay(true);
                let acceptor = acceptor.clone();
                let vault = vault.clone();
                let limiter = limiter.clone();
                let mut stopped = stopped.clone();
                connections.spawn(async move {
                    let _permit = permit;
                    let tls = match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(socket)).await {
                        Ok(Ok(tls)) => tls,
                        Ok(Err(err)) => {
                            tracing::debug!("TLS handshake with {peer}: {err}");
                            return;
                        }
                        Err(_) => return,
                    };
                    let service = service_fn(move |request| {
                        let vault = vault.clone();
                        let limiter = limiter.clone();
                        async move {
                            // A task of its own: it runs to its end even if the client goes.
                            let answer = tokio::spawn(route(vault, limiter, request))
                                .await
                                .unwrap_or_else(|_| refusal(&Refusal::new(ErrorCode::Internal, "the request failed"), None));
                            Ok::<_, std::convert::Infallible>(answer)
                        }
                    });
                    // Half-closed connections are served: a client that sends its request and
                    // shuts its side at once still has the request carried out.
                    let connection = http1::Builder::new()
                        .keep_alive(true)
                        .half_close(true)
                        .timer(TokioTimer::new())
                        .header_read_timeout(HEADER_READ_TIMEOUT)
                        .serve_connection(TokioIo::new(tls), service);
                    tokio::pin!(connection);
                    tokio::select! {
                        _ = connection.as_mut() => {}
                        _ = stopped.changed() => {
                            connection.as_mut().graceful_shutdown();
                            let _ = connection.await;
                        }
                    }
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    let _ = stop.send(true);
    drop(listener);
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        connections.abort_all();
    }
    let _ = sweeper.await;
}

/// Expires logins (and erases records whose last-chance login expired) every second.
async fn sweep(vault: Arc<KeyVault>, mut stopped: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(SWEEP_EVERY) => {
                let vault = vault.clone();
                let _ = tokio::task::spawn_blocking(move || vault.sweep()).await;
            }
            _ = stopped.changed() => return,
        }
    }
}

/// One request: its credential's presence, its body, then on a blocking thread its
/// credential opened, its route, the vault's answer and that answer's proof.
async fn route(
    vault: Arc<KeyVault>,
    limiter: Arc<Semaphore>,
    request: Request<Incoming>,
) -> Response<Full<Bytes>> {
    // No credential: refused before anything is read.
    let Some(authorization) = authorization(&request) else {
        return refusal(&Refusal::unauthorized(), None);
    };
    let method = request.method().clone();
    let target = request
        .uri()
        .path_and_query()
        .map(|target| target.as_str().to_string())
        .unwrap_or_default();
    let uri_path = request.uri().path().to_string();
    let account = query_account(request.uri().query()).unwrap_or_default();
    // The body is read before the credential is opened: a sealed credential is bound to it.
    let body = match read_body(request).await {
        Ok(body) => body,
        Err(refused) => return refusal(&refused, None),
    };
    let Ok(_permit) = limiter.acquire_owned().await else {
        return refusal(
            &Refusal::new(ErrorCode::Busy, "the vault is stopping"),
            None,
        );
    };
    let answer = tokio::task::spawn_blocking(move || {
        let digest = vault_proof::request_digest(method.as_str(), &target, &body);
        let (credential, keys) = match authorization {
            Authorization::Bearer(credential) => (credential, None),
            Authorization::Sealed(sealed) => match vault.proof_key().open(&sealed, &digest) {
                Some((credential, keys)) => (credential, Some(keys)),
                None => return refusal(&Refusal::unauthorized(), None),
            },
        };
        let proof = keys.as_ref().map(|keys| (keys, &digest));
        match answer(&vault, &credential, &method, &uri_path, &account, &body) {
            Ok(json) => respond(StatusCode::OK, json, proof),
            Err(refused) => refusal(&refused, proof),
        }
    });
    answer.await.unwrap_or_else(|_| {
        refusal(
            &Refusal::new(ErrorCode::Internal, "the request failed"),
            None,
        )
    })
}

/// The vault's answer to one request, as JSON.
fn answer(
    vault: &KeyVault,
    credential: &str,
    method: &Method,
    uri_path: &str,
    account: &str,
    body: &[u8],
) -> Result<Vec<u8>, Refusal> {
    match (method, uri_path) {
        (&Method::GET, path::SERVER_KEY) => to_json(vault.server_key_answer(credential, account)),
        (&Method::GET, path::STATUS) => to_json(vault.status(credential, account)),
        (&Method::POST, path::REGISTER_START) => {
            to_json(vault.register_start(credential, &parse(body)?))
        }
        (&Method::POST, path::REGISTER_FINISH) => {
            to_json(vault.register_finish(credential, &parse(body)?))
        }
        (&Method::POST, path::LOGIN_START) => to_json(vault.login_start(credential, &parse(body)?)),
        (&Method::POST, path::LOGIN_FINISH) => {
            to_json(vault.login_finish(credential, &parse(body)?))
        }
        (&Method::DELETE, path::RECORD) => to_json(vault.delete(credential, &parse(body)?)),
        (method, other) => Err(Refusal::bad_request(format!(
            "no such request: {method} {other} (this vault speaks protocol version 1)"
        ))),
    }
}

fn parse<B: DeserializeOwned>(body: &[u8]) -> Result<B, Refusal> {
    serde_json::from_slice(body)
        .map_err(|err| Refusal::bad_request(format!("malformed request: {err}")))
}

fn to_json<T: Serialize>(answer: Result<T, Refusal>) -> Result<Vec<u8>, Refusal> {
    answer.map(|answer| serde_json::to_vec(&answer).unwrap_or_default())
}

/// The request's body, at most [`MAX_BODY`] bytes within [`BODY_READ_TIMEOUT`].
async fn read_body(request: Request<Incoming>) -> Result<Bytes, Refusal> {
    let read = tokio::time::timeout(
        BODY_READ_TIMEOUT,
        Limited::new(request.into_body(), MAX_BODY).collect(),
    );
    match read.await {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(err)) => Err(Refusal::bad_request(format!("cannot read the body: {err}"))),
        Err(_) => Err(Refusal::bad_request(format!(
            "the body did not arrive within {} s",
            BODY_READ_TIMEOUT.as_secs()
        ))),
    }
}

/// How a request names its account's credential.
enum Authorization {
    /// `Bearer <credential>`: in the clear, for tools and tests; the client never sends it,
    /// and its answers carry no proof.
    Bearer(Zeroizing<String>),
    /// `Sealed <X>.<sealed credential>` ([`vault_proof`]).
    Sealed(String),
}

fn authorization(request: &Request<Incoming>) -> Option<Authorization> {
    let value = request.headers().get(AUTHORIZATION)?.to_str().ok()?;
    if let Some(sealed) = value.strip_prefix(vault_proof::SCHEME) {
        return Some(Authorization::Sealed(sealed.trim().to_string()));
    }
    let token = value.strip_prefix("Bearer ")?.trim();
    (!token.is_empty()).then(|| Authorization::Bearer(Zeroizing::new(token.to_string())))
}

/// `account=NAME` from a query string (account names need no percent-decoding).
fn query_account(query: Option<&str>) -> Option<String> {
    query?
        .split('&')
        .find_map(|pair| pair.strip_prefix("account="))
        .map(str::to_string)
}

/// A refusal; with the exchange's keys, its proof.
fn refusal(
    refused: &Refusal,
    proof: Option<(&vault_proof::Keys, &[u8; 32])>,
) -> Response<Full<Bytes>> {
    let status = StatusCode::from_u16(refused.code.http_status())
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let json = serde_json::to_vec(&refused.to_answer()).unwrap_or_default();
    respond(status, json, proof)
}

/// An answer; with the exchange's keys, the proof that binds it to its request.
fn respond(
    status: StatusCode,
    json: Vec<u8>,
    proof: Option<(&vault_proof::Keys, &[u8; 32])>,
) -> Response<Full<Bytes>> {
    let proof = proof.and_then(|(keys, digest)| {
        HeaderValue::from_str(&keys.proof(digest, status.as_u16(), &json)).ok()
    });
    let mut response = Response::new(Full::new(Bytes::from(json)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if let Some(proof) = proof {
        response
            .headers_mut()
            .insert(vault_proof::PROOF_HEADER, proof);
    }
    response
}
