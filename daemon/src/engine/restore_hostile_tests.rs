//! A restore into a directory someone else controls: the root daemon must not write through
//! a link planted there (before or during the restore), nor hand back a setuid file.
//!
//! Each test backs up a small store (a database, media in folders, one setuid file owned
//! by `nobody`) into a memory repository and restores it as the daemon does. Ownership
//! is checked against `nobody` when the tests run as root (as they do here); otherwise
//! against the tests' own user.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use sealback_repo::{BackupKey, Repository};

use super::EngineError;
use super::backup::{self, BackupInput};
use super::restore::{self, RestoreInput};
use super::restore_dir::{Owner, RestoreDir};
use crate::catalog::Catalog;
use crate::config::Selection;
use crate::control::api::RestoreReport;
use crate::test_store::MemoryStore;

const NOBODY: u32 = 65534;
const MEDIA: &[(&str, usize)] = &[
    ("Media/Images/a.jpg", 200_000),
    ("Media/Video/b.mp4", 300_000),
    ("Media/Docs/c.pdf", 70_000),
    ("Media/Docs/d.pdf", 5_000),
    ("Media/e.opus", 90_000),
];
const SETUID: &str = "Media/tool";

struct Backed {
    dir: tempfile::TempDir,
    repo: Repository,
    catalog: Catalog,
}

fn root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Pseudo-random, incompressible bytes, the same for the same seed.
pub(super) fn bytes(seed: usize, len: usize) -> Vec<u8> {
    let mut state = seed as u64 * 2654435761 + 1;
    (0..len)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 33) as u8
        })
        .collect()
}

/// A store backed up once into a memory repository.
fn backed_up() -> Backed {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("store");
    fs::create_dir_all(&store).expect("store");
    let conn = rusqlite::Connection::open(store.join("msgstore.db")).expect("db");
    conn.execute_batch(
        "CREATE TABLE message(_id INTEGER PRIMARY KEY, body TEXT);
         INSERT INTO message(body) VALUES ('hello'), ('world');",
    )
    .expect("schema");
    drop(conn);
    for (n, (rel, len)) in MEDIA.iter().enumerate() {
        let path = store.join(rel);
        fs::create_dir_all(path.parent().expect("parent")).expect("media dir");
        fs::write(&path, bytes(n, *len)).expect("media");
    }
    let tool = store.join(SETUID);
    fs::write(&tool, b"#!/bin/sh\nid -u\n").expect("tool");
    if root() {
        std::os::unix::fs::chown(&tool, Some(NOBODY), Some(NOBODY)).expect("chown nobody");
    }
    fs::set_permissions(&tool, fs::Permissions::from_mode(0o4755)).expect("setuid");

    let key = BackupKey::from_bytes(&mut [7u8; 32]);
    let (repo, _) =
        Repository::open_or_init(Arc::new(MemoryStore::default()), &key, 0).expect("init");
    let mut catalog = Catalog::open(&dir.path().join("catalog.db")).expect("catalog");
    let cancel = AtomicBool::new(false);
    let input = BackupInput {
        store: &store,
        database: "msgstore.db",
        host: "test",
        target: "memory",
        spool_dir: &dir.path().join("spool"),
        progress: &|_, _| {},
        cancel: &cancel,
        selection: &Default::default(),
    };
    backup::run(&repo, &mut catalog, &input).expect("backup");
    Backed { dir, repo, catalog }
}

impl Backed {
    fn restore(
        &self,
        to: &Path,
        force: bool,
        owner: Owner,
        progress: &(dyn Fn(u64, u64) + Sync),
    ) -> Result<(), EngineError> {
        let all = Selection::default();
        self.restore_part(to, force, owner, progress, &|_| {}, &all)
            .map(|_| ())
    }

