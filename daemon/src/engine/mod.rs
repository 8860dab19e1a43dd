//! Turning the captured store into repository objects, and back.
//!
//! - [`upload`]: worker threads that compress, encrypt and pack new chunks and store packs.
//! - [`backup`]: one backup of the store to one repository.
//! - `known`: which chunks the repository holds, loaded or looked up as a backup needs.
//! - [`restore`]: one snapshot back into a directory, every blob verified.
//! - [`verify`]: reads every object of a repository and checks it.
//! - [`prune`]: the retention policy applied to a target, and its space reclaimed.
//! - [`repair`]: removes index and snapshot objects confirmed damaged (torn puts).
//!
//! All of it is blocking code; the daemon runs it on tokio's blocking pool.

pub mod backup;
mod chunk_writer;
mod database;
mod files;
mod known;
pub mod listing;
#[cfg(test)]
mod messages_first_tests;
mod proof;
pub mod prune;
pub mod repair;
#[cfg(test)]
mod restorable_tests;
pub mod restore;
pub mod restore_dir;
#[cfg(test)]
mod restore_hostile_tests;
mod sink;
pub mod upload;
pub mod verify;

use std::path::PathBuf;

use crate::capture::database::DatabaseCaptureError;
use crate::catalog::CatalogError;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Repo(#[from] sealback_repo::Error),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(transparent)]
    Database(#[from] DatabaseCaptureError),
    #[error(transparent)]
    Unproven(#[from] proof::Unproven),
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the backup was stopped because the daemon is shutting down; nothing already stored is affected"
    )]
    Cancelled,
    #[error(
        "the backup ran longer than half the prune grace period, so a prune may have deleted packs it counted on; its snapshot was not written, and the next backup stores again what is missing"
    )]
    TooLong,
    #[error(
        "the store {} holds no database {database:?}: nothing was backed up; is store.path the app's message store, and has the app created its database yet?",
        .store.display()
    )]
    NoDatabase { store: PathBuf, database: String },
    #[error(
        "the repository this key opens was retired by a key rotation (marked {}) and is removed once the prune grace period has passed: backups with this key stop here; nothing is lost. Back up to the new generation with the new key (`sealbackctl key import`, or `sealbackctl key recover` in password mode)",
        utc(*.since_unix_ms)
    )]
    Retiring { since_unix_ms: i64 },
    #[error(
        "prune --now deletes at once what nothing kept needs, but the target also holds snapshots of {hosts}: a backup running there could lose a chunk it uses. Nothing was pruned: run `sealbackctl prune` without --now (the space is reclaimed over the next daily prunes)"
    )]
    SharedTarget { hosts: String },
    #[error("no snapshot matches {0:?}: list them with `sealbackctl snapshots`")]
    NoSuchSnapshot(String),
    #[error("{0:?} matches several snapshots: give more digits of the id")]
    AmbiguousSnapshot(String),
    #[error("the target has no snapshot yet: make one with `sealbackctl backup --wait`")]
    NoSnapshots,
    #[error("{} is not empty: restore into an empty directory, or pass --force to replace files in it", .0.display())]
    NotEmpty(PathBuf),
    #[error(
        "{} is a symbolic link or not a directory where the snapshot has a directory: a restore never follows links; remove it, or pass --force to replace it",
        .0.display()
    )]
    InTheWay(PathBuf),
    #[error(
        "{} is a symbolic link or not a directory: a restore never follows links; restore into the directory it points to",
        .0.display()
    )]
    RestoreDirIsLink(PathBuf),
    #[error(
        "{} kept changing while sealbackd made it (something else creates and removes that name): make sure nothing else writes into the restore directory, and restore again",
        .0.display()
    )]
    Changing(PathBuf),
    #[error(
        "{} belongs to {uid}:{gid}, and sealbackd (uid {daemon}, without CAP_CHOWN) cannot give restored files to them; nothing was written: restore into a directory sealbackd's user owns and hand the files over afterwards (chown -R), or set [restore] owner = \"daemon\"",
        dir.display()
    )]
    CannotGiveOwner {
        dir: PathBuf,
        uid: u32,
        gid: u32,
        daemon: u32,
    },
    #[error(
        "snapshot {snapshot} holds an unsafe path {path:?}: the manifest is damaged; nothing was written outside the target directory"
    )]
    UnsafePath { snapshot: String, path: String },
    #[error(
        "{} was restored but fails SQLite's integrity_check ({problem}): the snapshot holds the database as it was captured; restore an older snapshot, or open this one with the sqlite3 tool's .recover",
        .path.display()
    )]
    DatabaseUnsound { path: PathBuf, problem: String },
    #[error(
        "{} was restored, but SQLite could not check it ({problem}): the snapshot is not at fault; make sure nothing else moves or writes into the restore directory, and restore again",
        .path.display()
    )]
    DatabaseUnchecked { path: PathBuf, problem: String },
    #[error(
        "no file of snapshot {snapshot} matches --include {patterns}: paths are relative to the store (e.g. Media/Images or \"Media/**/*.jpg\"); `sealbackctl ls {snapshot}` lists them"
    )]
    NothingSelected { snapshot: String, patterns: String },
    #[error(
        "{path} restored to {found} bytes but the snapshot says {expected}: the repository is damaged"
    )]
    SizeMismatch {
        path: String,
        expected: u64,
        found: u64,
    },
}

impl EngineError {
    pub(crate) fn io(
        what: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> EngineError {
        let path = path.into();
        move |source| EngineError::Io { what, path, source }
    }
}

/// A time in messages: RFC 3339, UTC, to the second.
fn utc(unix_ms: i64) -> String {
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(unix_ms.max(0) as u64);
    humantime::format_rfc3339_seconds(at).to_string()
}
