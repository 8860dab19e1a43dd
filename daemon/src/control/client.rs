//! The client side of the control protocol, as `sealbackctl` uses it: one connection per
//! request over the daemon's Unix socket.

use std::io;
use std::path::{Path, PathBuf};

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::client::conn::http1;
use hyper::header::{CONTENT_TYPE, HOST};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::net::UnixStream;

use super::api::{
    AcknowledgeMissingRequest, AcknowledgedMissing, AuthEvent, BackupReport, BackupRequest,
    ErrorBody, ErrorResponse, KeyChangePasswordRequest, KeyChanged, KeyDisableRequest,
    KeyGenerateRequest, KeyGenerated, KeyImportRequest, KeyImported, KeyRecoverRequest,
    KeyRotateRequest, KeyRotated, KeySetPasswordRequest, Progress, PruneReports, PruneRequest,
    RepairReport, RepairRequest, RestoreReport, RestoreRequest, Route, SnapshotList, Status,
    StreamEvent, TargetAuthRequest, TargetAuthorized, VerifyReport, VerifyRequest,
};

/// A whole (non-streamed) response larger than this is not believed.
const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;

/// A stream line longer than this is not believed.
const MAX_LINE_BYTES: usize = 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nothing answers on the socket: the daemon is not running, or the path is wrong.
    #[error("{}. {}", self.message(), self.hint().unwrap_or_default())]
    Connect {
        socket: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The daemon refused or failed the request and said why.
    #[error("{}", display_api(.0))]
    Api(ErrorBody),
    /// The daemon's answer does not follow the protocol, or the connection broke.
    #[error("{0}")]
    Protocol(String),
}

impl ClientError {
    /// What went wrong, without the hint.
    pub fn message(&self) -> String {
        match self {
            ClientError::Connect { socket, source } => {
                format!("cannot reach sealbackd at {}: {source}", socket.display())
            }
            ClientError::Api(body) => body.message.clone(),
            ClientError::Protocol(message) => message.clone(),
        }
    }

    /// What to do about it, when there is something to do.
    pub fn hint(&self) -> Option<String> {
        match self {
            ClientError::Connect { source, .. }
                if source.kind() == io::ErrorKind::PermissionDenied =>
            {
                Some(
                    "The socket is open only to the daemon's user: run sealbackctl as that user."
                        .to_owned(),
                )
            }
            ClientError::Connect { .. } => Some(
                "Is the daemon running? (systemctl status sealbackd) Is --socket right?".to_owned(),
            ),
            ClientError::Api(body) => body.hint.clone(),
            ClientError::Protocol(_) => None,
        }
    }
}

fn display_api(body: &ErrorBody) -> String {
    match &body.hint {
        Some(hint) => format!("{} (hint: {hint})", body.message),
        None => body.message.clone(),
    }
}

/// Speaks the control protocol to the daemon listening on `socket`.
#[derive(Debug, Clone)]
pub struct Client {
    socket: PathBuf,
}

