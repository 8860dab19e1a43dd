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
//!
//! Given the [`Baseline`] an earlier capture left, the same transaction reads only the page
//! runs the WAL says may have changed since, when that can be known for sure, and every
//! page otherwise (DESIGN.md §4.1.1 argues why the two give the same image).

use std::collections::BTreeSet;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

use rusqlite::config::DbConfig;
use rusqlite::{Connection, OpenFlags, OptionalExtension};
use serde::{Deserialize, Serialize};

use super::files::{FileStat, SETTLE_WAIT};
use super::wal::{self, Generation, Log};
use family::Family;
pub(crate) use family::lock_families;

mod family;
mod unlocked;

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
        "the database {path} was replaced (another file renamed over it) while its capture began; the capture is retried"
    )]
    Replaced { path: String },
    #[error(
        "the database {path} was written, or opened by the app, while sealbackd read it \
         without locks (its user cannot create the -shm file SQLite locks with in the store's \
         folder, and the app had closed the database): that read is not used"
    )]
    WrittenWhileRead { path: String },
    #[error(
        "cannot read {path} ({why}): the app may have been creating it; the capture is \
         retried. If this lasts, give sealbackd's user read access to the store's files \
         through their group (README: the store, through a group)"
    )]
    FamilyUnreadable { path: String, why: String },
    #[error(
        "cannot read the database {path} ({sqlite}): sealbackd's user may not create the \
         -wal and -shm files SQLite reads a WAL database with beside it, and reading the \
         file alone is not safe: {why}. Let the app open the database (it creates them), or \
         make the store's folder writable by sealbackd's group"
    )]
    ReadOnlyStore {
        path: String,
        /// What SQLite said when asked to read it with locks.
        sqlite: String,
        why: &'static str,
    },
    #[error(
        "this sealbackd's SQLite lacks the sqlite_dbpage table: build it with LIBSQLITE3_FLAGS=-DSQLITE_ENABLE_DBPAGE_VTAB (.cargo/config.toml)"
    )]
    NoDbPage,
    #[error(
        "{what} {path} is {found}, not a regular file inside the store: sealbackd, running as \
         root, reads only the store's own files and never follows a link out of it; {advice}"
    )]
    NotInStore {
        what: &'static str,
        path: String,
        found: String,
        advice: &'static str,
    },
    #[error("cannot stat the database {path}: {source}")]
    Stat {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot read the database's WAL: {0}")]
    Wal(std::io::Error),
    #[error("spool: {0}")]
    Sink(#[from] std::io::Error),
}

/// Where the database stood at a capture, for the next one to read only what changed since.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Baseline {
    pub page_size: u32,
    pub page_count: u64,
    pub device: u64,
    pub inode: u64,
    /// The kernel's boot id when it was taken: after a power loss the app's last commits,
    /// not yet synced, may be gone from its WAL while this baseline still has them.
    #[serde(default)]
    pub boot: Option<String>,
    pub since: Since,
}

/// This boot's id (Linux), to tell a capture taken before a restart.
pub(crate) fn boot_id() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .ok()
        .map(|s| s.trim().to_owned())
}

/// How a later capture can know which pages changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Since {
    /// This WAL generation was current before the capture's snapshot began and after it was
    /// read: every later commit is a frame of it until it is restarted. Its first `frames`
    /// frames were committed before the snapshot began, so they are in the image: a later
    /// capture reads only the pages of the frames after them.
    Wal { generation: Generation, frames: u64 },
    /// There was no WAL and the database file had not changed for a while: the image is the
    /// file itself, and any later write to it moves its `ctime`.
    File {
        size: u64,
        mtime_ns: i64,
        ctime_ns: i64,
    },
}

/// How the pages were read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reading {
    /// Every page, for the reason given.
    Full { reason: &'static str },
    /// Only this many runs (of `chunk_bytes`), those that may have changed; the others are
    /// as in the baseline.
    Delta { runs: u64 },
}

/// What the capture saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageImage {
    pub page_size: u32,
    pub page_count: u64,
    /// Whether the app's writers could go on while we read: the database is in WAL mode, or
    /// was read as its file alone, without locks (in rollback mode they wait for us).
    pub wal: bool,
    pub reading: Reading,
    /// Bytes read from the database and its WAL.
    pub bytes_read: u64,
    /// What the next capture can start from, if anything.
    pub next: Option<Baseline>,
    /// The database file SQLite opened (a symbolic link resolved); its WAL is beside it.
    pub file: std::path::PathBuf,
}

