//! Restoring a snapshot into a directory.
//!
//! Every blob is authenticated and checked against its id as it is read (see
//! `sealback_repo::pack`), every file is checked against its recorded size, and each file is
//! written under a temporary name and renamed into place only once complete: a file that
//! stands under its real name in the target directory is genuine. On the first error the
//! partial file is removed and the error names the object at fault.

use std::collections::{HashMap, VecDeque};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use sealback_repo::chunk::decode_list;
use sealback_repo::pack::{PackEntry, PackReader};
use sealback_repo::{ChunkId, Repository};

use super::EngineError;
use crate::catalog::{Catalog, SnapshotRow};
use crate::control::api::RestoreReport;

/// Packs kept in memory while restoring (about 8 MiB each).
const PACK_CACHE: usize = 6;
const PARTIAL_SUFFIX: &str = ".sealback-partial";

/// Finds the snapshot `spec` names: `latest`, a full id, or an unambiguous prefix.
pub fn resolve(catalog: &Catalog, spec: &str) -> Result<SnapshotRow, EngineError> {
    let mut rows = catalog.snapshots()?;
    if spec == "latest" {
        return rows.pop().ok_or(EngineError::NoSnapshots);
    }
    let wanted = spec.trim_start_matches("snapshots/").to_ascii_lowercase();
    if wanted.is_empty() {
        return Err(EngineError::NoSuchSnapshot(spec.to_owned()));
    }
    let mut matching = rows.into_iter().filter(|r| r.id().starts_with(&wanted));
    match (matching.next(), matching.next()) {
        (Some(row), None) => Ok(row),
        (Some(_), Some(_)) => Err(EngineError::AmbiguousSnapshot(spec.to_owned())),
        (None, _) => Err(EngineError::NoSuchSnapshot(spec.to_owned())),
    }
}

/// Reads blobs through a small cache of whole packs.
struct BlobReader<'a> {
    repo: &'a Repository,
    catalog: &'a Catalog,
    packs: HashMap<String, Arc<Vec<u8>>>,
    order: VecDeque<String>,
}

impl<'a> BlobReader<'a> {
    fn new(repo: &'a Repository, catalog: &'a Catalog) -> Self {
        BlobReader {
            repo,
            catalog,
            packs: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    fn blob(&mut self, id: &ChunkId) -> Result<Vec<u8>, EngineError> {
        let located = match self.catalog.locate(id)? {
            Some(found) => Some(found),
            None => self.locate_in_indexes(id)?,
        };
        let (pack, entry) = located.ok_or_else(|| sealback_repo::Error::MissingBlob {
            chunk: id.to_string(),
        })?;
        let bytes = match self.packs.get(&pack) {
            Some(b) => b.clone(),
            None => {
                let b = Arc::new(self.repo.read_pack(&pack)?);
                if self.order.len() == PACK_CACHE {
                    if let Some(old) = self.order.pop_front() {
                        self.packs.remove(&old);
                    }
                }
                self.order.push_back(pack.clone());
                self.packs.insert(pack.clone(), b.clone());
                b
            }
        };
        let reader = PackReader::new(self.repo.keys(), &pack, &bytes)?;
        Ok(reader.blob(&entry)?)
    }

    /// Finds a blob the catalog does not know in the repository's indexes. The catalog
    /// forgets the blobs of packs missing from the target (so that backups store them
    /// again); the indexes still name those packs, and reading one then fails naming it.
    fn locate_in_indexes(&self, id: &ChunkId) -> Result<Option<(String, PackEntry)>, EngineError> {
        for name in self.repo.list_indexes()? {
            for pack in self.repo.read_index(&name)?.packs {
                if let Some(entry) = pack.entries.iter().find(|e| e.id == *id) {
                    return Ok(Some((pack.name, *entry)));
                }
            }
        }
        Ok(None)
    }
}

pub struct RestoreInput<'a> {
    pub snapshot: &'a SnapshotRow,
    pub target: &'a str,
    pub to: &'a Path,
    pub force: bool,
    pub progress: &'a (dyn Fn(u64, u64) + Sync),
}

pub fn run(
    repo: &Repository,
    catalog: &Catalog,
    input: &RestoreInput<'_>,
) -> Result<RestoreReport, EngineError> {
    let started = Instant::now();
    // Read from the repository, not the cache: the manifest is authenticated on the way.
    let snapshot = repo.read_snapshot(&input.snapshot.name)?;
    prepare_directory(input.to, input.force)?;
    let total = snapshot.size();
    let mut done = 0u64;
    let mut reader = BlobReader::new(repo, catalog);
    let mut files = 0u64;

    if let Some(db) = &snapshot.database {
        let dest = safe_join(input.to, &db.path, &input.snapshot.name)?;
        // A stale -wal next to the restored database would be replayed into it by SQLite.
        for suffix in ["-wal", "-shm", "-journal"] {
            let stale = PathBuf::from(format!("{}{suffix}", dest.display()));
            match fs::remove_file(&stale) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(EngineError::io("cannot remove", stale)(e));
                }
                _ => {}
            }
        }
        let mut ids = Vec::new();
        for list in &db.lists {
            let bytes = reader.blob(list)?;
            let part = decode_list(&bytes).ok_or_else(|| sealback_repo::Error::Malformed {
                name: format!("list blob {}", list.short()),
                detail: "length is not a multiple of 32".into(),
            })?;
            ids.extend(part);
        }
        write_file(
            &dest,
            &db.path,
            db.size,
            0o600,
            None,
            &ids,
            &mut reader,
            &mut |n| {
                done += n;
                (input.progress)(done, total);
            },
        )?;
        files += 1;
    }
    for file in &snapshot.files {
        let dest = safe_join(input.to, &file.path, &input.snapshot.name)?;
        let mtime = SystemTime::UNIX_EPOCH + Duration::from_nanos(file.mtime_ns.max(0) as u64);
        write_file(
            &dest,
            &file.path,
            file.size,
            file.mode,
            Some(mtime),
            &file.chunks,
            &mut reader,
            &mut |n| {
                done += n;
                (input.progress)(done, total);
            },
        )?;
        files += 1;
    }
    Ok(RestoreReport {
        snapshot: input.snapshot.id().to_owned(),
        target: input.target.to_owned(),
        to: input.to.display().to_string(),
        files,
        bytes: done,
        duration_ms: started.elapsed().as_millis() as u64,
    })
}

