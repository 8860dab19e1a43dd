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

use super::answer::BODY_READ_TIMEOUT;
use super::{HEADER_READ_TIMEOUT, Limits, bind, serve_with};
use crate::control::api::{
    AcknowledgeMissingRequest, AcknowledgedMissing, Activity, BackupReport, BackupRequest,
    ErrorResponse, KeyChangePasswordRequest, KeyChanged, KeyDisableRequest, KeyGenerateRequest,
    KeyGenerated, KeyImportRequest, KeyImported, KeyMode, KeyRecoverRequest, KeySetPasswordRequest,
    MAX_REQUEST_BYTES, Progress, PruneReports, PruneRequest, RepairReport, RepairRequest,
    RestoreReport, RestoreRequest, Route, SnapshotInfo, SnapshotList, Status, TargetStatus,
    VerifyReport, VerifyRequest,
};
use crate::control::client::{Client, ClientError};
use crate::control::{ApiError, Handler, ProgressSink};

mod limits;
mod protocol;
mod socket;

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
        Server::start_limits(FakeDaemon::default(), Limits::DAEMON)
    }

    fn start_with(daemon: FakeDaemon, grace: Duration) -> Server {
        Server::start_limits(
            daemon,
            Limits {
                grace,
                ..Limits::DAEMON
            },
        )
    }

    /// A server that serves at most `connections` clients at once.
    fn start_limited(daemon: FakeDaemon, connections: usize) -> Server {
        Server::start_limits(
            daemon,
            Limits {
                connections,
                ..Limits::DAEMON
            },
        )
    }

    fn start_limits(daemon: FakeDaemon, limits: Limits) -> Server {
        let dir = tempfile::tempdir().expect("temporary directory");
        // A parent that does not exist yet: `bind` creates it.
        let socket = dir.path().join("run").join("control.sock");
        let listener = bind(&socket, 0o600).expect("bind");
        Server::serve(dir, socket, listener, daemon, limits)
    }

    fn serve(
        dir: tempfile::TempDir,
        socket: PathBuf,
        listener: tokio::net::UnixListener,
        daemon: FakeDaemon,
        limits: Limits,
    ) -> Server {
        let daemon = Arc::new(daemon);
        let (stop, stopped) = oneshot::channel::<()>();
        let (seen, stopping) = oneshot::channel::<()>();
        let shutdown = async move {
            let _ = stopped.await;
            let _ = seen.send(());
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
