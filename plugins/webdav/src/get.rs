//! `get`: a GET whose answer is checked to be one whole version of the object.
//!
//! Neither server under test makes a GET atomic against a concurrent replacement of the same
//! name. Apache takes the length from a `stat` of the file and then opens it, so a file renamed
//! into place in between is sent cut to the old length; rclone takes the length from its
//! cached directory entry. A short answer is caught by the HTTP client (`Content-Length` not
//! reached); a new version cut to an old, shorter length is not. So when the answer carries an
//! `ETag` (both servers derive theirs from size and modification time), a HEAD after the GET
//! must show the same `ETag`: then nothing replaced the object between the GET's `stat` and
//! the HEAD, which encloses the GET's read. Otherwise the GET is made again, up to
//! [`REPLACED_ATTEMPTS`] times: a reader racing writers of the same name wins once they
//! pause, and under load they were seen to win three races in a row from it for over a
//! second (the conformance kit's four writers). This costs one HEAD per get, and only
//! matters when an object is replaced while it is read, which sealbackd does not do but the
//! contract allows.
//!
//! A MOVE over an object deletes it first (rclone, Apache), so a GET can also find nothing for
//! an instant while puts may use MOVE: a 404 is asked again after [`NOT_FOUND_RECHECKS`]
//! before it is reported.

use std::thread;
use std::time::Duration;

use reqwest::header::{ETAG, HeaderValue, LOCATION};
use reqwest::{Method as HttpMethod, StatusCode, Url};
use sealback_plugin_api::ProviderError;

use crate::answer::{self, Request};
use crate::propfind::{self, Kind};
use crate::replace::Replace;
use crate::server::{ATTEMPTS, Answer, Server, backoff};

/// The waits before asking again about an object the server said was missing, while puts
/// may be replacing objects with MOVE. rclone's gap between delete and rename was seen to
/// last up to about 80 ms under concurrent MOVEs.
const NOT_FOUND_RECHECKS: [Duration; 2] = [Duration::from_millis(50), Duration::from_millis(200)];
/// Tries of a GET that keeps finding the object replaced while it was read, the first
/// included; the waits between them double from 50 ms up to 800 ms (about 6 s in all).
const REPLACED_ATTEMPTS: u32 = 12;

fn replaced_backoff(attempt: u32) -> Duration {
    Duration::from_millis(50 << attempt.saturating_sub(1).min(4))
}

/// Reads the whole object `name`, whose last segment is `basename`.
pub(crate) fn get(
    server: &Server,
    replace: &Replace,
    name: &str,
    basename: &str,
) -> Result<Vec<u8>, ProviderError> {
    let url = server.url(name)?;
    let request = Request {
        method: &HttpMethod::GET,
        url: &url,
    };
    let mut attempt = 1;
    loop {
        let answer = fetch(server, replace, &url)?;
        let status = answer.response.status();
        if status == StatusCode::NOT_FOUND {
            return Err(ProviderError::not_found(format!(
                "{request}: no such object (404)"
            )));
        }
        if status != StatusCode::OK {
            return Err(not_ok(server, &request, name, basename, &answer));
        }
        let etag = answer.response.headers().get(ETAG).cloned();
        let (problem, limit, wait) = match read_body(answer) {
            Ok(data) => match etag {
                None => return Ok(data),
                Some(etag) if unchanged(server, &url, &etag)? => return Ok(data),
                Some(_) => (
                    ProviderError::transient(format!(
                        "{request}: the object was replaced while it was read ({attempt} \
                         times running)"
                    )),
                    REPLACED_ATTEMPTS,
                    replaced_backoff(attempt),
                ),
            },
            Err(err) if answer::is_retryable_failure(&err) => (
                answer::failure(&request, &err, attempt),
                ATTEMPTS,
                backoff(attempt),
            ),
            Err(err) => return Err(answer::failure(&request, &err, attempt)),
        };
        if attempt >= limit {
            return Err(problem);
        }
        thread::sleep(wait);
        attempt += 1;
    }
}

/// GET, with a 404 asked again while puts may MOVE.
fn fetch(server: &Server, replace: &Replace, url: &Url) -> Result<Answer, ProviderError> {
    let mut answer = server.send(&HttpMethod::GET, url, |b| b)?;
    for wait in NOT_FOUND_RECHECKS {
        if answer.response.status() != StatusCode::NOT_FOUND || !replace.may_move() {
            break;
        }
        thread::sleep(wait);
        answer = server.send(&HttpMethod::GET, url, |b| b)?;
    }
    Ok(answer)
}

/// The body of a 200 answer. hyper checks it against `Content-Length`, so an answer cut short
/// is an error, not a short object.
fn read_body(mut answer: Answer) -> Result<Vec<u8>, reqwest::Error> {
    let expected = answer.response.content_length().unwrap_or(0);
    // The length only sizes the first allocation; a lying header cannot make it huge.
    let capacity = usize::try_from(expected).unwrap_or(0).min(1 << 28);
    let mut data = Vec::with_capacity(capacity);
    answer.response.copy_to(&mut data)?;
    Ok(data)
}

/// Whether a HEAD now shows the `ETag` the GET had. A server that answers HEAD with something
/// other than 200 or 404 cannot tell, and the GET stands.
fn unchanged(server: &Server, url: &Url, etag: &HeaderValue) -> Result<bool, ProviderError> {
    let answer = server.send(&HttpMethod::HEAD, url, |b| b)?;
    Ok(match answer.response.status() {
        StatusCode::OK => answer.response.headers().get(ETAG) == Some(etag),
        StatusCode::NOT_FOUND => false,
        _ => true,
    })
}

/// The error for a GET answered with neither 200 nor 404. A collection of that name is no
/// object, whatever the server makes of a GET on it: rclone answers 405, Apache with mod_dir
/// redirects to `name/`.
fn not_ok(
    server: &Server,
    request: &Request<'_>,
    name: &str,
    basename: &str,
    answer: &Answer,
) -> ProviderError {
    let status = answer.response.status();
    let to_collection = status.is_redirection()
        && answer
            .response
            .headers()
            .get(LOCATION)
            .and_then(|value| value.to_str().ok())
            .is_some_and(|location| location.ends_with(&format!("/{basename}/")));
    if (status == StatusCode::METHOD_NOT_ALLOWED || to_collection)
        && matches!(
            propfind::kind(server, name),
            Ok(Kind::Collection | Kind::Missing)
        )
    {
        return ProviderError::not_found(format!(
            "{request}: no such object ({name} is a collection)"
        ));
    }
    answer::unexpected(request, answer, server.credentials())
}
