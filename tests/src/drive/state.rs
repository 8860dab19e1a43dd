//! What the emulator holds: files, upload sessions, OAuth grants and tokens, counters and
//! fault rules, behind one mutex that the server and the test's handle share.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use serde_json::Value;

use super::faults::{Faults, RequestKind};

/// The id Drive gives the hidden application-data folder, also usable as an alias.
pub const APP_DATA_FOLDER: &str = "appDataFolder";

/// A file as Drive stores it.
#[derive(Debug, Clone)]
pub struct StoredFile {
    pub id: String,
    pub name: String,
    pub parents: Vec<String>,
    pub mime_type: String,
    pub content: Bytes,
    /// `appProperties` as the client set them, if it did.
    pub app_properties: Option<Value>,
    pub created: SystemTime,
    /// Creation order, which is also files.list's default order here.
    pub seq: u64,
}

impl StoredFile {
    /// In the hidden application-data folder (space `appDataFolder`).
    pub fn in_app_data(&self) -> bool {
        self.parents.iter().any(|p| p == APP_DATA_FOLDER)
    }
}

/// Metadata of a file being created, from the request's JSON part.
#[derive(Debug, Clone, Default)]
pub(crate) struct NewFile {
    pub name: String,
    pub parents: Vec<String>,
    pub mime_type: Option<String>,
    pub app_properties: Option<Value>,
}

/// A resumable upload session.
#[derive(Debug, Clone)]
pub(crate) struct Session {
    pub file: NewFile,
    /// `X-Upload-Content-Length`, or the total a `Content-Range` gave.
    pub total: Option<u64>,
    /// The bytes the session holds (persisted), from offset 0.
    pub received: Vec<u8>,
    /// Every content byte received on the session, counting those sent more than once.
    pub bytes_received_total: u64,
    /// Content requests (chunks and status queries) on the session.
    pub requests: u32,
    /// The file the session created, once complete.
    pub completed: Option<String>,
}

/// What a test sees of an upload session ([`super::DriveEmulator::upload_sessions`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadSession {
    pub upload_id: String,
    pub name: String,
    pub total: Option<u64>,
    /// Bytes persisted (what a status query reports).
    pub persisted: u64,
    /// Every content byte received, counting re-sent ones: `bytes_received - total` is what the
    /// client sent twice.
    pub bytes_received: u64,
    /// Chunk and status requests on the session.
    pub requests: u32,
    /// The id of the created file, once the upload completed.
    pub file_id: Option<String>,
}

/// A device authorization request (RFC 8628).
#[derive(Debug, Clone)]
pub(crate) struct DeviceGrant {
    pub user_code: String,
    pub scope: String,
    pub expires_at: Instant,
    /// The interval the client must keep: the advertised one, plus 5 s per `slow_down`.
    pub interval: Duration,
    /// The interval the token endpoint enforces: polled sooner, it answers `slow_down`.
    pub enforced: Duration,
    pub last_poll: Option<Instant>,
    pub decision: Decision,
    /// Every poll of the token endpoint with this device code, in order.
    pub polls: Vec<DevicePoll>,
}

/// One poll of the token endpoint with a device code ([`super::DriveEmulator::device_polls`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DevicePoll {
    pub at: Instant,
    /// The OAuth error code answered (`authorization_pending`, `slow_down`...), or `ok` when
    /// the tokens were issued.
    pub answer: &'static str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    Pending,
    Approved,
    Denied,
    /// Approved and exchanged for tokens: the code cannot be used again.
    Used,
}

/// The counters a test or a benchmark reads ([`super::DriveEmulator::counters`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    /// Requests received, by kind (including those a fault answered).
    pub requests: BTreeMap<RequestKind, u64>,
    /// Content bytes received by uploads (multipart media parts and resumable chunks),
    /// counting re-sent bytes.
    pub bytes_uploaded: u64,
    /// Content bytes sent by `alt=media` downloads.
    pub bytes_downloaded: u64,
    /// Files stored now (all spaces).
    pub objects_stored: u64,
    /// Their content bytes.
    pub bytes_stored: u64,
    /// Answers that were errors (status >= 400), including injected ones.
    pub errors: u64,
}

impl Counters {
    /// Requests of one kind.
    pub fn of(&self, kind: RequestKind) -> u64 {
        self.requests.get(&kind).copied().unwrap_or(0)
    }

