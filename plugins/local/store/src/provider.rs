//! [`LocalProvider`]: objects as files under one directory.

use std::collections::HashSet;
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use sealback_plugin_api::sdk::Provider;
use sealback_plugin_api::{ObjectInfo, ProviderError, validate_list_prefix, validate_object_name};

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
        Ok(Self {
            root: path,
            durable_dirs: Mutex::new(HashSet::new()),
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
        self.create_parents(name, &dir)?;
        let temp_path = dir.join(temp::temp_name(basename));
        let written = write_synced(&temp_path, data)
            .map_err(|err| ProviderError::from_io("write", &temp_path, err));
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
        sync_dir(&dir)
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

    /// Makes sure the directories between the root and `dir` (which holds `name`) exist and
    /// that their entries are on disk, so that an acknowledged put survives a crash.
    ///
    /// Each directory's parent is synced even when another thread created the directory,
    /// because that thread may not have synced it yet. This happens once per directory: later
    /// puts find it in `durable_dirs`.
    fn create_parents(&self, name: &str, dir: &Path) -> Result<(), ProviderError> {
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
                Err(err) if err.kind() == io::ErrorKind::AlreadyExists && next.is_dir() => {}
                Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {
                    return Err(ProviderError::permanent(format!(
                        "cannot store {name:?}: {} is a file, not a directory",
                        next.display()
                    )));
                }
                Err(err) => return Err(ProviderError::from_io("create directory", &next, err)),
            }
            sync_dir(&current)?;
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

/// Flushes a directory's entries to disk, so that a rename or unlink in it is durable.
fn sync_dir(dir: &Path) -> Result<(), ProviderError> {
    File::open(dir)
        .and_then(|handle| handle.sync_all())
        .map_err(|err| ProviderError::from_io("sync directory", dir, err))
}

#[cfg(test)]
mod tests;

/// The whole file at `path`, into a buffer the SDK may have recycled.
fn read(path: &Path) -> io::Result<Vec<u8>> {
    crate::direct::read_whole(path)
}
