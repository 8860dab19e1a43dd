//! The control protocol, version 1: the request and response bodies that travel as JSON over
//! HTTP/1.1 on the daemon's Unix socket. DESIGN.md ("Control protocol") is the specification;
//! this file is its Rust form, shared by the server (`control::server`) and `sealbackctl`.
//!
//! Routes (all under `/v1`):
//!
//! | method | path            | request body        | response                          |
//! |--------|-----------------|---------------------|-----------------------------------|
//! | GET    | /v1/status      | -                   | 200 [`Status`]                    |
//! | POST   | /v1/backup      | [`BackupRequest`]   | 202 [`Accepted`], or a stream     |
//! | GET    | /v1/snapshots   | -                   | 200 [`SnapshotList`]              |
//! | POST   | /v1/restore     | [`RestoreRequest`]  | stream ending in [`RestoreReport`]|
//! | POST   | /v1/key/generate| [`KeyGenerateRequest`] | 200 [`KeyGenerated`]           |
//! | POST   | /v1/key/import  | [`KeyImportRequest`]| 200 [`KeyImported`]               |
//! | POST   | /v1/key/set-password | [`KeySetPasswordRequest`] | 200 [`KeyChanged`]     |
//! | POST   | /v1/key/recover | [`KeyRecoverRequest`] | 200 [`KeyChanged`]              |
//! | POST   | /v1/key/change-password | [`KeyChangePasswordRequest`] | 200 [`KeyChanged`] |
//! | POST   | /v1/key/disable | [`KeyDisableRequest`] | 200 [`KeyChanged`]              |
//! | POST   | /v1/key/rotate  | [`KeyRotateRequest`] | 200 [`KeyRotated`]               |
//! | POST   | /v1/verify      | [`VerifyRequest`]   | stream ending in [`VerifyReport`] |
//! | POST   | /v1/repair      | [`RepairRequest`]   | stream ending in [`RepairReport`] |
//! | POST   | /v1/snapshots/acknowledge-missing | [`AcknowledgeMissingRequest`] | 200 [`AcknowledgedMissing`] |
//! | POST   | /v1/prune       | [`PruneRequest`]    | stream ending in [`PruneReports`] |
//! | POST   | /v1/ls          | [`LsRequest`]       | 200 [`Listing`]                   |
//! | POST   | /v1/diff        | [`DiffRequest`]     | 200 [`SnapshotDiff`]              |
//! | GET    | /v1/stats       | -                   | 200 [`RepositoryStats`]           |
//! | GET    | /metrics        | -                   | 200 Prometheus text format        |
//!
//! `/metrics` alone is outside `/v1`: it is where Prometheus looks, and its format is
//! Prometheus' (text/plain version 0.0.4), not JSON.
//!
//! A "stream" is `application/x-ndjson`: one [`StreamEvent`] per line, progress lines first,
//! and exactly one final `done` or `error` line. Every error, streamed or not, is an
//! [`ErrorBody`]; outside a stream its HTTP status says whose fault it is (4xx: the request;
//! 5xx: the daemon or a storage target), inside one its `code` does.
//!
//! Requests. A body is JSON (its `Content-Type` is not checked); an empty body reads as `{}`;
//! unknown fields are refused, so a misspelt option fails instead of being ignored (new
//! request fields must therefore be optional and left out by clients when unset). A body over
//! [`MAX_REQUEST_BYTES`] is refused with 413, by its `Content-Length` before it is read and by
//! counting while it is read. Bodies sent with GET are ignored. Query strings are ignored.
//!
//! Errors before any work starts are plain `application/json` [`ErrorResponse`]s: 404
//! `not-found` for an unknown path (the message lists the routes), 405 `method-not-allowed`
//! with an `Allow` header (`HEAD` included), 413 `too-large`, 408 `timeout` for a body not
//! sent within 10 s of its headers, 400 `bad-request` with serde's message (``invalid
//! request body for POST /v1/restore: missing field `to` at line 1 column 2``). A request
//! that is not HTTP at all gets hyper's bare 400 and the connection is closed.
//!
//! Streams. Once its request is valid, a streamed operation always answers 200 and reports
//! its outcome, success or failure, only in the final line: a handler error, even an
//! immediate one (`busy`, `no-key`, unknown snapshot), is an `error` line, never an HTTP
//! status, so a client has one shape to read and the status does not depend on timing. A
//! `progress` line is sent when the progress has changed since the last one, at most every
//! 250 ms, and once more before the final line if it changed since. A stream that ends
//! without a final line means the daemon stopped during the operation. The operation runs in
//! its own task: a client that disconnects stops only its view of it, never the operation
//! (this holds for every route). `POST /v1/backup` with `wait: false` answers 202
//! [`Accepted`] as soon as the backup is queued, or a plain error if it cannot be.

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

