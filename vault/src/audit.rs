//! The audit log: every registration, login attempt, erase and deletion, one JSON object a
//! line, each line chained to the one before by a hash.
//!
//! ```text
//! body_i = {"seq":i,"time_unix_ms":...,"event":"...","account":"...",
//!           ["record_version":v,]["attempts_left":n,]"prev":"<hash_{i-1}, 64 hex>"}
//! line_i = body_i with ,"hash":"<hash_i>" inserted before its closing brace
//! hash_i = BLAKE3(body_i)            hash_0 (the "prev" of line 1) = 64 zeros
//! ```
//!
//! [`verify`] recomputes the chain from the first line: an edited, removed, inserted or
//! reordered line breaks it at that line. A chain that was cut short after its last line
//! verifies; so does a log rewritten from scratch by someone with write access to it. The
//! head that `sealback-vault audit verify` prints (entry count and last hash) is what an
//! operator copies elsewhere to detect either.
//!
//! Appending never blocks a request: events go to a writer thread that writes them in
//! order and syncs the file after each batch. An event can be lost in a power cut (the
//! guess counter, in the store, cannot), never reordered.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::thread::JoinHandle;
use std::time::{SystemTime, UNIX_EPOCH};

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EventKind {
    /// A record was registered (replacing any earlier one).
    Register,
    /// A login started and consumed a guess; `attempts_left` if this guess is wrong.
    LoginStart,
    /// A login repeated an attempt the count already holds (the same attempt id and KE1,
    /// tried again after an answer was lost, on this instance or another): evaluated again,
    /// no guess spent.
    LoginRepeated,
    /// A login was refused before any guess: the key is destroyed.
    LoginRefused,
    /// A login proved the password; the guess count is back to zero.
    LoginSuccess,
    /// A login's last message did not prove the password (a wrong password, reported by the
    /// client).
    LoginFailure,
    /// A login that consumed a guess was never finished: it expired, or the vault stopped.
    LoginAbandoned,
    /// The guess limit was reached: the record was erased.
    Erase,
    /// The user deleted the record.
    Delete,
    /// A stored record failed its integrity check (edited or moved in the store).
    RecordRefused,
}

/// One event to log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub kind: EventKind,
    pub account: String,
    pub record_version: Option<u64>,
    pub attempts_left: Option<u32>,
    /// The store revision of the write this event reports (a guess spent, a reset, a
    /// registration, an erase, a deletion).
    pub store_revision: Option<u64>,
    /// The account's lifetime count of spent guesses after this event's write.
    pub spent: Option<u64>,
}

impl Event {
    pub fn new(kind: EventKind, account: &str) -> Event {
        Event {
            kind,
            account: account.to_string(),
            record_version: None,
            attempts_left: None,
            store_revision: None,
            spent: None,
        }
    }

    /// The store revision this event's write took.
    pub fn written(mut self, store_revision: u64) -> Event {
        self.store_revision = Some(store_revision);
        self
    }

    pub fn spent(mut self, spent: u64) -> Event {
        self.spent = Some(spent);
        self
    }

    pub fn version(mut self, version: u64) -> Event {
        self.record_version = Some(version);
        self
    }

    pub fn attempts_left(mut self, attempts_left: u32) -> Event {
        self.attempts_left = Some(attempts_left);
        self
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Body {
    seq: u64,
    time_unix_ms: u64,
    event: EventKind,
    account: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    record_version: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    attempts_left: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    store_revision: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    spent: Option<u64>,
    prev: String,
}

/// The end of a verified chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    /// Lines in the log.
    pub entries: u64,
    /// The last line's hash (64 zeros for an empty log).
    pub hash: String,
}

/// A log that does not verify, or cannot be read or written.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("audit log {path}: {message}")]
    Io { path: PathBuf, message: String },
    #[error("audit log {path}, line {line}: {reason}")]
    Broken {
        path: PathBuf,
        line: u64,
        reason: String,
    },
}

const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";
const HASH_MEMBER: &str = ",\"hash\":\"";

/// Verifies the whole chain in `path` (a missing file is an empty log).
pub fn verify(path: &Path) -> Result<Head, AuditError> {
    walk(path, |_, _| {})
}

/// Verifies the chain in `path` and reads what it says about the store ([`History`]).
pub fn history(path: &Path) -> Result<(Head, History), AuditError> {
    let mut history = History::default();
    let head = walk(path, |line, body| history.add(line, body))?;
    Ok((head, history))
}