    /// A restore of the files `selection` takes, telling `database_ready`.
    #[allow(clippy::too_many_arguments)]
    fn restore_part(
        &self,
        to: &Path,
        force: bool,
        owner: Owner,
        progress: &(dyn Fn(u64, u64) + Sync),
        database_ready: &(dyn Fn(u64) + Sync),
        selection: &Selection,
    ) -> Result<RestoreReport, EngineError> {
        let row = restore::resolve(&self.catalog, "latest").expect("snapshot");
        let input = RestoreInput {
            snapshot: &row,
            target: "memory",
            to,
            force,
            owner,
            progress,
            cancel: &AtomicBool::new(false),
            database_ready,
            selection,
        };
        restore::run(&self.repo, &self.catalog, &input)
    }

    /// A directory outside the restore directory, for links to point into.
    fn sentinel(&self) -> PathBuf {
        let sentinel = self.dir.path().join("elsewhere");
        fs::create_dir_all(&sentinel).expect("sentinel");
        sentinel
    }
}

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .expect("read sentinel")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn check_media(to: &Path) {
    for (n, (rel, len)) in MEDIA.iter().enumerate() {
        let path = to.join(rel);
        let meta = fs::symlink_metadata(&path).unwrap_or_else(|e| panic!("{rel}: {e}"));
        assert!(meta.is_file(), "{rel} is not a regular file: {meta:?}");
        assert!(fs::read(&path).expect("read") == bytes(n, *len), "{rel}");
    }
}

#[test]
fn a_setuid_file_comes_back_without_setuid_and_owned_by_the_restore_directorys_owner() {
    let backed = backed_up();
    let to = backed.dir.path().join("restored");
    fs::create_dir(&to).expect("restore dir");
    let owner = if root() {
        std::os::unix::fs::chown(&to, Some(NOBODY), Some(NOBODY)).expect("chown");
        NOBODY
    } else {
        nix::unistd::geteuid().as_raw()
    };
    backed
        .restore(&to, false, Owner::Directory, &|_, _| {})
        .expect("restore");
    check_media(&to);
    let tool = fs::metadata(to.join(SETUID)).expect("tool");
    assert_eq!(
        tool.mode() & 0o7777,
        0o755,
        "{SETUID} came back with mode {:o}: setuid, setgid and sticky must be dropped",
        tool.mode() & 0o7777
    );
    for rel in [SETUID, "msgstore.db", "Media", "Media/Images", MEDIA[0].0] {
        let meta = fs::metadata(to.join(rel)).expect("restored");
        assert_eq!(
            (meta.uid(), meta.gid()),
            (owner, owner),
            "{rel} is not owned by the restore directory's owner"
        );
    }
    // The folders it made are the app's alone, whatever the umask of the process.
    for rel in ["Media", "Media/Images"] {
        let mode = fs::metadata(to.join(rel)).expect("restored").mode() & 0o7777;
        assert_eq!(mode, 0o700, "{rel} was made with mode {mode:o}");
    }
}

#[test]
fn the_configured_owner_is_given_to_files_and_folders() {
    let backed = backed_up();
    let me = (
        nix::unistd::geteuid().as_raw(),
        nix::unistd::getegid().as_raw(),
    );
    let daemon = backed.dir.path().join("as-daemon");
    fs::create_dir(&daemon).expect("dir");
    if root() {
        std::os::unix::fs::chown(&daemon, Some(NOBODY), Some(NOBODY)).expect("chown");
    }
    backed
        .restore(&daemon, false, Owner::Daemon, &|_, _| {})
        .expect("restore");
    let meta = fs::metadata(daemon.join(MEDIA[1].0)).expect("restored");
    assert_eq!((meta.uid(), meta.gid()), me, "owner = daemon");
    if !root() {
        return;
    }
    let ids = backed.dir.path().join("as-ids");
    backed
        .restore(&ids, false, Owner::Ids(1234, 5678), &|_, _| {})
        .expect("restore");
    for rel in [MEDIA[1].0, "Media/Video", "msgstore.db"] {
        let meta = fs::metadata(ids.join(rel)).expect("restored");
        assert_eq!((meta.uid(), meta.gid()), (1234, 5678), "{rel}");
    }
}

