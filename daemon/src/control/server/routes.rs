//! One request in, one response out: routing by the table in `api`, reading and checking the
//! JSON body, calling the [`Handler`] and turning its answer or error into HTTP.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use http_body_util::{BodyExt, Either, Full, LengthLimitError, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::{ALLOW, CONTENT_LENGTH, CONTENT_TYPE, HeaderValue};
use hyper::{Request, Response, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::task::JoinError;
use zeroize::{Zeroize as _, Zeroizing};

use super::ndjson::{self, NdjsonBody};
use crate::control::api::{Accepted, ErrorResponse, MAX_REQUEST_BYTES, Route};
use crate::control::{ApiError, Handler, ProgressSink};

pub(crate) type ResponseBody = Either<Full<Bytes>, NdjsonBody>;

const JSON: &str = "application/json";
const NDJSON: &str = "application/x-ndjson";
/// Prometheus' text exposition format.
const PROMETHEUS: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Answers one request. Never fails: every problem is an error response.
pub(super) async fn respond<H: Handler>(
    request: Request<Incoming>,
    handler: Arc<H>,
) -> Response<ResponseBody> {
    let started = Instant::now();
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let response = match Route::from_path(&path) {
        None => not_found(&path),
        Some(route) if method.as_str() != route.method() => method_not_allowed(route, &method),
        Some(route) => dispatch(route, request, handler)
            .await
            .unwrap_or_else(|error| error_response(&error)),
    };
    // Bodies are never logged: a key import carries the recovery key.
    tracing::debug!(
        %method,
        path,
        status = response.status().as_u16(),
        duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        "control request",
    );
    response
}

async fn dispatch<H: Handler>(
    route: Route,
    request: Request<Incoming>,
    handler: Arc<H>,
) -> Result<Response<ResponseBody>, ApiError> {
    match route {
        Route::Status => {
            let status = finish(route, async move { handler.status().await }).await?;
            json(StatusCode::OK, &status)
        }
        Route::Snapshots => {
            let snapshots = finish(route, async move { handler.snapshots().await }).await?;
            json(StatusCode::OK, &snapshots)
        }
        Route::Ls => {
            let body = read_json(route, request).await?;
            let listing = finish(route, async move { handler.ls(body).await }).await?;
            json(StatusCode::OK, &listing)
        }
        Route::Diff => {
            let body = read_json(route, request).await?;
            let diff = finish(route, async move { handler.diff(body).await }).await?;
            json(StatusCode::OK, &diff)
        }
        Route::Stats => {
            let stats = finish(route, async move { handler.stats().await }).await?;
            json(StatusCode::OK, &stats)
        }
        Route::Metrics => {
            let text = finish(route, async move { handler.metrics().await }).await?;
            Ok(with_body(
                StatusCode::OK,
                PROMETHEUS,
                Either::Left(Full::new(Bytes::from(text))),
            ))
        }
        Route::AcknowledgeMissing => {
            let body = read_json(route, request).await?;
            let done = finish(
                route,
                async move { handler.acknowledge_missing(body).await },
            )
            .await?;
            json(StatusCode::OK, &done)
        }
        Route::Backup => {
            let backup: crate::control::api::BackupRequest = read_json(route, request).await?;
            if backup.wait {
                let (sink, progress) = ProgressSink::new();
                let operation = async move {
                    handler.backup(backup, sink).await?.ok_or_else(|| {
                        ApiError::new(500, "internal", "the backup finished without a report")
                    })
                };
                Ok(stream(ndjson::narrate(route, operation, progress)))
            } else {
                let queued = async move { handler.backup(backup, ProgressSink::discard()).await };
                finish(route, queued).await?;
                let accepted = Accepted {
                    accepted: true,
                    message: "backup started; `sealbackctl status` shows when it has finished"
                        .to_owned(),
                };
                json(StatusCode::ACCEPTED, &accepted)
            }
        }
        Route::TargetAuth => {
            let request = read_json(route, request).await?;
            Ok(stream(super::auth::narrate(handler, request)))
        }
        Route::Restore => {
            let restore = read_json(route, request).await?;
            let (sink, progress) = ProgressSink::new();
            let operation = async move { handler.restore(restore, sink).await };
            Ok(stream(ndjson::narrate(route, operation, progress)))
        }
        Route::Verify => {
            let verify = read_json(route, request).await?;
            let (sink, progress) = ProgressSink::new();
            let operation = async move { handler.verify(verify, sink).await };
            Ok(stream(ndjson::narrate(route, operation, progress)))
        }
        Route::Repair => {
            let repair = read_json(route, request).await?;
            let (sink, progress) = ProgressSink::new();
            let operation = async move { handler.repair(repair, sink).await };
            Ok(stream(ndjson::narrate(route, operation, progress)))
        }
        Route::Prune => {
            let prune = read_json(route, request).await?;
            let (sink, progress) = ProgressSink::new();
            let operation = async move { handler.prune(prune, sink).await };
            Ok(stream(ndjson::narrate(route, operation, progress)))
        }
        Route::KeyGenerate => {
            let generate = read_json(route, request).await?;
            let generated =
                finish(route, async move { handler.key_generate(generate).await }).await?;
            json(StatusCode::OK, &generated)
        }
        Route::KeySetPassword => {
            let body = read_json(route, request).await?;
            let done = finish(route, async move { handler.key_set_password(body).await }).await?;
            json(StatusCode::OK, &done)
        }
        Route::KeyRecover => {
            let body = read_json(route, request).await?;
            let done = finish(route, async move { handler.key_recover(body).await }).await?;
            json(StatusCode::OK, &done)
        }
        Route::KeyChangePassword => {
            let body = read_json(route, request).await?;
            let done = finish(
                route,
                async move { handler.key_change_password(body).await },
            )
            .await?;
            json(StatusCode::OK, &done)
        }
        Route::KeyDisable => {
            let body = read_json(route, request).await?;
            let done = finish(route, async move { handler.key_disable(body).await }).await?;
            json(StatusCode::OK, &done)
        }
        Route::KeyImport => {
            let import = read_json(route, request).await?;
            let imported = finish(route, async move { handler.key_import(import).await }).await?;
            json(StatusCode::OK, &imported)
        }
        Route::KeyRotate => {
            let body = read_json(route, request).await?;
            let done = finish(route, async move { handler.key_rotate(body).await }).await?;
            json(StatusCode::OK, &done)
        }
    }
}

/// Runs a handler call in a task of its own, so that it is finished even if the client
/// goes away (hyper drops the request's future then) and a panic in it is a 500.
async fn finish<T: Send + 'static>(
    route: Route,
    call: impl Future<Output = Result<T, ApiError>> + Send + 'static,
) -> Result<T, ApiError> {
    match tokio::spawn(call).await {
        Ok(outcome) => outcome,
        Err(join_error) => Err(task_failed(route, &join_error)),
    }
}

