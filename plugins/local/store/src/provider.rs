//! [`LocalProvider`]: objects as files under one directory.

use std::collections::HashSet;
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use sealback_plugin_api::sdk::Provider;
use sealback_plugin_api::{
    ErrorKind, ObjectInfo, ProviderError, validate_list_prefix, validate_object_name,
};

use crate::direct::write_synced;
use crate::options::Options;
use crate::temp;

/// The local-disk provider: the object `a/b/c` is the file `<root>/a/b/c`.
#[derive(Debug)]
pub struct LocalProvider {
    root: PathBuf,
    /// Directories under the root (as relative names, `a/b`) whose entries up to the root are
    /// known to be on disk, so that puts into them need not sync their ancestors again.
    durable_dirs: Mutex<HashSet<String>>,
    /// The root's device and inode when opened.
    root_id: (u64, u64),
}

impl Provider for LocalProvider {
    const NAME: &'static str = "local";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");

    fn open(options_json: &str) -> Result<Self, ProviderError> {
        let Options { path } = Options::parse(options_json)?;
        let existed = path.exists();
        fs::create_dir_all(&path)
            .map_err(|err| ProviderError::from_io("create directory", &path, err))?;
        if !path.is_dir() {
            return Err(ProviderError::invalid_config(format!(
                "invalid options for the local provider: path {} is not a directory",
                path.display()
            )));
        }
        if let (false, Some(parent)) = (existed, path.parent()) {
            // Best effort: the parent may not be readable, and only the root's own entry is at
            // stake, which the next open recreates.
            let _ = sync_dir(parent);
        }
        let root = fs::metadata(&path)
            .map_err(|err| ProviderError::from_io("inspect directory", &path, err))?;
        Ok(Self {
            root: path,
            durable_dirs: Mutex::new(HashSet::new()),
            root_id: (root.dev(), root.ino()),
        })
    }

    fn put(&self, name: &str, data: &[u8]) -> Result<(), ProviderError> {
        let (dir, basename) = self.split(name)?;
        if temp::is_temp_name(basename) {
            return Err(ProviderError::permanent(format!(
                "cannot store {name:?}: the local provider reserves names of that shape for its \
                 temporary files"
            )));
        }
        let temp_path = dir.join(temp::temp_name(basename));
        let written = self.write_temp(name, &dir, &temp_path, data);
        let target = dir.join(basename);
        let renamed = written.and_then(|()| {
            fs::rename(&temp_path, &target).map_err(|err| {
                ProviderError::from_io(&format!("rename {} to", temp_path.display()), &target, err)
            })
        });
        if let Err(err) = renamed {
            // Best effort: the temporary file is invisible anyway, and the error is what counts.
            let _ = fs::remove_file(&temp_path);
            return Err(err);
        }
        sync_dir(&dir)
    }

    fn get(&self, name: &str) -> Result<Vec<u8>, ProviderError> {
        let (dir, basename) = self.split(name)?;
        let path = dir.join(basename);
        if temp::is_temp_name(basename) {
            return Err(ProviderError::not_found(format!(
                "read {}: no such object",
                path.display()
            )));
        }
        read(&path).map_err(|err| match err.kind() {
            // A directory, or a path through a file, is not an object either.
            io::ErrorKind::IsADirectory | io::ErrorKind::NotADirectory => {
                ProviderError::not_found(format!("read {}: no such object", path.display()))
            }
            _ => ProviderError::from_io("read", &path, err),
        })
    }

    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, ProviderError> {
        validate_list_prefix(prefix).map_err(|err| ProviderError::permanent(err.to_string()))?;
        crate::list::list(&self.root, prefix)
    }