mod keys;
mod stats;
pub use keys::{
    KeyChangePasswordRequest, KeyChanged, KeyDisableRequest, KeyRecoverRequest, KeyRotateRequest,
    KeyRotated, KeySetPasswordRequest,
};
pub use stats::{ObjectCount, RepositoryStats, TargetStats};

/// The protocol version this file describes; it is the `/v1` in every path.
pub const PROTOCOL_VERSION: u32 = 1;

/// How `status` and `sealbackd --version` name the daemon: `sealbackd 0.1.0 (control
/// protocol 1)`.
pub fn daemon_name(version: &str, protocol: u32) -> String {
    format!("sealbackd {version} (control protocol {protocol})")
}

/// Requests larger than this are refused with 413 before they are parsed.
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;

/// The routes of the table above: the server dispatches on them, the client names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Status,
    Backup,
    Snapshots,
    Restore,
    KeyGenerate,
    KeyImport,
    Verify,
    KeySetPassword,
    KeyRecover,
    KeyChangePassword,
    KeyDisable,
    Repair,
    AcknowledgeMissing,
    KeyRotate,
    Prune,
    TargetAuth,
    Ls,
    Diff,
    Stats,
    Metrics,
}

impl Route {
    pub const ALL: [Route; 20] = [
        Route::Status,
        Route::Backup,
        Route::Snapshots,
        Route::Restore,
        Route::KeyGenerate,
        Route::KeyImport,
        Route::Verify,
        Route::KeySetPassword,
        Route::KeyRecover,
        Route::KeyChangePassword,
        Route::KeyDisable,
        Route::Repair,
        Route::AcknowledgeMissing,
        Route::KeyRotate,
        Route::Prune,
        Route::TargetAuth,
        Route::Ls,
        Route::Diff,
        Route::Stats,
        Route::Metrics,
    ];

    /// `GET` or `POST`: each route has exactly one method.
    pub fn method(self) -> &'static str {
        match self {
            Route::Status | Route::Snapshots | Route::Stats | Route::Metrics => "GET",
            _ => "POST",
        }
    }

    pub fn path(self) -> &'static str {
        match self {
            Route::Status => "/v1/status",
            Route::Backup => "/v1/backup",
            Route::Snapshots => "/v1/snapshots",
            Route::Restore => "/v1/restore",
            Route::KeyGenerate => "/v1/key/generate",
            Route::KeyImport => "/v1/key/import",
            Route::Verify => "/v1/verify",
            Route::KeySetPassword => "/v1/key/set-password",
            Route::KeyRecover => "/v1/key/recover",
            Route::KeyChangePassword => "/v1/key/change-password",
            Route::KeyDisable => "/v1/key/disable",
            Route::Repair => "/v1/repair",
            Route::AcknowledgeMissing => "/v1/snapshots/acknowledge-missing",
            Route::KeyRotate => "/v1/key/rotate",
            Route::Prune => "/v1/prune",
            Route::TargetAuth => "/v1/target/auth",
            Route::Ls => "/v1/ls",
            Route::Diff => "/v1/diff",
            Route::Stats => "/v1/stats",
            Route::Metrics => "/metrics",
        }
    }

    /// The route served at `path` (exactly; no trailing slash, no query).
    pub fn from_path(path: &str) -> Option<Route> {
        Route::ALL.into_iter().find(|route| route.path() == path)
    }
}

