//! The route table: one line per route of `api::Route`, each naming the [`Handler`] method it
//! calls and how it answers (JSON, or a progress stream). What the lines share (reading the
//! body, running the call in a task of its own, the error shapes) is in `answer`.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, Uri};
use axum::middleware::{Next, from_fn};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, MethodRouter, on};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tower_http::limit::RequestBodyLimitLayer;

use super::answer::{
    finish, json, method_not_allowed, ndjson, not_found, prometheus, read_json, too_large,
};
use super::{Peer, auth, ndjson};
use crate::control::api::{Accepted, BackupRequest, MAX_REQUEST_BYTES, Route};
use crate::control::{ApiError, Handler, ProgressSink};

/// The control API of `daemon` as one router, every answer (errors included) in the
/// protocol's shapes. In the lines, `d` is the daemon, `r` the request's body and `p` where
/// the operation reports its progress.
pub(super) fn router<H: Handler>(daemon: Arc<H>) -> Router {
    use Route::*;
    Routes::<H>(Router::new())
        .get(Status, |d| async move { d.status().await })
        .get(Snapshots, |d| async move { d.snapshots().await })
        .get(Stats, |d| async move { d.stats().await })
        .add(Metrics, |State(d): State<Arc<H>>| async move {
            let text = finish(Metrics, async move { d.metrics().await }).await?;
            Ok::<_, ApiError>(prometheus(text))
        })
        .post(Ls, |d, r| async move { d.ls(r).await })
        .post(Diff, |d, r| async move { d.diff(r).await })
        .post(AcknowledgeMissing, |d, r| async move {
            d.acknowledge_missing(r).await
        })
        .add(Backup, backup::<H>)
        .stream(Restore, |d, r, p| async move { d.restore(r, p).await })
        .stream(Verify, |d, r, p| async move { d.verify(r, p).await })
        .stream(Repair, |d, r, p| async move { d.repair(r, p).await })
        .stream(Prune, |d, r, p| async move { d.prune(r, p).await })
        .add(TargetAuth, |State(d), request: Request| async move {
            let request = read_json(TargetAuth, request).await?;
            Ok::<_, ApiError>(ndjson(auth::narrate(d, request)))
        })
        .post(KeyGenerate, |d, r| async move { d.key_generate(r).await })
        .post(KeyImport, |d, r| async move { d.key_import(r).await })
        .post(
            KeySetPassword,
            |d, r| async move { d.key_set_password(r).await },
        )
        .post(KeyRecover, |d, r| async move { d.key_recover(r).await })
        .post(KeyChangePassword, |d, r| async move {
            d.key_change_password(r).await
        })
        .post(KeyDisable, |d, r| async move { d.key_disable(r).await })
        .post(KeyRotate, |d, r| async move { d.key_rotate(r).await })
        .0
        .fallback(|uri: Uri| async move { not_found(uri.path()) })
        .layer(from_fn(log))
        .with_state(daemon)
}

/// Logs each request: who asked what, and how it was answered. Bodies are never logged: a key
/// import carries the recovery key.
async fn log(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let peer = request.extensions().get::<Peer>().copied();
    let response = next.run(request).await;
    tracing::debug!(
        %method,
        path,
        uid = peer.map(|peer| peer.uid),
        pid = peer.and_then(|peer| peer.pid),
        status = response.status().as_u16(),
        duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        "control request",
    );
    response
}

/// `POST /v1/backup`: a progress stream with `wait`, else 202 once the backup is queued.
async fn backup<H: Handler>(
    State(daemon): State<Arc<H>>,
    request: Request,
) -> Result<Response, ApiError> {
    let backup: BackupRequest = read_json(Route::Backup, request).await?;
    if backup.wait {
        let (sink, progress) = ProgressSink::new();
        let operation = async move {
            daemon.backup(backup, sink).await?.ok_or_else(|| {
                ApiError::new(500, "internal", "the backup finished without a report")
            })
        };
        return Ok(ndjson(ndjson::narrate(Route::Backup, operation, progress)));
    }
    let queued = async move { daemon.backup(backup, ProgressSink::discard()).await };
    finish(Route::Backup, queued).await?;
    let accepted = Accepted {
        accepted: true,
        message: "backup started; `sealbackctl status` shows when it has finished".to_owned(),
    };
    json(StatusCode::ACCEPTED, &accepted)
}

/// A [`Handler`] call as the routes run it: in a task of its own, its answer then encoded.
trait Call: Future<Output = Result<Self::Answer, ApiError>> + Send + 'static {
    type Answer: Serialize + Send + 'static;
}

impl<U, F> Call for F
where
    U: Serialize + Send + 'static,
    F: Future<Output = Result<U, ApiError>> + Send + 'static,
{
    type Answer = U;
}

/// The router being built, its handlers taking the daemon as their state.
struct Routes<H>(Router<Arc<H>>);

impl<H: Handler> Routes<H> {
    /// A `GET` route answering the call's result as JSON.
    fn get<F: Call>(self, route: Route, call: fn(Arc<H>) -> F) -> Self {
        self.add(route, move |State(daemon): State<Arc<H>>| async move {
            json(StatusCode::OK, &finish(route, call(daemon)).await?)
        })
    }

    /// A `POST` route calling with its JSON body and answering the result as JSON.
    fn post<T, F: Call>(self, route: Route, call: fn(Arc<H>, T) -> F) -> Self
    where
        T: DeserializeOwned + Send + 'static,
    {
        self.add(route, move |State(daemon), request: Request| async move {
            let body = read_json(route, request).await?;
            json(StatusCode::OK, &finish(route, call(daemon, body)).await?)
        })
    }

    /// A `POST` route whose long operation is narrated by a progress stream (`ndjson`).
    fn stream<T, F: Call>(self, route: Route, call: fn(Arc<H>, T, ProgressSink) -> F) -> Self
    where
        T: DeserializeOwned + Send + 'static,
    {
        self.add(route, move |State(daemon), request: Request| async move {
            let body = read_json(route, request).await?;
            let (sink, progress) = ProgressSink::new();
            let operation = call(daemon, body, sink);
            Ok::<_, ApiError>(ndjson(ndjson::narrate(route, operation, progress)))
        })
    }

    /// Serves `handler` at the route's path and method. Any other method is a JSON 405 naming
    /// the right one (`HEAD` too: axum would otherwise answer it from a `GET` route). A
    /// `POST` body is limited to [`MAX_REQUEST_BYTES`]: one declared larger is refused before
    /// the handler runs, one that turns out larger fails while it is read (`read_json`).
    fn add<X, T>(self, route: Route, handler: X) -> Self
    where
        X: axum::handler::Handler<T, Arc<H>>,
        T: 'static,
    {
        let refuse = move |method: Method| async move { method_not_allowed(route, &method) };
        let endpoint: MethodRouter<Arc<H>> = if route.method() == "GET" {
            on(MethodFilter::GET, handler).on(MethodFilter::HEAD, refuse)
        } else {
            on(MethodFilter::POST, handler).route_layer((
                from_fn(move |request: Request, next: Next| {
                    too_large_in_json(route, request, next)
                }),
                RequestBodyLimitLayer::new(MAX_REQUEST_BYTES),
            ))
        };
        Routes(self.0.route(route.path(), endpoint.fallback(refuse)))
    }
}

/// Gives the limit layer's refusal of a declared length (413, plain text) the protocol's
/// JSON error naming the route.
async fn too_large_in_json(route: Route, request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    if response.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return too_large(route).into_response();
    }
    response
}