    fn remove(&self, name: &str) -> Result<(), ProviderError> {
        let (dir, basename) = self.split(name)?;
        if temp::is_temp_name(basename) {
            return Ok(());
        }
        let path = dir.join(basename);
        match fs::remove_file(&path) {
            Ok(()) => {}
            // Already gone (perhaps by an earlier attempt whose directory sync failed, so sync
            // below all the same), or never an object.
            Err(err)
                if matches!(
                    err.kind(),
                    io::ErrorKind::NotFound
                        | io::ErrorKind::IsADirectory
                        | io::ErrorKind::NotADirectory
                ) =>
            {
                if !dir.is_dir() {
                    return Ok(());
                }
            }
            Err(err) => return Err(ProviderError::from_io("remove", &path, err)),
        }
        sync_removal(&dir)?;
        self.remove_empty_parents(name)
    }
}

impl LocalProvider {
    /// The directory that holds `name` and its last segment.
    ///
    /// The SDK has validated names that come through the plugin ABI, but this type is also a
    /// library: checking again here is what guarantees a name never leaves the root.
    fn split<'n>(&self, name: &'n str) -> Result<(PathBuf, &'n str), ProviderError> {
        validate_object_name(name).map_err(|err| ProviderError::permanent(err.to_string()))?;
        Ok(match name.rsplit_once('/') {
            Some((parents, basename)) => (self.root.join(parents), basename),
            None => (self.root.clone(), name),
        })
    }

    /// Writes `data` to the temporary file `temp_path` in `dir`, the directory of `name`,
    /// making the directory first.
    ///
    /// A remove beside us may find the directory empty and remove it between our `mkdir`
    /// and our write ([`Self::remove_empty_parents`]); then it is made again, a bounded
    /// number of times. Once the temporary file is in it, the directory is not empty and
    /// stays.
    fn write_temp(
        &self,
        name: &str,
        dir: &Path,
        temp_path: &Path,
        data: &[u8],
    ) -> Result<(), ProviderError> {
        const TRIES: usize = 8;
        for _ in 0..TRIES {
            let written = self.create_parents(name, dir).and_then(|()| {
                write_synced(temp_path, data).map_err(|err| Step::from_io("write", temp_path, err))
            });
            match written {
                Ok(()) => return self.still_in_root(Some(temp_path)),
                Err(Step::Failed(err)) => return Err(err),
                Err(Step::Vanished) => {
                    self.still_in_root(None)?;
                    self.forget_dirs(name.rsplit_once('/').map_or("", |(p, _)| p));
                }
            }
        }
        Err(ProviderError::transient(format!(
            "cannot store {name:?}: its directory {} was removed {TRIES} times while we wrote \
             into it; try again",
            dir.display()
        )))
    }

    /// Checks that the root is still the directory opened, after a write under it: a disk
    /// unmounted under us leaves an empty mount point (or nothing) at the root's path, and
    /// objects written there would vanish from the repository when the disk came back.
    /// `written` (a temporary file) is removed if so. A root gone or replaced is
    /// `NotFound`, which the host reports as the target gone away. (Only the root is
    /// compared: a directory under it may be another file system on purpose.)
    fn still_in_root(&self, written: Option<&Path>) -> Result<(), ProviderError> {
        let same =
            fs::metadata(&self.root).is_ok_and(|root| (root.dev(), root.ino()) == self.root_id);
        if same {
            return Ok(());
        }
        if let Some(path) = written {
            // Best effort: it is not in the repository anyway.
            let _ = fs::remove_file(path);
        }
        Err(ProviderError::not_found(format!(
            "the target directory {} is gone or was replaced (a disk unmounted?)",
            self.root.display()
        )))
    }

    /// Removes the directories that held `name` (just removed) and are now empty, from the
    /// innermost up to, never including, the root: a target holds no directories its
    /// objects do not need, so `sealbackctl plugin check` and a prune leave none behind.
    /// `rmdir` removes only an empty directory: one holding an object, a put's temporary
    /// file or anything else stays, and a put that finds its directory gone makes it again
    /// ([`Self::write_temp`]).
    fn remove_empty_parents(&self, name: &str) -> Result<(), ProviderError> {
        let mut inner = name;
        while let Some((parent, _)) = inner.rsplit_once('/') {
            // Forgotten first: a put that then finds it missing makes it again.
            self.forget_dirs(parent);
            let dir = self.root.join(parent);
            if fs::remove_dir(&dir).is_err() {
                // Not empty, gone already, or not ours to remove (a mount point, a link):
                // it stays, as an empty directory always could.
                return Ok(());
            }
            sync_removal(dir.parent().unwrap_or(&self.root))?;
            inner = parent;
        }
        Ok(())
    }

    /// Forgets that the directory `parents` (relative, `a/b`) and those below it are on disk.
    fn forget_dirs(&self, parents: &str) {
        let below = |dir: &str| {
            dir.strip_prefix(parents)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
        };
        self.durable_dirs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|dir| !below(dir));
    }

    /// Makes sure the directories between the root and `dir` (which holds `name`) exist and
    /// that their entries are on disk, so that an acknowledged put survives a crash.
    ///
    /// Each directory's parent is synced even when another thread created the directory,
    /// because that thread may not have synced it yet. This happens once per directory: later
    /// puts find it in `durable_dirs`.
    fn create_parents(&self, name: &str, dir: &Path) -> Result<(), Step> {
        let Some((parents, _)) = name.rsplit_once('/') else {
            return Ok(());
        };
        let known = |dirs: &HashSet<String>| dirs.contains(parents);
        if known(
            &self
                .durable_dirs
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        ) {
            return Ok(());
        }
        let mut current = self.root.clone();
        for segment in parents.split('/') {
            let next = current.join(segment);
            match fs::create_dir(&next) {
                Ok(()) => {}
                Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {
                    match fs::symlink_metadata(&next) {
                        Ok(meta) if meta.is_dir() => {}
                        Ok(_) => {
                            return Err(Step::Failed(ProviderError::permanent(format!(
                                "cannot store {name:?}: {} is a file, not a directory",
                                next.display()
                            ))));
                        }
                        Err(err) => return Err(Step::from_io("inspect", &next, err)),
                    }
                }
                Err(err) => return Err(Step::from_io("create directory", &next, err)),
            }
            // A remove beside us may have found `next` empty and removed it, and then
            // `current` too, before this sync: that directory vanished like any other.
            sync_dir(&current).map_err(|err| match err.kind() {
                ErrorKind::NotFound => Step::Vanished,
                _ => Step::Failed(err),
            })?;
            current = next;
        }
        debug_assert_eq!(current, dir);
        let mut durable = self
            .durable_dirs
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        durable.insert(parents.to_owned());
        Ok(())
    }
}