impl std::fmt::Display for Route {
    /// `POST /v1/restore`: how errors and logs name a route.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.method(), self.path())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum KeyMode {
    /// No backup key on this device yet: `sealbackctl key generate` or `key import`.
    None,
    /// The key is kept by the user as a 64-digit recovery key.
    RecoveryKey,
    /// The key is kept in the Backup Key Vault, behind the user's password.
    Password,
    /// The key is on this device only: its vault record was deleted (`key disable`).
    DeviceOnly,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Activity {
    Idle,
    BackingUp,
    Restoring,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Status {
    pub protocol: u32,
    pub daemon_version: String,
    pub activity: Activity,
    pub key_mode: KeyMode,
    /// `on-change`, `interval (daily)`, `manual`, ...
    pub schedule: String,
    pub store: String,
    /// A change was seen that no finished backup covers yet.
    pub pending_change: bool,
    pub last_backup: Option<BackupReport>,
    pub last_error: Option<String>,
    pub targets: Vec<TargetStatus>,
    /// Password attempts the vault still allows, as of the last failed one (absent until then).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vault_attempts_left: Option<u32>,
    /// A `[vault]` is configured: the password commands can work.
    #[serde(default)]
    pub vault_configured: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TargetStatus {
    pub name: String,
    pub plugin: String,
    /// The schedule this target follows: its own `schedule`, else `[schedule]`'s
    /// (`on-change`, `manual`, `interval (1day)`).
    #[serde(default)]
    pub schedule: String,
    /// The backup the scheduler plans next for this target (Unix ms); none while nothing is
    /// planned (manual, or on-change with no change pending).
    #[serde(default)]
    pub next_backup_unix_ms: Option<i64>,
    pub last_snapshot: Option<String>,
    pub last_snapshot_unix_ms: Option<i64>,
    pub snapshots: u64,
    /// Bytes of all objects this daemon knows to be stored on the target.
    pub bytes_stored: u64,
    pub last_error: Option<String>,
    /// The alarm: snapshots this device made or saw that the target no longer holds, as of
    /// the last time it was listed (DESIGN.md §6.1).
    #[serde(default)]
    pub missing_snapshots: Vec<MissingSnapshot>,
    /// Calls into the provider since the daemon started, and how they went.
    #[serde(default)]
    pub requests: ProviderCounters,
}

/// What the host counted of one provider's calls since the daemon started.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ProviderCounters {
    pub requests: u64,
    /// Transient failures that were retried.
    pub retries: u64,
    /// Calls that failed for good (after their retries).
    pub failures: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    /// Calls made and not yet answered: a provider that hangs shows here.
    #[serde(default)]
    pub in_flight: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupRequest {
    /// Answer only when the backup has finished (with a progress stream).
    #[serde(default)]
    pub wait: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Accepted {
    pub accepted: bool,
    pub message: String,
}

/// What one backup did. Byte counters are the figures the benchmarks read.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct BackupReport {
    pub snapshot: String,
    pub target: String,
    pub time_unix_ms: i64,
    pub duration_ms: u64,
    pub files: u64,
    /// Files whose content was read (the rest were unchanged and skipped by the file cache).
    pub files_read: u64,
    /// Files that kept changing while we read them; their previous version was kept.
    pub files_unstable: u64,
    pub db_pages: u64,
    /// How the database was read.
    #[serde(default)]
    pub db_read: Option<DbRead>,
    /// Bytes read from the message store (database pages, WAL headers and media).
    pub bytes_read: u64,
    /// Bytes handed to the storage target (packs, index, snapshot).
    pub bytes_written: u64,
    pub chunks_new: u64,
    pub chunks_reused: u64,
    pub packs_written: u64,
    /// Chunk ids the backup proved stored before it wrote its snapshot (the ones it
    /// introduced), and how long that took, in microseconds.
    #[serde(default)]
    pub chunks_proved: u64,
    #[serde(default)]
    pub proof_us: u64,
    /// Nothing changed since the target's last snapshot: no snapshot was written, and
    /// `snapshot` is that last one.
    #[serde(default)]
    pub unchanged: bool,
    /// The targets this backup failed on while it reached others (`target` is one it
    /// reached); empty when it reached every target. A backup that reached none is an error.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failed: Vec<TargetFailure>,
}

/// One target a backup failed on, and why.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TargetFailure {
    pub target: String,
    pub error: ErrorBody,
}

/// How a backup read the database: only what changed since the parent snapshot (`delta`),
/// or every page, and then why.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct DbRead {
    pub delta: bool,
    pub why_full: Option<String>,
    /// Bytes of pages and WAL headers read.
    pub bytes: u64,
    /// Whether the changed pages went as a patch on the last snapshot's image (DESIGN.md
    /// §4.1.2), rather than as pages and the lists naming them.
    #[serde(default)]
    pub patch: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SnapshotList {
    pub snapshots: Vec<SnapshotInfo>,
    /// Snapshots this device made or saw that a target no longer holds, genuine: removed,
    /// hidden or rolled back there. Until the user acknowledges them (or they come back),
    /// `restore latest` refuses to restore an older snapshot in place of one of them.
    #[serde(default)]
    pub missing: Vec<MissingSnapshot>,
}

/// A snapshot the device remembers that its target no longer holds (DESIGN.md §6.1).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct MissingSnapshot {
    pub id: String,
    pub target: String,
    /// When it was made, if the device knows (a parent it never loaded: not).
    pub time_unix_ms: Option<i64>,
    /// How the device knows it: `made` (it wrote it), `seen` (it loaded it from the target)
    /// or `parent` (the newest snapshot on the target names it as its parent).
    pub known: String,
    /// When the device first found it missing.
    pub noticed_unix_ms: i64,
    /// Still listed by the target, but it fails authentication.
    pub damaged: bool,
}

/// Ends the alarm of a target's missing snapshots: the device forgets them.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcknowledgeMissingRequest {
    /// The target; default: every configured target.
    #[serde(default)]
    pub target: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AcknowledgedMissing {
    /// The snapshots forgotten, which raise no alarm any more.
    pub acknowledged: Vec<MissingSnapshot>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SnapshotInfo {
    pub id: String,
    pub target: String,
    pub time_unix_ms: i64,
    pub host: String,
    pub files: u64,
    /// Size of the database image and all files, as restored.
    pub size: u64,
    /// Why the retention policy keeps it (see [`PolicyDecision`]); empty: the next prune
    /// forgets it.
    #[serde(default)]
    pub keep: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestoreRequest {
    /// A snapshot id, an unambiguous prefix of one, or `latest`.
    pub snapshot: String,
    /// Absolute path of the directory to restore into (created if missing).
    pub to: String,
    /// Restore into a non-empty directory, replacing files of the same name.
    #[serde(default)]
    pub force: bool,
    /// The target to restore from; default: the first configured target.
    #[serde(default)]
    pub target: Option<String>,
    /// Restore only the files these globs take (relative to the store; a folder takes all
    /// of it; the database too only if one takes it); empty: the whole snapshot.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub include: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RestoreReport {
    pub snapshot: String,
    pub target: String,
    pub to: String,
    /// Files other than the database, counted as `snapshots` and backups count them.
    pub files: u64,
    pub bytes: u64,
    pub duration_ms: u64,
    /// The database, restored first: when it was complete and passed SQLite's
    /// `integrity_check` (absent when the restore left it out).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<RestoredDatabase>,
}

/// The messages are back: the restored database is complete and SQLite finds it sound.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RestoredDatabase {
    /// Relative to the restore directory.
    pub path: String,
    pub bytes: u64,
    /// Milliseconds from the restore's start until it was in place and `PRAGMA
    /// integrity_check` had answered `ok`: the time to messages.
    pub ready_ms: u64,
}

/// `POST /v1/ls`: the files of a snapshot, or of one folder or file in it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LsRequest {
    /// A snapshot id, an unambiguous prefix of one, or `latest`.
    pub snapshot: String,
    /// A file or folder relative to the store; default: everything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// The target; default: the first configured target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Listing {
    pub snapshot: String,
    pub target: String,
    pub time_unix_ms: i64,
    /// Sorted by path; the database among them.
    pub files: Vec<ListedFile>,
}

/// One file of a snapshot.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ListedFile {
    pub path: String,
    pub size: u64,
    /// Permission bits.
    pub mode: u32,
    /// Modification time in Unix ms; absent for the database (captured, not copied).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtime_unix_ms: Option<i64>,
    /// The message database.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub database: bool,
}

