//! Restoring a snapshot into a directory.
//!
//! The restore is planned by pack: each pack the snapshot needs is read once (by one of a
//! few threads), each of its blobs is authenticated and checked against its id once (see
//! `sealback_repo::pack`), and written at every offset where the snapshot has it. Each file
//! is written under a temporary name and renamed into place only when its last chunk has
//! landed and its size is right: a file that stands under its real name in the target
//! directory is genuine. On the first error every partial file is removed and the error
//! names the object at fault. One `syncfs` at the end makes the restore durable.
//!
//! Every name is created and opened beneath the restore directory through held directory
//! descriptors, never following a link, and nothing comes back setuid or setgid: see
//! [`RestoreDir`].

use std::ffi::OsString;
use std::fs::File;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use sealback_repo::gc::BlobMap;
use sealback_repo::pack::{BlobScratch, PackEntry, PackReader};
use sealback_repo::{ChunkId, Repository};

mod database;
mod gate;
mod plan;

use super::EngineError;
use super::chunk_writer::{ChunkWriter, Landed, Partials};
use super::restore_dir::{Made, Owner, RestoreDir, partial_name};
use crate::catalog::{Catalog, SnapshotRow};
use crate::config::Selection;
use crate::control::api::{RestoreReport, RestoredDatabase};
use gate::{Gate, Opens};
use plan::{PackPlan, plan};
use sealback_repo::snapshot::{DatabaseImage, FileEntry, Snapshot};

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

/// Where single blobs are (the database's lists and patches, and any the catalog lacks):
/// the catalog, and for blobs it has forgotten (it forgets the blobs of packs missing from
/// the target, so that backups store them again, and the blobs of packs a prune marked)
/// the repository's indexes and prune markers (DESIGN §12.2): reading a pack gone from the
/// target then fails naming it.
struct Locations<'a> {
    repo: &'a Repository,
    catalog: &'a Catalog,
    from_indexes: Mutex<Option<BlobMap>>,
}

impl<'a> Locations<'a> {
    fn new(repo: &'a Repository, catalog: &'a Catalog) -> Self {
        Locations {
            repo,
            catalog,
            from_indexes: Mutex::new(None),
        }
    }

