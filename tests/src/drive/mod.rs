//! A Google Drive v3 emulator: the parts of Drive's wire protocol a backup client uses, on a
//! loopback port, in memory, with fault injection and counters. Written from Google's Drive v3
//! and OAuth 2.0 documentation and checked against the requests of Google's generated Rust
//! client, `google-drive3` (`tests/tests/e2e/drive_emulator.rs`).
//!
//! # Starting it
//! In a test: `let drive = DriveEmulator::start(Options::default())?;` (port chosen by the
//! system; stopped on drop). Point the provider at it with
//! `api_root = drive.api_root()` (`http://127.0.0.1:PORT/`), `token_uri = drive.token_uri()`
//! (`…/token`), `device_auth_uri = drive.device_auth_uri()` (`…/device/code`), and the
//! client [`Options::client_id`] / [`Options::client_secret`]. For people:
//! `drive-emulator --listen 127.0.0.1:8088` prints those options (see `--help`).
//!
//! # What it serves (paths under `api_root`)
//! - `POST token` — `grant_type=refresh_token` and
//!   `grant_type=urn:ietf:params:oauth:grant-type:device_code` (RFC 8628: `authorization_pending`
//!   428 until the user code is approved, `slow_down` 403 when polled faster than `interval`
//!   (which then grows by 5 s; [`Options::device_poll_enforced`] enforces a longer one than
//!   advertised, and [`DriveEmulator::device_polls`] records each poll), `access_denied` 403, `expired_token` 400). Access tokens last
//!   [`Options::access_token_lifetime`]; a Drive request without a valid one gets 401 `authError`.
//! - `POST device/code` — `device_code`, `user_code`, `verification_url` (Google's name) and
//!   `verification_uri`, `expires_in`, `interval`. A test approves with
//!   [`DriveEmulator::approve`]; a person opens `GET device?user_code=CODE`.
//! - `GET drive/v3/files` — files.list: `q` (`name = '…'`, `name != '…'`, `name contains '…'`,
//!   `mimeType = '…'`, `'appDataFolder' in parents`, `trashed = false`, `and`/`or`/`not`/
//!   parentheses; anything else 400 `invalid` naming `q`), `spaces` (`drive`, `appDataFolder`),
//!   `fields` (partial responses, e.g. `nextPageToken,files(id,name,size)`), `pageSize` (1–1000;
//!   at most [`Options::max_page_size`] are returned), `pageToken`, `orderBy` (`name`,
//!   `createdTime`, `modifiedTime`, each optionally `desc`; default: creation order).
//! - `GET drive/v3/files/ID` — metadata (`fields`), or the content with `alt=media` (`Range`
//!   honoured). `DELETE drive/v3/files/ID` — 204. Unknown ids: 404 `notFound`.
//! - `POST drive/v3/files` — a file without content.
//! - `POST upload/drive/v3/files?uploadType=multipart` (or `media`) — multipart/related,
//!   parsed as bytes. `?uploadType=resumable` (also `resumable/upload/drive/v3/files`, which
//!   google-drive3 uses) — answers `Location: …upload/drive/v3/files?uploadType=resumable&
//!   upload_id=…`; `PUT` (or `POST`) there with `Content-Range: bytes a-b/N` is answered 308 with
//!   `Range: bytes=0-b` until the last byte, then 200 and the file; chunks other than the last must
//!   be multiples of 256 KiB (else 400); `Content-Range: bytes */N` and no content asks for the
//!   status (308 with `Range`, or 200 and the file once complete). The session URL needs no token.
//! - Files have `size`, `sha256Checksum`, `createdTime`, `parents`, `spaces`, `appProperties`.
//!   Drive never replaces by name: two creates with one name make two files.
//! - Error bodies are Drive's: `{"error": {"code", "message", "errors": [{"domain", "reason",
//!   "message"}], "status"}}` ([`DriveError`]).
//!
//! # Faults ([`DriveEmulator::inject`], `--fault KIND:ACTION[:COUNT]`)
//! A [`Fault`] gives the next `count` requests its [`Matcher`] matches (a [`RequestKind`], a
//! method, a path substring; or every n-th of them, [`Fault::every`]) one [`FaultAction`]: an error ([`DriveError::rate_limit_exceeded`],
//! `user_rate_limit_exceeded`, `too_many_requests(Some(retry_after))`, `backend_error`,
//! `service_unavailable`, `storage_quota_exceeded`, `auth_error`), a connection cut after K
//! bytes of the request body ([`FaultAction::CutBodyAfter`]; a resumable session keeps what
//! arrived, in whole 256 KiB units), a lost answer (served, then the connection closed:
//! a retried create leaves a duplicate), a duplicated create ([`FaultAction::Duplicate`]: a
//! second file of the name appears), or a delay. Also: [`DriveEmulator::expire_access_tokens`],
//! [`DriveEmulator::set_quota`] (then uploads past it get 403 `storageQuotaExceeded`),
//! [`DriveEmulator::set_max_page_size`], [`DriveEmulator::put_file`] (e.g. a duplicate name).
//!
//! # Reading it
//! [`DriveEmulator::counters`] (requests by [`RequestKind`], bytes uploaded — re-sent bytes
//! included — and downloaded, objects and bytes stored, error answers),
//! [`DriveEmulator::upload_sessions`] (per session: bytes persisted and bytes received, so a
//! test can assert what a resumed upload re-sent), [`DriveEmulator::app_data_files`] and
//! [`DriveEmulator::app_data_content`] (stored files by name). The program serves the counters
//! at `GET /emulator/counters` and the files at `GET /emulator/files`.