impl Client {
    pub fn new(socket: impl Into<PathBuf>) -> Self {
        Client {
            socket: socket.into(),
        }
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    pub async fn status(&self) -> Result<Status, ClientError> {
        self.call(Route::Status, None::<&()>).await
    }

    /// Starts a backup. With `request.wait`, follows it to its end, calling `on_progress` as
    /// progress is reported, and returns its report; without, returns `None` as soon as the
    /// daemon has queued it.
    pub async fn backup(
        &self,
        request: BackupRequest,
        on_progress: impl FnMut(Progress),
    ) -> Result<Option<BackupReport>, ClientError> {
        let route = Route::Backup;
        let response = self.send(route, Some(&request)).await?;
        match response.status() {
            StatusCode::ACCEPTED => {
                read_json::<super::api::Accepted>(route, response).await?;
                Ok(None)
            }
            StatusCode::OK => follow(route, response, on_progress).await.map(Some),
            _ => Err(read_error(route, response).await),
        }
    }

    pub async fn stats(&self) -> Result<super::api::RepositoryStats, ClientError> {
        self.call(Route::Stats, None::<&()>).await
    }

    pub async fn snapshots(&self) -> Result<SnapshotList, ClientError> {
        self.call(Route::Snapshots, None::<&()>).await
    }

    /// The files of a snapshot, or of one folder or file in it.
    pub async fn ls(
        &self,
        request: super::api::LsRequest,
    ) -> Result<super::api::Listing, ClientError> {
        self.call(Route::Ls, Some(&request)).await
    }

    /// What changed between two snapshots.
    pub async fn diff(
        &self,
        request: super::api::DiffRequest,
    ) -> Result<super::api::SnapshotDiff, ClientError> {
        self.call(Route::Diff, Some(&request)).await
    }

    pub async fn acknowledge_missing(
        &self,
        request: AcknowledgeMissingRequest,
    ) -> Result<AcknowledgedMissing, ClientError> {
        self.call(Route::AcknowledgeMissing, Some(&request)).await
    }

    /// Restores a snapshot, calling `on_progress` as progress is reported.
    pub async fn restore(
        &self,
        request: RestoreRequest,
        on_progress: impl FnMut(Progress),
    ) -> Result<RestoreReport, ClientError> {
        self.stream(Route::Restore, &request, on_progress).await
    }

    /// Reads and checks every object of a target's repository.
    pub async fn verify(
        &self,
        request: VerifyRequest,
        on_progress: impl FnMut(Progress),
    ) -> Result<VerifyReport, ClientError> {
        self.stream(Route::Verify, &request, on_progress).await
    }

    /// Removes a target's index and snapshot objects that are confirmed damaged.
    pub async fn repair(
        &self,
        request: RepairRequest,
        on_progress: impl FnMut(Progress),
    ) -> Result<RepairReport, ClientError> {
        self.stream(Route::Repair, &request, on_progress).await
    }

    /// Applies the retention policy and reclaims space (or says what it would do).
    pub async fn prune(
        &self,
        request: PruneRequest,
        on_progress: impl FnMut(Progress),
    ) -> Result<PruneReports, ClientError> {
        self.stream(Route::Prune, &request, on_progress).await
    }

    /// A streamed operation: progress lines, then its result.
    async fn stream<T: DeserializeOwned>(
        &self,
        route: Route,
        request: &impl Serialize,
        on_progress: impl FnMut(Progress),
    ) -> Result<T, ClientError> {
        let response = self.send(route, Some(request)).await?;
        if response.status() == StatusCode::OK {
            follow(route, response, on_progress).await
        } else {
            Err(read_error(route, response).await)
        }
    }

    /// Runs a target's interactive authorization; `on_prompt` shows the daemon's prompts.
    pub async fn target_auth(
        &self,
        request: TargetAuthRequest,
        mut on_prompt: impl FnMut(&str),
    ) -> Result<TargetAuthorized, ClientError> {
        let route = Route::TargetAuth;
        let response = self.send(route, Some(&request)).await?;
        if response.status() != StatusCode::OK {
            return Err(read_error(route, response).await);
        }
        follow_lines(route, response, |line| {
            let line = line.trim_ascii();
            if line.is_empty() {
                return None;
            }
            match serde_json::from_slice(line) {
                Ok(AuthEvent::Prompt(text)) => {
                    on_prompt(&text);
                    None
                }
                Ok(AuthEvent::Done { result }) => Some(Ok(result)),
                Ok(AuthEvent::Error { error }) => Some(Err(ClientError::Api(error))),
                Err(e) => Some(Err(ClientError::Protocol(format!(
                    "the daemon sent a malformed line for {route}: {e}"
                )))),
            }
        })
        .await
    }

    pub async fn key_generate(
        &self,
        request: KeyGenerateRequest,
    ) -> Result<KeyGenerated, ClientError> {
        self.call(Route::KeyGenerate, Some(&request)).await
    }

    pub async fn key_set_password(
        &self,
        request: KeySetPasswordRequest,
    ) -> Result<KeyChanged, ClientError> {
        self.call(Route::KeySetPassword, Some(&request)).await
    }

    pub async fn key_recover(&self, request: KeyRecoverRequest) -> Result<KeyChanged, ClientError> {
        self.call(Route::KeyRecover, Some(&request)).await
    }

    pub async fn key_change_password(
        &self,
        request: KeyChangePasswordRequest,
    ) -> Result<KeyChanged, ClientError> {
        self.call(Route::KeyChangePassword, Some(&request)).await
    }

    pub async fn key_disable(&self, request: KeyDisableRequest) -> Result<KeyChanged, ClientError> {
        self.call(Route::KeyDisable, Some(&request)).await
    }

    pub async fn key_import(&self, request: KeyImportRequest) -> Result<KeyImported, ClientError> {
        self.call(Route::KeyImport, Some(&request)).await
    }

    pub async fn key_rotate(&self, request: KeyRotateRequest) -> Result<KeyRotated, ClientError> {
        self.call(Route::KeyRotate, Some(&request)).await
    }

    /// A request whose answer is one JSON document.
    async fn call<T: DeserializeOwned>(
        &self,
        route: Route,
        body: Option<&impl Serialize>,
    ) -> Result<T, ClientError> {
        let response = self.send(route, body).await?;
        if response.status().is_success() {
            read_json(route, response).await
        } else {
            Err(read_error(route, response).await)
        }
    }

    async fn send(
        &self,
        route: Route,
        body: Option<&impl Serialize>,
    ) -> Result<Response<Incoming>, ClientError> {
        let body = match body {
            Some(body) => serde_json::to_vec(body).map_err(|e| {
                ClientError::Protocol(format!("cannot encode the request for {route}: {e}"))
            })?,
            None => Vec::new(),
        };
        self.send_raw(route.method(), route.path(), body).await
    }

    /// Sends any request; the tests use it to send what the typed methods cannot.
    pub(crate) async fn send_raw(
        &self,
        method: &str,
        path: &str,
        body: Vec<u8>,
    ) -> Result<Response<Incoming>, ClientError> {
        let stream =
            UnixStream::connect(&self.socket)
                .await
                .map_err(|source| ClientError::Connect {
                    socket: self.socket.clone(),
                    source,
                })?;
        let broken = |e: hyper::Error| {
            ClientError::Protocol(format!(
                "the connection to sealbackd at {} broke during {method} {path}: {e}",
                self.socket.display()
            ))
        };
        let (mut sender, connection) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(broken)?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!("control connection ended: {e}");
            }
        });
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header(HOST, "localhost")
            .header(CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| ClientError::Protocol(format!("cannot build {method} {path}: {e}")))?;
        sender.send_request(request).await.map_err(broken)
    }
}