/// Reads the database at `path` as of one committed transaction and hands `sink` its bytes
/// in runs of `chunk_bytes` (rounded up to whole pages; the last run may be shorter), each
/// with its index. Given the `baseline` of an earlier capture, only the runs that may have
/// changed since are read, when that can be known for sure (see [`Since`]); otherwise all.
/// `sink` runs inside the read transaction: it must be quick. `began` is called once the
/// transaction's snapshot is taken: whatever happens after that call (a file the app
/// writes before committing a message that names it) is not in the image.
pub fn capture_pages(
    path: &Path,
    chunk_bytes: u32,
    baseline: Option<&Baseline>,
    began: impl FnOnce(),
    mut sink: impl FnMut(u64, &[u8]) -> std::io::Result<()>,
) -> Result<PageImage, DatabaseCaptureError> {
    let shown = path.display().to_string();
    let read_err = |source| DatabaseCaptureError::Read {
        path: shown.clone(),
        source,
    };
    // No other thread opens a connection to, or closes a descriptor of, a database's family
    // while this capture's connection is open: that would drop its locks (see `family`).
    let _one_at_a_time = lock_families();
    // The database and its family must be the store's own regular files: the store's
    // owner may put a link to a database only root can read in their place. Declared
    // before the connection, the family outlives it, and so do the descriptors it keeps.
    let family = Family::open(path).map_err(|source| DatabaseCaptureError::Stat {
        path: shown.clone(),
        source,
    })?;
    family.check()?;
    // The file the connection opens, as far as a stat can tell: the capture's snapshot must
    // be of the file the stat after it began describes (its inode goes into the baseline),
    // so a file renamed over the database in between makes it start again.
    let opened = family
        .stat("")
        .map(|m| (m.dev(), m.ino()))
        .map_err(|source| DatabaseCaptureError::Stat {
            path: shown.clone(),
            source,
        })?;
    let conn = connect(path, &family, false)?;
    // A WAL database the app has closed, in a folder we may only read: SQLite cannot create
    // the wal-index it locks with, so the file is read alone, checked around the read.
    let (conn, journal, unlocked) = match journal_mode(&conn) {
        Ok(journal) => (conn, journal, None),
        Err(e) if unlocked::cannot_lock(&e) => {
            drop(conn);
            let before = unlocked::Before::take(&family, &shown, e)?;
            tracing::info!(
                path = %shown,
                "the app has closed the database and sealbackd may not create its -shm: reading the file alone, without locks"
            );
            if before.id() != opened {
                return Err(DatabaseCaptureError::Replaced { path: shown });
            }
            let conn = connect(path, &family, true)?;
            let journal = journal_mode(&conn).map_err(read_err)?;
            (conn, journal, Some(before))
        }
        Err(e) => return Err(read_err(e)),
    };

    // The WAL sits beside the file SQLite resolved the path to (a symbolic link is followed),
    // so ask SQLite which file that is rather than appending "-wal" to what we were given.
    let db_file = conn
        .path()
        .filter(|p| !p.is_empty())
        .map(std::path::PathBuf::from)
        .or_else(|| std::fs::canonicalize(path).ok())
        .unwrap_or_else(|| path.to_path_buf());
    let path = db_file.as_path();
    // Read alone, the file is the image whatever WAL the app begins meanwhile.
    let mut wal_before = match unlocked {
        Some(_) => None,
        None => wal_position(&family)?,
    };
    let wal_mode = journal.eq_ignore_ascii_case("wal");
    if wal_before.is_none() && wal_mode {
        // No WAL, and the file written a moment ago (the app just closed it, or checkpointed
        // with TRUNCATE): waiting out the margin lets this capture be a baseline.
        let wait = std::fs::symlink_metadata(path)
            .map(|m| FileStat::of(&m).unsettled_for(std::time::SystemTime::now()))
            .unwrap_or(Duration::ZERO);
        if !wait.is_zero() && wait <= SETTLE_WAIT {
            std::thread::sleep(wait);
            wal_before = wal_position(&family)?;
        }
    }
    conn.execute_batch("BEGIN DEFERRED").map_err(read_err)?;
    let result = read_snapshot(
        &conn,
        &Target {
            path,
            shown: &shown,
            chunk_bytes,
            wal: wal_mode || unlocked.is_some(),
            unlocked: unlocked.is_some(),
            opened,
            family: &family,
        },
        baseline,
        wal_before,
        began,
        &mut sink,
    );
    // A read transaction has nothing to commit; ending it releases the WAL snapshot.
    let _ = conn.execute_batch("COMMIT");
    // Closed before the family's descriptors are (see `family`).
    drop(conn);
    let result = match (result, unlocked) {
        (Ok(image), Some(before)) => before.check_after(&family, &shown).map(|()| image),
        (result, _) => result,
    };
    // Replaced while read: the pages are the old file's, but the WAL this capture scanned
    // by name, and so the baseline it leaves, may be the new one's.
    let still = family.stat("").map(|m| (m.dev(), m.ino())).ok();
    match result {
        Ok(_) if still != Some(opened) || !family.still_at_path() => {
            Err(DatabaseCaptureError::Replaced { path: shown })
        }
        result => result,
    }
}

