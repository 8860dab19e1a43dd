//! Resumable uploads (`uploadType=resumable`) for objects above the `resumable_threshold`.
//!
//! A session is started with the file's metadata; the content goes up in chunks of
//! `chunk_size` (a multiple of 256 KiB, as Drive requires), each a `PUT` with
//! `Content-Range: bytes FIRST-LAST/TOTAL`, answered 308 with the `Range` Drive has persisted
//! until the last one, answered 200 with the file. The next chunk starts where Drive's `Range`
//! says, not where the last one ended.
//!
//! When a chunk fails (a cut connection, a timeout, a 5xx), the session is kept, keyed by the
//! object's name and the SHA-256 of its content, and the error goes to the daemon, which retries
//! the put. The retried put finds the session, asks Drive how much it has (`PUT` with
//! `Content-Range: bytes */TOTAL`, answered 308 and `Range`) and sends only the rest. (The
//! crate's own resumable upload POSTs its chunks, resumes only from a URL its delegate kept,
//! and advances by what it sent rather than by what Drive confirmed, so it is not used.)

use std::collections::HashMap;
use std::sync::Mutex;

use hyper::header::{
    AUTHORIZATION, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, LOCATION, RANGE, RETRY_AFTER,
};
use sealback_plugin_api::ProviderError;

use crate::drive::{APP_DATA, Drive, Entry};
use crate::failure::{self, Failure, HttpFailure};
use crate::http::{self, Client};

/// Answers to session requests are small JSON documents.
const ANSWER_LIMIT: u64 = 1 << 20;
const FILE_FIELDS: &str = "id,name,size,createdTime,sha256Checksum";

/// An upload session that a failed put left, for the retry of the same put.
struct Session {
    url: String,
    digest: [u8; 32],
    len: u64,
}

/// Where an upload stands.
enum Progress {
    /// Drive has the first this many bytes.
    At(u64),
    /// Drive has the whole file.
    Done(Entry),
}

/// The resumable uploads of one instance.
pub(crate) struct Uploads {
    sessions: Mutex<HashMap<String, Session>>,
    chunk_size: u64,
    upload_url: String,
}

impl Uploads {
    pub(crate) fn new(api_root: &str, chunk_size: u64) -> Self {
        Self {
            sessions: Mutex::new(HashMap::new()),
            chunk_size,
            upload_url: format!(
                "{api_root}upload/drive/v3/files?uploadType=resumable&fields={}",
                FILE_FIELDS.replace(',', "%2C")
            ),
        }
    }

    /// Uploads `data` as a new file `name` in the app folder, resuming a session an earlier
    /// attempt of the same put left when there is one.
    pub(crate) async fn upload(
        &self,
        drive: &Drive,
        client: &Client,
        name: &str,
        data: &[u8],
        digest: [u8; 32],
    ) -> Result<Entry, ProviderError> {
        let len = data.len() as u64;
        let what = format!("resumable upload of {name} ({len} bytes)");
        let earlier = self.take(name, digest, len);
        let (url, mut progress) = match earlier {
            Some(url) => match self.status(drive, client, &what, &url, len).await {
                Ok(Some(progress)) => (url, progress),
                Ok(None) => (
                    self.start(drive, client, &what, name, len).await?,
                    Progress::At(0),
                ),
                Err(err) => {
                    self.keep(name, url, digest, len);
                    return Err(err);
                }
            },
            None => (
                self.start(drive, client, &what, name, len).await?,
                Progress::At(0),
            ),
        };
        loop {
            let offset = match progress {
                Progress::Done(entry) => return Ok(entry),
                Progress::At(offset) => offset,
            };
            let end = len.min(offset + self.chunk_size);
            let chunk = &data[offset as usize..end as usize];
            let range = if len == 0 {
                format!("bytes */{len}")
            } else {
                format!("bytes {offset}-{}/{len}", end - 1)
            };
            let request = hyper::Request::put(&url)
                .header(CONTENT_RANGE, range)
                .header(CONTENT_LENGTH, chunk.len())
                .body(http::body(chunk.to_vec()))
                .map_err(|err| ProviderError::permanent(format!("{what}: {err}")))?;
            let answer = match http::send(client, &what, request, drive.timeout, ANSWER_LIMIT).await
            {
                Ok(answer) => answer,
                Err(err) => {
                    self.keep(name, url, digest, len);
                    return Err(err);
                }
            };
            progress = match interpret(&what, answer) {
                Ok(Some(next)) => next,
                Ok(None) => {
                    return Err(ProviderError::transient(format!(
                        "{what}: Drive no longer knows the upload session; the put starts over"
                    )));
                }
                Err(err) => {
                    if err.kind().is_transient() {
                        self.keep(name, url, digest, len);
                    }
                    return Err(err);
                }
            };
        }
    }

