//! The HTTP side: hyper 1 on a loopback listener, each request classified, counted, passed
//! through the fault rules, checked for a bearer token and routed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::errors::DriveError;
use super::faults::{FaultAction, RequestKind};
use super::oauth::{self, OAuthConfig};
use super::state::{Decision, State};
use super::{files, upload};

/// What the server and the test's handle share.
#[derive(Debug)]
pub(crate) struct Shared {
    pub state: Mutex<State>,
    pub oauth: OAuthConfig,
    /// The largest request body read; larger ones are refused.
    pub max_body: u64,
}

impl Shared {
    pub(crate) fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves consistent-enough test state; keep serving.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A request, read whole.
#[derive(Debug)]
pub(crate) struct Request {
    pub path: String,
    pub query: Vec<(String, String)>,
    pub headers: hyper::HeaderMap,
    pub body: Bytes,
    /// `http://HOST/`, from the Host header: where session URLs point.
    pub base_url: String,
}

impl Request {
    pub(crate) fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The body as `application/x-www-form-urlencoded`.
    pub(crate) fn form(&self) -> HashMap<String, String> {
        decode_pairs(&String::from_utf8_lossy(&self.body))
            .into_iter()
            .collect()
    }
}

fn decode_pairs(text: &str) -> Vec<(String, String)> {
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(&s.replace('+', " "))
            .decode_utf8_lossy()
            .into_owned()
    };
    text.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

/// An answer.
#[derive(Debug, Clone)]
pub(crate) struct Answer {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Bytes,
}

impl Answer {
    pub(crate) fn json(status: u16, value: &Value) -> Answer {
        Answer {
            status,
            headers: vec![(
                "content-type",
                "application/json; charset=UTF-8".to_string(),
            )],
            body: Bytes::from(value.to_string()),
        }
    }

    pub(crate) fn bytes(status: u16, content_type: &str, body: Bytes) -> Answer {
        Answer {
            status,
            headers: vec![("content-type", content_type.to_string())],
            body,
        }
    }

    pub(crate) fn empty(status: u16) -> Answer {
        Answer {
            status,
            headers: Vec::new(),
            body: Bytes::new(),
        }
    }

    pub(crate) fn with_header(mut self, name: &'static str, value: String) -> Answer {
        self.headers.push((name, value));
        self
    }

    fn into_response(self) -> hyper::Response<Full<Bytes>> {
        let mut response = hyper::Response::new(Full::new(self.body));
        *response.status_mut() = hyper::StatusCode::from_u16(self.status)
            .unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
        for (name, value) in self.headers {
            if let Ok(value) = hyper::header::HeaderValue::from_str(&value) {
                response.headers_mut().append(name, value);
            }
        }
        response
    }
}

impl From<DriveError> for Answer {
    fn from(e: DriveError) -> Answer {
        let mut answer = Answer::json(e.status, &e.body());
        if let Some(after) = e.retry_after {
            answer = answer.with_header("retry-after", after.as_secs().to_string());
        }
        if e.status == 401 {
            answer = answer.with_header(
                "www-authenticate",
                "Bearer realm=\"https://accounts.google.com/\"".to_string(),
            );
        }
        answer
    }
}

/// The connection is closed without an answer (an injected cut or lost answer).
#[derive(Debug)]
pub(crate) struct Cut;

impl std::fmt::Display for Cut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection cut by fault injection")
    }
}

impl std::error::Error for Cut {}

/// Serves until `stop` turns true.
pub(crate) async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let shared = shared.clone();
                connections.spawn(async move {
                    let service = service_fn(move |request| handle(shared.clone(), request));
                    let _ = http1::Builder::new().keep_alive(true).serve_connection(TokioIo::new(stream), service).await;
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            _ = stop.changed() => break,
        }
    }
    connections.abort_all();
}

