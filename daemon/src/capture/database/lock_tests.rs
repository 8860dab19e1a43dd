//! The capture keeps SQLite's locks while its read transaction is open.
//!
//! SQLite's locks on the database and its wal-index (`-shm`) are POSIX record locks, which
//! belong to the process, not to the descriptor: closing *any* descriptor of those files in
//! the daemon drops every lock the daemon's connection holds on them. An app opening the
//! database then finds no other user: it truncates the `-shm` file SQLite has mapped (the
//! daemon dies of SIGBUS) and rebuilds the wal-index without our read mark, so its
//! checkpoints copy frames newer than our snapshot into the file we are reading (a torn
//! image that fails `integrity_check`). These tests look at the locks from outside, through
//! an open-file-description lock probe, which conflicts with the process's own record locks.

use std::fs::File;
use std::os::fd::AsFd;

use super::*;

/// SQLite's unix VFS: the "dead man switch" byte of the wal-index, held shared by every
/// connection using it; an opener that can take it exclusively believes it is alone.
const SHM_DMS: i64 = 128;
/// The wal-index's read-mark lock bytes (`WAL_READ_LOCK(0..5)`): a reader holds one shared.
const SHM_READ_MARKS: (i64, i64) = (123, 5);
/// The database file's SHARED lock range (`PENDING_BYTE + 2`, 510 bytes), held between
/// transactions too in WAL mode.
const DB_SHARED: (i64, i64) = (0x4000_0000 + 2, 510);

/// Whether anyone, this process included, holds a lock on `len` bytes at `start` of `file`
/// that a writer would wait for.
fn locked(file: &File, start: i64, len: i64) -> bool {
    let mut probe = libc::flock {
        l_type: libc::F_WRLCK as i16,
        l_whence: libc::SEEK_SET as i16,
        l_start: start,
        l_len: len,
        l_pid: 0,
    };
    nix::fcntl::fcntl(file.as_fd(), nix::fcntl::FcntlArg::F_OFD_GETLK(&mut probe))
        .expect("probe the lock");
    probe.l_type != libc::F_UNLCK as i16
}

/// The app commits `rows` messages and closes the database without a checkpoint, so that
/// the WAL keeps its frames (and the capture reads the wal-index header) while no
/// connection of the app holds a lock that would hide the capture's.
fn app_commits(db: &Path, rows: u32) {
    let app = Connection::open(db).expect("open");
    app.set_db_config(DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, true)
        .expect("no checkpoint on close");
    app.execute_batch(
        "PRAGMA journal_mode=WAL; PRAGMA wal_autocheckpoint=0;
         CREATE TABLE IF NOT EXISTS message(_id INTEGER PRIMARY KEY, text TEXT);",
    )
    .expect("schema");
    for i in 0..rows {
        app.execute("INSERT INTO message(text) VALUES (?1)", [format!("m{i}")])
            .expect("insert");
    }
}

/// Descriptors to probe the locks through, open until the test ends: closing one during a
/// capture would itself drop the locks looked for.
struct Probes {
    shm: File,
    file: File,
}

impl Probes {
    fn open(db: &Path) -> Probes {
        Probes {
            shm: File::open(db.with_extension("db-shm")).expect("the app's wal-index"),
            file: File::open(db).expect("the database"),
        }
    }
}

/// What the probes saw while the capture's sink ran: the wal-index's DMS byte, a read
/// mark, and the database's SHARED lock.
fn locks_during_capture(
    db: &Path,
    probes: &Probes,
    baseline: Option<&Baseline>,
) -> (PageImage, [bool; 3]) {
    let Probes { shm, file } = probes;
    let mut seen = [true; 3];
    let image = capture_pages(
        db,
        4096,
        baseline,
        || {},
        |_, _| {
            seen[0] &= locked(shm, SHM_DMS, 1);
            seen[1] &= locked(shm, SHM_READ_MARKS.0, SHM_READ_MARKS.1);
            seen[2] &= locked(file, DB_SHARED.0, DB_SHARED.1);
            Ok(())
        },
    )
    .expect("captured");
    (image, seen)
}

#[test]
fn the_capture_keeps_its_locks_on_the_database_and_wal_index_while_it_reads() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("msgstore.db");
    app_commits(&db, 200);
    let probes = Probes::open(&db);
    let (image, seen) = locks_during_capture(&db, &probes, None);
    assert!(image.wal);
    assert_eq!(
        seen, [true; 3],
        "[wal-index DMS, read mark, database SHARED] held while the capture read"
    );
    // And from a baseline, which reads the wal-index and the WAL again.
    app_commits(&db, 1);
    let (image, seen) = locks_during_capture(&db, &probes, image.next.as_ref());
    assert!(matches!(image.reading, Reading::Delta { .. }), "{image:?}");
    assert_eq!(seen, [true; 3]);
}
