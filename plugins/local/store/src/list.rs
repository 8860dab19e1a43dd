//! `list`: a walk of the directory tree under the prefix.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use sealback_plugin_api::{ObjectInfo, ProviderError, validate_object_name};

use crate::temp;

/// Every object under `root` whose name starts with `prefix`, sorted by name.
///
/// The walk starts at the directory the prefix names (`a/b/` for `a/b/c`), only descends into
/// directories that can hold matching names, and does not follow symbolic links. Temporary
/// files and files whose names are not valid object names are not objects and are skipped.
/// Entries that vanish during the walk (a concurrent remove) are skipped too.
pub(crate) fn list(root: &Path, prefix: &str) -> Result<Vec<ObjectInfo>, ProviderError> {
    let start = match prefix.rfind('/') {
        Some(end) => &prefix[..=end],
        None => "",
    };
    let mut objects = Vec::new();
    let mut pending: Vec<(PathBuf, String)> = vec![(root.join(start), start.to_owned())];
    while let Some((dir, relative)) = pending.pop() {
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(err) if vanished(&err) => continue,
            Err(err) => return Err(ProviderError::from_io("list directory", &dir, err)),
        };
        for entry in entries {
            let entry = entry.map_err(|err| ProviderError::from_io("list directory", &dir, err))?;
            let Ok(file_name) = entry.file_name().into_string() else {
                continue;
            };
            let name = format!("{relative}{file_name}");
            let file_type = match entry.file_type() {
                Ok(file_type) => file_type,
                Err(err) if vanished(&err) => continue,
                Err(err) => return Err(ProviderError::from_io("inspect", &entry.path(), err)),
            };
            if file_type.is_dir() {
                let name = name + "/";
                if name.starts_with(prefix) || prefix.starts_with(&name) {
                    pending.push((entry.path(), name));
                }
            } else if file_type.is_file()
                && name.starts_with(prefix)
                && !temp::is_temp_name(&file_name)
                && validate_object_name(&name).is_ok()
            {
                let size = match entry.metadata() {
                    Ok(metadata) => metadata.len(),
                    Err(err) if vanished(&err) => continue,
                    Err(err) => return Err(ProviderError::from_io("inspect", &entry.path(), err)),
                };
                objects.push(ObjectInfo { name, size });
            }
        }
    }
    objects.sort_unstable();
    Ok(objects)
}

/// Whether an error means the entry was removed (or never existed) rather than a failure.
fn vanished(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
    )
}
