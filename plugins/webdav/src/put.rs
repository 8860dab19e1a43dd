//! `put`: PUT (to a temporary name, then MOVE, or straight to the name; see
//! [`replace`](crate::replace)), creating missing collections on the way.

use bytes::Bytes;
use reqwest::header::HeaderValue;
use reqwest::{Method as HttpMethod, StatusCode};
use sealback_plugin_api::ProviderError;

use crate::answer::{self, Request};
use crate::options::AtomicReplace;
use crate::propfind::{self, Kind};
use crate::replace::{Method, Replace};
use crate::server::{MKCOL, MOVE, Server};
use crate::temp;

/// Stores `data` as `name`, which is in `collection` (`""` or ending with `/`) and whose last
/// segment is `basename`.
pub(crate) fn put(
    server: &Server,
    replace: &Replace,
    name: &str,
    (collection, basename): (&str, &str),
    data: &[u8],
) -> Result<(), ProviderError> {
    let body = Bytes::copy_from_slice(data);
    if replace.method(server)? == Method::Direct {
        return upload(server, name, collection, &body);
    }
    let temp_name = format!("{collection}{}", temp::temp_name(basename));
    upload(server, &temp_name, collection, &body)?;
    let moved = move_over(server, &temp_name, name);
    if moved.is_err() {
        // Best effort: the temporary object is invisible anyway, and the put's own error is
        // what the host needs.
        if let Ok(url) = server.url(&temp_name) {
            let _ = server.send(&HttpMethod::DELETE, &url, |b| b);
        }
    }
    match moved {
        Ok(()) => Ok(()),
        Err(MoveError::Refused(_)) if replace.move_was_refused() => {
            upload(server, name, collection, &body)
        }
        Err(MoveError::Refused(err)) => {
            debug_assert_eq!(replace.setting(), AtomicReplace::Move);
            Err(ProviderError::permanent(format!(
                "{}; with `atomic_replace` \"move\" no put can complete: set it to \"auto\" (or \
                 to \"direct\" if the server's PUT is atomic)",
                err.message()
            )))
        }
        Err(MoveError::Failed(err)) => Err(err),
    }
}

/// PUTs `body` as `path`, creating the collections above it if the server says one is
/// missing (409, as RFC 4918 says; rclone answers 404).
fn upload(
    server: &Server,
    path: &str,
    collection: &str,
    body: &Bytes,
) -> Result<(), ProviderError> {
    let url = server.url(path)?;
    let request = Request {
        method: &HttpMethod::PUT,
        url: &url,
    };
    let put = || server.send(&HttpMethod::PUT, &url, |b| b.body(body.clone()));
    let mut answer = put()?;
    if matches!(
        answer.response.status(),
        StatusCode::CONFLICT | StatusCode::NOT_FOUND
    ) {
        create_collection(server, collection)?;
        answer = put()?;
    }
    match answer.response.status() {
        StatusCode::OK | StatusCode::CREATED | StatusCode::NO_CONTENT => Ok(()),
        _ => Err(answer::unexpected(&request, &answer, server.credentials())),
    }
}

/// Creates the collection `path` (`""` for the base, else ending with `/`) and any missing
/// collections above it, down from the first that exists. The base collection is created if
/// missing, the collections above it are not: a wrong `url` should not grow a tree of
/// collections somewhere unexpected.
///
/// Several puts may create one collection at once. Whatever MKCOL answers (Apache: 405 when it
/// exists, 403 when another request made it a moment ago; rclone: 201 either way), a
/// collection that is there afterwards is success.
fn create_collection(server: &Server, path: &str) -> Result<(), ProviderError> {
    let url = server.url(path)?;
    let request = Request {
        method: &MKCOL,
        url: &url,
    };
    let mkcol = || server.send(&MKCOL, &url, |b| b);
    let mut answer = mkcol()?;
    if answer.response.status() == StatusCode::CONFLICT && !path.is_empty() {
        let trimmed = path.trim_end_matches('/');
        let parent = match trimmed.rfind('/') {
            Some(end) => &trimmed[..=end],
            None => "",
        };
        create_collection(server, parent)?;
        answer = mkcol()?;
    }
    let status = answer.response.status();
    if matches!(status, StatusCode::CREATED | StatusCode::OK) {
        return Ok(());
    }
    if let Ok(Kind::Collection) = propfind::kind(server, path.trim_end_matches('/')) {
        return Ok(());
    }
    if status == StatusCode::CONFLICT && path.is_empty() {
        return Err(ProviderError::permanent(format!(
            "{request}: {}: the collection above {} does not exist; create it, or fix `url`",
            answer::status_text(status),
            server.base()
        )));
    }
    Err(answer::unexpected(&request, &answer, server.credentials()))
}

/// Why a MOVE did not replace the object.
enum MoveError {
    /// The server does not do MOVE (405, 501).
    Refused(ProviderError),
    /// Anything else.
    Failed(ProviderError),
}

/// MOVEs the temporary object `from` over `to`.
///
/// A MOVE that answers 404 is tried once more: Apache deletes the destination before it
/// renames, so two MOVEs onto one name can make the second find its destination already
/// gone. If the source is really missing, the second try says so too.
fn move_over(server: &Server, from: &str, to: &str) -> Result<(), MoveError> {
    let url = server.url(from).map_err(MoveError::Failed)?;
    let destination = server.url(to).map_err(MoveError::Failed)?;
    let request = Request {
        method: &MOVE,
        url: &url,
    };
    let destination = HeaderValue::from_str(destination.as_str()).map_err(|err| {
        MoveError::Failed(ProviderError::permanent(format!(
            "{request}: the destination {destination} is not a header value: {err}"
        )))
    })?;
    let send = || {
        server
            .send(&MOVE, &url, |b| {
                b.header("Destination", destination.clone())
                    .header("Overwrite", "T")
            })
            .map_err(MoveError::Failed)
    };
    let mut answer = send()?;
    if answer.response.status() == StatusCode::NOT_FOUND {
        answer = send()?;
    }
    match answer.response.status() {
        StatusCode::CREATED | StatusCode::NO_CONTENT | StatusCode::OK => Ok(()),
        StatusCode::METHOD_NOT_ALLOWED | StatusCode::NOT_IMPLEMENTED => Err(MoveError::Refused(
            answer::unexpected(&request, &answer, server.credentials()),
        )),
        _ => Err(MoveError::Failed(answer::unexpected(
            &request,
            &answer,
            server.credentials(),
        ))),
    }
}
