//! Capture of a live SQLite database by its pages.
//!
//! We open our own connection and, inside one read transaction, read every page through
//! the `sqlite_dbpage` virtual table (compiled in by `.cargo/config.toml`). In WAL mode a
//! read transaction sees exactly the database as of the last commit before it began, pages
//! still only in the WAL included, and it neither blocks the app's writers nor makes them
//! see SQLITE_BUSY; the app's PASSIVE auto-checkpoints go on, they only cannot reset the
//! WAL past our snapshot while it is open, which is why the transaction is kept short: we
//! only hash pages inside it and copy the runs the repository lacks into a spool file.
//!
//! Our connection is opened with `SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE` and `query_only`, so
//! closing it never checkpoints or deletes the app's WAL, even when the app is not running.

use std::path::Path;
use std::time::Duration;

use rusqlite::config::DbConfig;
use rusqlite::{Connection, OpenFlags};

#[derive(Debug, thiserror::Error)]
pub enum DatabaseCaptureError {
    #[error("cannot open the database {path}: {source}")]
    Open {
        path: String,
        source: rusqlite::Error,
    },
    #[error("cannot read the database {path}: {source}")]
    Read {
        path: String,
        source: rusqlite::Error,
    },
    #[error(
        "the database {path} changed shape while read (page {found} where {expected} was expected); the capture is retried"
    )]
    Torn {
        path: String,
        expected: u64,
        found: u64,
    },
    #[error(
        "this sealbackd's SQLite lacks the sqlite_dbpage table: build it with LIBSQLITE3_FLAGS=-DSQLITE_ENABLE_DBPAGE_VTAB (.cargo/config.toml)"
    )]
    NoDbPage,
    #[error("spool: {0}")]
    Sink(#[from] std::io::Error),
}

/// What the capture saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageImage {
    pub page_size: u32,
    pub page_count: u64,
    /// Whether the database is in WAL mode (in rollback mode the app's writers wait for us).
    pub wal: bool,
}

/// Reads the database at `path` as of one committed transaction and hands `sink` its bytes
/// in runs of `chunk_bytes` (rounded up to whole pages; the last run may be shorter).
/// `sink` runs inside the read transaction: it must be quick.
pub fn capture_pages(
    path: &Path,
    chunk_bytes: u32,
    mut sink: impl FnMut(&[u8]) -> std::io::Result<()>,
) -> Result<PageImage, DatabaseCaptureError> {
    let shown = path.display().to_string();
    let open_err = |source| DatabaseCaptureError::Open {
        path: shown.clone(),
        source,
    };
    let read_err = |source| DatabaseCaptureError::Read {
        path: shown.clone(),
        source,
    };
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(open_err)?;
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, true)
        .map_err(open_err)?;
    conn.pragma_update(None, "query_only", true)
        .map_err(open_err)?;
    // Waiting only delays us: our reads never hold up the app.
    conn.busy_timeout(Duration::from_secs(10))
        .map_err(open_err)?;

    let journal: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .map_err(read_err)?;
    conn.execute_batch("BEGIN DEFERRED").map_err(read_err)?;
    let result = read_pages(&conn, &shown, chunk_bytes, &mut sink);
    // A read transaction has nothing to commit; ending it releases the WAL snapshot.
    let _ = conn.execute_batch("COMMIT");
    let (page_size, page_count) = result?;
    Ok(PageImage {
        page_size,
        page_count,
        wal: journal.eq_ignore_ascii_case("wal"),
    })
}

