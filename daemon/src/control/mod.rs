//! The control socket: the daemon's HTTP/JSON API on a Unix socket, and the client
//! `sealbackctl` uses. `api` holds the protocol types; `server` serves a [`Handler`];
//! `client` speaks to it.

pub mod api;
pub mod client;
pub mod server;

use std::future::Future;

use api::{
    AcknowledgeMissingRequest, AcknowledgedMissing, BackupReport, BackupRequest, ErrorBody,
    KeyChangePasswordRequest, KeyChanged, KeyDisableRequest, KeyGenerateRequest, KeyGenerated,
    KeyImportRequest, KeyImported, KeyRecoverRequest, KeyRotateRequest, KeyRotated,
    KeySetPasswordRequest, Progress, PruneReports, PruneRequest, RepairReport, RepairRequest,
    RestoreReport, RestoreRequest, SnapshotList, Status, VerifyReport, VerifyRequest,
};
use tokio::sync::watch;

/// An error as the control API reports it: an HTTP status and an [`ErrorBody`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: u16,
    pub body: ErrorBody,
}

impl ApiError {
    pub fn new(status: u16, code: &str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            body: ErrorBody {
                code: code.to_owned(),
                message: message.into(),
                hint: None,
            },
        }
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.body.hint = Some(hint.into());
        self
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "bad-request", message)
    }

    /// A vault command on a daemon without `[vault]`. `sealbackctl` says it too, before it
    /// asks for a password that could not be used.
    pub fn no_vault() -> Self {
        Self::new(409, "no-vault", "no vault configured: this daemon has no Backup Key Vault")
            .with_hint("add a [vault] section (url or urls, server_key, account, credential_file) to the configuration and restart sealbackd")
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.body.message)?;
        if let Some(hint) = &self.body.hint {
            write!(f, " (hint: {hint})")?;
        }
        Ok(())
    }
}

impl std::error::Error for ApiError {}

/// Where a long operation reports its progress. Cheap to clone, callable from any thread,
/// including the blocking threads the backup engine runs on.
#[derive(Clone)]
pub struct ProgressSink(watch::Sender<Progress>);

impl ProgressSink {
    pub fn new() -> (Self, watch::Receiver<Progress>) {
        let (tx, rx) = watch::channel(Progress::default());
        (ProgressSink(tx), rx)
    }

    /// A sink nobody listens to.
    pub fn discard() -> Self {
        Self::new().0
    }

    pub fn set(&self, done_bytes: u64, total_bytes: u64) {
        self.0.send_modify(|p| {
            p.done_bytes = done_bytes;
            p.total_bytes = total_bytes;
        });
    }

    /// A restore's database is complete and sound, `ms` after the restore began.
    pub fn database_ready(&self, ms: u64) {
        self.0.send_modify(|p| p.database_ready_ms = Some(ms));
    }
}

