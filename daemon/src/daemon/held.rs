//! Which repository each target held: remembered so that a target whose repository is gone
//! (an unmounted disk shows its bare mount point, a bucket emptied by a hand) is never given
//! a new one silently, which would put the next backups beside the real repository and hide
//! its snapshots once it is back.
//!
//! The memory is `state.dir/targets/<target>.repository`, the id of the repository the
//! target last held. It is not a cache (the catalog is, and may be deleted or rebuilt): a
//! backup creates a repository only on a target with no such file, and deleting the file is
//! how a user deliberately starts a new repository on a target that once had one.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sealback_repo::generation::{self, Layout};
use sealback_repo::{BackupKey, ObjectStore, Repository, StoreErrorKind};

use super::repo_error;
use crate::control::ApiError;

/// The file that remembers the repository target `target` held.
pub(super) fn file(state_dir: &Path, target: &str) -> PathBuf {
    state_dir
        .join("targets")
        .join(format!("{target}.repository"))
}

/// Opens the repository on `store` for a backup; creates it only when the target never
/// held one (as far as `state_dir` remembers), on the store `fresh` gives (a new provider
/// instance, where the loaded one served another repository), and remembers the one it
/// opens.
pub(super) fn open_for_backup(
    store: Arc<dyn ObjectStore>,
    fresh: impl FnOnce() -> Result<Arc<dyn ObjectStore>, ApiError>,
    key: &BackupKey,
    state_dir: &Path,
    target: &str,
    now_unix_ms: i64,
) -> Result<(Repository, Layout), ApiError> {
    let memory = file(state_dir, target);
    let remembered = read(&memory)?;
    let (repo, layout) = match generation::open(store.clone(), key) {
        Ok(opened) => opened,
        Err(sealback_repo::Error::Store(e)) if e.kind == StoreErrorKind::NotFound => {
            if let Some(id) = remembered {
                return Err(gone(target, &id, &memory));
            }
            let store = fresh()?;
            let (repo, created) = Repository::open_or_init(store, key, now_unix_ms)
                .map_err(|e| repo_error(target, e))?;
            if created {
                tracing::info!(target = %target, repository = %repo.config().id, "created a new repository");
            }
            (repo, Layout::Root)
        }
        Err(e) => return Err(repo_error(target, e)),
    };
    let id = &repo.config().id;
    if remembered.as_deref() != Some(id.as_str()) {
        if let Some(old) = &remembered {
            tracing::warn!(target = %target, repository = %id, previous = %old, "the target holds another repository than before");
        }
        write(&memory, id)?;
    }
    Ok((repo, layout))
}

/// The error of a backup to a target whose repository is gone.
fn gone(target: &str, id: &str, memory: &Path) -> ApiError {
    let short: String = id.chars().take(8).collect();
    ApiError::new(
        409,
        "repository-missing",
        format!(
            "target {target:?} held repository {short} but holds no repository now (its `config` object is missing); nothing was written"
        ),
    )
    .with_hint(format!(
        "is the target's disk mounted, its path or bucket right? Once it is, back up again. To start a new repository on this target on purpose, delete {} and back up again",
        memory.display()
    ))
}

fn read(memory: &Path) -> Result<Option<String>, ApiError> {
    match std::fs::read_to_string(memory) {
        Ok(text) => Ok(Some(text.trim().to_owned()).filter(|id| !id.is_empty())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ApiError::new(
            500,
            "internal",
            format!("reading {}: {e}", memory.display()),
        )),
    }
}

/// Writes the id durably: a crash leaves the old file or the new one.
fn write(memory: &Path, id: &str) -> Result<(), ApiError> {
    let fail = |e: std::io::Error| {
        ApiError::new(
            500,
            "internal",
            format!("writing {}: {e}", memory.display()),
        )
    };
    let dir = memory.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(fail)?;
    let temp = memory.with_extension("repository.tmp");
    let mut file = std::fs::File::create(&temp).map_err(fail)?;
    file.write_all(format!("{id}\n").as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(fail)?;
    std::fs::rename(&temp, memory).map_err(fail)?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(fail)
}
