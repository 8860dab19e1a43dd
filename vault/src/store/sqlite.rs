//! [`RecordStore`] in a SQLite file, with group commit.
//!
//! One table, `entries (key, value, revision)`, and the store's last revision in `revision`.
//! The database is in WAL mode with `synchronous = FULL`, so a committed transaction is on
//! disk, and `secure_delete = ON`, so freed space is overwritten with zeros.
//!
//! A durable commit costs an fsync (milliseconds on ordinary disks), and every login writes
//! the guess counter before it answers. So writes go through one writer thread that takes
//! every compare-and-swap waiting, applies them in order inside one transaction (each in its
//! own savepoint, so one failing does not undo the others), commits once, and only then
//! answers each caller: many logins share one fsync, and none is answered before its write
//! is durable. Reads use their own connection and see every committed write.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::{RecordStore, Revision, StoreError, Swap, Versioned};

/// The most compare-and-swaps one transaction takes.
const MAX_BATCH: usize = 512;
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// A [`RecordStore`] in one SQLite file.
pub struct SqliteStore {
    path: PathBuf,
    reader: Mutex<Connection>,
    writes: Mutex<Option<Sender<Write>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
}

enum Write {
    Swap {
        key: String,
        expected: Option<Revision>,
        value: Option<Vec<u8>>,
        reply: Sender<Result<Swap, StoreError>>,
    },
    Purge {
        reply: Sender<Result<(), StoreError>>,
    },
}

fn error(operation: &'static str) -> impl Fn(rusqlite::Error) -> StoreError {
    move |err| StoreError {
        operation,
        message: err.to_string(),
    }
}

impl SqliteStore {
    /// Opens (or creates) the store at `path`.
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        let writer = open_connection(path)?;
        writer
            .execute_batch(
                "CREATE TABLE IF NOT EXISTS entries (
                     key TEXT PRIMARY KEY NOT NULL,
                     value BLOB NOT NULL,
                     revision INTEGER NOT NULL
                 ) STRICT, WITHOUT ROWID;
                 CREATE TABLE IF NOT EXISTS revision (
                     id INTEGER PRIMARY KEY CHECK (id = 0),
                     last INTEGER NOT NULL
                 ) STRICT;
                 INSERT OR IGNORE INTO revision (id, last) VALUES (0, 0);",
            )
            .map_err(error("create the tables"))?;
        let reader = open_connection(path)?;
        let (send, receive) = channel();
        let thread = std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || write_loop(writer, receive))
            .map_err(|err| StoreError {
                operation: "start the writer thread",
                message: err.to_string(),
            })?;
        Ok(SqliteStore {
            path: path.to_path_buf(),
            reader: Mutex::new(reader),
            writes: Mutex::new(Some(send)),
            writer: Mutex::new(Some(thread)),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn send(&self, write: Write) -> Result<(), StoreError> {
        let writes = self.writes.lock().unwrap_or_else(|p| p.into_inner());
        writes
            .as_ref()
            .and_then(|sender| sender.send(write).ok())
            .ok_or_else(|| StoreError {
                operation: "write",
                message: "the store's writer thread has stopped".into(),
            })
    }
}

fn open_connection(path: &Path) -> Result<Connection, StoreError> {
    let connection = Connection::open(path).map_err(|err| StoreError {
        operation: "open the database",
        message: format!("{}: {err}", path.display()),
    })?;
    connection
        .busy_timeout(BUSY_TIMEOUT)
        .map_err(error("set the busy timeout"))?;
    connection
        .execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = FULL;
             PRAGMA secure_delete = ON;",
        )
        .map_err(error("configure the database"))?;
    make_private(path)?;
    Ok(connection)
}

/// Closes the database's files to everyone but the vault (mode 0600), whatever made them:
/// they hold every account's sealed record and guess count.
fn make_private(path: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::PermissionsExt as _;
    for suffix in ["", "-wal", "-shm"] {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        match std::fs::set_permissions(&name, std::fs::Permissions::from_mode(0o600)) {
            Err(err) if err.kind() != std::io::ErrorKind::NotFound => {
                return Err(StoreError {
                    operation: "make the database private",
                    message: format!("{}: {err}", Path::new(&name).display()),
                });
            }
            _ => {}
        }
    }
    Ok(())
}

