//! Reading a database its folder does not let us lock: SQLite's `immutable` mode, made safe
//! by what the file's `stat` says before and after.
//!
//! A reader of a WAL database locks it through the wal-index (`-shm`), which the first
//! connection creates beside the database. When the app has closed the database there is
//! none, and a daemon whose user may only read the store's folder cannot create it: SQLite
//! refuses to read ("attempt to write a readonly database"). The database file is then the
//! whole database (the app's last connection checkpointed the WAL into it and removed it),
//! so it is read as the file it is, with `immutable=1` (no locks, no `-wal` or `-shm`). The
//! app may open it again at any moment; what keeps the image one committed state:
//!
//! - Before: no WAL with a valid header (its frames would be commits the file lacks), no
//!   rollback journal with content (a transaction may be half written into the file), and
//!   the file settled (written longer ago than the timestamp margin of DESIGN.md §4.1.1,
//!   so that any later write moves its `ctime`).
//! - After the read: the same device, inode, size, mtime and ctime. The app reopening and
//!   committing writes the WAL, not the file, until a checkpoint; a checkpoint, or a commit
//!   in rollback mode, writes the file and moves its `ctime`: that capture is torn and is
//!   retried. A WAL begun meanwhile holds only commits later than the image.

use std::os::unix::fs::MetadataExt as _;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use super::super::files::{FileStat, SETTLE_WAIT};
use super::super::wal;
use super::DatabaseCaptureError;
use super::family::Family;

/// How long a read without locks waits for the file to settle (the app writing it all
/// along, it gives up; the app opening it makes the next attempt read it with locks).
const SETTLE_LIMIT: Duration = Duration::from_secs(1);

/// Whether SQLite's error says the connection could not set up the files it locks with
/// (the wal-index, or the WAL) because it may not write beside the database.
pub(super) fn cannot_lock(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::ReadOnly | rusqlite::ErrorCode::CannotOpen)
    )
}

/// The file as it was before an unlocked read: what must still hold after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Before {
    device: u64,
    stat: FileStat,
}

impl Before {
    /// Checks that the database can be read as its file alone, waiting for it to settle if
    /// it was written a moment ago. `locked` is what SQLite said when asked to read it with
    /// locks.
    pub(super) fn take(
        family: &Family,
        shown: &str,
        locked: rusqlite::Error,
    ) -> Result<Before, DatabaseCaptureError> {
        let refuse = |why: &'static str| DatabaseCaptureError::ReadOnlyStore {
            path: shown.to_owned(),
            sqlite: locked.to_string(),
            why,
        };
        // The app has the database open, and our SQLite could not use its wal-index.
        if family.stat("-shm").is_ok() {
            return Err(family.unreadable("-shm", locked.to_string()));
        }
        let wal = family.read_member("-wal", wal::read_header)?;
        if wal.flatten().is_some() {
            return Err(refuse(
                "its WAL holds commits the file lacks, and without a wal-index SQLite cannot read them",
            ));
        }
        if family.stat("-journal").is_ok_and(|m| m.len() > 0) {
            return Err(refuse(
                "a rollback journal beside it may belong to a transaction half written into the file",
            ));
        }
        // Wait for the file to settle, as long as the app keeps it closed.
        let waited = Instant::now();
        loop {
            let before = Self::now(family, shown)?;
            let wait = before.stat.unsettled_for(SystemTime::now());
            if wait.is_zero() {
                return Ok(before);
            }
            if waited.elapsed() >= SETTLE_LIMIT || family.stat("-shm").is_ok() {
                return Err(DatabaseCaptureError::WrittenWhileRead {
                    path: shown.to_owned(),
                });
            }
            std::thread::sleep(wait.min(SETTLE_WAIT));
        }
    }

    fn now(family: &Family, shown: &str) -> Result<Before, DatabaseCaptureError> {
        let meta = family
            .stat("")
            .map_err(|source| DatabaseCaptureError::Stat {
                path: shown.to_owned(),
                source,
            })?;
        Ok(Before {
            device: meta.dev(),
            stat: FileStat::of(&meta),
        })
    }

    /// The device and inode the read must be of.
    pub(super) fn id(&self) -> (u64, u64) {
        (self.device, self.stat.inode)
    }

    /// Whether the file is still as it was before: otherwise it was written while read
    /// without locks.
    pub(super) fn check_after(
        &self,
        family: &Family,
        shown: &str,
    ) -> Result<(), DatabaseCaptureError> {
        if Self::now(family, shown)? == *self {
            Ok(())
        } else {
            Err(DatabaseCaptureError::WrittenWhileRead {
                path: shown.to_owned(),
            })
        }
    }
}

