//! The control server: HTTP/1.1 on a Unix socket, one route per action (see `api` for the
//! routes and the exact behaviour of requests, errors and streams).
//!
//! [`bind`] makes the socket file; [`serve`] answers on it until its `shutdown` future
//! completes, then stops accepting and gives the requests in flight a few seconds to finish.
//!
//! The routes are an axum `Router` (`routes`), served here by hyper's HTTP/1.1 connection
//! loop rather than `axum::serve`, which has no header-read timeout, no bound on connections
//! and no end to the grace period.

mod answer;
mod auth;
mod ndjson;
mod routes;
mod socket;
#[cfg(test)]
mod tests;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;

use super::Handler;
pub use socket::{bind, passed_by_systemd};

/// How long requests in flight may take to finish once shutdown has begun.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// A client has this long to send its request headers; an idle connection is closed after it.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// At most this many client connections are served at once; further clients wait in the
/// socket's backlog until one ends. Each costs a file descriptor and a task, and without a
/// bound a client that opens connections in a loop would exhaust the daemon's descriptors
/// (and so its backups' too) within the header-read timeout.
const MAX_CONNECTIONS: usize = 64;

/// The bounds the server keeps (tests shorten them), and whether its socket file is its own.
#[derive(Debug, Clone, Copy)]
struct Limits {
    /// How long requests in flight may take to finish once shutdown has begun.
    grace: Duration,
    /// Client connections served at once.
    connections: usize,
    /// The socket file outlives the server (systemd's, under socket activation).
    keep_socket_file: bool,
}

impl Limits {
    const DAEMON: Limits = Limits {
        grace: SHUTDOWN_GRACE,
        connections: MAX_CONNECTIONS,
        keep_socket_file: false,
    };
}

/// Who is on the other end of a connection, as the kernel says (`SO_PEERCRED`): the request
/// log names them. Any of them may call every route: the socket's mode says who may connect.
#[derive(Debug, Clone, Copy)]
pub(super) struct Peer {
    pub(super) uid: u32,
    pub(super) pid: Option<i32>,
}

/// Serves the control API on `listener` until `shutdown` completes.
///
/// Each client connection is served by a task of its own. When `shutdown` completes, the
/// listener is closed (new clients are refused), idle connections are closed, and requests in
/// flight get [`SHUTDOWN_GRACE`] to finish before their connections are dropped; a streamed
/// operation cut off this way keeps running until the runtime stops, but its client sees the
/// stream end without a final line. Finally the socket file is removed if it is still the
/// one `listener` was bound to.
pub async fn serve<H: Handler>(
    listener: UnixListener,
    handler: Arc<H>,
    shutdown: impl Future<Output = ()>,
) {
    serve_with(listener, handler, shutdown, Limits::DAEMON).await;
}

/// [`serve`] on the socket systemd passed ([`passed_by_systemd`]): its file is systemd's,
/// which goes on listening for the next start, so it is left in place.
pub async fn serve_passed<H: Handler>(
    listener: UnixListener,
    handler: Arc<H>,
    shutdown: impl Future<Output = ()>,
) {
    let limits = Limits {
        keep_socket_file: true,
        ..Limits::DAEMON
    };
    serve_with(listener, handler, shutdown, limits).await;
}

async fn serve_with<H: Handler>(
    listener: UnixListener,
    handler: Arc<H>,
    shutdown: impl Future<Output = ()>,
    limits: Limits,
) {
    let grace = limits.grace;
    let router = routes::router(handler);
    let slots = Arc::new(Semaphore::new(limits.connections));
    let socket_file = socket::SocketFile::of(&listener).filter(|_| !limits.keep_socket_file);
    // Connections watch this to learn that shutdown has begun.
    let (stopping, stop) = watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            (accepted, slot) = accept(&listener, &slots) => match accepted {
                Ok((stream, _)) => {
                    let connection = serve_connection(stream, router.clone(), stop.clone());
                    connections.spawn(async move {
                        connection.await;
                        drop(slot);
                    });
                }
                Err(e) => {
                    // Typically out of file descriptors: wait for some to be released
                    // rather than spin.
                    tracing::warn!("cannot accept a control connection: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(finished) = connections.join_next() => log_panic(finished),
        }
    }
    drop(listener);
    let _ = stopping.send(true);
    let drained = tokio::time::timeout(grace, async {
        while let Some(finished) = connections.join_next().await {
            log_panic(finished);
        }
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            connections = connections.len(),
            "control requests still running after {grace:?}; closing their connections",
        );
        connections.shutdown().await;
    }
    if let Some(socket_file) = socket_file {
        socket_file.remove();
    }
    tracing::debug!("control server stopped");
}

/// Waits for a free connection slot, then for a client.
async fn accept(
    listener: &UnixListener,
    slots: &Arc<Semaphore>,
) -> (
    std::io::Result<(UnixStream, tokio::net::unix::SocketAddr)>,
    OwnedSemaphorePermit,
) {
    // Never closed: the semaphore is ours alone.
    let slot = Arc::clone(slots)
        .acquire_owned()
        .await
        .expect("the semaphore is open");
    (listener.accept().await, slot)
}

/// Serves the router on one connection, each request knowing its [`Peer`].
async fn serve_connection(stream: UnixStream, router: Router, mut stop: watch::Receiver<bool>) {
    let peer = match stream.peer_cred() {
        Ok(credentials) => Peer {
            uid: credentials.uid(),
            pid: credentials.pid(),
        },
        Err(e) => {
            tracing::warn!("cannot read a control client's credentials; closing: {e}");
            return;
        }
    };
    let service = TowerToHyperService::new(router.layer(axum::Extension(peer)));
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    let stopping = async {
        // An error means the server is gone: stop too.
        let _ = stop.wait_for(|stop| *stop).await;
    };
    let served = tokio::select! {
        served = connection.as_mut() => served,
        () = stopping => {
            // Finishes the response in flight, if any, then closes.
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(e) = served {
        // Malformed requests land here after hyper has answered them with a bare 400.
        tracing::debug!("control connection ended: {e}");
    }
}

fn log_panic(finished: Result<(), tokio::task::JoinError>) {
    if let Err(e) = finished
        && e.is_panic()
    {
        tracing::error!("a control connection task panicked: {e}");
    }
}
