//! A damaged catalog (a file that is not SQLite, or one cut short) is only a cache: it is
//! moved aside as `<target>.db.corrupt-<unix seconds>`, logged, and rebuilt from the target,
//! so no backup, listing or restore fails on it.
//!
//! SQLite finds most damage on the first read (a bad header, a file shorter than its header
//! says); damage deeper in the file shows only when a query reaches it. Then the query fails
//! and leaves a mark, `<target>.db.damaged`, that makes the next open move the file aside.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rusqlite::ErrorCode;

use super::{Catalog, CatalogError, Result};

/// Whether SQLite says the file is not a database or is damaged.
pub(super) fn is_damage(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt)
    )
}

fn mark(path: &Path) -> PathBuf {
    suffixed(path, ".damaged")
}

fn suffixed(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// Leaves the mark that has the next open move the catalog at `path` aside. Best effort: the
/// failing query reports the damage anyway.
pub(super) fn note(path: &str) {
    let _ = std::fs::File::create(mark(Path::new(path)));
}

/// One rebuild at a time in this process: two requests that meet one damaged catalog move
/// it aside once, and the second opens the first one's new catalog.
static MOVING_ASIDE: Mutex<()> = Mutex::new(());

/// Opens the catalog at `path` with `open_as_is`, moving it aside first if it is damaged.
pub(super) fn open(path: &Path, open_as_is: fn(&Path) -> Result<Catalog>) -> Result<Catalog> {
    if !mark(path).exists() {
        match open_as_is(path) {
            Err(CatalogError::Damaged { .. }) => {}
            other => return other,
        }
    }
    let _one = MOVING_ASIDE.lock().unwrap_or_else(|p| p.into_inner());
    let problem = if mark(path).exists() {
        "a query found it damaged".to_owned()
    } else {
        match open_as_is(path) {
            Err(e @ CatalogError::Damaged { .. }) => e.to_string(),
            // Another request moved it aside meanwhile.
            other => return other,
        }
    };
    let aside = move_aside(path)?;
    tracing::warn!(
        catalog = %path.display(), moved_to = %aside.display(), %problem,
        "the local catalog is damaged: moved aside, rebuilding it from the target"
    );
    open_as_is(path)
}

/// Renames the catalog and its WAL out of the way; drops its shared-memory file and the mark.
fn move_aside(path: &Path) -> Result<PathBuf> {
    let seconds = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let aside = suffixed(path, &format!(".corrupt-{seconds}"));
    let io = |source| CatalogError::Io {
        path: path.display().to_string(),
        source,
    };
    let rename = |from: &Path, to: &Path| match std::fs::rename(from, to) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io(e)),
        _ => Ok(()),
    };
    rename(path, &aside)?;
    rename(&suffixed(path, "-wal"), &suffixed(&aside, "-wal"))?;
    for gone in [suffixed(path, "-shm"), mark(path)] {
        match std::fs::remove_file(&gone) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(e)),
            _ => {}
        }
    }
    Ok(aside)
}
