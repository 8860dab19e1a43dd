//! The control protocol end to end: the real server on a socket in a temporary directory,
//! the real client, and a fake [`Handler`] that records what it was asked.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::BodyExt;
use hyper::StatusCode;
use hyper::body::Incoming;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use zeroize::Zeroizing;

use super::{Limits, bind, serve_with};
use crate::control::api::{
    AcknowledgeMissingRequest, AcknowledgedMissing, Activity, BackupReport, BackupRequest,
    ErrorResponse, KeyChangePasswordRequest, KeyChanged, KeyDisableRequest, KeyGenerateRequest,
    KeyGenerated, KeyImportRequest, KeyImported, KeyMode, KeyRecoverRequest, KeySetPasswordRequest,
    MAX_REQUEST_BYTES, Progress, PruneReports, PruneRequest, RepairReport, RepairRequest,
    RestoreReport, RestoreRequest, SnapshotInfo, SnapshotList, Status, TargetStatus, VerifyReport,
    VerifyRequest,
};
use crate::control::client::{Client, ClientError};
use crate::control::{ApiError, Handler, ProgressSink};

/// A test double for the daemon: canned answers, and a log of the calls it received.
#[derive(Default)]
struct FakeDaemon {
    calls: Mutex<Vec<String>>,
    /// Holds the next `status` (or `restore` of "held") in the handler, to have a request
    /// in flight at shutdown.
    hold: Mutex<Option<Hold>>,
}

/// A handler call held in flight: it says when it has started, then waits to be released
/// (forever, if the test keeps the release's sender without sending).
struct Hold {
    started: oneshot::Sender<()>,
    release: oneshot::Receiver<()>,
}

/// The test's side of a [`Hold`].
struct Held {
    started: oneshot::Receiver<()>,
    release: oneshot::Sender<()>,
}

impl FakeDaemon {
    /// A daemon whose next held call waits for the returned [`Held`].
    fn holding() -> (FakeDaemon, Held) {
        let (started_tx, started) = oneshot::channel();
        let (release, release_rx) = oneshot::channel();
        let hold = Hold {
            started: started_tx,
            release: release_rx,
        };
        let daemon = FakeDaemon {
            hold: Mutex::new(Some(hold)),
            ..FakeDaemon::default()
        };
        (daemon, Held { started, release })
    }

    /// Waits for the test to release the call, if it is to be held.
    async fn held(&self) {
        let hold = self.hold.lock().expect("hold lock").take();
        if let Some(hold) = hold {
            let _ = hold.started.send(());
            // A test that drops its release without sending lets the call go on.
            let _ = hold.release.await;
        }
    }
}

impl FakeDaemon {
    fn record(&self, call: String) {
        self.calls.lock().expect("calls lock").push(call);
    }

    fn calls(&self) -> Vec<String> {
        self.calls.lock().expect("calls lock").clone()
    }
}