pub(super) fn task_failed(route: Route, join_error: &JoinError) -> ApiError {
    tracing::error!(%route, "control handler failed: {join_error}");
    ApiError::new(
        500,
        "internal",
        format!("the daemon failed while handling {route}: {join_error}"),
    )
    .with_hint("this is a bug in sealbackd; its log has the details")
}

/// Reads and parses the request body: at most [`MAX_REQUEST_BYTES`], empty meaning `{}`.
async fn read_json<T: DeserializeOwned>(
    route: Route,
    request: Request<Incoming>,
) -> Result<T, ApiError> {
    let declared = request
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared.is_some_and(|length| length > MAX_REQUEST_BYTES as u64) {
        return Err(too_large(route));
    }
    let body = read_wiped(route, request.into_body()).await?;
    let body: &[u8] = if body.trim_ascii().is_empty() {
        b"{}"
    } else {
        &body
    };
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("invalid request body for {route}: {e}")))
}

/// Reads a body of at most [`MAX_REQUEST_BYTES`] into one buffer, allocated once and wiped
/// when dropped: a key route's body holds a recovery key or a password. A frame hyper hands
/// over whole is wiped too; one that is a view into hyper's read buffer is not ours to wipe
/// (DESIGN.md §11).
async fn read_wiped(route: Route, body: Incoming) -> Result<Zeroizing<Vec<u8>>, ApiError> {
    let mut read = Zeroizing::new(Vec::with_capacity(MAX_REQUEST_BYTES));
    let mut body = Limited::new(body, MAX_REQUEST_BYTES);
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            if e.downcast_ref::<LengthLimitError>().is_some() {
                too_large(route)
            } else {
                ApiError::bad_request(format!("cannot read the request body of {route}: {e}"))
            }
        })?;
        if let Ok(data) = frame.into_data() {
            read.extend_from_slice(&data);
            if let Ok(mut own) = data.try_into_mut() {
                own.zeroize();
            }
        }
    }
    Ok(read)
}