fn classify(
    method: &str,
    path: &str,
    query: &[(String, String)],
    content_range: Option<&str>,
) -> RequestKind {
    let param = |name: &str| {
        query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    match (method, path) {
        ("POST", "/token") => RequestKind::Token,
        ("POST", "/device/code") => RequestKind::DeviceCode,
        ("GET", "/drive/v3/files") => RequestKind::List,
        ("POST", "/drive/v3/files") => RequestKind::CreateMetadata,
        (m, p) if p == "/upload/drive/v3/files" || p == "/resumable/upload/drive/v3/files" => {
            match (m, param("upload_id"), param("uploadType")) {
                ("PUT" | "POST", Some(_), _) if upload::is_status_query(content_range) => {
                    RequestKind::ResumableStatus
                }
                ("PUT" | "POST", Some(_), _) => RequestKind::ResumableChunk,
                ("POST", None, Some("resumable")) => RequestKind::ResumableStart,
                ("POST", None, Some("multipart" | "media")) => RequestKind::CreateMultipart,
                _ => RequestKind::Other,
            }
        }
        (m, p) => match (m, p.strip_prefix("/drive/v3/files/")) {
            ("GET", Some(id)) if !id.contains('/') && param("alt") == Some("media") => {
                RequestKind::GetMedia
            }
            ("GET", Some(id)) if !id.contains('/') => RequestKind::GetMetadata,
            ("DELETE", Some(id)) if !id.contains('/') => RequestKind::Delete,
            _ => RequestKind::Other,
        },
    }
}

async fn handle(
    shared: Arc<Shared>,
    request: hyper::Request<Incoming>,
) -> Result<hyper::Response<Full<Bytes>>, Cut> {
    let (parts, body) = request.into_parts();
    let method = parts.method.as_str().to_string();
    let path = parts.uri.path().to_string();
    let path_and_query = parts
        .uri
        .path_and_query()
        .map_or(path.clone(), |p| p.as_str().to_string());
    let query = decode_pairs(parts.uri.query().unwrap_or(""));
    let content_range = parts
        .headers
        .get("content-range")
        .and_then(|v| v.to_str().ok());
    let kind = classify(&method, &path, &query, content_range);
    if path.starts_with("/emulator/") || path == "/device" {
        return Ok(people(&shared, &path, &query).into_response());
    }
    let fault = {
        let mut state = shared.state();
        *state.counters.requests.entry(kind).or_default() += 1;
        state.faults.take(kind, &method, &path_and_query)
    };
    if let Some(FaultAction::Delay(d)) = fault {
        tokio::time::sleep(d).await;
    }
    let cut_after = match fault {
        Some(FaultAction::CutBodyAfter(k)) => Some(k),
        _ => None,
    };
    let body = match read_body(
        body,
        cut_after
            .unwrap_or(u64::MAX)
            .min(shared.max_body.saturating_add(1)),
    )
    .await
    {
        Ok(b) => b,
        Err(()) => return Err(Cut),
    };
    let host = parts
        .headers
        .get(hyper::header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("127.0.0.1");
    let request = Request {
        path,
        query,
        headers: parts.headers.clone(),
        body,
        base_url: format!("http://{host}/"),
    };
    if cut_after.is_some() {
        if kind == RequestKind::ResumableChunk {
            let mut state = shared.state();
            let upload_id = request.param("upload_id").unwrap_or_default().to_string();
            upload::absorb_cut(&mut state, &request, &upload_id, &request.body);
        }
        return Err(Cut);
    }
    let answer = if request.body.len() as u64 > shared.max_body {
        DriveError::bad_request(format!(
            "the request body is larger than the emulator's {} bytes",
            shared.max_body
        ))
        .into()
    } else if let Some(FaultAction::Error(e)) = &fault {
        e.clone().into()
    } else {
        let mut state = shared.state();
        let answer = route(&mut state, &shared.oauth, kind, &request);
        if matches!(fault, Some(FaultAction::Duplicate)) && answer.status == 200 {
            state.duplicate_newest();
        }
        answer
    };
    if answer.status >= 400 {
        shared.state().counters.errors += 1;
    }
    if matches!(fault, Some(FaultAction::LoseAnswer)) {
        return Err(Cut);
    }
    Ok(answer.into_response())
}

/// Reads the body, at most `limit` bytes of it (then stops reading).
async fn read_body(mut body: Incoming, limit: u64) -> Result<Bytes, ()> {
    let mut out = Vec::new();
    while (out.len() as u64) < limit {
        match body.frame().await {
            None => break,
            Some(Err(_)) => return Err(()),
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    let room = (limit - out.len() as u64) as usize;
                    out.extend_from_slice(&data[..data.len().min(room)]);
                }
            }
        }
    }
    Ok(Bytes::from(out))
}