/// What the control server asks of the daemon: one method per route.
///
/// The server runs each returned future in a task of its own, so it is never cancelled
/// because the client went away: a backup, restore or key change that started finishes (its
/// result is then only logged by the handler, if it wants). A panic in a handler becomes a
/// 500 `internal` error, not a lost connection.
pub trait Handler: Send + Sync + 'static {
    fn status(&self) -> impl Future<Output = Result<Status, ApiError>> + Send;

    /// Starts a backup. With `wait`, resolves when it has finished (reporting progress to
    /// `progress`); without, resolves as soon as the backup is queued.
    fn backup(
        &self,
        request: BackupRequest,
        progress: ProgressSink,
    ) -> impl Future<Output = Result<Option<BackupReport>, ApiError>> + Send;

    fn snapshots(&self) -> impl Future<Output = Result<SnapshotList, ApiError>> + Send;

    /// The files of a snapshot, or of one folder of it.
    fn ls(
        &self,
        request: api::LsRequest,
    ) -> impl Future<Output = Result<api::Listing, ApiError>> + Send {
        let _ = request;
        async {
            Err(ApiError::new(
                404,
                "not-found",
                "this server cannot list snapshots",
            ))
        }
    }

    /// What changed between two snapshots.
    fn diff(
        &self,
        request: api::DiffRequest,
    ) -> impl Future<Output = Result<api::SnapshotDiff, ApiError>> + Send {
        let _ = request;
        async {
            Err(ApiError::new(
                404,
                "not-found",
                "this server cannot compare snapshots",
            ))
        }
    }

    /// Forgets the snapshots a target (or every target) is missing, ending their alarm.
    fn acknowledge_missing(
        &self,
        request: AcknowledgeMissingRequest,
    ) -> impl Future<Output = Result<AcknowledgedMissing, ApiError>> + Send;

    fn restore(
        &self,
        request: RestoreRequest,
        progress: ProgressSink,
    ) -> impl Future<Output = Result<RestoreReport, ApiError>> + Send;

    /// Reads every object of a target's repository and checks it.
    fn verify(
        &self,
        request: VerifyRequest,
        progress: ProgressSink,
    ) -> impl Future<Output = Result<VerifyReport, ApiError>> + Send;

    /// Removes a target's index and snapshot objects that are confirmed damaged.
    fn repair(
        &self,
        request: RepairRequest,
        progress: ProgressSink,
    ) -> impl Future<Output = Result<RepairReport, ApiError>> + Send;

    /// Applies the retention policy to one target or all, and reclaims their space.
    fn prune(
        &self,
        request: PruneRequest,
        progress: ProgressSink,
    ) -> impl Future<Output = Result<PruneReports, ApiError>> + Send;

    fn key_generate(
        &self,
        request: KeyGenerateRequest,
    ) -> impl Future<Output = Result<KeyGenerated, ApiError>> + Send;

    fn key_set_password(
        &self,
        request: KeySetPasswordRequest,
    ) -> impl Future<Output = Result<KeyChanged, ApiError>> + Send;

    fn key_recover(
        &self,
        request: KeyRecoverRequest,
    ) -> impl Future<Output = Result<KeyChanged, ApiError>> + Send;

    fn key_change_password(
        &self,
        request: KeyChangePasswordRequest,
    ) -> impl Future<Output = Result<KeyChanged, ApiError>> + Send;

    fn key_disable(
        &self,
        request: KeyDisableRequest,
    ) -> impl Future<Output = Result<KeyChanged, ApiError>> + Send;

    fn key_import(
        &self,
        request: KeyImportRequest,
    ) -> impl Future<Output = Result<KeyImported, ApiError>> + Send;

    /// What each target's repository holds (`GET /v1/stats`).
    fn stats(&self) -> impl Future<Output = Result<api::RepositoryStats, ApiError>> + Send {
        async {
            Err(ApiError::new(
                404,
                "not-found",
                "this server keeps no statistics",
            ))
        }
    }

    /// The daemon's metrics in Prometheus' text format (`GET /metrics`).
    fn metrics(&self) -> impl Future<Output = Result<String, ApiError>> + Send {
        async {
            Err(ApiError::new(
                404,
                "not-found",
                "this server keeps no metrics",
            ))
        }
    }

    /// Rotates the key (or, with `finish`, retires the old generation): DESIGN.md §3.11.
    fn key_rotate(
        &self,
        request: KeyRotateRequest,
    ) -> impl Future<Output = Result<KeyRotated, ApiError>> + Send {
        let _ = request;
        async {
            Err(ApiError::new(
                404,
                "not-found",
                "this server cannot rotate keys",
            ))
        }
    }

    /// Runs a target's interactive authorization: `prompts` receives the text for the person,
    /// `cancelled` turns true when the client has gone away. A daemon without targets that
    /// authorize answers 404.
    fn target_auth(
        &self,
        request: crate::control::api::TargetAuthRequest,
        prompts: tokio::sync::mpsc::UnboundedSender<String>,
        cancelled: std::sync::Arc<std::sync::atomic::AtomicBool>,
    ) -> impl Future<Output = Result<crate::control::api::TargetAuthorized, ApiError>> + Send {
        let _ = (prompts, cancelled);
        async move {
            Err(ApiError::new(
                404,
                "not-found",
                format!("target {:?} has no authorization step", request.target),
            ))
        }
    }
}