#[test]
fn with_force_a_media_link_standing_in_the_directory_is_replaced_never_followed() {
    let backed = backed_up();
    let sentinel = backed.sentinel();
    let to = backed.dir.path().join("restored");
    fs::create_dir(&to).expect("restore dir");
    symlink(&sentinel, to.join("Media")).expect("plant Media");
    // And where a file goes: replaced by the rename, never written through.
    symlink(sentinel.join("db"), to.join("msgstore.db")).expect("plant the database");
    backed
        .restore(&to, true, Owner::Directory, &|_, _| {})
        .expect("restore with --force");
    assert_eq!(
        entries(&sentinel),
        Vec::<String>::new(),
        "the restore wrote through the Media link"
    );
    assert!(
        fs::symlink_metadata(to.join("Media"))
            .expect("Media")
            .is_dir()
    );
    assert!(
        fs::symlink_metadata(to.join("msgstore.db"))
            .expect("db")
            .is_file()
    );
    check_media(&to);
}

#[test]
fn a_restore_directory_that_is_a_link_is_refused_and_named() {
    let backed = backed_up();
    let sentinel = backed.sentinel();
    let to = backed.dir.path().join("restored");
    symlink(&sentinel, &to).expect("plant");
    match backed.restore(&to, true, Owner::Directory, &|_, _| {}) {
        Err(e @ EngineError::RestoreDirIsLink(_)) => {
            assert!(e.to_string().contains(&to.display().to_string()), "{e}")
        }
        other => panic!("expected the link to be refused, got {other:?}"),
    }
    assert_eq!(entries(&sentinel), Vec::<String>::new());
}

/// A link among the restore directory's parents is the caller's path (`/var/run` is one,
/// Android's `/sdcard` another): the restore goes where it leads, and the database is
/// checked there, not reported as failing its check because SQLite refuses to follow links.
#[test]
fn a_restore_directory_reached_through_a_linked_parent_is_restored_and_checked() {
    let backed = backed_up();
    let sentinel = backed.sentinel();
    let linked = backed.dir.path().join("linked");
    symlink(&sentinel, &linked).expect("plant");
    let to = linked.join("deeper");
    let report = backed
        .restore_part(
            &to,
            false,
            Owner::Daemon,
            &|_, _| {},
            &|_| {},
            &Selection::default(),
        )
        .expect("restored through the linked parent");
    assert!(report.database.is_some(), "the database was checked");
    check_media(&sentinel.join("deeper"));
    let db = rusqlite::Connection::open(sentinel.join("deeper/msgstore.db")).expect("open");
    let n: i64 = db
        .query_row("SELECT count(*) FROM message", [], |r| r.get(0))
        .expect("messages");
    assert_eq!(n, 2);
}

#[test]
fn links_planted_at_partial_names_during_the_restore_are_never_followed() {
    let backed = backed_up();
    let sentinel = backed.sentinel();
    let to = backed.dir.path().join("restored");
    let planted = AtomicBool::new(false);
    // Once the first chunk is written, every file not yet begun finds a link under its
    // partial name, pointing outside.
    let plant = |_, _| {
        if planted.swap(true, Ordering::SeqCst) {
            return;
        }
        for (n, (rel, _)) in MEDIA.iter().enumerate() {
            let partial = to.join(format!("{rel}.sealback-partial"));
            let _ = symlink(sentinel.join(format!("victim-{n}")), partial);
        }
    };
    let restored = backed.restore(&to, false, Owner::Directory, &plant);
    assert!(planted.load(Ordering::SeqCst), "no chunk was written");
    assert_eq!(
        entries(&sentinel),
        Vec::<String>::new(),
        "the restore wrote through a link at a partial name (it ended {restored:?})"
    );
    for (rel, _) in MEDIA {
        if let Ok(meta) = fs::symlink_metadata(to.join(rel)) {
            assert!(meta.is_file(), "{rel} was renamed into place as {meta:?}");
        }
    }
    if let Err(e) = restored {
        let text = e.to_string();
        assert!(
            text.contains(".sealback-partial") && text.contains("restore again"),
            "the error does not name the partial file and what to do: {text}"
        );
    }
}

