//! What every route shares: reading and checking the JSON body, running the handler call in a
//! task of its own, and the protocol's answers (JSON wiped after sending, progress streams,
//! Prometheus text, and [`ApiError`]s as JSON).

use std::error::Error as _;
use std::future::Future;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::header::{ALLOW, CONTENT_TYPE};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt, LengthLimitError};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::task::JoinError;
use zeroize::{Zeroize as _, Zeroizing};

use super::ndjson::NdjsonBody;
use crate::control::ApiError;
use crate::control::api::{ErrorResponse, MAX_REQUEST_BYTES, Route};

const JSON: &str = "application/json";
const NDJSON: &str = "application/x-ndjson";
/// Prometheus' text exposition format.
const PROMETHEUS: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A request body must have arrived this long after its headers. A deadline for the whole
/// body, not per read: a client sending one byte at a time would reset a per-read timeout
/// forever and hold its connection (and a connection slot) as long as it liked.
pub(super) const BODY_READ_TIMEOUT: Duration = Duration::from_secs(10);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        // An `ErrorResponse` is plain strings: it always encodes.
        let bytes = serde_json::to_vec(&ErrorResponse { error: self.body }).unwrap_or_default();
        (status, [(CONTENT_TYPE, JSON)], bytes).into_response()
    }
}

/// Runs a handler call in a task of its own, so that it is finished even if the client
/// goes away (hyper drops the request's future then) and a panic in it is a 500.
pub(super) async fn finish<T: Send + 'static>(
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

/// Reads and parses the request body, empty meaning `{}`. The limit layer has refused a body
/// declared larger than [`MAX_REQUEST_BYTES`] and cuts one that turns out larger.
pub(super) async fn read_json<T: DeserializeOwned>(
    route: Route,
    request: Request,
) -> Result<T, ApiError> {
    let body = tokio::time::timeout(BODY_READ_TIMEOUT, read_wiped(route, request.into_body()))
        .await
        .map_err(|_| {
            ApiError::new(
                408,
                "timeout",
                format!(
                    "the request body of {route} did not arrive within {BODY_READ_TIMEOUT:?} \
                     of its headers"
                ),
            )
        })??;
    let body: &[u8] = if body.trim_ascii().is_empty() {
        b"{}"
    } else {
        &body
    };
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("invalid request body for {route}: {e}")))
}

/// Reads a body into one buffer, allocated once and wiped when dropped: a key route's body
/// holds a recovery key or a password. A frame hyper hands over whole is wiped too; one that
/// is a view into hyper's read buffer is not ours to wipe (DESIGN.md §11).
async fn read_wiped(route: Route, mut body: Body) -> Result<Zeroizing<Vec<u8>>, ApiError> {
    let mut read = Zeroizing::new(Vec::with_capacity(MAX_REQUEST_BYTES));
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            let mut cause = e.source();
            while let Some(error) = cause {
                if error.is::<LengthLimitError>() {
                    return too_large(route);
                }
                cause = error.source();
            }
            ApiError::bad_request(format!("cannot read the request body of {route}: {e}"))
        })?;
        if let Ok(data) = frame.into_data() {
            // The limit layer stops the body at the limit: this never reallocates.
            read.extend_from_slice(&data);
            if let Ok(mut own) = data.try_into_mut() {
                own.zeroize();
            }
        }
    }
    Ok(read)
}

pub(super) fn too_large(route: Route) -> ApiError {
    ApiError::new(
        413,
        "too-large",
        format!(
            "the request body of {route} is larger than the {MAX_REQUEST_BYTES} bytes the \
             control protocol allows"
        ),
    )
}

pub(super) fn not_found(path: &str) -> ApiError {
    let routes: Vec<String> = Route::ALL.iter().map(Route::to_string).collect();
    ApiError::new(
        404,
        "not-found",
        format!(
            "no route {path:?}; the control protocol v1 has: {}",
            routes.join(", ")
        ),
    )
    .with_hint("sealbackctl and sealbackd may be of different versions")
}

pub(super) fn method_not_allowed(route: Route, method: &Method) -> Response {
    let error = ApiError::new(
        405,
        "method-not-allowed",
        format!("{method} is not allowed on {}; use {route}", route.path()),
    );
    ([(ALLOW, route.method())], error).into_response()
}

/// A JSON response, in a buffer allocated once at its exact size and wiped when hyper is done
/// with it: `key generate`'s answer holds the recovery key.
pub(super) fn json<T: Serialize>(status: StatusCode, value: &T) -> Result<Response, ApiError> {
    let encode = |e: serde_json::Error| {
        ApiError::new(500, "internal", format!("cannot encode the response: {e}"))
    };
    let mut length = Counted(0);
    serde_json::to_writer(&mut length, value).map_err(encode)?;
    let mut bytes = Zeroizing::new(Vec::with_capacity(length.0));
    serde_json::to_writer(&mut *bytes, value).map_err(encode)?;
    let body = Body::from(Bytes::from_owner(Wiped(bytes)));
    Ok((status, [(CONTENT_TYPE, JSON)], body).into_response())
}

pub(super) fn ndjson(body: NdjsonBody) -> Response {
    ([(CONTENT_TYPE, NDJSON)], Body::new(body)).into_response()
}

pub(super) fn prometheus(text: String) -> Response {
    ([(CONTENT_TYPE, PROMETHEUS)], text).into_response()
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