    fn find(&self, id: &ChunkId) -> Result<(Arc<str>, PackEntry), EngineError> {
        if let Some((pack, entry)) = self.catalog.blob(id)? {
            return Ok((pack.into(), entry));
        }
        let mut slot = self.from_indexes.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_none() {
            let map = sealback_repo::gc::locate(self.repo)?;
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

pub struct RestoreInput<'a> {
    pub snapshot: &'a SnapshotRow,
    pub target: &'a str,
    pub to: &'a Path,
    pub force: bool,
    /// Who owns the files and directories the restore creates.
    pub owner: Owner,
    pub progress: &'a (dyn Fn(u64, u64) + Sync),
    /// Told, with the ms since the restore began, when the database is in place and passes
    /// `integrity_check`: the messages can be read.
    pub database_ready: &'a (dyn Fn(u64) + Sync),
    /// Set when the daemon stops: the restore ends at the next pack, its partial files
    /// removed.
    pub cancel: &'a AtomicBool,
    /// The files to restore (`--include`); the default takes the whole snapshot.
    pub selection: &'a Selection,
}

/// One file to write, under `partial` until complete.
struct Job<'s> {
    /// Its path and its partial file's path, for messages.
    dest: PathBuf,
    partial: PathBuf,
    /// Its directory (held by the [`RestoreDir`]), its name there and its partial name.
    dir: usize,
    name: OsString,
    partial_name: OsString,
    /// The partial file, once created.
    made: Made,
    shown: &'s str,
    size: u64,
    mode: u32,
    mtime: Option<SystemTime>,
    /// Chunks not yet written; the thread that writes the last one finishes the file.
    remaining: AtomicUsize,
    /// The database with patches: the chunks write the image its lists name, whose size
    /// the first patch checks; the patches are applied once every chunk has landed, and the
    /// file is finished at `size`.
    patched: bool,
}

/// Restores pack by pack: every pack the snapshot needs is read once, each of its blobs is
/// verified once and written at every offset where the snapshot has it. Files are complete
/// when their last chunk lands; only then are they renamed into place.
///
/// Messages first: the packs holding the database's chunks are restored before the others
/// (with the other files' chunks they hold, so that no pack is read twice), then its patches
/// applied; once in place, the database is checked by SQLite while the media are restored,
/// and `database_ready` told as soon as it passes.
pub fn run(
    repo: &Repository,
    catalog: &Catalog,
    input: &RestoreInput<'_>,
) -> Result<RestoreReport, EngineError> {
    let started = Instant::now();
    // Read from the repository, not the cache: the manifest is authenticated on the way.
    let snapshot = repo.read_snapshot(&input.snapshot.name)?;
    let chosen = Chosen::of(&snapshot, input)?;
    let mut root = RestoreDir::open(input.to, input.force, input.owner)?;
    let locations = Locations::new(repo, catalog);
    let mut jobs = Vec::with_capacity(chosen.files.len() + 1);
    let mut db_ids = Vec::new();

    if let Some(db) = chosen.database {
        let dest = safe_join(input.to, &db.path, &input.snapshot.name)?;
        db_ids = database::read_lists(repo, &locations, &db.lists)?;
        let mut db_job = job(dest, &db.path, db.size, 0o600, None);
        db_job.patched = !db.patches.is_empty();
        jobs.push(db_job);
    }
    for file in &chosen.files {
        let dest = safe_join(input.to, &file.path, &input.snapshot.name)?;
        let mtime = SystemTime::UNIX_EPOCH + Duration::from_nanos(file.mtime_ns.max(0) as u64);
        jobs.push(job(dest, &file.path, file.size, file.mode, Some(mtime)));
    }
    let chunk_lists: Vec<&[ChunkId]> = chosen
        .database
        .iter()
        .map(|_| db_ids.as_slice())
        .chain(chosen.files.iter().map(|f| f.chunks.as_slice()))
        .collect();
    let plans = plan(&locations, &jobs, &chunk_lists)?;
    let planned = started.elapsed();
    drop(chunk_lists);
    drop(db_ids);
    let packs = plans.len();
    // The database is job 0: the packs it needs go first.
    let (first, media): (Vec<PackPlan>, Vec<PackPlan>) = plans
        .into_iter()
        .partition(|plan| chosen.database.is_some() && plan.places.iter().any(|p| p.job == 0));

    let total =
        chosen.database.map_or(0, |d| d.size) + chosen.files.iter().map(|f| f.size).sum::<u64>();
    let done = AtomicU64::new(0);
    let failed = AtomicBool::new(false);
    let first_error: Mutex<Option<EngineError>> = Mutex::new(None);
    let fail = |e: EngineError| {
        failed.store(true, Ordering::Relaxed);
        first_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_or_insert(e);
    };
    // A file is created under its partial name by the first chunk that lands in it, on the
    // restore threads: creating every file first, on one thread, took 1.7 s of the medium
    // store's restore where the file system had just deleted many files (ext4 then scans
    // its inode bitmaps). Files without chunks are created here.
    for (at, job) in jobs.iter_mut().enumerate() {
        let database = at == 0 && chosen.database.is_some();
        if let Err(e) = prepare_partial(&mut root, job, database, input.force) {
            fail(e);
            break;
        }
        if job.remaining.load(Ordering::Relaxed) == 0
            && !job.patched
            && let Err(e) = finish(&root, job)
        {
            fail(e);
            break;
        }
    }
    let partials = Opener {
        root: &root,
        jobs: &jobs,
        database: chosen.database.is_some(),
    };
    // Two per core: a thread waits for its pack to be read and for its writes longer than
    // it computes, so one per core leaves the cores idle (2.8 s against 2.2 to 2.3 s for
    // the medium store's cold restore on the benchmark machine). A third per core took
    // another 0.2 s off but each thread holds a pack (4 MiB), its decryption buffer (up
    // to a 2 MiB chunk) and a slab of writes (then 1 MiB), and with six the restore's
    // peak RSS was 82 MiB against the 64 MiB goal; with four, 60 (issue 20).
    let threads = std::thread::available_parallelism()
        .map_or(2, |n| 2 * n.get())
        .clamp(2, 8);
    // Each thread's write slab and decryption buffer, reused from pack to pack (fresh ones
    // cost a page fault per 4 KiB) and kept from the database's phase to the media's: the
    // threads held back until the check allocated theirs when it ended, where the heap had
    // holes they did not fit, and the large store's restore peaked at 61 to 67 MB (RSS),
    // 4 to 6 MB above its peak in the database's phase; with the buffers kept, 61 MB.
    let mut slots: Vec<Slot> = (0..threads).map(|_| Slot::default()).collect();
    // Threads from the `running`th on first wait for `gate` (see `gate`).
    let restore_packs = |plans: &[PackPlan], running: usize, gate: &Gate, slots: &mut [Slot]| {
        let next = AtomicUsize::new(0);
        let (next, failed, done, fail, partials) = (&next, &failed, &done, &fail, &partials);
        std::thread::scope(|scope| {
            for (thread, slot) in slots.iter_mut().enumerate().take(plans.len()) {
                scope.spawn(move || {
                    if thread >= running {
                        gate.wait();
                    }
                    let Slot { writer, scratch } = slot;
                    while !failed.load(Ordering::Relaxed) {
                        if input.cancel.load(Ordering::Relaxed) {
                            fail(EngineError::Cancelled);
                            break;
                        }
                        let Some(plan) = plans.get(next.fetch_add(1, Ordering::Relaxed)) else {
                            break;
                        };
                        let progress = |n: u64| {
                            let now = done.fetch_add(n, Ordering::Relaxed) + n;
                            (input.progress)(now, total);
                        };
                        let restored =
                            restore_pack(repo, plan, partials, writer, scratch, &progress);
                        if let Err(e) = restored {
                            fail(e);
                        }
                    }
                });
            }
        });
    };
    restore_packs(&first, threads, &Gate::opened(), &mut slots);
    let database_packs = (first.len(), started.elapsed());
    drop(first);
    let mut ready = None;
    if let (Some(db), Some(job)) = (chosen.database, jobs.first())
        && !failed.load(Ordering::Relaxed)
    {
        // The chunks wrote the image the lists name; the patches make it the database's.
        if job.patched {
            let patched = partials
                .open_as(0, nix::fcntl::OFlag::O_RDWR)
                .map_err(EngineError::io("cannot open", &job.partial))
                .and_then(|out| {
                    let lists = out.metadata().map_or(0, |m| m.len());
                    database::apply_patches(
                        repo,
                        &locations,
                        job,
                        &out,
                        &db.patches,
                        db.chunk_bytes,
                    )?;
                    Ok(lists)
                });
            match patched.and_then(|lists| finish(&root, job).map(|()| lists)) {
                Ok(lists) => {
                    let written = done.load(Ordering::Relaxed);
                    done.store(written - lists.min(written) + job.size, Ordering::Relaxed);
                }
                Err(e) => fail(e),
            }
        }
        ready = Some(db);
    }
    // The media come while SQLite checks the database, with half the threads until then.
    let checking = ready.filter(|_| !failed.load(Ordering::Relaxed));
    let gate = match checking {
        Some(_) => Gate::default(),
        None => Gate::opened(),
    };
    let database = std::thread::scope(|scope| {
        let checked = checking.map(|db| {
            scope.spawn(|| {
                let _opens = Opens(&gate);
                let job = &jobs[0];
                let checked = database::check_integrity(&root, job);
                let ready_ms = started.elapsed().as_millis() as u64;
                match checked {
                    Ok(()) => {
                        tracing::info!(path = %job.dest.display(), ready_ms, "the database is restored and passes integrity_check");
                        (input.database_ready)(ready_ms);
                        Some(RestoredDatabase {
                            path: db.path.clone(),
                            bytes: db.size,
                            ready_ms,
                        })
                    }
                    Err(e) => {
                        fail(e);
                        None
                    }
                }
            })
        });
        restore_packs(&media, threads.div_ceil(2), &gate, &mut slots);
        checked.and_then(|c| {
            c.join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    });
    let first_error = first_error.into_inner().unwrap_or_else(|p| p.into_inner());
    let bytes = done.into_inner();
    if let Some(e) = first_error {
        // Nothing incomplete stays behind; files already renamed into place are genuine.
        for job in &jobs {
            if job.made.lock().is_ok_and(|m| m.is_some()) {
                let _ = root.remove(job.dir, &job.partial_name);
            }
        }
        return Err(e);
    }
    let written = started.elapsed();
    // The directories' owner, and one flush for everything written rather than one per file.
    root.finish()?;
    tracing::debug!(
        planned_ms = planned.as_millis() as u64,
        written_ms = (written - planned).as_millis() as u64,
        synced_ms = (started.elapsed() - written).as_millis() as u64,
        packs,
        database_packs = database_packs.0,
        database_packs_ms = database_packs.1.as_millis() as u64,
        "restore phases"
    );
    Ok(RestoreReport {
        snapshot: input.snapshot.id().to_owned(),
        target: input.target.to_owned(),
        to: input.to.display().to_string(),
        files: chosen.files.len() as u64,
        bytes,
        duration_ms: started.elapsed().as_millis() as u64,
        database,
    })
}

/// What one restore thread keeps from pack to pack.
#[derive(Default)]
struct Slot {
    writer: ChunkWriter,
    scratch: BlobScratch,
}

/// What of the snapshot a restore brings back: every file, or those `--include` takes.
struct Chosen<'s> {
    database: Option<&'s DatabaseImage>,
    files: Vec<&'s FileEntry>,
}

impl<'s> Chosen<'s> {
    fn of(snapshot: &'s Snapshot, input: &RestoreInput<'_>) -> Result<Chosen<'s>, EngineError> {
        let takes = |path: &str| input.selection.takes(path);
        let chosen = Chosen {
            database: snapshot.database.as_ref().filter(|db| takes(&db.path)),
            files: snapshot.files.iter().filter(|f| takes(&f.path)).collect(),
        };
        if !input.selection.is_everything() && chosen.database.is_none() && chosen.files.is_empty()
        {
            return Err(EngineError::NothingSelected {
                snapshot: input.snapshot.id().to_owned(),
                patterns: input.selection.include().join(" --include "),
            });
        }
        Ok(chosen)
    }
}

fn job<'s>(
    dest: PathBuf,
    shown: &'s str,
    size: u64,
    mode: u32,
    mtime: Option<SystemTime>,
) -> Job<'s> {
    let partial = PathBuf::from(format!("{}{PARTIAL_SUFFIX}", dest.display()));
    let name = dest.file_name().unwrap_or_default().to_os_string();
    Job {
        dest,
        partial,
        dir: 0,
        partial_name: partial_name(&name, PARTIAL_SUFFIX),
        name,
        made: Made::default(),
        shown,
        size,
        mode,
        mtime,
        remaining: AtomicUsize::new(0),
        patched: false,
    }
}