/// `POST /v1/diff`: what changed from one snapshot to another.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiffRequest {
    /// The older snapshot (id, prefix or `latest`).
    pub from: String,
    /// The newer snapshot.
    pub to: String,
    /// The target holding both; default: the first configured target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SnapshotDiff {
    pub from: String,
    pub to: String,
    pub target: String,
    /// Files in `to` only, by path.
    pub added: Vec<ListedFile>,
    /// Files in `from` only.
    pub removed: Vec<ListedFile>,
    /// Files in both whose content or permission bits differ.
    pub changed: Vec<ChangedFile>,
    /// The database in either; absent if in neither.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<DatabaseChange>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ChangedFile {
    pub path: String,
    pub size_before: u64,
    pub size_after: u64,
}

/// The database from one snapshot to the other.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct DatabaseChange {
    pub path: String,
    /// Absent where a snapshot has no database.
    pub size_before: Option<u64>,
    pub size_after: Option<u64>,
    /// `size_after - size_before`, in bytes.
    pub size_change: i64,
    /// Its content differs (a size unchanged can hide changed pages).
    pub changed: bool,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyGenerateRequest {
    /// Replace a key that is already present. Backups made with the old key stay readable
    /// only with the old key.
    #[serde(default)]
    pub replace: bool,
}

/// The only response that carries a secret: the recovery key, shown once.
#[derive(Serialize, Deserialize)]
pub struct KeyGenerated {
    /// 64 hexadecimal digits in 16 groups of 4; zeroized when dropped.
    pub recovery_key: Zeroizing<String>,
}