// A Drive error is the answer itself (built once per failed request), not worth boxing.
#![allow(clippy::result_large_err)]

mod errors;
mod faults;
mod fields;
mod files;
mod oauth;
mod query;
mod server;
mod state;
mod upload;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::watch;

pub use errors::{DriveError, OAuthError};
pub use faults::{Fault, FaultAction, Matcher, RequestKind};
pub use files::MAX_PAGE_SIZE;
pub use state::{APP_DATA_FOLDER, Counters, DevicePoll, StoredFile, UploadSession};
pub use upload::CHUNK_GRANULE;

use state::{Decision, NewFile, State};

/// The scope of the hidden application-data folder.
pub const SCOPE_APPDATA: &str = "https://www.googleapis.com/auth/drive.appdata";

/// How the emulator starts.
#[derive(Debug, Clone)]
pub struct Options {
    /// Where to listen; port 0 lets the system choose.
    pub listen: SocketAddr,
    /// The one OAuth client the token endpoints accept.
    pub client_id: String,
    pub client_secret: String,
    /// Bytes all files may hold together (`None`: no limit).
    pub quota: Option<u64>,
    /// The most files a files.list page returns, whatever `pageSize` asks (Drive may return
    /// fewer than asked; clients must follow `nextPageToken`).
    pub max_page_size: u32,
    pub access_token_lifetime: Duration,
    pub device_code_lifetime: Duration,
    /// The device flow's polling `interval`.
    pub device_poll_interval: Duration,
    /// The interval the token endpoint enforces until it has answered `slow_down` once (then
    /// the advertised interval plus 5 s): set it longer than `device_poll_interval` to make a
    /// client that keeps the advertised interval hear `slow_down`. `None`: the advertised one.
    pub device_poll_enforced: Option<Duration>,
    /// The largest request body read.
    pub max_body: u64,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            client_id: "sealback-emulator.apps.googleusercontent.com".to_string(),
            client_secret: "emulator-client-secret".to_string(),
            quota: None,
            max_page_size: MAX_PAGE_SIZE,
            access_token_lifetime: Duration::from_secs(3600),
            device_code_lifetime: Duration::from_secs(1800),
            device_poll_interval: Duration::from_secs(5),
            device_poll_enforced: None,
            max_body: 512 << 20,
        }
    }
}

/// A running emulator; stopped when dropped.
pub struct DriveEmulator {
    shared: Arc<server::Shared>,
    addr: SocketAddr,
    options: Options,
    stop: watch::Sender<bool>,
    thread: Option<JoinHandle<()>>,
}