/// Reports 10, 50 and 100 of 100 bytes, each far enough apart to be sent as its own line.
async fn make_progress(progress: &ProgressSink) {
    for done in [10, 50, 100] {
        progress.set(done, 100);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

fn report() -> BackupReport {
    BackupReport {
        snapshot: "1a2b3c4d5e6f".into(),
        target: "local".into(),
        files: 3,
        ..BackupReport::default()
    }
}

fn changed() -> KeyChanged {
    KeyChanged {
        key_mode: KeyMode::Password,
        message: "ok".into(),
    }
}

impl Handler for FakeDaemon {
    async fn status(&self) -> Result<Status, ApiError> {
        self.record("status".into());
        self.held().await;
        Ok(Status {
            protocol: 1,
            daemon_version: "0.1.0".into(),
            activity: Activity::Idle,
            key_mode: KeyMode::RecoveryKey,
            schedule: "on-change".into(),
            store: "/data/store".into(),
            pending_change: false,
            last_backup: Some(report()),
            vault_configured: false,
            last_error: None,
            targets: vec![TargetStatus {
                name: "local".into(),
                plugin: "local".into(),
                schedule: "on-change".into(),
                next_backup_unix_ms: None,
                last_snapshot: Some("1a2b3c4d5e6f".into()),
                last_snapshot_unix_ms: Some(1_700_000_000_000),
                snapshots: 1,
                bytes_stored: 4096,
                last_error: None,
                missing_snapshots: Vec::new(),
                requests: Default::default(),
            }],
            vault_attempts_left: None,
        })
    }

    async fn backup(
        &self,
        request: BackupRequest,
        progress: ProgressSink,
    ) -> Result<Option<BackupReport>, ApiError> {
        self.record(format!("backup wait={}", request.wait));
        if !request.wait {
            return Ok(None);
        }
        make_progress(&progress).await;
        Ok(Some(report()))
    }

    async fn snapshots(&self) -> Result<SnapshotList, ApiError> {
        self.record("snapshots".into());
        Ok(SnapshotList {
            snapshots: vec![SnapshotInfo {
                id: "1a2b3c4d5e6f".into(),
                target: "local".into(),
                time_unix_ms: 1_700_000_000_000,
                host: "phone".into(),
                files: 3,
                size: 4096,
                keep: vec!["newest".into()],
            }],
            missing: Vec::new(),
        })
    }

    async fn acknowledge_missing(
        &self,
        request: AcknowledgeMissingRequest,
    ) -> Result<AcknowledgedMissing, ApiError> {
        self.record(format!("acknowledge-missing target={:?}", request.target));
        Ok(AcknowledgedMissing {
            acknowledged: Vec::new(),
        })
    }

    async fn verify(
        &self,
        request: VerifyRequest,
        progress: ProgressSink,
    ) -> Result<VerifyReport, ApiError> {
        self.record(format!("verify target={:?}", request.target));
        progress.set(1, 2);
        Ok(VerifyReport {
            target: request.target.unwrap_or_else(|| "local".into()),
            packs: 2,
            ..VerifyReport::default()
        })
    }

    async fn prune(
        &self,
        request: PruneRequest,
        _: ProgressSink,
    ) -> Result<PruneReports, ApiError> {
        self.record(format!(
            "prune target={:?} dry_run={}",
            request.target, request.dry_run
        ));
        Ok(PruneReports::default())
    }

    async fn repair(
        &self,
        request: RepairRequest,
        _: ProgressSink,
    ) -> Result<RepairReport, ApiError> {
        self.record(format!("repair target={:?}", request.target));
        Ok(RepairReport {
            target: request.target.unwrap_or_else(|| "local".into()),
            checked: 2,
            ..RepairReport::default()
        })
    }

    async fn key_set_password(&self, _: KeySetPasswordRequest) -> Result<KeyChanged, ApiError> {
        self.record("key_set_password".into());
        Ok(changed())
    }

    async fn key_recover(&self, request: KeyRecoverRequest) -> Result<KeyChanged, ApiError> {
        self.record(format!("key_recover replace={}", request.replace));
        match request.password.as_str() {
            "wrong" => Err(ApiError::new(
                403,
                "wrong-password",
                "wrong password: 9 attempts left",
            )),
            _ => Ok(changed()),
        }
    }

    async fn key_change_password(
        &self,
        _: KeyChangePasswordRequest,
    ) -> Result<KeyChanged, ApiError> {
        self.record("key_change_password".into());
        Ok(changed())
    }

    async fn key_disable(&self, _: KeyDisableRequest) -> Result<KeyChanged, ApiError> {
        self.record("key_disable".into());
        Ok(changed())
    }

    async fn restore(
        &self,
        request: RestoreRequest,
        progress: ProgressSink,
    ) -> Result<RestoreReport, ApiError> {
        self.record(format!(
            "restore {} to={} force={} target={:?}",
            request.snapshot, request.to, request.force, request.target
        ));
        match request.snapshot.as_str() {
            "missing" => {
                return Err(ApiError::new(404, "not-found", "no snapshot \"missing\"")
                    .with_hint("sealbackctl snapshots lists them"));
            }
            "held" => self.held().await,
            "panic" => panic!("the fake daemon panics on request"),
            _ => make_progress(&progress).await,
        }
        Ok(RestoreReport {
            snapshot: "1a2b3c4d5e6f".into(),
            target: "local".into(),
            to: request.to,
            files: 3,
            bytes: 100,
            duration_ms: 900,
            database: None,
        })
    }

    async fn key_generate(&self, request: KeyGenerateRequest) -> Result<KeyGenerated, ApiError> {
        self.record(format!("key_generate replace={}", request.replace));
        Ok(KeyGenerated {
            recovery_key: Zeroizing::new("0123 4567 89ab cdef".into()),
        })
    }

    async fn key_import(&self, request: KeyImportRequest) -> Result<KeyImported, ApiError> {
        // The key itself is a secret: recorded only as whether it is the expected one.
        let expected = request.recovery_key.as_str() == "0123 4567 89ab cdef";
        self.record(format!(
            "key_import expected={expected} replace={}",
            request.replace
        ));
        if !expected {
            return Err(ApiError::new(
                422,
                "wrong-key",
                "the recovery key does not open any target",
            ));
        }
        Ok(KeyImported {
            key_mode: KeyMode::RecoveryKey,
            verified_targets: vec!["local".into()],
        })
    }
}

/// A server on a fresh socket, stopped (and awaited) by [`Server::stop`].
struct Server {
    _dir: tempfile::TempDir,
    socket: PathBuf,
    daemon: Arc<FakeDaemon>,
    stop: Option<oneshot::Sender<()>>,
    /// Fires when the server has taken the shutdown signal (and so stopped accepting).
    stopping: Option<oneshot::Receiver<()>>,
    task: JoinHandle<()>,
}

impl Server {
    fn start() -> Server {
        Server::start_with(FakeDaemon::default(), Duration::from_secs(5))
    }

    fn start_with(daemon: FakeDaemon, grace: Duration) -> Server {
        let dir = tempfile::tempdir().expect("temporary directory");
        // A parent that does not exist yet: `bind` creates it.
        let socket = dir.path().join("run").join("control.sock");
        let listener = bind(&socket, 0o600).expect("bind");
        Server::serve(dir, socket, listener, daemon, grace)
    }

    fn serve(
        dir: tempfile::TempDir,
        socket: PathBuf,
        listener: tokio::net::UnixListener,
        daemon: FakeDaemon,
        grace: Duration,
    ) -> Server {
        let daemon = Arc::new(daemon);
        let (stop, stopped) = oneshot::channel::<()>();
        let (seen, stopping) = oneshot::channel::<()>();
        let shutdown = async move {
            let _ = stopped.await;
            let _ = seen.send(());
        };
        let limits = Limits {
            grace,
            connections: super::MAX_CONNECTIONS,
        };
        let task = tokio::spawn(serve_with(listener, daemon.clone(), shutdown, limits));
        Server {
            _dir: dir,
            socket,
            daemon,
            stop: Some(stop),
            stopping: Some(stopping),
            task,
        }
    }

    fn client(&self) -> Client {
        Client::new(&self.socket)
    }

    /// Signals shutdown and returns once the server has taken the signal: it accepts no
    /// more connections, and requests in flight are now in its grace period.
    async fn begin_stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(stopping) = self.stopping.take() {
            tokio::time::timeout(Duration::from_secs(10), stopping)
                .await
                .expect("the server takes the shutdown signal")
                .expect("the server's shutdown future ran");
        }
    }

    async fn stop(mut self) {
        self.begin_stop().await;
        tokio::time::timeout(Duration::from_secs(10), &mut self.task)
            .await
            .expect("the server stops within its grace period")
            .expect("the server task ends cleanly");
    }
}

async fn body_text(response: hyper::Response<Incoming>) -> String {
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("response body")
        .to_bytes();
    String::from_utf8(bytes.to_vec()).expect("UTF-8 body")
}

/// Checks an error response's status, media type and code; returns its message.
async fn expect_error(
    response: hyper::Response<Incoming>,
    status: StatusCode,
    code: &str,
) -> String {
    assert_eq!(response.status(), status);
    assert_eq!(
        response.headers()["content-type"],
        "application/json",
        "every error is JSON"
    );
    let text = body_text(response).await;
    let error: ErrorResponse = serde_json::from_str(&text).expect("an ErrorResponse");
    assert_eq!(error.error.code, code, "{text}");
    error.error.message
}

/// Writes `bytes` on a fresh connection and returns all that comes back before the server
/// closes it (a reset after the answer is not an error here).
async fn raw_exchange(socket: &Path, bytes: &[u8]) -> String {
    let mut stream = tokio::net::UnixStream::connect(socket)
        .await
        .expect("connect");
    let _ = stream.write_all(bytes).await;
    let mut answer = Vec::new();
    let mut buffer = [0u8; 4096];
    let read_all = async {
        while let Ok(n @ 1..) = stream.read(&mut buffer).await {
            answer.extend_from_slice(&buffer[..n]);
        }
    };
    tokio::time::timeout(Duration::from_secs(5), read_all)
        .await
        .expect("the server answers and closes the connection");
    String::from_utf8_lossy(&answer).into_owned()
}

fn api_error(result: Result<impl Sized, ClientError>) -> crate::control::api::ErrorBody {
    match result {
        Err(ClientError::Api(body)) => body,
        Err(other) => panic!("expected an API error, got: {other}"),
        Ok(_) => panic!("expected an API error, got success"),
    }
}

#[tokio::test]
async fn every_route_round_trips_through_the_client() {
    let server = Server::start();
    let client = server.client();

    let status = client.status().await.expect("status");
    assert_eq!(status.key_mode, KeyMode::RecoveryKey);
    assert_eq!(status.targets[0].name, "local");

    let queued = client
        .backup(BackupRequest { wait: false }, |_| {
            panic!("no progress without wait")
        })
        .await
        .expect("backup");
    assert_eq!(queued, None);

    let mut seen = Vec::new();
    let finished = client
        .backup(BackupRequest { wait: true }, |p| seen.push(p))
        .await
        .expect("backup --wait");
    assert_eq!(finished, Some(report()));
    assert_eq!(
        seen.last(),
        Some(&Progress {
            done_bytes: 100,
            total_bytes: 100,
            database_ready_ms: None,
        })
    );

    let snapshots = client.snapshots().await.expect("snapshots");
    assert_eq!(snapshots.snapshots[0].id, "1a2b3c4d5e6f");

    let restored = client
        .restore(
            RestoreRequest {
                snapshot: "latest".into(),
                to: "/restore/here".into(),
                force: true,
                target: Some("local".into()),
                include: Vec::new(),
            },
            |_| {},
        )
        .await
        .expect("restore");
    assert_eq!(restored.to, "/restore/here");

    let verified = client
        .verify(VerifyRequest { target: None }, |_| {})
        .await
        .expect("verify");
    assert_eq!(verified.packs, 2);

    let generated = client
        .key_generate(KeyGenerateRequest { replace: true })
        .await
        .expect("key generate");
    assert_eq!(generated.recovery_key.as_str(), "0123 4567 89ab cdef");

    let imported = client
        .key_import(KeyImportRequest {
            recovery_key: Zeroizing::new("0123 4567 89ab cdef".into()),
            replace: false,
        })
        .await
        .expect("key import");
    assert_eq!(imported.verified_targets, ["local"]);

    assert_eq!(
        server.daemon.calls(),
        [
            "status",
            "backup wait=false",
            "backup wait=true",
            "snapshots",
            "restore latest to=/restore/here force=true target=Some(\"local\")",
            "verify target=None",
            "key_generate replace=true",
            "key_import expected=true replace=false",
        ]
    );
    server.stop().await;
}

#[tokio::test]
async fn handler_errors_reach_the_client_with_code_message_and_hint() {
    let server = Server::start();
    let wrong_key = KeyImportRequest {
        recovery_key: Zeroizing::new("ffff".into()),
        replace: false,
    };
    let error = api_error(server.client().key_import(wrong_key).await);
    assert_eq!(error.code, "wrong-key");

    let response = server
        .client()
        .send_raw(
            "POST",
            "/v1/key/import",
            br#"{"recovery_key":"ffff"}"#.to_vec(),
        )
        .await
        .expect("request");
    expect_error(response, StatusCode::UNPROCESSABLE_ENTITY, "wrong-key").await;
    server.stop().await;
}

#[tokio::test]
async fn unknown_path_is_404_naming_the_path_and_the_routes() {
    let server = Server::start();
    let response = server
        .client()
        .send_raw("GET", "/v2/status", Vec::new())
        .await
        .expect("request");
    let message = expect_error(response, StatusCode::NOT_FOUND, "not-found").await;
    assert!(message.contains("\"/v2/status\""), "{message}");
    assert!(message.contains("POST /v1/restore"), "{message}");
    assert!(message.contains("GET /v1/snapshots"), "{message}");
    server.stop().await;
}

#[tokio::test]
async fn wrong_method_is_405_naming_the_allowed_one() {
    let server = Server::start();
    let response = server
        .client()
        .send_raw("POST", "/v1/status", Vec::new())
        .await
        .expect("request");
    assert_eq!(response.headers()["allow"], "GET");
    let message = expect_error(
        response,
        StatusCode::METHOD_NOT_ALLOWED,
        "method-not-allowed",
    )
    .await;
    assert!(message.contains("use GET /v1/status"), "{message}");
    assert!(server.daemon.calls().is_empty());
    server.stop().await;
}

#[tokio::test]
async fn oversized_body_is_413_by_content_length() {
    let server = Server::start();
    let huge = KeyImportRequest {
        recovery_key: Zeroizing::new("0".repeat(MAX_REQUEST_BYTES)),
        replace: false,
    };
    let error = api_error(server.client().key_import(huge).await);
    assert_eq!(error.code, "too-large");
    assert!(
        error.message.contains("POST /v1/key/import"),
        "{}",
        error.message
    );
    assert!(server.daemon.calls().is_empty());
    server.stop().await;
}

#[tokio::test]
async fn oversized_body_is_413_while_reading_a_chunked_body() {
    let server = Server::start();
    let chunk = vec![b' '; MAX_REQUEST_BYTES + 1];
    let mut request = format!(
        "POST /v1/key/import HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
         Transfer-Encoding: chunked\r\n\r\n{:x}\r\n",
        chunk.len()
    )
    .into_bytes();
    request.extend_from_slice(&chunk);
    request.extend_from_slice(b"\r\n0\r\n\r\n");
    let answer = raw_exchange(&server.socket, &request).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains(r#""code":"too-large""#), "{answer}");
    assert!(server.daemon.calls().is_empty());
    server.stop().await;
}

#[tokio::test]
async fn invalid_bodies_are_400_with_serdes_message() {
    let server = Server::start();
    let client = server.client();
    let cases: [(&str, &[u8], &str); 4] = [
        (
            "/v1/restore",
            br#"{"snapshot":"latest"}"#,
            "invalid request body for POST /v1/restore: missing field `to` at line 1 column 21",
        ),
        (
            "/v1/restore",
            b"{not json",
            "invalid request body for POST /v1/restore: key must be a string",
        ),
        (
            "/v1/backup",
            br#"{"wiat":true}"#,
            "unknown field `wiat`, expected `wait`",
        ),
        (
            "/v1/key/generate",
            br#"{"replace":"yes"}"#,
            "invalid type: string \"yes\", expected a boolean",
        ),
    ];
    for (path, body, expected) in cases {
        let response = client
            .send_raw("POST", path, body.to_vec())
            .await
            .expect("request");
        let message = expect_error(response, StatusCode::BAD_REQUEST, "bad-request").await;
        assert!(message.contains(expected), "{path}: {message}");
    }
    assert!(server.daemon.calls().is_empty());
    server.stop().await;
}

#[tokio::test]
async fn empty_post_body_means_an_empty_object_and_get_bodies_are_ignored() {
    let server = Server::start();
    let client = server.client();
    let response = client
        .send_raw("POST", "/v1/backup", Vec::new())
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    assert!(body_text(response).await.contains(r#""accepted":true"#));

    let response = client
        .send_raw("GET", "/v1/snapshots", b"this is not JSON".to_vec())
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(server.daemon.calls(), ["backup wait=false", "snapshots"]);
    server.stop().await;
}

#[tokio::test]
async fn garbage_on_the_socket_is_refused_and_the_server_keeps_serving() {
    let server = Server::start();
    let answer = raw_exchange(&server.socket, b"\x00\x16\x03\x01 not http at all\r\n\r\n").await;
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 400"),
        "{answer}"
    );
    let answer = raw_exchange(
        &server.socket,
        b"GET /v1/status HTTP/1.1\r\nHost: \xff\r\nContent-Length: x\r\n\r\n",
    )
    .await;
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 400"),
        "{answer}"
    );

    server
        .client()
        .status()
        .await
        .expect("status after garbage");
    server.stop().await;
}

#[tokio::test]
async fn socket_is_created_with_the_requested_mode() {
    let server = Server::start();
    let mode = std::fs::metadata(&server.socket)
        .expect("socket")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let parent = server.socket.parent().expect("parent");
    let parent_mode = std::fs::metadata(parent).expect("dir").permissions().mode();
    assert_eq!(parent_mode & 0o777, 0o700);
    server.stop().await;

    let dir = tempfile::tempdir().expect("temporary directory");
    let socket = dir.path().join("group.sock");
    let _listener = bind(&socket, 0o660).expect("bind");
    let mode = std::fs::metadata(&socket)
        .expect("socket")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o660);
}

#[tokio::test]
async fn stale_socket_is_replaced() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let socket = dir.path().join("control.sock");
    // A daemon that died: its socket file stays, nobody listens on it.
    drop(std::os::unix::net::UnixListener::bind(&socket).expect("stale socket"));
    assert!(socket.exists());

    let listener = bind(&socket, 0o600).expect("bind over a stale socket");
    let server = Server::serve(
        dir,
        socket,
        listener,
        FakeDaemon::default(),
        Duration::from_secs(5),
    );
    server.client().status().await.expect("status");
    server.stop().await;
}