fn route(
    state: &mut State,
    oauth_config: &OAuthConfig,
    kind: RequestKind,
    request: &Request,
) -> Answer {
    match kind {
        RequestKind::Token => return oauth::token(state, oauth_config, request),
        RequestKind::DeviceCode => return oauth::device_code(state, oauth_config, request),
        RequestKind::Other => return DriveError::no_such_method(&request.path).into(),
        // The session URL is the credential, as on Google's upload servers.
        RequestKind::ResumableChunk | RequestKind::ResumableStatus => {
            let upload_id = request.param("upload_id").unwrap_or_default().to_string();
            return upload::session_request(state, request, &upload_id);
        }
        _ => {}
    }
    let token = request
        .header("authorization")
        .and_then(|v| v.strip_prefix("Bearer "));
    if !token.is_some_and(|t| state.access_token_valid(t)) {
        return DriveError::auth_error().into();
    }
    let id = request
        .path
        .strip_prefix("/drive/v3/files/")
        .unwrap_or_default();
    let id = percent_encoding::percent_decode_str(id)
        .decode_utf8_lossy()
        .into_owned();
    match kind {
        RequestKind::List => files::list(state, request),
        RequestKind::GetMetadata | RequestKind::GetMedia => files::get(state, request, &id),
        RequestKind::Delete => files::delete(state, &id),
        RequestKind::CreateMetadata => files::create_metadata(state, request),
        RequestKind::CreateMultipart => upload::create_multipart(state, request),
        RequestKind::ResumableStart => upload::start_session(state, request),
        _ => DriveError::no_such_method(&request.path).into(),
    }
}

/// Pages for people running `drive-emulator`: `GET /device?user_code=X` approves a device
/// sign-in (`&deny=1` refuses it), `/emulator/counters` and `/emulator/files` show state.
fn people(shared: &Shared, path: &str, query: &[(String, String)]) -> Answer {
    let param = |name: &str| {
        query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let mut state = shared.state();
    match path {
        "/device" => match param("user_code") {
            None => Answer::bytes(200, "text/plain", Bytes::from_static(b"Open /device?user_code=CODE to approve a sign-in (add &deny=1 to refuse it).\n")),
            Some(code) => {
                let decision = if param("deny").is_some() { Decision::Denied } else { Decision::Approved };
                if oauth::decide(&mut state, code, decision) {
                    Answer::bytes(200, "text/plain", Bytes::from(format!("{code}: {decision:?}\n")))
                } else {
                    Answer::bytes(404, "text/plain", Bytes::from(format!("no pending sign-in with the code {code}\n")))
                }
            }
        },
        "/emulator/counters" => {
            let c = &state.counters;
            let requests: serde_json::Map<String, Value> = c.requests.iter().map(|(k, n)| (k.to_string(), json!(n))).collect();
            Answer::json(
                200,
                &json!({"requests": requests, "bytes_uploaded": c.bytes_uploaded, "bytes_downloaded": c.bytes_downloaded,
                        "objects_stored": c.objects_stored, "bytes_stored": c.bytes_stored, "errors": c.errors}),
            )
        }
        "/emulator/files" => {
            let list: Vec<Value> = state.files.values().map(files::resource).collect();
            Answer::json(200, &json!({ "files": list }))
        }
        _ => DriveError::no_such_method(path).into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_the_clients_requests() {
        let q = |s: &str| decode_pairs(s);
        assert_eq!(
            classify("GET", "/drive/v3/files", &[], None),
            RequestKind::List
        );
        assert_eq!(
            classify("GET", "/drive/v3/files/abc", &q("alt=media"), None),
            RequestKind::GetMedia
        );
        assert_eq!(
            classify("GET", "/drive/v3/files/abc", &q("alt=json"), None),
            RequestKind::GetMetadata
        );
        assert_eq!(
            classify(
                "POST",
                "/resumable/upload/drive/v3/files",
                &q("uploadType=resumable&alt=json"),
                None
            ),
            RequestKind::ResumableStart
        );
        assert_eq!(
            classify(
                "PUT",
                "/upload/drive/v3/files",
                &q("uploadType=resumable&upload_id=x"),
                Some("bytes */10")
            ),
            RequestKind::ResumableStatus
        );
        assert_eq!(
            classify(
                "POST",
                "/upload/drive/v3/files",
                &q("uploadType=resumable&upload_id=x"),
                Some("bytes 0-9/10")
            ),
            RequestKind::ResumableChunk
        );
        assert_eq!(
            classify(
                "POST",
                "/upload/drive/v3/files",
                &q("uploadType=multipart"),
                None
            ),
            RequestKind::CreateMultipart
        );
        assert_eq!(
            classify("DELETE", "/drive/v3/files/a/b", &[], None),
            RequestKind::Other
        );
        assert_eq!(
            q("a=b+c&d=%2F"),
            vec![("a".into(), "b c".into()), ("d".into(), "/".into())]
        );
    }
}