fn read_pages(
    conn: &Connection,
    shown: &str,
    chunk_bytes: u32,
    sink: &mut impl FnMut(&[u8]) -> std::io::Result<()>,
) -> Result<(u32, u64), DatabaseCaptureError> {
    let read_err = |source| DatabaseCaptureError::Read {
        path: shown.to_owned(),
        source,
    };
    // The first read starts the transaction's snapshot; everything below sees the same one.
    conn.query_row("SELECT count(*) FROM sqlite_schema", [], |_| Ok(()))
        .map_err(read_err)?;
    let page_size: u32 = conn
        .query_row("PRAGMA page_size", [], |r| r.get(0))
        .map_err(read_err)?;
    let page_count: i64 = conn
        .query_row("PRAGMA page_count", [], |r| r.get(0))
        .map_err(read_err)?;
    let page_count = page_count as u64;
    let mut stmt = match conn.prepare("SELECT pgno, data FROM sqlite_dbpage ORDER BY pgno") {
        Ok(s) => s,
        Err(e) if e.to_string().contains("no such table") => {
            return Err(DatabaseCaptureError::NoDbPage);
        }
        Err(e) => return Err(read_err(e)),
    };
    let pages_per_chunk = (chunk_bytes / page_size).max(1) as usize;
    let run_bytes = pages_per_chunk * page_size as usize;
    let mut run = Vec::with_capacity(run_bytes);
    let mut rows = stmt.query([]).map_err(read_err)?;
    let mut expected = 1u64;
    while let Some(row) = rows.next().map_err(read_err)? {
        let pgno = row.get::<_, i64>(0).map_err(read_err)? as u64;
        let data = row
            .get_ref(1)
            .map_err(read_err)?
            .as_blob()
            .map_err(|e| read_err(e.into()))?;
        if pgno != expected || data.len() != page_size as usize {
            return Err(DatabaseCaptureError::Torn {
                path: shown.to_owned(),
                expected,
                found: pgno,
            });
        }
        expected += 1;
        run.extend_from_slice(data);
        if run.len() == run_bytes {
            sink(&run)?;
            run.clear();
        }
    }
    if !run.is_empty() {
        sink(&run)?;
    }
    if expected - 1 != page_count {
        return Err(DatabaseCaptureError::Torn {
            path: shown.to_owned(),
            expected: page_count,
            found: expected - 1,
        });
    }
    Ok((page_size, page_count))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wal_db(dir: &Path) -> Connection {
        let conn = Connection::open(dir.join("msgstore.db")).expect("open");
        conn.execute_batch(
            "PRAGMA journal_mode=WAL; PRAGMA wal_autocheckpoint=0;
             CREATE TABLE message(_id INTEGER PRIMARY KEY, text TEXT);",
        )
        .expect("schema");
        conn
    }

    #[test]
    fn captures_commits_still_in_the_wal_and_restores_to_a_valid_db() {
        let dir = tempfile::tempdir().expect("tempdir");
        let app = wal_db(dir.path());
        for i in 0..2000 {
            app.execute(
                "INSERT INTO message(text) VALUES (?1)",
                [format!("message {i} {}", "x".repeat(i % 300))],
            )
            .expect("insert");
        }
        let mut image = Vec::new();
        let info = capture_pages(&dir.path().join("msgstore.db"), 16384, |run| {
            assert!(run.len() <= 16384 && run.len() % 4096 == 0);
            image.extend_from_slice(run);
            Ok(())
        })
        .expect("captured");
        assert!(info.wal);
        assert_eq!(
            image.len() as u64,
            info.page_count * u64::from(info.page_size)
        );
        // The app's WAL is untouched: not checkpointed, not deleted.
        assert!(
            dir.path()
                .join("msgstore.db-wal")
                .metadata()
                .expect("wal")
                .len()
                > 0
        );

        let out = tempfile::tempdir().expect("tempdir");
        std::fs::write(out.path().join("restored.db"), &image).expect("write");
        let restored = Connection::open(out.path().join("restored.db")).expect("open");
        let check: String = restored
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .expect("check");
        assert_eq!(check, "ok");
        let n: i64 = restored
            .query_row("SELECT count(*) FROM message", [], |r| r.get(0))
            .expect("count");
        assert_eq!(n, 2000);
    }

    #[test]
    fn the_app_keeps_writing_while_we_hold_the_snapshot() {
        let dir = tempfile::tempdir().expect("tempdir");
        let app = wal_db(dir.path());
        app.execute("INSERT INTO message(text) VALUES ('before')", [])
            .expect("insert");
        app.busy_timeout(Duration::ZERO).expect("no waiting");
        let mut writes_during_capture = 0;
        capture_pages(&dir.path().join("msgstore.db"), 4096, |_| {
            // With no busy timeout at all, any lock we held against writers would fail here.
            app.execute("INSERT INTO message(text) VALUES ('during')", [])
                .expect("app never gets SQLITE_BUSY");
            writes_during_capture += 1;
            Ok(())
        })
        .expect("captured");
        assert!(writes_during_capture > 0);
    }
}