/// The restore's files, opened for the chunk writer through their held directories.
struct Opener<'r> {
    root: &'r RestoreDir,
    jobs: &'r [Job<'r>],
    /// Whether job 0 is the database, written through the page cache for its check.
    database: bool,
}

impl Opener<'_> {
    fn open_as(&self, file: usize, flags: nix::fcntl::OFlag) -> std::io::Result<File> {
        let job = &self.jobs[file];
        self.root
            .open_partial(job.dir, &job.partial_name, flags, &job.made)
    }
}

impl Partials for Opener<'_> {
    fn open(&self, file: usize, direct: bool) -> std::io::Result<File> {
        use nix::fcntl::OFlag;
        let direct = if direct {
            OFlag::O_DIRECT
        } else {
            OFlag::empty()
        };
        self.open_as(file, OFlag::O_WRONLY | direct)
    }

    fn cached(&self, file: usize) -> bool {
        self.database && file == 0
    }
}

/// Makes way for a file's partial copy: its directory is made and held, no stale partial
/// copy is left (`force` restores into a directory that may hold one), and a file without
/// chunks is created. For the database, stale `-wal`, `-shm` and `-journal` files are
/// removed: SQLite would replay a stale `-wal` into the restored database.
fn prepare_partial(
    root: &mut RestoreDir,
    job: &mut Job<'_>,
    database: bool,
    force: bool,
) -> Result<(), EngineError> {
    job.dir = root.dir(Path::new(job.shown).parent().unwrap_or(Path::new("")))?;
    let suffixes: &[&str] = if database {
        &["-wal", "-shm", "-journal"]
    } else {
        &[]
    };
    for suffix in suffixes {
        let stale = partial_name(&job.name, suffix);
        root.remove(job.dir, &stale).map_err(EngineError::io(
            "cannot remove",
            format!("{}{suffix}", job.dest.display()),
        ))?;
    }
    if force {
        // Removed, not opened: whatever stands there (a link too) is not followed.
        root.remove(job.dir, &job.partial_name)
            .map_err(EngineError::io("cannot remove", &job.partial))?;
    }
    if job.remaining.load(Ordering::Relaxed) == 0 {
        root.open_partial(
            job.dir,
            &job.partial_name,
            nix::fcntl::OFlag::O_WRONLY,
            &job.made,
        )
        .map_err(EngineError::io("cannot create", &job.partial))?;
    }
    Ok(())
}