/// Opens our connection to the database at `path`: as any reader does, taking SQLite's
/// locks, or `immutable` (the file alone, read-only, without locks: see `unlocked`). It
/// never checkpoints on close and never writes.
fn connect(
    path: &Path,
    family: &Family,
    immutable: bool,
) -> Result<Connection, DatabaseCaptureError> {
    let setup_err = |source| DatabaseCaptureError::Open {
        path: path.display().to_string(),
        source,
    };
    // SQLite opens by path: `NOFOLLOW` makes it refuse a path with a link anywhere in it
    // (the store's path has none, being resolved), and it opens the database, its WAL and
    // wal-index with `O_NOFOLLOW`.
    let flags = OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_NOFOLLOW;
    let conn = if immutable {
        Connection::open_with_flags(
            unlocked::immutable_uri(path),
            flags | OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_URI,
        )
    } else {
        Connection::open_with_flags(path, flags | OpenFlags::SQLITE_OPEN_READ_WRITE)
    }
    .map_err(|source| family.open_error(source))?;
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, true)
        .map_err(setup_err)?;
    conn.pragma_update(None, "query_only", true)
        .map_err(setup_err)?;
    // Waiting only delays us: our reads never hold up the app.
    conn.busy_timeout(Duration::from_secs(10))
        .map_err(setup_err)?;
    Ok(conn)
}

/// The database's journal mode; the first read, which opens the WAL and wal-index.
fn journal_mode(conn: &Connection) -> rusqlite::Result<String> {
    conn.query_row("PRAGMA journal_mode", [], |r| r.get(0))
}

/// The WAL's generation and how many of its frames were committed, read before a capture's
/// snapshot begins (so that every one of those frames is in it). With no valid wal-index
/// to say, none are counted: the next capture reads every page the log names.
fn wal_position(family: &Family) -> Result<Option<(Generation, u64)>, DatabaseCaptureError> {
    let header = family.read_member("-wal", wal::read_header)?;
    let Some(generation) = header.flatten() else {
        return Ok(None);
    };
    let frames = family
        .read_member("-shm", |shm| wal::index_frames(shm, &generation))?
        .flatten()
        .unwrap_or(0);
    Ok(Some((generation, frames)))
}

struct Target<'a> {
    path: &'a Path,
    shown: &'a str,
    chunk_bytes: u32,
    /// Whether the app's writers could go on while we read.
    wal: bool,
    /// Whether the file is read alone, without locks (`unlocked`).
    unlocked: bool,
    /// The device and inode of the file at `path` before the connection opened it.
    opened: (u64, u64),
    family: &'a Family,
}

pub(crate) fn wal_path(db: &Path) -> std::path::PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push("-wal");
    name.into()
}

