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
                                .unwrap_or_else(|_| refusal(&Refusal::new(ErrorCode::Internal, "the request failed")));
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

/// One request: its route, its credential, its body, the vault's answer.
async fn route(
    vault: Arc<KeyVault>,
    limiter: Arc<Semaphore>,
    request: Request<Incoming>,
) -> Response<Full<Bytes>> {
    // No credential: refused before anything is read.
    let Some(credential) = bearer(&request) else {
        return refusal(&Refusal::unauthorized());
    };
    let method = request.method().clone();
    let uri_path = request.uri().path().to_string();
    let account = query_account(request.uri().query());
    match (method, uri_path.as_str()) {
        (Method::GET, path::SERVER_KEY) => {
            let account = account.unwrap_or_default();
            work(limiter, vault, move |v| {
                v.server_key_answer(&credential, &account)
            })
            .await
        }
        (Method::GET, path::STATUS) => {
            let account = account.unwrap_or_default();
            work(limiter, vault, move |v| v.status(&credential, &account)).await
        }
        (Method::POST, path::REGISTER_START) => {
            with_body(request, limiter, vault, move |v, body| {
                v.register_start(&credential, &body)
            })
            .await
        }
        (Method::POST, path::REGISTER_FINISH) => {
            with_body(request, limiter, vault, move |v, body| {
                v.register_finish(&credential, &body)
            })
            .await
        }
        (Method::POST, path::LOGIN_START) => {
            with_body(request, limiter, vault, move |v, body| {
                v.login_start(&credential, &body)
            })
            .await
        }
        (Method::POST, path::LOGIN_FINISH) => {
            with_body(request, limiter, vault, move |v, body| {
                v.login_finish(&credential, &body)
            })
            .await
        }
        (Method::DELETE, path::RECORD) => {
            with_body(request, limiter, vault, move |v, body| {
                v.delete(&credential, &body)
            })
            .await
        }
        (method, other) => refusal(&Refusal::bad_request(format!(
            "no such request: {method} {other} (this vault speaks protocol version 1)"
        ))),
    }
}

/// Reads the JSON body, then does the work.
async fn with_body<B, T>(
    request: Request<Incoming>,
    limiter: Arc<Semaphore>,
    vault: Arc<KeyVault>,
    f: impl FnOnce(&KeyVault, B) -> Result<T, Refusal> + Send + 'static,
) -> Response<Full<Bytes>>
where
    B: DeserializeOwned + Send + 'static,
    T: Serialize + Send + 'static,
{
    let read = tokio::time::timeout(
        BODY_READ_TIMEOUT,
        Limited::new(request.into_body(), MAX_BODY).collect(),
    );
    let bytes = match read.await {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(err)) => {
            return refusal(&Refusal::bad_request(format!(
                "cannot read the body: {err}"
            )));
        }
        Err(_) => {
            return refusal(&Refusal::bad_request(format!(
                "the body did not arrive within {} s",
                BODY_READ_TIMEOUT.as_secs()
            )));
        }
    };
    let body: B = match serde_json::from_slice(&bytes) {
        Ok(body) => body,
        Err(err) => return refusal(&Refusal::bad_request(format!("malformed request: {err}"))),
    };
    work(limiter, vault, move |v| f(v, body)).await
}

/// Runs `f` on a blocking thread once a permit is free, and answers its outcome.
async fn work<T>(
    limiter: Arc<Semaphore>,
    vault: Arc<KeyVault>,
    f: impl FnOnce(&KeyVault) -> Result<T, Refusal> + Send + 'static,
) -> Response<Full<Bytes>>
where
    T: Serialize + Send + 'static,
{
    let Ok(_permit) = limiter.acquire_owned().await else {
        return refusal(&Refusal::new(ErrorCode::Busy, "the vault is stopping"));
    };
    match tokio::task::spawn_blocking(move || f(&vault)).await {
        Ok(Ok(answer)) => json(StatusCode::OK, &answer),
        Ok(Err(refused)) => refusal(&refused),
        Err(_) => refusal(&Refusal::new(ErrorCode::Internal, "the request failed")),
    }
}

/// The bearer credential, if there is one.
fn bearer(request: &Request<Incoming>) -> Option<Zeroizing<String>> {
    let value = request.headers().get(AUTHORIZATION)?.to_str().ok()?;
    let token = value.strip_prefix("Bearer ")?.trim();
    (!token.is_empty()).then(|| Zeroizing::new(token.to_string()))
}

/// `account=NAME` from a query string (account names need no percent-decoding).
fn query_account(query: Option<&str>) -> Option<String> {
    query?
        .split('&')
        .find_map(|pair| pair.strip_prefix("account="))
        .map(str::to_string)
}

fn refusal(refused: &Refusal) -> Response<Full<Bytes>> {
    let status = StatusCode::from_u16(refused.code.http_status())
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    json(status, &refused.to_answer())
}

fn json(status: StatusCode, body: &impl Serialize) -> Response<Full<Bytes>> {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let mut response = Response::new(Full::new(Bytes::from(bytes)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}