    /// All requests to the Drive API (not the OAuth endpoints).
    pub fn api_requests(&self) -> u64 {
        self.requests
            .iter()
            .filter(|(k, _)| !matches!(k, RequestKind::Token | RequestKind::DeviceCode))
            .map(|(_, n)| n)
            .sum()
    }
}

/// Everything the emulator holds.
#[derive(Debug)]
pub(crate) struct State {
    pub files: BTreeMap<String, StoredFile>,
    pub sessions: HashMap<String, Session>,
    pub refresh_tokens: HashMap<String, String>,
    /// Access token → (expiry, scope).
    pub access_tokens: HashMap<String, Instant>,
    pub device_grants: HashMap<String, DeviceGrant>,
    pub counters: Counters,
    pub faults: Faults,
    /// Bytes of content all files may hold together; `None`: no limit.
    pub quota: Option<u64>,
    /// The most files one files.list page returns, whatever `pageSize` asks.
    pub max_page_size: u32,
    pub access_token_lifetime: Duration,
    pub next_seq: u64,
}

impl State {
    pub(crate) fn new(
        quota: Option<u64>,
        max_page_size: u32,
        access_token_lifetime: Duration,
    ) -> State {
        State {
            files: BTreeMap::new(),
            sessions: HashMap::new(),
            refresh_tokens: HashMap::new(),
            access_tokens: HashMap::new(),
            device_grants: HashMap::new(),
            counters: Counters::default(),
            faults: Faults::default(),
            quota,
            max_page_size,
            access_token_lifetime,
            next_seq: 0,
        }
    }

    pub(crate) fn bytes_stored(&self) -> u64 {
        self.files.values().map(|f| f.content.len() as u64).sum()
    }

    /// Whether `more` bytes fit in the quota.
    pub(crate) fn fits(&self, more: u64) -> bool {
        self.quota
            .is_none_or(|q| self.bytes_stored().saturating_add(more) <= q)
    }

    /// Stores a new file (Drive never replaces by name: a second create makes a second file).
    pub(crate) fn insert(&mut self, file: NewFile, content: Bytes) -> StoredFile {
        self.next_seq += 1;
        let parents = if file.parents.is_empty() {
            vec!["root".to_string()]
        } else {
            file.parents
        };
        let stored = StoredFile {
            id: new_id("1"),
            name: file.name,
            parents,
            mime_type: file
                .mime_type
                .unwrap_or_else(|| "application/octet-stream".to_string()),
            content,
            app_properties: file.app_properties,
            created: SystemTime::now(),
            seq: self.next_seq,
        };
        self.files.insert(stored.id.clone(), stored.clone());
        self.refresh_object_counters();
        stored
    }

    /// Stores a copy of the file created last, with its name ([`super::FaultAction::Duplicate`]).
    pub(crate) fn duplicate_newest(&mut self) {
        let Some(newest) = self.files.values().max_by_key(|f| f.seq).cloned() else {
            return;
        };
        let copy = NewFile {
            name: newest.name,
            parents: newest.parents,
            mime_type: Some(newest.mime_type),
            app_properties: newest.app_properties,
        };
        self.insert(copy, newest.content);
    }

    pub(crate) fn remove(&mut self, id: &str) -> Option<StoredFile> {
        let removed = self.files.remove(id);
        self.refresh_object_counters();
        removed
    }

    fn refresh_object_counters(&mut self) {
        self.counters.objects_stored = self.files.len() as u64;
        self.counters.bytes_stored = self.bytes_stored();
    }

    /// A new access token valid for the configured lifetime.
    pub(crate) fn issue_access_token(&mut self) -> String {
        let token = new_id("ya29.emu-");
        self.access_tokens
            .insert(token.clone(), Instant::now() + self.access_token_lifetime);
        token
    }

    pub(crate) fn access_token_valid(&self, token: &str) -> bool {
        self.access_tokens
            .get(token)
            .is_some_and(|expiry| Instant::now() < *expiry)
    }

    pub(crate) fn session_view(&self, upload_id: &str, session: &Session) -> UploadSession {
        UploadSession {
            upload_id: upload_id.to_string(),
            name: session.file.name.clone(),
            total: session.total,
            persisted: session.received.len() as u64,
            bytes_received: session.bytes_received_total,
            requests: session.requests,
            file_id: session.completed.clone(),
        }
    }
}

/// A random identifier with a prefix, of URL-safe characters like Drive's.
pub(crate) fn new_id(prefix: &str) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut id = prefix.to_string();
    for _ in 0..32 {
        id.push(ALPHABET[rand::random::<usize>() % ALPHABET.len()] as char);
    }
    id
}