#[tokio::test]
async fn second_bind_fails_while_a_daemon_serves() {
    let server = Server::start();
    let error = bind(&server.socket, 0o600).expect_err("a second daemon on the same socket");
    assert_eq!(error.kind(), std::io::ErrorKind::AddrInUse);
    let message = error.to_string();
    assert!(
        message.contains("another sealbackd is running on"),
        "{message}"
    );
    assert!(
        message.contains(&server.socket.display().to_string()),
        "{message}"
    );
    server
        .client()
        .status()
        .await
        .expect("the first daemon still serves");
    server.stop().await;
}

#[tokio::test]
async fn bind_refuses_to_replace_a_file_that_is_not_a_socket() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("control.sock");
    std::fs::write(&path, "precious").expect("write");
    let error = bind(&path, 0o600).expect_err("not a socket");
    assert!(error.to_string().contains("is not a socket"), "{error}");
    assert_eq!(std::fs::read_to_string(&path).expect("read"), "precious");
}

#[tokio::test]
async fn stream_sends_progress_in_order_then_exactly_one_final_line() {
    let server = Server::start();
    let response = server
        .client()
        .send_raw("POST", "/v1/backup", br#"{"wait":true}"#.to_vec())
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "application/x-ndjson");
    let text = body_text(response).await;
    let events: Vec<serde_json::Value> = text
        .lines()
        .map(|line| serde_json::from_str(line).expect("each line is one JSON event"))
        .collect();
    let (last, progress) = events.split_last().expect("at least one line");
    assert_eq!(last["event"], "done", "{text}");
    assert_eq!(last["result"]["snapshot"], "1a2b3c4d5e6f");
    let done: Vec<u64> = progress
        .iter()
        .map(|event| {
            assert_eq!(event["event"], "progress", "{text}");
            event["done_bytes"].as_u64().expect("done_bytes")
        })
        .collect();
    // Values set less than 250 ms apart may be merged, never reordered or lost at the end.
    assert!(done.windows(2).all(|pair| pair[0] < pair[1]), "{text}");
    assert_eq!(done.last(), Some(&100), "{text}");
    server.stop().await;
}

