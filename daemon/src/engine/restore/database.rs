//! The database's part of a restore: its list blobs read, its patches applied, and the
//! check that makes "the messages are back" true: the restored file opens in SQLite and
//! passes `PRAGMA integrity_check`. A restore writes the database first (see
//! `restore::run`), so this check runs while the media are still coming.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

use sealback_repo::chunk::decode_list;
use sealback_repo::pack::{BlobKind, BlobScratch, PackEntry, PackReader};
use sealback_repo::patch;
use sealback_repo::{ChunkId, Repository};

use super::{Job, Locations};
use crate::engine::EngineError;
use crate::engine::restore_dir::RestoreDir;

/// The chunk ids the database's list blobs name, in order; each pack holding lists is read
/// once, however many lists it holds.
pub(super) fn read_lists(
    repo: &Repository,
    locations: &Locations<'_>,
    lists: &[ChunkId],
) -> Result<Vec<ChunkId>, EngineError> {
    let mut by_pack: HashMap<Arc<str>, Vec<(usize, PackEntry)>> = HashMap::new();
    for (at, list) in lists.iter().enumerate() {
        let (pack, entry) = locations.find(list)?;
        by_pack.entry(pack).or_default().push((at, entry));
    }
    let mut parts: Vec<Vec<ChunkId>> = vec![Vec::new(); lists.len()];
    for (pack, entries) in by_pack {
        let bytes = repo.read_pack(&pack)?;
        let reader = PackReader::new(repo.keys(), &pack, &bytes)?;
        let mut scratch = BlobScratch::default();
        for (at, entry) in entries {
            let plain = reader.blob_in(&entry, &mut scratch)?;
            parts[at] = decode_list(plain).ok_or_else(|| sealback_repo::Error::Malformed {
                name: format!("list blob {}", entry.id.short()),
                detail: "length is not a multiple of 32".into(),
            })?;
        }
    }
    Ok(parts.concat())
}

/// Applies the database's patches, in order, to the image its chunks wrote: each patch's
/// dictionary runs are read back from the file, its new runs written over them, and the
/// file cut or grown to the patch's size. A patch that does not follow the image before it
/// fails, naming it.
pub(super) fn apply_patches(
    repo: &Repository,
    locations: &Locations<'_>,
    job: &Job<'_>,
    out: &File,
    patches: &[ChunkId],
    run_bytes: u32,
) -> Result<(), EngineError> {
    let io = |what: &'static str| EngineError::io(what, &job.partial);
    let mut scratch = BlobScratch::default();
    for (at, id) in patches.iter().enumerate() {
        let name = format!(
            "patch {} ({} of {}) of {}",
            id.short(),
            at + 1,
            patches.len(),
            job.shown
        );
        let (pack, entry) = locations.find(id)?;
        let bytes = repo.read_pack(&pack)?;
        let reader = PackReader::new(repo.keys(), &pack, &bytes)?;
        let plain = reader.blob_in(&entry, &mut scratch)?;
        let patch = patch::decode(plain, &name)?;
        let size = out.metadata().map_err(io("cannot read"))?.len();
        if entry.kind != BlobKind::Patch
            || patch.run_bytes != run_bytes
            || patch.size_before != size
        {
            return Err(sealback_repo::Error::Malformed {
                name,
                detail: format!(
                    "it does not follow the image before it ({size} bytes in runs of {run_bytes}; \
                     the patch starts from {} bytes in runs of {})",
                    patch.size_before, patch.run_bytes
                ),
            }
            .into());
        }
        let offset = |run: u64| run * u64::from(run_bytes);
        let mut prefix = vec![0u8; patch.dictionary_len()];
        let mut at = 0;
        for &run in &patch.dictionary {
            let len = patch::run_len(run_bytes, size, run);
            out.read_exact_at(&mut prefix[at..at + len], offset(run))
                .map_err(io("cannot read"))?;
            at += len;
        }
        let new = patch.decompress(repo.keys(), &prefix, &name)?;
        let mut at = 0;
        for &run in &patch.runs {
            let len = patch::run_len(run_bytes, patch.size_after, run);
            out.write_all_at(&new[at..at + len], offset(run))
                .map_err(io("cannot write"))?;
            at += len;
        }
        out.set_len(patch.size_after).map_err(io("cannot resize"))?;
    }
    Ok(())
}