async fn read_body(route: Route, response: Response<Incoming>) -> Result<Bytes, ClientError> {
    Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
        .collect()
        .await
        .map(http_body_util::Collected::to_bytes)
        .map_err(|e| ClientError::Protocol(format!("cannot read the answer to {route}: {e}")))
}

async fn read_json<T: DeserializeOwned>(
    route: Route,
    response: Response<Incoming>,
) -> Result<T, ClientError> {
    let bytes = read_body(route, response).await?;
    serde_json::from_slice(&bytes).map_err(|e| {
        ClientError::Protocol(format!(
            "the daemon's answer to {route} is not what this sealbackctl expects ({e}); are \
             sealbackctl and sealbackd the same version?"
        ))
    })
}

async fn read_error(route: Route, response: Response<Incoming>) -> ClientError {
    let status = response.status();
    match read_body(route, response).await {
        Err(e) => e,
        Ok(bytes) => match serde_json::from_slice::<ErrorResponse>(&bytes) {
            Ok(response) => ClientError::Api(response.error),
            Err(_) => ClientError::Protocol(format!(
                "the daemon answered {route} with {status} and a body that is not a \
                 control-protocol error: {:?}",
                String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
            )),
        },
    }
}

/// Reads a progress stream to its final line.
async fn follow<T: DeserializeOwned>(
    route: Route,
    response: Response<Incoming>,
    mut on_progress: impl FnMut(Progress),
) -> Result<T, ClientError> {
    follow_lines(route, response, |line| {
        read_line(route, line, &mut on_progress)
    })
    .await
}

/// Reads a stream line by line; `read` turns a line into the outcome, or `None` to go on.
async fn follow_lines<T>(
    route: Route,
    response: Response<Incoming>,
    mut read: impl FnMut(&[u8]) -> Option<Result<T, ClientError>>,
) -> Result<T, ClientError> {
    let mut body = response.into_body();
    let mut pending: Vec<u8> = Vec::new();
    loop {
        while let Some(end) = pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            if let Some(outcome) = read(&line) {
                return outcome;
            }
        }
        if pending.len() > MAX_LINE_BYTES {
            return Err(ClientError::Protocol(format!(
                "the daemon sent a stream line over {MAX_LINE_BYTES} bytes for {route}"
            )));
        }
        match body.frame().await {
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    pending.extend_from_slice(&data);
                }
            }
            Some(Err(e)) => {
                return Err(ClientError::Protocol(format!(
                    "the connection to sealbackd broke during {route}: {e}; the operation may \
                     still be running (sealbackctl status)"
                )));
            }
            None => break,
        }
    }
    if let Some(outcome) = read(&pending) {
        return outcome;
    }
    Err(ClientError::Protocol(format!(
        "sealbackd ended {route} without reporting a result; it may have been stopped \
         (see its log)"
    )))
}

/// Reads one stream line: `None` for progress (or a blank line), else the outcome.
fn read_line<T: DeserializeOwned>(
    route: Route,
    line: &[u8],
    on_progress: &mut impl FnMut(Progress),
) -> Option<Result<T, ClientError>> {
    let line = line.trim_ascii();
    if line.is_empty() {
        return None;
    }
    match serde_json::from_slice::<StreamEvent<T>>(line) {
        Ok(StreamEvent::Progress(progress)) => {
            on_progress(progress);
            None
        }
        Ok(StreamEvent::Done { result }) => Some(Ok(result)),
        Ok(StreamEvent::Error { error }) => Some(Err(ClientError::Api(error))),
        Err(e) => Some(Err(ClientError::Protocol(format!(
            "the daemon sent a stream line for {route} that this sealbackctl cannot read ({e}); \
             are sealbackctl and sealbackd the same version?"
        )))),
    }
}