#[test]
fn a_link_planted_after_the_emptiness_check_is_refused_and_named() {
    let backed = backed_up();
    let sentinel = backed.sentinel();
    let to = backed.dir.path().join("restored");
    let mut dir = RestoreDir::open(&to, false, Owner::Directory).expect("open");
    // What an inotify watcher does between the check and the first mkdir.
    symlink(&sentinel, to.join("Media")).expect("plant");
    let refused = dir.dir(Path::new("Media/Images"));
    match refused {
        Err(EngineError::InTheWay(path)) => assert_eq!(path, to.join("Media")),
        other => panic!("expected the Media link to be refused, got {other:?}"),
    }
    assert_eq!(entries(&sentinel), Vec::<String>::new());
}

#[test]
fn owners_read_as_the_configuration_writes_them() {
    assert_eq!("directory".parse(), Ok(Owner::Directory));
    assert_eq!("daemon".parse(), Ok(Owner::Daemon));
    assert_eq!("10123:10124".parse(), Ok(Owner::Ids(10123, 10124)));
    for bad in ["root", "", "1:", ":1", "-1:2", "+1:2", "a:b", "1:2:3"] {
        let e = bad.parse::<Owner>().expect_err(bad);
        assert!(e.contains("UID:GID"), "{bad}: {e}");
    }
}

/// Messages first: when the restore says the database is ready, it stands under its own
/// name, complete, and SQLite reads the messages from it.
#[test]
fn the_database_opens_when_the_restore_says_the_messages_are_ready() {
    let backed = backed_up();
    let to = backed.dir.path().join("restored");
    let told = std::sync::Mutex::new(None);
    let report = backed
        .restore_part(
            &to,
            false,
            Owner::Daemon,
            &|_, _| {},
            &|ms| {
                let db = rusqlite::Connection::open(to.join("msgstore.db")).expect("open");
                let n: i64 = db
                    .query_row("SELECT count(*) FROM message", [], |r| r.get(0))
                    .expect("the messages are readable");
                *told.lock().expect("lock") = Some((ms, n));
            },
            &Selection::default(),
        )
        .expect("restore");
    let (ms, messages) = told
        .into_inner()
        .expect("lock")
        .expect("database_ready was told");
    assert_eq!(messages, 2);
    let db = report.database.expect("the report names the database");
    assert_eq!((db.path.as_str(), db.ready_ms), ("msgstore.db", ms));
    assert!(ms <= report.duration_ms);
    assert_eq!(
        report.files as usize,
        MEDIA.len() + 1,
        "the media and the tool (the database is counted apart, as snapshots count it)"
    );
}

/// `--include`: only what the globs take; the database only if one takes it; a glob that
/// takes nothing is an error naming it, and writes nothing.
#[test]
fn include_restores_only_what_it_takes() {
    let backed = backed_up();
    // Into a directory of its own, only what `patterns` take.
    let restore = |dir: &str, patterns: &[&str]| {
        let patterns: Vec<String> = patterns.iter().map(|p| p.to_string()).collect();
        let only = Selection::only(&patterns, "--include").expect("valid");
        let to = backed.dir.path().join(dir);
        let report = backed.restore_part(&to, false, Owner::Daemon, &|_, _| {}, &|_| {}, &only);
        (to, report)
    };
    let (to, report) = restore("docs", &["Media/Docs"]);
    let report = report.expect("restore");
    assert_eq!(files_under(&to), ["Media/Docs/c.pdf", "Media/Docs/d.pdf"]);
    assert_eq!((report.files, report.bytes), (2, 75_000));
    assert!(report.database.is_none());
    let (to, report) = restore("db", &["msgstore.db", "**/*.opus"]);
    assert!(report.expect("restore").database.is_some());
    assert_eq!(files_under(&to), ["Media/e.opus", "msgstore.db"]);
    let (to, report) = restore("none", &["Media/Audio/**"]);
    let err = report.expect_err("nothing taken").to_string();
    assert!(err.contains("--include Media/Audio/**"), "{err}");
    assert!(!to.exists(), "nothing was made");
}

/// Every file under `dir`, relative, sorted.
fn files_under(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(at) = stack.pop() {
        for entry in fs::read_dir(&at).expect("read_dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let rel = path.strip_prefix(dir).expect("under dir");
                found.push(rel.to_string_lossy().into_owned());
            }
        }
    }
    found.sort();
    found
}