/// Opens the restored database read-only and runs `PRAGMA integrity_check` on it: `Ok`
/// when SQLite answers `ok`; else the error names the file and SQLite's first complaint,
/// and says whether the database fails the check or the check could not run (the
/// snapshot is then not at fault).
///
/// SQLite opens by path. The database was renamed into place from a file this restore
/// created, and is opened with `immutable=1` (no lock, no `-wal` or `-shm` made or read:
/// nothing is written) and `SQLITE_OPEN_NOFOLLOW` (a link planted at its name, or at any
/// folder above it, is refused), by the path the kernel gives the held directory now: the
/// caller's path may pass through links. The name must be the restore's own file before
/// and after the check, so an answer about any other file is not reported as the
/// database's.
pub(super) fn check_integrity(root: &RestoreDir, job: &Job<'_>) -> Result<(), EngineError> {
    let unsound = |problem: String| EngineError::DatabaseUnsound {
        path: job.dest.clone(),
        problem,
    };
    let unchecked = |problem: String| EngineError::DatabaseUnchecked {
        path: job.dest.clone(),
        problem,
    };
    let ours = || root.is_made(job.dir, &job.name, &job.made);
    if !ours() {
        return Err(unchecked(REPLACED.into()));
    }
    // Without /proc (a bare chroot) the caller's path, which holds no link there or the
    // check cannot open it.
    let path = match root.real_path(job.dir) {
        Ok(dir) => dir.join(&job.name),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => job.dest.clone(),
        Err(e) => return Err(unchecked(format!("its folder: {e}"))),
    };
    // The restore wrote the database through the page cache (unlike the media): the check
    // reads its pages from there, in its b-trees' order rather than the file's. Written
    // around the cache and read back in file order first, the large benchmark store's
    // 951 MB database waited 1.8 s for that read before the check began.
    let verdict = integrity_check(&path).map_err(|e| match e {
        Check::Open(e) => unchecked(e.to_string()),
        Check::Run(e) => unsound(e.to_string()),
    })?;
    if !ours() {
        return Err(unchecked(REPLACED.into()));
    }
    match verdict.as_str() {
        "ok" => Ok(()),
        problem => Err(unsound(problem.to_owned())),
    }
}

const REPLACED: &str = "something replaced it while it was checked";

/// The check's page cache, in KiB (SQLite takes a negative `cache_size` as KiB).
const CHECK_CACHE_KIB: i64 = -8192;

/// Why `PRAGMA integrity_check` gave no answer: SQLite could not open the file, or the
/// check itself failed (a file that is no database, pages it cannot read).
#[derive(Debug)]
enum Check {
    Open(rusqlite::Error),
    Run(rusqlite::Error),
}

/// SQLite's first answer to `PRAGMA integrity_check` on the file at `path`.
fn integrity_check(path: &Path) -> Result<String, Check> {
    use rusqlite::OpenFlags;
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
        | OpenFlags::SQLITE_OPEN_URI
        | OpenFlags::SQLITE_OPEN_NO_MUTEX
        | OpenFlags::SQLITE_OPEN_NOFOLLOW;
    let db = rusqlite::Connection::open_with_flags(uri(path), flags).map_err(Check::Open)?;
    // The check looks each index entry up in its table: with SQLite's default 2 MiB of
    // cache it read the medium benchmark store's 192 MB database 8.6 times over (1.65 GB,
    // 3.65 s); with 8 MiB, 1.0 GB in 2.7 s (16 MiB: 0.46 GB, 1.9 s, at twice the memory).
    db.pragma_update(None, "cache_size", CHECK_CACHE_KIB)
        .map_err(Check::Run)?;
    db.query_row("PRAGMA integrity_check(1)", [], |row| row.get(0))
        .map_err(Check::Run)
}

/// `file:PATH?immutable=1`, with the characters a URI gives meaning to escaped.
fn uri(path: &Path) -> String {
    use std::os::unix::ffi::OsStrExt as _;
    let mut uri = String::from("file:");
    for &b in path.as_os_str().as_bytes() {
        match b {
            b'%' | b'?' | b'#' => uri.push_str(&format!("%{b:02X}")),
            b if b.is_ascii() && !b.is_ascii_control() => uri.push(char::from(b)),
            b => uri.push_str(&format!("%{b:02X}")),
        }
    }
    uri.push_str("?immutable=1");
    uri
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sound_database_passes_and_a_damaged_one_is_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("odd ?#%name.db");
        {
            let db = rusqlite::Connection::open(&path).expect("create");
            db.execute_batch(
                "PRAGMA journal_mode=WAL; CREATE TABLE m(x); CREATE INDEX mx ON m(x);
                 WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i<2000)
                 INSERT INTO m SELECT randomblob(100) FROM n;",
            )
            .expect("fill");
        }
        assert_eq!(integrity_check(&path).expect("check"), "ok");
        // Through a linked folder SQLite refuses to open it (hence `real_path`), and that
        // is told apart from a failed check.
        let linked = dir.path().join("linked");
        std::os::unix::fs::symlink(dir.path(), &linked).expect("link");
        assert!(
            matches!(
                integrity_check(&linked.join("odd ?#%name.db")),
                Err(Check::Open(_))
            ),
            "a linked folder is refused at the open"
        );
        assert!(
            !dir.path().join("odd ?#%name.db-wal").exists(),
            "nothing was written"
        );
        // Overwrite a page in the middle of the table with garbage.
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .expect("open");
        file.write_all_at(&[0x55; 4096], 8 * 4096).expect("damage");
        let verdict = integrity_check(&path).unwrap_or_else(|e| format!("{e:?}"));
        assert_ne!(verdict, "ok");
    }
}