impl DriveEmulator {
    /// Binds `options.listen` and serves on a thread of its own.
    pub fn start(options: Options) -> std::io::Result<DriveEmulator> {
        let listener = std::net::TcpListener::bind(options.listen)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let root = format!("http://{addr}/");
        let shared = Arc::new(server::Shared {
            state: Mutex::new(State::new(
                options.quota,
                options.max_page_size,
                options.access_token_lifetime,
            )),
            oauth: oauth::OAuthConfig {
                client_id: options.client_id.clone(),
                client_secret: options.client_secret.clone(),
                device_code_lifetime: options.device_code_lifetime,
                interval: options.device_poll_interval,
                enforced_interval: options
                    .device_poll_enforced
                    .unwrap_or(options.device_poll_interval),
                verification_url: format!("{root}device"),
            },
            max_body: options.max_body,
        });
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        let (stop, stopped) = watch::channel(false);
        let serving = shared.clone();
        let thread = std::thread::Builder::new()
            .name("drive-emulator".into())
            .spawn(move || {
                runtime.block_on(async move {
                    match tokio::net::TcpListener::from_std(listener) {
                        Ok(listener) => server::serve(listener, serving, stopped).await,
                        Err(e) => eprintln!("drive-emulator: cannot serve on {addr}: {e}"),
                    }
                });
            })?;
        Ok(DriveEmulator {
            shared,
            addr,
            options,
            stop,
            thread: Some(thread),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT/`: the provider's `api_root`.
    pub fn api_root(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// The provider's `token_uri`.
    pub fn token_uri(&self) -> String {
        format!("http://{}/token", self.addr)
    }

    /// The provider's `device_auth_uri`.
    pub fn device_auth_uri(&self) -> String {
        format!("http://{}/device/code", self.addr)
    }

    /// The `gdrive` provider's options pointing at this emulator, with the refresh token
    /// read from `refresh_token_file`.
    pub fn provider_options(&self, refresh_token_file: &std::path::Path) -> serde_json::Value {
        serde_json::json!({
            "client_id": self.options().client_id,
            "client_secret": self.options().client_secret,
            "refresh_token_file": refresh_token_file,
            "api_root": self.api_root(),
            "token_uri": self.token_uri(),
            "device_auth_uri": self.device_auth_uri(),
        })
    }

    pub fn options(&self) -> &Options {
        &self.options
    }

    /// A refresh token for `scope`, as if a user had signed in (write it to the provider's
    /// `refresh_token_file`).
    pub fn issue_refresh_token(&self, scope: &str) -> String {
        let token = state::new_id("1//emu-");
        self.shared
            .state()
            .refresh_tokens
            .insert(token.clone(), scope.to_string());
        token
    }

    /// Revokes a refresh token: refreshing with it answers `invalid_grant`.
    pub fn revoke_refresh_token(&self, token: &str) {
        self.shared.state().refresh_tokens.remove(token);
    }

    /// An access token valid now (for requests made by hand).
    pub fn issue_access_token(&self) -> String {
        self.shared.state().issue_access_token()
    }

    /// The user codes of device sign-ins waiting for the user.
    pub fn pending_user_codes(&self) -> Vec<String> {
        let state = self.shared.state();
        state
            .device_grants
            .values()
            .filter(|g| g.decision == Decision::Pending)
            .map(|g| g.user_code.clone())
            .collect()
    }

    /// The polls of the token endpoint for the sign-in showing `user_code`, in order: when
    /// each came and what it was answered.
    pub fn device_polls(&self, user_code: &str) -> Vec<DevicePoll> {
        let state = self.shared.state();
        state
            .device_grants
            .values()
            .find(|g| g.user_code == user_code)
            .map(|g| g.polls.clone())
            .unwrap_or_default()
    }

    /// The user approves the sign-in showing `user_code`; false if none is pending.
    pub fn approve(&self, user_code: &str) -> bool {
        oauth::decide(&mut self.shared.state(), user_code, Decision::Approved)
    }

    /// The user refuses it.
    pub fn deny(&self, user_code: &str) -> bool {
        oauth::decide(&mut self.shared.state(), user_code, Decision::Denied)
    }

    /// Every device code expires now (`expired_token` on the next poll).
    pub fn expire_device_codes(&self) {
        let now = Instant::now();
        self.shared
            .state()
            .device_grants
            .values_mut()
            .for_each(|g| g.expires_at = now);
    }

    /// Every access token issued so far expires now (401 on its next use).
    pub fn expire_access_tokens(&self) {
        let now = Instant::now();
        self.shared
            .state()
            .access_tokens
            .values_mut()
            .for_each(|expiry| *expiry = now);
    }

    /// Queues a fault rule (after those already queued).
    pub fn inject(&self, fault: Fault) {
        self.shared.state().faults.push(fault);
    }

    /// The next `count` requests of `kind` (any kind: `None`) get `error`.
    pub fn fail_next(&self, kind: Option<RequestKind>, error: DriveError, count: u32) {
        let matcher = Matcher {
            kind,
            ..Matcher::default()
        };
        self.inject(Fault::new(matcher, FaultAction::Error(error), count));
    }

    /// The next resumable chunk has its connection cut after `bytes` of its content (the
    /// session keeps what arrived, in whole [`CHUNK_GRANULE`]s).
    pub fn cut_next_chunk_after(&self, bytes: u64) {
        self.inject(Fault::new(
            Matcher::kind(RequestKind::ResumableChunk),
            FaultAction::CutBodyAfter(bytes),
            1,
        ));
    }

    /// Drops every queued fault rule.
    pub fn clear_faults(&self) {
        self.shared.state().faults.clear();
    }

    /// Sets the storage quota (`None`: unlimited).
    pub fn set_quota(&self, bytes: Option<u64>) {
        self.shared.state().quota = bytes;
    }

    /// Sets the most files a files.list page returns.
    pub fn set_max_page_size(&self, files: u32) {
        self.shared.state().max_page_size = files.max(1);
    }

    pub fn counters(&self) -> Counters {
        self.shared.state().counters.clone()
    }

    /// Zeroes the request and byte counters (objects stored stay as they are).
    pub fn reset_counters(&self) {
        let mut state = self.shared.state();
        let (objects, bytes) = (state.counters.objects_stored, state.counters.bytes_stored);
        state.counters = Counters {
            objects_stored: objects,
            bytes_stored: bytes,
            ..Counters::default()
        };
    }

    pub fn upload_sessions(&self) -> Vec<UploadSession> {
        let state = self.shared.state();
        state
            .sessions
            .iter()
            .map(|(id, s)| state.session_view(id, s))
            .collect()
    }

    /// Every stored file in the application-data folder, in creation order.
    pub fn app_data_files(&self) -> Vec<StoredFile> {
        let state = self.shared.state();
        let mut files: Vec<StoredFile> = state
            .files
            .values()
            .filter(|f| f.in_app_data())
            .cloned()
            .collect();
        files.sort_by_key(|f| f.seq);
        files
    }

    /// The files named `name` in the application-data folder, in creation order.
    pub fn app_data_named(&self, name: &str) -> Vec<StoredFile> {
        self.app_data_files()
            .into_iter()
            .filter(|f| f.name == name)
            .collect()
    }

    /// The content of the (first created) file named `name` in the application-data folder.
    pub fn app_data_content(&self, name: &str) -> Option<Bytes> {
        self.app_data_named(name)
            .into_iter()
            .next()
            .map(|f| f.content)
    }

    /// Stores a file directly (in the application-data folder if `app_data`), whatever files
    /// of that name exist: e.g. a duplicate. Returns its id.
    pub fn put_file(&self, name: &str, content: &[u8], app_data: bool) -> String {
        let parents = if app_data {
            vec![APP_DATA_FOLDER.to_string()]
        } else {
            Vec::new()
        };
        let file = NewFile {
            name: name.to_string(),
            parents,
            mime_type: None,
            app_properties: None,
        };
        self.shared
            .state()
            .insert(file, Bytes::copy_from_slice(content))
            .id
    }

    /// Deletes a file directly.
    pub fn remove_file(&self, id: &str) -> bool {
        self.shared.state().remove(id).is_some()
    }
}

impl Drop for DriveEmulator {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