fn read_snapshot(
    conn: &Connection,
    target: &Target<'_>,
    baseline: Option<&Baseline>,
    wal_before: Option<(Generation, u64)>,
    began: impl FnOnce(),
    sink: &mut impl FnMut(u64, &[u8]) -> std::io::Result<()>,
) -> Result<PageImage, DatabaseCaptureError> {
    let read_err = |source| DatabaseCaptureError::Read {
        path: target.shown.to_owned(),
        source,
    };
    // The first read starts the transaction's snapshot; everything below sees the same one.
    conn.query_row("SELECT count(*) FROM sqlite_schema", [], |_| Ok(()))
        .map_err(read_err)?;
    began();
    let page_size: u32 = conn
        .query_row("PRAGMA page_size", [], |r| r.get(0))
        .map_err(read_err)?;
    let page_count: i64 = conn
        .query_row("PRAGMA page_count", [], |r| r.get(0))
        .map_err(read_err)?;
    let page_count = page_count as u64;
    // Taken after the snapshot began: a change the snapshot missed shows in this stat.
    let meta = target
        .family
        .stat("")
        .map_err(|source| DatabaseCaptureError::Stat {
            path: target.shown.to_owned(),
            source,
        })?;
    if (meta.dev(), meta.ino()) != target.opened {
        return Err(DatabaseCaptureError::Replaced {
            path: target.shown.to_owned(),
        });
    }
    let stat = FileStat::of(&meta);
    let seen_at = std::time::SystemTime::now();
    // Frames the baseline's capture saw committed are in its image: only those since count.
    let since = baseline.and_then(|b| match b.since {
        Since::Wal { generation, frames } => Some((generation, frames)),
        Since::File { .. } => None,
    });
    let (log, wal_bytes) = target
        .family
        .read_member("-wal", |wal| wal::scan(wal, since))?
        .unwrap_or((Log::Absent, 0));

    let pages_per_run = u64::from((target.chunk_bytes / page_size).max(1));
    let runs = page_count.div_ceil(pages_per_run);
    let boot = boot_id();
    let now = Seen {
        boot: boot.as_deref(),
        page_size,
        page_count,
        device: meta.dev(),
        stat: &stat,
    };
    let plan = plan(baseline, &now, &log, pages_per_run);
    let mut reader = PageReader {
        conn,
        shown: target.shown,
        page_size,
        run: Vec::with_capacity((pages_per_run * u64::from(page_size)) as usize),
    };
    let reading = match plan {
        Ok(dirty) if (dirty.len() as u64) * 2 <= runs.max(1) => {
            for &run in &dirty {
                let first = run * pages_per_run + 1;
                let last = (first + pages_per_run - 1).min(page_count);
                sink(run, reader.read_run(first, last)?)?;
            }
            Reading::Delta {
                runs: dirty.len() as u64,
            }
        }
        Ok(_) => {
            reader.read_all(page_count, pages_per_run, sink)?;
            Reading::Full {
                reason: "most of the database changed",
            }
        }
        Err(reason) => {
            reader.read_all(page_count, pages_per_run, sink)?;
            Reading::Full { reason }
        }
    };
    let pages_read = match reading {
        Reading::Full { .. } => page_count,
        Reading::Delta { runs } => (runs * pages_per_run).min(page_count),
    };

    let settled = stat.unsettled_for(seen_at).is_zero();
    let file_alone = Since::File {
        size: stat.size,
        mtime_ns: stat.mtime_ns,
        ctime_ns: stat.ctime_ns,
    };
    let since = match (wal_before, &log) {
        // The image is the file as it was, whatever frames a WAL begun since holds.
        _ if target.unlocked => settled.then_some(file_alone),
        (Some((before, frames)), Log::Frames { generation, .. }) if before == *generation => {
            Some(Since::Wal {
                generation: before,
                frames,
            })
        }
        (None, Log::Absent) if settled => Some(file_alone),
        _ => None,
    };
    Ok(PageImage {
        page_size,
        page_count,
        wal: target.wal,
        reading,
        bytes_read: pages_read * u64::from(page_size) + wal_bytes,
        next: since.map(|since| Baseline {
            page_size,
            page_count,
            device: meta.dev(),
            inode: meta.ino(),
            boot,
            since,
        }),
        file: target.path.to_path_buf(),
    })
}

/// The runs that may differ from the baseline's image, or why every run must be read.
///
/// Sound because (DESIGN.md §4): with the WAL generation unchanged since a capture whose
/// snapshot began inside it, every commit since is a frame still in the log; with no WAL
/// at the baseline and the file's `ctime` unchanged, the file is as it was and every commit
/// since is a frame of the current log. Pages past the smaller page count are read anyway.
/// What this capture sees of the database, to compare with a baseline.
struct Seen<'a> {
    boot: Option<&'a str>,
    page_size: u32,
    page_count: u64,
    device: u64,
    stat: &'a FileStat,
}