/// Verifies the chain in `path`, giving each verified line to `visit`.
fn walk(path: &Path, mut visit: impl FnMut(u64, &Body)) -> Result<Head, AuditError> {
    let io = |message: String| AuditError::Io {
        path: path.to_path_buf(),
        message,
    };
    let file = match File::open(path) {
        Ok(file) => file,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            return Ok(Head {
                entries: 0,
                hash: GENESIS.into(),
            });
        }
        Err(err) => return Err(io(err.to_string())),
    };
    let mut head = Head {
        entries: 0,
        hash: GENESIS.into(),
    };
    for line in BufReader::new(file).lines() {
        let line = line.map_err(|err| io(err.to_string()))?;
        let number = head.entries + 1;
        let broken = |reason: String| AuditError::Broken {
            path: path.to_path_buf(),
            line: number,
            reason,
        };
        let (body, hash) = split_line(&line).ok_or_else(|| broken("not a log line".into()))?;
        let computed = blake3::hash(body.as_bytes()).to_hex().to_string();
        if computed != hash {
            return Err(broken(format!(
                "its hash is {hash} but its content hashes to {computed}: the line was edited"
            )));
        }
        let parsed: Body =
            serde_json::from_str(&body).map_err(|err| broken(format!("malformed: {err}")))?;
        if parsed.seq != number {
            return Err(broken(format!(
                "it is entry {} where entry {number} belongs: lines were removed, inserted or \
                 reordered",
                parsed.seq
            )));
        }
        if parsed.prev != head.hash {
            return Err(broken(
                "it does not follow the line before (its `prev` is not that line's hash)".into(),
            ));
        }
        visit(number, &parsed);
        head = Head {
            entries: number,
            hash: computed,
        };
    }
    Ok(head)
}

/// `line` cut into its body (without the hash member) and its hash.
fn split_line(line: &str) -> Option<(String, &str)> {
    let at = line.rfind(HASH_MEMBER)?;
    let hash = line[at + HASH_MEMBER.len()..].strip_suffix("\"}")?;
    if hash.len() != 64 {
        return None;
    }
    Some((format!("{}}}", &line[..at]), hash))
}

/// The log being appended to.
pub struct AuditLog {
    events: Mutex<Option<Sender<Event>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
}

impl AuditLog {
    /// Verifies `path` and opens it for appending; refuses a broken log (move it aside to
    /// start a new one; keep it as evidence).
    pub fn open(path: &Path) -> Result<AuditLog, AuditError> {
        let head = verify(path)?;
        let io = |err: std::io::Error| AuditError::Io {
            path: path.to_path_buf(),
            message: err.to_string(),
        };
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)
            .map_err(io)?;
        // A log made before, or under a looser umask: the vault's alone too.
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(io)?;
        let (send, receive) = channel();
        let owned = path.to_path_buf();
        let thread = std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || write_loop(file, owned, head, receive))
            .map_err(|err| AuditError::Io {
                path: path.to_path_buf(),
                message: format!("cannot start the writer thread: {err}"),
            })?;
        Ok(AuditLog {
            events: Mutex::new(Some(send)),
            writer: Mutex::new(Some(thread)),
        })
    }

    /// Queues `event`; it is written in the order of the calls.
    pub fn append(&self, event: Event) {
        let events = self.events.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(sender) = events.as_ref()
            && sender.send(event).is_err()
        {
            tracing::error!("the audit log writer has stopped; an event was not logged");
        }
    }

    /// Writes and syncs everything queued, then stops the writer.
    pub fn close(&self) {
        self.events.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(thread) = self.writer.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = thread.join();
        }
    }
}

impl Drop for AuditLog {
    fn drop(&mut self) {
        self.close();
    }
}

fn write_loop(mut file: File, path: PathBuf, mut head: Head, events: Receiver<Event>) {
    while let Ok(first) = events.recv() {
        let mut text = String::new();
        let mut next = Some(first);
        while let Some(event) = next {
            let body = Body {
                seq: head.entries + 1,
                time_unix_ms: SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_millis() as u64)
                    .unwrap_or(0),
                event: event.kind,
                account: event.account,
                record_version: event.record_version,
                attempts_left: event.attempts_left,
                store_revision: event.store_revision,
                spent: event.spent,
                prev: head.hash.clone(),
            };
            let body = serde_json::to_string(&body).expect("an audit entry serializes");
            let hash = blake3::hash(body.as_bytes()).to_hex().to_string();
            // The body is a JSON object: drop its closing brace, add the hash member.
            text.push_str(&body[..body.len() - 1]);
            text.push_str(HASH_MEMBER);
            text.push_str(&hash);
            text.push_str("\"}\n");
            head = Head {
                entries: head.entries + 1,
                hash,
            };
            next = events.try_recv().ok();
        }
        if let Err(err) = file
            .write_all(text.as_bytes())
            .and_then(|()| file.sync_data())
        {
            tracing::error!("cannot write the audit log {}: {err}", path.display());
        }
    }
}

/// What a verified log says the store has reached: the vault compares it with the store at
/// start, and `audit verify` reports the rollbacks it shows.
#[derive(Debug, Default)]
pub struct History {
    /// The highest store revision a line records.
    pub store_revision: u64,
    /// Per account, the least its entry must show.
    pub accounts: HashMap<String, Floor>,
    /// Lines that show the store went back in time, for a person to read.
    pub rollbacks: Vec<String>,
    /// (account, record version) of each `erase`, and its line.
    erased: HashMap<(String, u64), u64>,
}