/// Deliberately without Debug: it carries the recovery key.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyImportRequest {
    /// Zeroized when dropped.
    pub recovery_key: Zeroizing<String>,
    #[serde(default)]
    pub replace: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeyImported {
    pub key_mode: KeyMode,
    /// Targets whose repository the key was checked against (it opened each).
    pub verified_targets: Vec<String>,
}

/// Progress of a long operation.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Progress {
    pub done_bytes: u64,
    pub total_bytes: u64,
    /// A restore's database is in place and passed `integrity_check`, this many ms after the
    /// restore began: the messages can be read while the media are still coming.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database_ready_ms: Option<u64>,
}

/// One line of an `application/x-ndjson` stream.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum StreamEvent<T> {
    Progress(Progress),
    Done { result: T },
    Error { error: ErrorBody },
}

/// The body of every error response.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ErrorBody {
    /// Stable, machine-readable: `bad-request`, `not-found`, `conflict`, `no-key`,
    /// `busy`, `target-failed`, `integrity`, `snapshot-missing` (DESIGN.md §6.1), `internal`, ...
    pub code: String,
    /// What is wrong, naming the thing.
    pub message: String,
    /// What to do about it, when there is something to do.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

/// Wraps [`ErrorBody`] as `{"error": {...}}` on the wire.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorResponse {
    pub error: ErrorBody,
}

/// `POST /v1/target/auth`: run a target's interactive authorization (`sealbackctl target auth
/// NAME`). The answer is a stream of [`AuthEvent`] lines: prompts for the person, then one
/// `done` or `error`. The daemon stops the authorization when the client goes away.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetAuthRequest {
    pub target: String,
}

/// The outcome of a completed authorization.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TargetAuthorized {
    pub target: String,
}

/// One line of the `target/auth` stream.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum AuthEvent {
    /// Text to show the person (a URL and a code to enter).
    Prompt(String),
    Done {
        result: TargetAuthorized,
    },
    Error {
        error: ErrorBody,
    },
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifyRequest {
    /// The target to check; default: the first configured target.
    #[serde(default)]
    pub target: Option<String>,
}

/// What `verify` read and what it found wrong. An empty `problems` means every object
/// authenticated and every snapshot can be restored in full.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct VerifyReport {
    pub target: String,
    pub snapshots: u64,
    pub indexes: u64,
    pub packs: u64,
    pub blobs: u64,
    pub bytes_read: u64,
    /// One line per problem, each naming the object.
    pub problems: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepairRequest {
    /// The target to repair; default: the first configured target.
    #[serde(default)]
    pub target: Option<String>,
}

/// What `repair` removed: index and snapshot objects read in full, twice, that failed
/// authentication both times (what a torn put leaves). Objects it could not be sure of are
/// kept and named.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct RepairReport {
    pub target: String,
    /// Index and snapshot objects read.
    pub checked: u64,
    /// One line per object removed, naming it and what was wrong.
    pub removed: Vec<String>,
    /// One line per object that looked damaged but was kept, and why.
    pub kept: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PruneRequest {
    /// The target to prune; default: every configured target, one after the other.
    #[serde(default)]
    pub target: Option<String>,
    /// Say what would be kept, forgotten and deleted; change nothing.
    #[serde(default)]
    pub dry_run: bool,
    /// Without the grace period: mark and delete at once (one device alone on the target;
    /// refused when it holds another host's snapshots).
    #[serde(default)]
    pub now: bool,
}

/// What the retention policy says of one snapshot.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PolicyDecision {
    pub id: String,
    pub time_unix_ms: i64,
    pub host: String,
    /// Why it is kept (`newest`, `last`, `hourly`, `daily`, `weekly`, `monthly`); empty:
    /// forgotten.
    pub keep: Vec<String>,
}

/// One target's prune.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PruneReport {
    pub target: String,
    /// Every snapshot the target held, oldest first, with the policy's decision.
    pub snapshots: Vec<PolicyDecision>,
    /// What was deleted, rewritten and marked (DESIGN §12).
    pub gc: sealback_repo::gc::PruneReport,
}

/// `POST /v1/prune`'s result: one report per target pruned.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct PruneReports {
    pub targets: Vec<PruneReport>,
    /// After a key rotation: the old key's generation, retired by this prune once every
    /// target holds a complete backup under the new key (DESIGN §3.11).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retired_generation: Option<RetiredGeneration>,
}

/// What retiring a key's generation removed, over every target.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct RetiredGeneration {
    pub objects: u64,
    pub bytes: u64,
}