/// Reads one pack and writes each of its blobs wherever the snapshot has it. A file is
/// finished by whichever thread lands its last chunk.
#[allow(clippy::too_many_arguments)]
fn restore_pack(
    repo: &Repository,
    plan: &PackPlan,
    partials: &Opener<'_>,
    writer: &mut ChunkWriter,
    scratch: &mut BlobScratch,
    progress: &dyn Fn(u64),
) -> Result<(), EngineError> {
    let jobs = partials.jobs;
    let bytes = repo.read_pack(&plan.pack)?;
    let reader = PackReader::new(repo.keys(), &plan.pack, &bytes)?;
    let land = |writer: &mut ChunkWriter, (file, chunks): Landed| {
        let job = &jobs[file];
        if job.remaining.fetch_sub(chunks, Ordering::AcqRel) == chunks {
            writer.done_with(file);
            if !job.patched {
                finish(partials.root, job)?;
            }
        }
        Ok::<_, EngineError>(())
    };
    // A write failing names the file it was for: the one gathered so far, or this one.
    let failed = |writer: &ChunkWriter, file: usize| {
        let at = writer.run_file().unwrap_or(file);
        EngineError::io("cannot write", &jobs[at].partial)
    };
    // A pack's blobs often land in the same few files (the database above all).
    let mut places = plan.places.iter().peekable();
    while let Some(first) = places.next() {
        // Placed for its first offset, so that its middle needs no copy on the way out.
        let align = writer.alignment();
        let phase = Some(((first.offset % align as u64) as usize, align));
        let data = reader.blob_placed(&plan.blobs[first.blob as usize], scratch, phase)?;
        let same_blob = std::iter::from_fn(|| places.next_if(|p| p.blob == first.blob));
        for place in std::iter::once(first).chain(same_blob) {
            let file = place.job as usize;
            let landed = writer
                .write(file, partials, data, place.offset)
                .map_err(|e| failed(writer, file)(e))?;
            progress(data.len() as u64);
            for landed in landed.into_iter().flatten() {
                land(writer, landed)?;
            }
        }
    }
    let last = plan.places.last().map_or(0, |p| p.job as usize);
    if let Some(landed) = writer
        .flush(partials)
        .map_err(|e| failed(writer, last)(e))?
    {
        land(writer, landed)?;
    }
    writer.close();
    Ok(())
}

/// The last chunk of a file has landed (and, for a patched database, its patches are
/// applied): give it its metadata and its real name, once it is its recorded size.
fn finish(root: &RestoreDir, job: &Job<'_>) -> Result<(), EngineError> {
    let out = root
        .open_partial(
            job.dir,
            &job.partial_name,
            nix::fcntl::OFlag::O_RDONLY,
            &job.made,
        )
        .map_err(EngineError::io("cannot open", &job.partial))?;
    let len = out
        .metadata()
        .map_err(EngineError::io("cannot read", &job.partial))?
        .len();
    if len != job.size {
        return Err(EngineError::SizeMismatch {
            path: job.shown.to_owned(),
            expected: job.size,
            found: len,
        });
    }
    root.finish_file(
        job.dir,
        &out,
        &job.partial_name,
        &job.name,
        &job.dest,
        job.mode,
        job.mtime,
    )
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