/// Why a put's directory could not be made or written into.
enum Step {
    /// A directory on the way was removed by a remove beside us: make it again.
    Vanished,
    Failed(ProviderError),
}

impl Step {
    fn from_io(op: &str, path: &Path, err: io::Error) -> Self {
        if err.kind() == io::ErrorKind::NotFound {
            Step::Vanished
        } else {
            Step::Failed(ProviderError::from_io(op, path, err))
        }
    }
}

/// Flushes a directory's entries to disk, so that a rename or unlink in it is durable.
fn sync_dir(dir: &Path) -> Result<(), ProviderError> {
    File::open(dir)
        .and_then(|handle| handle.sync_all())
        .map_err(|err| ProviderError::from_io("sync directory", dir, err))
}

/// Makes a removal from `dir` durable. A directory gone meanwhile was emptied and removed
/// by a remove beside us, which makes its own removal durable in its parent: nothing is left
/// to sync here.
fn sync_removal(dir: &Path) -> Result<(), ProviderError> {
    match sync_dir(dir) {
        Err(err) if err.kind() == ErrorKind::NotFound => Ok(()),
        synced => synced,
    }
}

#[cfg(test)]
mod tests;

/// The whole file at `path`, into a buffer the SDK may have recycled.
fn read(path: &Path) -> io::Result<Vec<u8>> {
    crate::direct::read_whole(path)
}