/// The `file:` URI that opens the database at `path` without locks, as a file that does not
/// change (`immutable=1`, read-only): every byte but the unreserved ones percent-encoded.
pub(super) fn immutable_uri(path: &Path) -> String {
    use std::os::unix::ffi::OsStrExt as _;
    let mut uri = String::from("file:");
    for &b in path.as_os_str().as_bytes() {
        if b.is_ascii_alphanumeric() || b"/-._~".contains(&b) {
            uri.push(char::from(b));
        } else {
            uri.push_str(&format!("%{b:02X}"));
        }
    }
    uri.push_str("?immutable=1");
    uri
}

#[cfg(test)]
mod tests {
    use rusqlite::Connection;
    use rusqlite::config::DbConfig;

    use super::*;

    #[test]
    fn the_uri_names_the_path_whatever_it_holds() {
        assert_eq!(
            immutable_uri(Path::new("/data/a b/m?#%.db")),
            "file:/data/a%20b/m%3F%23%25.db?immutable=1"
        );
    }

    /// What SQLite says to a reader that cannot create the wal-index.
    fn readonly() -> rusqlite::Error {
        rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_READONLY),
            None,
        )
    }

    /// A WAL database the app has closed (no WAL, no wal-index), and its family held.
    struct Closed {
        dir: tempfile::TempDir,
        db: std::path::PathBuf,
        family: Family,
        shown: String,
    }

    fn closed() -> Closed {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = closed_database(dir.path());
        let family = Family::open(&db).expect("family");
        let shown = db.display().to_string();
        Closed {
            dir,
            db,
            family,
            shown,
        }
    }

    fn closed_database(dir: &Path) -> std::path::PathBuf {
        let db = dir.join("msgstore.db");
        let app = Connection::open(&db).expect("open");
        app.execute_batch(
            "PRAGMA journal_mode=WAL; CREATE TABLE message(text); \
             INSERT INTO message VALUES ('first');",
        )
        .expect("schema");
        drop(app);
        assert!(!dir.join("msgstore.db-wal").exists());
        db
    }

    fn commit(db: &Path) -> Connection {
        let app = Connection::open(db).expect("open");
        app.execute("INSERT INTO message VALUES ('more')", [])
            .expect("commit");
        app
    }

    #[test]
    fn a_file_written_since_it_was_taken_is_not_used_one_written_only_in_a_new_wal_is() {
        let Closed {
            dir: _dir,
            db,
            family,
            shown,
        } = closed();
        // Just written: it waits for the file to settle.
        let before = Before::take(&family, &shown, readonly()).expect("settled");
        assert!(before.stat.unsettled_for(SystemTime::now()).is_zero());
        before.check_after(&family, &shown).expect("unchanged");
        // The app opens it again and commits: into a new WAL, the file as it was.
        let app = commit(&db);
        before
            .check_after(&family, &shown)
            .expect("a commit into the WAL leaves the file as it was");
        // Its last connection closes: the WAL is checkpointed into the file.
        drop(app);
        assert!(matches!(
            before.check_after(&family, &shown),
            Err(DatabaseCaptureError::WrittenWhileRead { .. })
        ));
    }

    #[test]
    fn the_file_alone_is_refused_beside_a_wal_with_frames_a_journal_or_the_apps_wal_index() {
        let Closed {
            dir,
            db,
            family,
            shown,
        } = closed();
        let take = || Before::take(&family, &shown, readonly());
        // The app has it open: its wal-index is there, our SQLite could not use it.
        let app = commit(&db);
        assert!(matches!(
            take(),
            Err(DatabaseCaptureError::FamilyUnreadable { .. })
        ));
        // It closed without a checkpoint, and the wal-index is gone: commits only the WAL has.
        app.set_db_config(DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, true)
            .expect("no checkpoint on close");
        drop(app);
        std::fs::remove_file(dir.path().join("msgstore.db-shm")).expect("remove the -shm");
        assert!(matches!(
            take(),
            Err(DatabaseCaptureError::ReadOnlyStore { why, .. }) if why.contains("WAL")
        ));
        // A rollback journal with content: a transaction may be half written in the file.
        std::fs::remove_file(dir.path().join("msgstore.db-wal")).expect("remove the WAL");
        std::fs::write(dir.path().join("msgstore.db-journal"), [1u8; 512]).expect("journal");
        assert!(matches!(
            take(),
            Err(DatabaseCaptureError::ReadOnlyStore { why, .. }) if why.contains("journal")
        ));
        std::fs::write(dir.path().join("msgstore.db-journal"), []).expect("empty journal");
        take().expect("an empty journal holds no transaction");
    }
}