fn too_large(route: Route) -> ApiError {
    ApiError::new(
        413,
        "too-large",
        format!(
            "the request body of {route} is larger than the {MAX_REQUEST_BYTES} bytes the \
             control protocol allows"
        ),
    )
}

fn not_found(path: &str) -> Response<ResponseBody> {
    let routes: Vec<String> = Route::ALL.iter().map(Route::to_string).collect();
    let error = ApiError::new(
        404,
        "not-found",
        format!(
            "no route {path:?}; the control protocol v1 has: {}",
            routes.join(", ")
        ),
    )
    .with_hint("sealbackctl and sealbackd may be of different versions");
    error_response(&error)
}

fn method_not_allowed(route: Route, method: &hyper::Method) -> Response<ResponseBody> {
    let error = ApiError::new(
        405,
        "method-not-allowed",
        format!("{method} is not allowed on {}; use {route}", route.path()),
    );
    let mut response = error_response(&error);
    response
        .headers_mut()
        .insert(ALLOW, HeaderValue::from_static(route.method()));
    response
}

pub(super) fn error_response(error: &ApiError) -> Response<ResponseBody> {
    let status = StatusCode::from_u16(error.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = ErrorResponse {
        error: error.body.clone(),
    };
    // An `ErrorResponse` is plain strings: it always encodes.
    let bytes = serde_json::to_vec(&body).unwrap_or_default();
    with_body(status, JSON, Either::Left(Full::new(Bytes::from(bytes))))
}

/// A JSON response, in a buffer allocated once at its exact size and wiped when hyper is done
/// with it: `key generate`'s answer holds the recovery key.
fn json<T: Serialize>(status: StatusCode, value: &T) -> Result<Response<ResponseBody>, ApiError> {
    let encode = |e: serde_json::Error| {
        ApiError::new(500, "internal", format!("cannot encode the response: {e}"))
    };
    let mut length = Counted(0);
    serde_json::to_writer(&mut length, value).map_err(encode)?;
    let mut bytes = Zeroizing::new(Vec::with_capacity(length.0));
    serde_json::to_writer(&mut *bytes, value).map_err(encode)?;
    Ok(with_body(
        status,
        JSON,
        Either::Left(Full::new(Bytes::from_owner(Wiped(bytes)))),
    ))
}

/// Counts what is written to it.
struct Counted(usize);

impl std::io::Write for Counted {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Bytes wiped when the last reference to them is dropped.
struct Wiped(Zeroizing<Vec<u8>>);

impl AsRef<[u8]> for Wiped {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

fn stream(body: NdjsonBody) -> Response<ResponseBody> {
    with_body(StatusCode::OK, NDJSON, Either::Right(body))
}

fn with_body(
    status: StatusCode,
    content_type: &'static str,
    body: ResponseBody,
) -> Response<ResponseBody> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}