    /// Starts a session; its URL.
    async fn start(
        &self,
        drive: &Drive,
        client: &Client,
        what: &str,
        name: &str,
        len: u64,
    ) -> Result<String, ProviderError> {
        let metadata = serde_json::json!({"name": name, "parents": [APP_DATA]}).to_string();
        let mut refreshed = false;
        loop {
            let token = drive.tokens.access().await?;
            let request = hyper::Request::post(&self.upload_url)
                .header(AUTHORIZATION, format!("Bearer {}", token.as_str()))
                .header(CONTENT_TYPE, "application/json; charset=UTF-8")
                .header("X-Upload-Content-Type", "application/octet-stream")
                .header("X-Upload-Content-Length", len)
                .body(http::body(metadata.clone()))
                .map_err(|err| ProviderError::permanent(format!("{what}: {err}")))?;
            let answer = http::send(client, what, request, drive.timeout, ANSWER_LIMIT).await?;
            if answer.status == 200 {
                return answer
                    .headers
                    .get(LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
                    .ok_or_else(|| {
                        ProviderError::permanent(format!(
                            "{what}: Drive started a session without a Location"
                        ))
                    });
            }
            match failure::classify(what, &failure_of(&answer)) {
                Failure::Unauthorized if !refreshed => {
                    refreshed = true;
                    drive.tokens.invalidate().await;
                }
                other => return Err(other.into_error(what)),
            }
        }
    }

    /// Asks Drive how much of a session it has; `None` when the session is gone.
    async fn status(
        &self,
        drive: &Drive,
        client: &Client,
        what: &str,
        url: &str,
        len: u64,
    ) -> Result<Option<Progress>, ProviderError> {
        let request = hyper::Request::put(url)
            .header(CONTENT_RANGE, format!("bytes */{len}"))
            .header(CONTENT_LENGTH, 0)
            .body(http::body(Vec::new()))
            .map_err(|err| ProviderError::permanent(format!("{what}: {err}")))?;
        let answer = http::send(client, what, request, drive.timeout, ANSWER_LIMIT).await?;
        interpret(what, answer)
    }

    fn take(&self, name: &str, digest: [u8; 32], len: u64) -> Option<String> {
        let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        match sessions.remove(name) {
            Some(s) if s.digest == digest && s.len == len => Some(s.url),
            _ => None,
        }
    }

    fn keep(&self, name: &str, url: String, digest: [u8; 32], len: u64) {
        let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        sessions.insert(name.to_owned(), Session { url, digest, len });
    }
}

/// Reads a session answer: 308 and `Range` (how much Drive has), 200/201 and the file, 404/410
/// (the session is gone: `None`), or an error.
fn interpret(what: &str, answer: http::Answer) -> Result<Option<Progress>, ProviderError> {
    match answer.status {
        308 => {
            let have = answer
                .headers
                .get(RANGE)
                .and_then(|v| v.to_str().ok())
                .map(|range| {
                    range
                        .strip_prefix("bytes=0-")
                        .and_then(|last| last.trim().parse::<u64>().ok())
                        .map(|last| last + 1)
                        .ok_or_else(|| {
                            ProviderError::permanent(format!(
                                "{what}: Drive's Range {range:?} is not bytes=0-N"
                            ))
                        })
                })
                .transpose()?
                .unwrap_or(0);
            Ok(Some(Progress::At(have)))
        }
        200 | 201 => {
            let file: google_drive3::api::File =
                serde_json::from_slice(&answer.body).map_err(|err| {
                    ProviderError::permanent(format!("{what}: Drive's answer is not a file: {err}"))
                })?;
            Entry::from_file(file)
                .map(|entry| Some(Progress::Done(entry)))
                .ok_or_else(|| {
                    ProviderError::permanent(format!("{what}: Drive's answer has no id or name"))
                })
        }
        404 | 410 => Ok(None),
        _ => Err(failure::classify(what, &failure_of(&answer)).into_error(what)),
    }
}

fn failure_of(answer: &http::Answer) -> HttpFailure {
    let body: Option<serde_json::Value> = serde_json::from_slice(&answer.body).ok();
    HttpFailure::new(
        answer.status,
        answer.headers.get(RETRY_AFTER),
        body.as_ref(),
    )
}