impl RecordStore for SqliteStore {
    fn get(&self, key: &str) -> Result<Option<Versioned>, StoreError> {
        let reader = self.reader.lock().unwrap_or_else(|p| p.into_inner());
        reader
            .prepare_cached("SELECT value, revision FROM entries WHERE key = ?1")
            .and_then(|mut statement| {
                statement
                    .query_row(params![key], |row| {
                        Ok(Versioned {
                            value: row.get(0)?,
                            revision: revision_of(row.get(1)?),
                            lineage: None,
                        })
                    })
                    .optional()
            })
            .map_err(error("read"))
    }

    fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<Revision>,
        value: Option<&[u8]>,
    ) -> Result<Swap, StoreError> {
        let (reply, answer) = channel();
        self.send(Write::Swap {
            key: key.to_string(),
            expected,
            value: value.map(<[u8]>::to_vec),
            reply,
        })?;
        answer.recv().map_err(|_| StoreError {
            operation: "write",
            message: "the store's writer thread stopped".into(),
        })?
    }

    fn revision(&self) -> Result<Revision, StoreError> {
        let reader = self.reader.lock().unwrap_or_else(|p| p.into_inner());
        reader
            .query_row("SELECT last FROM revision WHERE id = 0", [], |row| {
                row.get(0)
            })
            .map(revision_of)
            .map_err(error("read the store's revision"))
    }

    fn keys(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let reader = self.reader.lock().unwrap_or_else(|p| p.into_inner());
        let mut statement = reader
            .prepare_cached("SELECT key FROM entries WHERE substr(key, 1, ?2) = ?1 ORDER BY key")
            .map_err(error("list keys"))?;
        let rows = statement
            .query_map(params![prefix, prefix.len() as i64], |row| row.get(0))
            .map_err(error("list keys"))?;
        rows.collect::<Result<Vec<String>, _>>()
            .map_err(error("list keys"))
    }

    fn purge_history(&self) -> Result<(), StoreError> {
        let (reply, answer) = channel();
        self.send(Write::Purge { reply })?;
        answer.recv().map_err(|_| StoreError {
            operation: "purge",
            message: "the store's writer thread stopped".into(),
        })?
    }
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        // Closing the channel ends the writer loop once it has answered what is queued.
        self.writes.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(thread) = self.writer.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = thread.join();
        }
    }
}

/// The writer thread: batches of compare-and-swaps, one commit each.
fn write_loop(mut connection: Connection, writes: Receiver<Write>) {
    while let Ok(first) = writes.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match writes.try_recv() {
                Ok(write) => batch.push(write),
                Err(_) => break,
            }
        }
        let mut swaps = Vec::new();
        let mut purges = Vec::new();
        for write in batch {
            match write {
                Write::Swap {
                    key,
                    expected,
                    value,
                    reply,
                } => swaps.push((key, expected, value, reply)),
                Write::Purge { reply } => purges.push(reply),
            }
        }
        if !swaps.is_empty() {
            let outcomes = apply_batch(&mut connection, &swaps);
            for ((_, _, _, reply), outcome) in swaps.into_iter().zip(outcomes) {
                let _ = reply.send(outcome);
            }
        }
        if !purges.is_empty() {
            // Every freed page was zeroed (secure_delete); copying the log into the database
            // and truncating it removes the old page images the log still held.
            let outcome = connection
                .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |row| {
                    row.get::<_, i64>(0)
                })
                .map_err(error("checkpoint"))
                .and_then(|busy| {
                    if busy == 0 {
                        Ok(())
                    } else {
                        Err(StoreError {
                            operation: "checkpoint",
                            message: "a reader kept the log busy; the old values stay in the \
                                      log until the next checkpoint"
                                .into(),
                        })
                    }
                });
            for reply in purges {
                let _ = reply.send(match &outcome {
                    Ok(()) => Ok(()),
                    Err(err) => Err(StoreError {
                        operation: err.operation,
                        message: err.message.clone(),
                    }),
                });
            }
        }
    }
}

type SwapRequest = (
    String,
    Option<Revision>,
    Option<Vec<u8>>,
    Sender<Result<Swap, StoreError>>,
);