/// The least an account's entry can show once the log recorded it: its lifetime count of
/// spent guesses, and the highest record version registered, used or erased.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Floor {
    pub spent: u64,
    pub last_version: u64,
}

impl History {
    fn add(&mut self, line: u64, body: &Body) {
        if let Some(revision) = body.store_revision {
            self.store_revision = self.store_revision.max(revision);
        }
        let floor = || Floor::default();
        if let Some(spent) = body.spent {
            let entry = self
                .accounts
                .entry(body.account.clone())
                .or_insert_with(floor);
            entry.spent = entry.spent.max(spent);
        }
        // Versions only from events the vault writes after a write of its own (not from a
        // `record-refused`, whose version came from an entry it did not trust).
        let written = matches!(
            body.event,
            EventKind::Register | EventKind::LoginSuccess | EventKind::Erase | EventKind::Delete
        );
        let Some(version) = body.record_version.filter(|_| written) else {
            return;
        };
        let entry = self
            .accounts
            .entry(body.account.clone())
            .or_insert_with(floor);
        entry.last_version = entry.last_version.max(version);
        let key = (body.account.clone(), version);
        match body.event {
            EventKind::Erase => {
                self.erased.insert(key, line);
            }
            EventKind::LoginSuccess => {
                if let Some(erase) = self.erased.get(&key) {
                    self.rollbacks.push(format!(
                        "line {line}: a login-success of account {} on record version {version}, \
                         which line {erase} erased: the store was put back from a copy made \
                         before the erase",
                        body.account
                    ));
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log_three(path: &Path) {
        let log = AuditLog::open(path).expect("opens");
        log.append(Event::new(EventKind::Register, "alice").version(1));
        log.append(Event::new(EventKind::LoginStart, "alice").attempts_left(9));
        log.append(Event::new(EventKind::LoginSuccess, "alice").version(1));
        log.close();
    }

    #[test]
    fn a_written_chain_verifies_and_continues_after_reopening() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("audit.log");
        log_three(&path);
        assert_eq!(verify(&path).expect("verifies").entries, 3);
        log_three(&path);
        assert_eq!(verify(&path).expect("verifies").entries, 6);
    }

    #[test]
    fn the_history_gives_floors_and_flags_a_success_after_an_erase() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("audit.log");
        let log = AuditLog::open(&path).expect("opens");
        log.append(
            Event::new(EventKind::Register, "alice")
                .version(2)
                .written(5),
        );
        log.append(
            Event::new(EventKind::LoginStart, "alice")
                .spent(7)
                .written(9),
        );
        log.append(Event::new(EventKind::RecordRefused, "alice").version(99));
        log.append(Event::new(EventKind::Erase, "alice").version(2).written(8));
        log.append(Event::new(EventKind::LoginSuccess, "bob").version(2));
        log.append(Event::new(EventKind::LoginSuccess, "alice").version(2));
        log.close();
        let (head, history) = super::history(&path).expect("verifies");
        assert_eq!(head.entries, 6);
        assert_eq!(history.store_revision, 9);
        assert_eq!(
            history.accounts["alice"],
            Floor {
                spent: 7,
                last_version: 2
            },
            "a refused record's version is not trusted"
        );
        assert_eq!(history.rollbacks.len(), 1, "{:?}", history.rollbacks);
        assert!(history.rollbacks[0].starts_with("line 6:"));
        assert!(history.rollbacks[0].contains("line 4 erased"));
    }

    #[test]
    fn edits_removals_and_reorderings_break_the_chain_at_their_line() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("audit.log");
        log_three(&path);
        let good = std::fs::read_to_string(&path).expect("read");
        let lines: Vec<&str> = good.lines().collect();

        let edited = good.replace("\"attempts_left\":9", "\"attempts_left\":10");
        std::fs::write(&path, edited).expect("write");
        let err = verify(&path).expect_err("edited");
        assert!(matches!(err, AuditError::Broken { line: 2, .. }), "{err}");
        assert!(err.to_string().contains("edited"), "{err}");

        std::fs::write(&path, format!("{}\n{}\n", lines[0], lines[2])).expect("write");
        assert!(matches!(
            verify(&path),
            Err(AuditError::Broken { line: 2, .. })
        ));

        std::fs::write(&path, format!("{}\n{}\n{}\n", lines[1], lines[0], lines[2]))
            .expect("write");
        assert!(matches!(
            verify(&path),
            Err(AuditError::Broken { line: 1, .. })
        ));

        std::fs::write(&path, format!("{}\n", lines[0])).expect("write");
        assert!(AuditLog::open(&path).is_ok(), "a cut chain verifies");
        std::fs::write(&path, "garbage\n").expect("write");
        assert!(
            AuditLog::open(&path).is_err(),
            "a broken log is not appended to"
        );
    }
}