#[tokio::test]
async fn stream_reports_a_handler_error_as_its_final_line() {
    let server = Server::start();
    let missing = RestoreRequest {
        snapshot: "missing".into(),
        to: "/restore".into(),
        force: false,
        target: None,
        include: Vec::new(),
    };
    let response = server
        .client()
        .send_raw(
            "POST",
            "/v1/restore",
            serde_json::to_vec(&missing).expect("encode"),
        )
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::OK);
    let text = body_text(response).await;
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(text.contains(r#""event":"error""#), "{text}");

    let error = api_error(server.client().restore(missing, |_| {}).await);
    assert_eq!(error.code, "not-found");
    assert_eq!(
        error.hint.as_deref(),
        Some("sealbackctl snapshots lists them")
    );
    server.stop().await;
}

#[tokio::test]
async fn a_panicking_handler_is_an_internal_error_not_a_dead_server() {
    let server = Server::start();
    let panics = RestoreRequest {
        snapshot: "panic".into(),
        to: "/restore".into(),
        force: false,
        target: None,
        include: Vec::new(),
    };
    let error = api_error(server.client().restore(panics, |_| {}).await);
    assert_eq!(error.code, "internal");
    server.client().status().await.expect("still serving");
    server.stop().await;
}

// The clock is paused (only this test's `advance` moves it): the request is held until
// shutdown has begun and almost the whole grace period has passed.
#[tokio::test(start_paused = true)]
async fn shutdown_lets_requests_in_flight_finish_then_stops() {
    let grace = Duration::from_secs(5);
    let (daemon, held) = FakeDaemon::holding();
    let mut server = Server::start_with(daemon, grace);
    let client = server.client();
    let in_flight = tokio::spawn(async move { client.status().await });
    held.started.await.expect("status reaches the handler");
    server.begin_stop().await;
    tokio::time::advance(grace - Duration::from_millis(1)).await;
    assert!(
        !in_flight.is_finished(),
        "the request in flight was cut off"
    );
    held.release.send(()).expect("the handler still waits");
    let socket = server.socket.clone();
    server.stop().await;

    in_flight
        .await
        .expect("task")
        .expect("the request in flight is answered");
    assert!(!socket.exists(), "the socket file is removed");
    match Client::new(&socket).status().await {
        Err(error @ ClientError::Connect { .. }) => {
            let message = error.to_string();
            assert!(message.contains("cannot reach sealbackd at"), "{message}");
            assert!(message.contains("Is the daemon running?"), "{message}");
        }
        other => panic!(
            "expected a connect error, got {other:?}",
            other = other.map(|_| ())
        ),
    }
}

#[tokio::test]
async fn shutdown_cuts_off_streams_that_outlast_the_grace_period() {
    let (daemon, held) = FakeDaemon::holding();
    let server = Server::start_with(daemon, Duration::from_millis(200));
    let client = server.client();
    let forever = RestoreRequest {
        snapshot: "held".into(),
        to: "/restore".into(),
        force: false,
        target: None,
        include: Vec::new(),
    };
    let in_flight = tokio::spawn(async move { client.restore(forever, |_| {}).await });
    held.started.await.expect("the restore reaches the handler");
    // Never released: the restore outlasts the grace period.
    let _release = held.release;
    server.stop().await;
    match in_flight.await.expect("task") {
        Err(ClientError::Protocol(message)) => {
            assert!(
                message.contains("without reporting a result") || message.contains("broke"),
                "{message}"
            );
        }
        other => panic!("expected the stream to be cut, got {:?}", other.map(|_| ())),
    }
}