fn prepare_directory(to: &Path, force: bool) -> Result<(), EngineError> {
    fs::create_dir_all(to).map_err(EngineError::io("cannot create", to))?;
    let mut entries = fs::read_dir(to).map_err(EngineError::io("cannot read", to))?;
    if entries.next().is_some() && !force {
        return Err(EngineError::NotEmpty(to.to_path_buf()));
    }
    Ok(())
}

/// `root/rel`, refusing anything that could leave `root`.
fn safe_join(root: &Path, rel: &str, snapshot: &str) -> Result<PathBuf, EngineError> {
    let path = Path::new(rel);
    let ok = !rel.is_empty()
        && !rel.ends_with(PARTIAL_SUFFIX)
        && path.components().all(|c| matches!(c, Component::Normal(_)));
    if !ok {
        return Err(EngineError::UnsafePath {
            snapshot: snapshot.to_owned(),
            path: rel.to_owned(),
        });
    }
    Ok(root.join(path))
}

#[allow(clippy::too_many_arguments)]
fn write_file(
    dest: &Path,
    shown: &str,
    size: u64,
    mode: u32,
    mtime: Option<SystemTime>,
    chunks: &[ChunkId],
    reader: &mut BlobReader<'_>,
    progress: &mut dyn FnMut(u64),
) -> Result<(), EngineError> {
    if let Some(dir) = dest.parent() {
        fs::create_dir_all(dir).map_err(EngineError::io("cannot create", dir))?;
    }
    let partial = PathBuf::from(format!("{}{PARTIAL_SUFFIX}", dest.display()));
    let result = (|| {
        let mut out = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&partial)
            .map_err(EngineError::io("cannot create", &partial))?;
        let mut written = 0u64;
        for id in chunks {
            let data = reader.blob(id)?;
            out.write_all(&data)
                .map_err(EngineError::io("cannot write", &partial))?;
            written += data.len() as u64;
            progress(data.len() as u64);
        }
        if written != size {
            return Err(EngineError::SizeMismatch {
                path: shown.to_owned(),
                expected: size,
                found: written,
            });
        }
        out.sync_data()
            .map_err(EngineError::io("cannot write", &partial))?;
        finish_metadata(&out, mode, mtime)
            .map_err(EngineError::io("cannot set metadata of", &partial))?;
        fs::rename(&partial, dest).map_err(EngineError::io("cannot rename into place", dest))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&partial);
    }
    result
}

fn finish_metadata(out: &File, mode: u32, mtime: Option<SystemTime>) -> std::io::Result<()> {
    out.set_permissions(fs::Permissions::from_mode(mode & 0o7777))?;
    if let Some(t) = mtime {
        out.set_modified(t)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_that_leave_the_directory_are_refused() {
        let root = Path::new("/restore");
        for bad in [
            "../etc/passwd",
            "/etc/passwd",
            "a/../../b",
            "",
            "./a",
            "x.sealback-partial",
        ] {
            assert!(safe_join(root, bad, "s").is_err(), "{bad}");
        }
        assert_eq!(
            safe_join(root, "Media/Images/a.jpg", "s").expect("ok"),
            Path::new("/restore/Media/Images/a.jpg")
        );
    }
}