fn plan(
    baseline: Option<&Baseline>,
    now: &Seen<'_>,
    log: &Log,
    pages_per_run: u64,
) -> Result<BTreeSet<u64>, &'static str> {
    let Seen {
        boot,
        page_size,
        page_count,
        device,
        stat,
    } = *now;
    let Some(base) = baseline else {
        return Err(
            "no baseline: the first capture, or the last one saw the WAL restart or the file just written, or the catalog no longer vouches for it",
        );
    };
    if base.boot.as_deref() != boot {
        return Err("the device restarted since the last capture");
    }
    if base.page_size != page_size {
        return Err("the page size changed");
    }
    if (base.device, base.inode) != (device, stat.inode) {
        return Err("the database file was replaced");
    }
    let empty = BTreeSet::new();
    let pages = match (&base.since, log) {
        (_, Log::Restarted) => return Err("the WAL was restarted while we read it"),
        (
            Since::Wal {
                generation: was, ..
            },
            Log::Frames { generation, pages },
        ) if was == generation => pages,
        (Since::Wal { .. }, _) => {
            return Err(
                "the WAL was restarted since the last capture (a checkpoint we did not see)",
            );
        }
        (
            Since::File {
                size,
                mtime_ns,
                ctime_ns,
            },
            _,
        ) if (*size, *mtime_ns, *ctime_ns) != (stat.size, stat.mtime_ns, stat.ctime_ns) => {
            return Err("the database file was written since the last capture");
        }
        (Since::File { .. }, Log::Frames { pages, .. }) => pages,
        (Since::File { .. }, Log::Absent) => &empty,
    };
    let mut dirty: BTreeSet<u64> = pages
        .iter()
        .filter(|&&p| p >= 1 && p <= page_count)
        .map(|p| (p - 1) / pages_per_run)
        .collect();
    if page_count != base.page_count {
        // From the run holding the first page past the shorter image: it grew or shrank.
        let from = page_count.min(base.page_count) / pages_per_run;
        dirty.extend(from..page_count.div_ceil(pages_per_run));
    }
    Ok(dirty)
}

struct PageReader<'a> {
    conn: &'a Connection,
    shown: &'a str,
    page_size: u32,
    run: Vec<u8>,
}

impl PageReader<'_> {
    fn read_err(&self, source: rusqlite::Error) -> DatabaseCaptureError {
        if source.to_string().contains("no such table") {
            return DatabaseCaptureError::NoDbPage;
        }
        DatabaseCaptureError::Read {
            path: self.shown.to_owned(),
            source,
        }
    }

    fn torn(&self, expected: u64, found: u64) -> DatabaseCaptureError {
        DatabaseCaptureError::Torn {
            path: self.shown.to_owned(),
            expected,
            found,
        }
    }

    /// Pages `first..=last`, looked up one by one.
    fn read_run(&mut self, first: u64, last: u64) -> Result<&[u8], DatabaseCaptureError> {
        self.run.clear();
        let mut stmt = self
            .conn
            .prepare_cached("SELECT data FROM sqlite_dbpage WHERE pgno = ?1")
            .map_err(|e| self.read_err(e))?;
        for pgno in first..=last {
            let page: Option<Vec<u8>> = stmt
                .query_row([pgno as i64], |r| r.get(0))
                .optional()
                .map_err(|e| self.read_err(e))?;
            match page {
                Some(data) if data.len() == self.page_size as usize => {
                    self.run.extend_from_slice(&data)
                }
                _ => return Err(self.torn(pgno, 0)),
            }
        }
        Ok(&self.run)
    }

    /// Every page in order, in runs of `pages_per_run`.
    fn read_all(
        &mut self,
        page_count: u64,
        pages_per_run: u64,
        sink: &mut impl FnMut(u64, &[u8]) -> std::io::Result<()>,
    ) -> Result<(), DatabaseCaptureError> {
        let run_bytes = (pages_per_run * u64::from(self.page_size)) as usize;
        self.run.clear();
        let mut stmt = self
            .conn
            .prepare("SELECT pgno, data FROM sqlite_dbpage ORDER BY pgno")
            .map_err(|e| self.read_err(e))?;
        let mut rows = stmt.query([]).map_err(|e| self.read_err(e))?;
        let mut expected = 1u64;
        let mut index = 0u64;
        while let Some(row) = rows.next().map_err(|e| self.read_err(e))? {
            let pgno = row.get::<_, i64>(0).map_err(|e| self.read_err(e))? as u64;
            let data = row
                .get_ref(1)
                .map_err(|e| self.read_err(e))?
                .as_blob()
                .map_err(|e| self.read_err(e.into()))?;
            if pgno != expected || data.len() != self.page_size as usize {
                return Err(self.torn(expected, pgno));
            }
            expected += 1;
            self.run.extend_from_slice(data);
            if self.run.len() == run_bytes {
                sink(index, &self.run)?;
                index += 1;
                self.run.clear();
            }
        }
        if !self.run.is_empty() {
            sink(index, &self.run)?;
            self.run.clear();
        }
        if expected - 1 != page_count {
            return Err(self.torn(page_count, expected - 1));
        }
        Ok(())
    }
}

#[cfg(test)]
mod delta_tests;

#[cfg(test)]
mod lock_tests;

#[cfg(test)]
mod tests;