/// Applies `swaps` in order in one transaction; the outcome of each, all errors if the
/// commit fails.
fn apply_batch(
    connection: &mut Connection,
    swaps: &[SwapRequest],
) -> Vec<Result<Swap, StoreError>> {
    let fail_all = |err: StoreError| -> Vec<Result<Swap, StoreError>> {
        swaps
            .iter()
            .map(|_| {
                Err(StoreError {
                    operation: err.operation,
                    message: err.message.clone(),
                })
            })
            .collect()
    };
    let mut transaction = match connection.transaction_with_behavior(TransactionBehavior::Immediate)
    {
        Ok(transaction) => transaction,
        Err(err) => return fail_all(error("begin a transaction")(err)),
    };
    let mut outcomes = Vec::with_capacity(swaps.len());
    for (key, expected, value, _) in swaps {
        let outcome = match transaction.savepoint() {
            Ok(mut savepoint) => {
                let outcome = apply_one(&savepoint, key, *expected, value.as_deref());
                let kept = if outcome.is_ok() {
                    savepoint.commit().map_err(error("release a savepoint"))
                } else {
                    savepoint.rollback().map_err(error("roll back a savepoint"))
                };
                kept.and(outcome)
            }
            Err(err) => Err(error("open a savepoint")(err)),
        };
        outcomes.push(outcome);
    }
    match transaction.commit() {
        Ok(()) => outcomes,
        Err(err) => fail_all(error("commit")(err)),
    }
}

fn apply_one(
    connection: &Connection,
    key: &str,
    expected: Option<Revision>,
    value: Option<&[u8]>,
) -> Result<Swap, StoreError> {
    let current: Option<Revision> = connection
        .prepare_cached("SELECT revision FROM entries WHERE key = ?1")
        .and_then(|mut statement| {
            statement
                .query_row(params![key], |row| row.get::<_, i64>(0))
                .optional()
        })
        .map_err(error("read"))?
        .map(revision_of);
    if current != expected {
        return Ok(Swap::Conflict);
    }
    match value {
        None => {
            if current.is_some() {
                connection
                    .execute("DELETE FROM entries WHERE key = ?1", params![key])
                    .map_err(error("delete"))?;
            }
            Ok(Swap::Done(None))
        }
        Some(value) => {
            let revision: i64 = connection
                .query_row(
                    "UPDATE revision SET last = last + 1 WHERE id = 0 RETURNING last",
                    [],
                    |row| row.get(0),
                )
                .map_err(error("take a revision"))?;
            connection
                .execute(
                    "INSERT INTO entries (key, value, revision) VALUES (?1, ?2, ?3)
                     ON CONFLICT (key) DO UPDATE SET value = excluded.value,
                                                     revision = excluded.revision",
                    params![key, value, revision],
                )
                .map_err(error("write"))?;
            Ok(Swap::Done(Some(revision_of(revision))))
        }
    }
}

/// SQLite integers are signed; revisions count up from 1 and stay far below 2^63.
fn revision_of(stored: i64) -> Revision {
    Revision::try_from(stored).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_contract() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = SqliteStore::open(&dir.path().join("s.db")).expect("opens");
        assert_eq!(store.revision().expect("revision"), 0);
        super::super::check_contract(&store);
    }

    #[test]
    fn survives_reopening() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("s.db");
        let revision = {
            let store = SqliteStore::open(&path).expect("opens");
            match store.compare_and_swap("k", None, Some(b"v")).expect("cas") {
                Swap::Done(Some(r)) => r,
                other => panic!("{other:?}"),
            }
        };
        let store = SqliteStore::open(&path).expect("reopens");
        assert_eq!(
            store.get("k").expect("get").expect("kept").revision,
            revision
        );
        // Revisions go on increasing after a reopen.
        assert!(matches!(
            store.compare_and_swap("j", None, Some(b"w")).expect("cas"),
            Swap::Done(Some(r)) if r > revision
        ));
    }

    #[test]
    fn purged_values_leave_no_trace_in_the_files() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("s.db");
        let store = SqliteStore::open(&path).expect("opens");
        let secret = b"THE-SEALED-RECORD-THAT-MUST-GO-AWAY".repeat(20);
        let Swap::Done(Some(r)) = store
            .compare_and_swap("k", None, Some(&secret))
            .expect("cas")
        else {
            panic!("written");
        };
        store
            .compare_and_swap("k", Some(r), Some(b"erased"))
            .expect("cas");
        store.purge_history().expect("purge");
        for file in ["s.db", "s.db-wal"] {
            let bytes = std::fs::read(dir.path().join(file)).unwrap_or_default();
            assert!(
                !bytes.windows(35).any(|w| w == &secret[..35]),
                "{file} still holds the old value"
            );
        }
    }
}
