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
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use sealback_repo::chunk::decode_list;
use sealback_repo::pack::{PackEntry, PackReader};
use sealback_repo::{ChunkId, Repository};

use super::EngineError;
use crate::catalog::{Catalog, SnapshotRow};
use crate::control::api::RestoreReport;

/// Packs each restoring thread keeps in memory (about 8 MiB each).
const PACK_CACHE: usize = 2;
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

/// Where every blob is: the catalog's map, loaded once, and for blobs the catalog has
/// forgotten (it forgets the blobs of packs missing from the target, so that backups store
/// them again) the repository's indexes, which still name those packs: reading one then
/// fails naming it.
struct Locations<'a> {
    repo: &'a Repository,
    known: BlobMap,
    from_indexes: Mutex<Option<BlobMap>>,
}

/// Chunk id → the pack that holds it and its entry there.
type BlobMap = HashMap<ChunkId, (Arc<str>, PackEntry)>;

impl<'a> Locations<'a> {
    fn new(repo: &'a Repository, catalog: &Catalog) -> Result<Self, EngineError> {
        Ok(Locations {
            repo,
            known: catalog.all_blobs()?,
            from_indexes: Mutex::new(None),
        })
    }

    fn find(&self, id: &ChunkId) -> Result<(Arc<str>, PackEntry), EngineError> {
        if let Some(found) = self.known.get(id) {
            return Ok(found.clone());
        }
        let mut slot = self.from_indexes.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_none() {
            let mut map = HashMap::new();
            for name in self.repo.list_indexes()? {
                for pack in self.repo.read_index(&name)?.packs {
                    let pack_name: Arc<str> = pack.name.into();
                    for entry in pack.entries {
                        map.insert(entry.id, (pack_name.clone(), entry));
                    }
                }
            }
            *slot = Some(map);
        }
        slot.as_ref()
            .and_then(|m| m.get(id).cloned())
            .ok_or_else(|| {
                sealback_repo::Error::MissingBlob {
                    chunk: id.to_string(),
                }
                .into()
            })
    }
}

/// Reads blobs through a small cache of whole packs; one per restoring thread.
struct BlobReader<'a> {
    repo: &'a Repository,
    locations: &'a Locations<'a>,
    packs: VecDeque<(Arc<str>, Vec<u8>)>,
}

impl<'a> BlobReader<'a> {
    fn new(repo: &'a Repository, locations: &'a Locations<'a>) -> Self {
        BlobReader {
            repo,
            locations,
            packs: VecDeque::with_capacity(PACK_CACHE),
        }
    }

    fn blob(&mut self, id: &ChunkId) -> Result<Vec<u8>, EngineError> {
        let (pack, entry) = self.locations.find(id)?;
        let cached = self.packs.iter().position(|(name, _)| *name == pack);
        let index = match cached {
            Some(i) => i,
            None => {
                let bytes = self.repo.read_pack(&pack)?;
                if self.packs.len() == PACK_CACHE {
                    self.packs.pop_front();
                }
                self.packs.push_back((pack.clone(), bytes));
                self.packs.len() - 1
            }
        };
        let bytes = &self.packs[index].1;
        let reader = PackReader::new(self.repo.keys(), &pack, bytes)?;
        Ok(reader.blob(&entry)?)
    }
}

pub struct RestoreInput<'a> {
    pub snapshot: &'a SnapshotRow,
    pub target: &'a str,
    pub to: &'a Path,
    pub force: bool,
    pub progress: &'a (dyn Fn(u64, u64) + Sync),
}

/// One file to write.
struct Job<'s> {
    dest: PathBuf,
    shown: &'s str,
    size: u64,
    mode: u32,
    mtime: Option<SystemTime>,
    chunks: std::borrow::Cow<'s, [ChunkId]>,
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
    let locations = Locations::new(repo, catalog)?;
    let mut jobs = Vec::with_capacity(snapshot.files.len() + 1);

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
        let mut reader = BlobReader::new(repo, &locations);
        let mut ids = Vec::new();
        for list in &db.lists {
            let bytes = reader.blob(list)?;
            let part = decode_list(&bytes).ok_or_else(|| sealback_repo::Error::Malformed {
                name: format!("list blob {}", list.short()),
                detail: "length is not a multiple of 32".into(),
            })?;
            ids.extend(part);
        }
        jobs.push(Job {
            dest,
            shown: &db.path,
            size: db.size,
            mode: 0o600,
            mtime: None,
            chunks: ids.into(),
        });
    }
    for file in &snapshot.files {
        jobs.push(Job {
            dest: safe_join(input.to, &file.path, &input.snapshot.name)?,
            shown: &file.path,
            size: file.size,
            mode: file.mode,
            mtime: Some(SystemTime::UNIX_EPOCH + Duration::from_nanos(file.mtime_ns.max(0) as u64)),
            chunks: file.chunks.as_slice().into(),
        });
    }

    let total = snapshot.size();
    let done = AtomicU64::new(0);
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let first_error: Mutex<Option<EngineError>> = Mutex::new(None);
    let threads = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .clamp(1, 4);
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                let mut reader = BlobReader::new(repo, &locations);
                while !failed.load(Ordering::Relaxed) {
                    let Some(job) = jobs.get(next.fetch_add(1, Ordering::Relaxed)) else {
                        break;
                    };
                    let progress = |n: u64| {
                        let now = done.fetch_add(n, Ordering::Relaxed) + n;
                        (input.progress)(now, total);
                    };
                    if let Err(e) = write_file(job, &mut reader, &progress) {
                        failed.store(true, Ordering::Relaxed);
                        first_error
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .get_or_insert(e);
                    }
                }
            });
        }
    });
    if let Some(e) = first_error.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(e);
    }
    // One flush for everything written, rather than one per file.
    let dir = File::open(input.to).map_err(EngineError::io("cannot open", input.to))?;
    nix::unistd::syncfs(&dir)
        .map_err(|e| EngineError::io("cannot flush", input.to)(std::io::Error::from(e)))?;
    Ok(RestoreReport {
        snapshot: input.snapshot.id().to_owned(),
        target: input.target.to_owned(),
        to: input.to.display().to_string(),
        files: jobs.len() as u64,
        bytes: done.into_inner(),
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

fn write_file(
    job: &Job<'_>,
    reader: &mut BlobReader<'_>,
    progress: &dyn Fn(u64),
) -> Result<(), EngineError> {
    let Job {
        dest,
        shown,
        size,
        mode,
        mtime,
        chunks,
    } = job;
    let (dest, size, mode, mtime) = (dest.as_path(), *size, *mode, *mtime);
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
        for id in chunks.iter() {
            let data = reader.blob(id)?;
            out.write_all(&data)
                .map_err(EngineError::io("cannot write", &partial))?;
            written += data.len() as u64;
            progress(data.len() as u64);
        }
        if written != size {
            return Err(EngineError::SizeMismatch {
                path: (*shown).to_owned(),
                expected: size,
                found: written,
            });
        }
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
