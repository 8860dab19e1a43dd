//! One backup of the message store to one repository.
//!
//! Order of work, which keeps the repository valid at every instant:
//! 1. sync the catalog with the repository (what is already stored);
//! 2. capture the database inside one short read transaction, hashing its page runs and
//!    spooling the runs the repository lacks; then hand those to the upload workers.
//!    Meanwhile the files listed so far are read where they changed (unchanged ones are
//!    known from the file cache), chunked and hashed, and new chunks go to the workers;
//! 3. list the store's files again once the capture is done, so that every file the
//!    captured database names is listed (the app writes a file before it commits the
//!    message naming it); the snapshot records this listing, reading only the files that
//!    are new or changed since step 2;
//! 4. when every pack is stored, store the index naming them; then the snapshot.
//!
//! A crash anywhere loses at most this backup: packs without an index are ignored, an index
//! without a snapshot only makes its chunks known.

use std::collections::{HashMap, HashSet};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use sealback_repo::chunk::{LIST_IDS, MediaChunker, encode_list, worth_compressing};
use sealback_repo::pack::BlobKind;
use sealback_repo::patch;
use sealback_repo::snapshot::{DatabaseImage, FileEntry, Manifest, SNAPSHOT_VERSION, Snapshot};
use sealback_repo::{ChunkId, Repository};

use super::EngineError;
use super::known::KnownIds;
use super::upload::{self, Batch, Buffers, NewChunk, UploadState};
use crate::capture::database::{Baseline, DatabaseCaptureError, PageImage, Reading, capture_pages};
use crate::capture::files::{self, FileStat, StoreFile};
use crate::capture::wal;
use crate::catalog::{BaselineIds, Catalog, FileCache, FileCacheChanges, NextIds, Packs, read_ids};
use crate::control::api::{BackupReport, DbRead};

/// How often a file that changes while we read it is read again.
const FILE_ATTEMPTS: u32 = 3;
/// How often a database capture torn by a concurrent schema change is retried.
const DB_ATTEMPTS: u32 = 3;
/// A manifest is written relative to its base while the files added, changed or removed
/// since that base are at most this fraction (1/n) of its files; then whole again.
const MANIFEST_CHANGES_DIVISOR: usize = 4;

pub struct BackupInput<'a> {
    pub store: &'a Path,
    pub database: &'a str,
    pub host: &'a str,
    pub target: &'a str,
    /// Where new database runs wait between the read transaction and packing.
    pub spool_dir: &'a Path,
    pub progress: &'a (dyn Fn(u64, u64) + Sync),
    /// Set when the daemon is stopping: the backup ends early, leaving the repository as it was.
    pub cancel: &'a AtomicBool,
}

/// New chunks go to the workers; known ones are only counted. Shared by the file readers.
struct ChunkSink<'a> {
    repo: &'a Repository,
    known: Mutex<KnownIds>,
    tx: crossbeam_channel::Sender<Batch>,
    state: &'a UploadState,
    cancel: &'a AtomicBool,
    new: AtomicU64,
    reused: AtomicU64,
}

impl ChunkSink<'_> {
    fn known(&self) -> std::sync::MutexGuard<'_, KnownIds> {
        self.known.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// True, and remembered, if the repository lacks `id`.
    fn claim(&self, id: ChunkId) -> bool {
        if self.known().claim(id) {
            self.new.fetch_add(1, Ordering::Relaxed);
            true
        } else {
            self.reused.fetch_add(1, Ordering::Relaxed);
            false
        }
    }

    fn submit_batch(&self, batch: Batch) -> Result<(), EngineError> {
        if self.cancel.load(Ordering::Relaxed) {
            return Err(EngineError::Cancelled);
        }
        if self.state.failed() {
            return Err(EngineError::Repo(sealback_repo::Error::Malformed {
                name: "upload".into(),
                detail: "an upload failed".into(),
            }));
        }
        // The workers only stop receiving once this sender is dropped.
        let _ = self.tx.send(batch);
        Ok(())
    }

    /// Hashes `data`, queues a copy of it in one of `buffers` if new, and returns its id.
    fn add(
        &self,
        kind: BlobKind,
        data: &[u8],
        compress: bool,
        buffers: &mut Buffers,
    ) -> Result<ChunkId, EngineError> {
        let id = self.repo.keys().chunk_id(data);
        if self.claim(id) {
            let stop = || self.cancel.load(Ordering::Relaxed) || self.state.failed();
            let (data, back) = buffers.copy(data, stop);
            self.submit_batch(vec![NewChunk {
                kind,
                id,
                data,
                compress,
                back,
            }])?;
        }
        Ok(id)
    }
}

/// Small chunks (database pages, lists) on their way to the workers, sent together once
/// they reach [`upload::BATCH_BYTES`].
struct Batcher<'s, 'a> {
    sink: &'s ChunkSink<'a>,
    batch: Batch,
    bytes: usize,
}

impl<'s, 'a> Batcher<'s, 'a> {
    fn new(sink: &'s ChunkSink<'a>) -> Self {
        Batcher {
            sink,
            batch: Vec::new(),
            bytes: 0,
        }
    }

    fn push(&mut self, chunk: NewChunk) -> Result<(), EngineError> {
        self.bytes += chunk.data.len();
        self.batch.push(chunk);
        if self.bytes >= upload::BATCH_BYTES {
            self.flush()?;
        }
        Ok(())
    }

    /// Queues a run of the database already claimed as new.
    fn push_run(&mut self, id: ChunkId, data: Vec<u8>) -> Result<(), EngineError> {
        self.push(NewChunk {
            kind: BlobKind::Data,
            id,
            data,
            compress: true,
            back: None,
        })
    }

    /// Hashes `data`, queues it if new, and returns its id.
    fn add(
        &mut self,
        kind: BlobKind,
        data: Vec<u8>,
        compress: bool,
    ) -> Result<ChunkId, EngineError> {
        let id = self.sink.repo.keys().chunk_id(&data);
        if self.sink.claim(id) {
            self.push(NewChunk {
                kind,
                id,
                data,
                compress,
                back: None,
            })?;
        }
        Ok(id)
    }

    fn flush(&mut self) -> Result<(), EngineError> {
        self.bytes = 0;
        match std::mem::take(&mut self.batch) {
            batch if batch.is_empty() => Ok(()),
            batch => self.sink.submit_batch(batch),
        }
    }
}

/// Running totals, shared by the file readers.
#[derive(Default)]
struct Counters {
    bytes_read: AtomicU64,
    total: AtomicU64,
    files_read: AtomicU64,
    files_unstable: AtomicU64,
}

impl Counters {
    /// Counts `n` bytes read and reports progress.
    fn read(&self, n: u64, input: &BackupInput<'_>) {
        let done = self.bytes_read.fetch_add(n, Ordering::Relaxed) + n;
        (input.progress)(done, self.total.load(Ordering::Relaxed));
    }
}

pub fn run(
    repo: &Repository,
    catalog: &mut Catalog,
    input: &BackupInput<'_>,
) -> Result<BackupReport, EngineError> {
    let started = Instant::now();
    let time_unix_ms = now_unix_ms();
    catalog.sync(repo, Packs::WhenDue)?;
    let synced = started.elapsed();
    let parent_row = catalog.snapshots()?.pop();
    // Where the parent's capture left the database (the catalog vouches its chunks are all
    // still stored), and what the parent recorded of each file; both vouched for as of now.
    let forgotten = catalog.forgotten()?;
    let baseline = match &parent_row {
        Some(row) => catalog.db_baseline(&row.name)?,
        None => None,
    };
    // The file cache loads on a second connection while the parent's manifest is decoded.
    let reader = catalog.reader()?;
    let loading = std::thread::scope(|scope| -> Result<_, EngineError> {
        let cache = scope.spawn(move || {
            let cache = reader.file_cache();
            (reader, cache)
        });
        // The parent, resolved against its base; the base is kept, for this snapshot's
        // manifest is written relative to it too.
        let resolved = match &parent_row {
            Some(row) => catalog.resolved(&row.name)?,
            None => None,
        };
        let (parent, parent_base) = resolved.unzip();
        let parent_base = parent_base.flatten();
        let (reader, cache) = cache
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        Ok((parent_base, parent, reader, cache?))
    });
    let (parent_base, parent, reader, (cached_files, cache_trusted)) = loading?;
    // A backup from a baseline asks about few chunks: see `KnownIds`.
    let known = match baseline {
        Some(_) => KnownIds::lazy(reader),
        None => KnownIds::loaded(catalog)?,
    };
    let loaded = started.elapsed();
    // The parent's database image, which the baseline's ids are the runs of.
    let parent_db = parent
        .as_ref()
        .and_then(|p| p.database.as_ref())
        .filter(|d| d.path == input.database);
    // A chain of patches is bounded: at its end, the image is read and written whole.
    let baseline = baseline.filter(|_| {
        let full = parent_db.is_some_and(|d| d.patches.len() >= MAX_PATCHES);
        if full {
            tracing::info!(
                patches = MAX_PATCHES,
                "the database image has its most patches: reading it whole"
            );
        }
        !full
    });

    let db_path = input.store.join(input.database);
    let db_len = std::fs::metadata(&db_path).map(|m| m.len()).unwrap_or(0);
    // The files are added to the total once listed.
    let counters = Counters {
        total: AtomicU64::new(db_len),
        ..Counters::default()
    };

    // Indexes written while the backup runs are recorded on a connection of their own.
    let state = UploadState::new(catalog.reopen()?);
    let (tx, rx) = upload::queue();
    let mut sink = ChunkSink {
        repo,
        known: Mutex::new(known),
        tx,
        state: &state,
        cancel: input.cancel,
        new: AtomicU64::new(0),
        reused: AtomicU64::new(0),
    };
    let mut cache_changes = FileCacheChanges::default();
    let captured = std::thread::scope(|scope| {
        for _ in 0..upload::worker_count() {
            let rx = rx.clone();
            let state = &state;
            scope.spawn(move || upload::run_worker(repo, rx, state));
        }
        drop(rx);
        // A panic below must still close the queue, or the workers would wait for chunks
        // forever and this scope for them.
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            // The store is listed once the capture's snapshot has begun: the app writes a
            // file before it commits the message naming it, so every file the captured
            // database names is in that listing. Its files are read while the capture
            // reads the database.
            let (began, snapshot_began) = std::sync::mpsc::channel::<()>();
            let (captured, listed, later_snapshots) = std::thread::scope(|scope| {
                let (db_path, sink, counters) = (&db_path, &sink, &counters);
                let database = scope.spawn(move || {
                    let began = || {
                        let _ = began.send(());
                    };
                    let parent = ParentDb {
                        baseline,
                        image: parent_db,
                    };
                    capture_database(db_path, input, parent, &began, sink, counters)
                });
                // Either the snapshot began, or the capture ended without one.
                let _ = snapshot_began.recv();
                let listed = scan(input).and_then(|files| {
                    let known = Known::Cache {
                        cache: &cached_files,
                        trusted: cache_trusted,
                    };
                    let outcomes = collect_files(&files, known, input, sink, counters)?;
                    Ok((files, outcomes))
                });
                let captured = database
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
                (captured, listed, snapshot_began.try_iter().count())
            });
            let (database, spool) = match captured? {
                Some((database, spool)) => (Some(database), Some(spool)),
                None => (None, None),
            };
            let (mut store_files, mut outcomes) = listed?;
            // A capture torn by a schema change took a later snapshot than the one the
            // listing followed: the store is listed again, and the files read above and
            // unchanged since are not read again.
            let relisted = later_snapshots > 0;
            let read_early: FileCache = if relisted {
                tracing::info!("the capture took a later snapshot: listing the store again");
                store_files
                    .drain(..)
                    .zip(outcomes.drain(..))
                    .filter_map(|(file, outcome)| match outcome {
                        // Only a file that had settled when read may stand for the listing
                        // after the capture: a write in the same clock tick keeps the `stat`.
                        Some(Captured::Read {
                            stat,
                            chunks,
                            settled: true,
                            ..
                        }) => Some((file.path, (stat, chunks))),
                        _ => None,
                    })
                    .collect()
            } else {
                FileCache::new()
            };
            // The spooled pages are queued while any files listed again are read.
            std::thread::scope(|scope| {
                let feeder = spool.map(|spool| scope.spawn(|| spool.feed(input, &sink)));
                if relisted {
                    store_files = scan(input)?;
                    let known = Known::ReadEarlier(&read_early);
                    outcomes = collect_files(&store_files, known, input, &sink, &counters)?;
                }
                if let Some(feeder) = feeder {
                    feeder
                        .join()
                        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))?;
                }
                let entries = file_entries(
                    &store_files,
                    outcomes,
                    parent.as_ref(),
                    &counters,
                    &mut cache_changes,
                );
                // Paths the cache has and the listing lacks are gone; most days there are
                // none, which counting the listed paths the cache has tells.
                let kept = store_files
                    .iter()
                    .filter(|f| cached_files.contains_key(&f.path))
                    .count();
                if kept < cached_files.len() {
                    let listed: HashSet<&str> =
                        store_files.iter().map(|f| f.path.as_str()).collect();
                    cache_changes.removed = cached_files
                        .keys()
                        .filter(|p| !listed.contains(p.as_str()))
                        .cloned()
                        .collect();
                }
                Ok::<_, EngineError>((database, entries))
            })
        }));
        // Closing the queue lets the workers store their last packs and stop.
        drop(std::mem::replace(
            &mut sink.tx,
            crossbeam_channel::bounded(0).0,
        ));
        result.unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    });
    let (chunks_new, chunks_reused) = (
        sink.new.load(Ordering::Relaxed),
        sink.reused.load(Ordering::Relaxed),
    );
    drop(sink);
    // An upload error is the cause of any capture error that follows it: report it first.
    let uploaded = state.finish()?;
    let (captured_db, file_entries) = captured?;
    let stored = started.elapsed();

    let mut bytes_written = uploaded.bytes;
    let packs_written = uploaded.packs;
    if !uploaded.unindexed.is_empty() {
        let (index, sizes) = upload::index_of(uploaded.unindexed);
        let (name, size) = repo.write_index(&index)?;
        catalog.add_index(&name, size, &index, &sizes)?;
        bytes_written += size;
    }

    let indexed = started.elapsed();
    let mut snapshot = Snapshot {
        version: SNAPSHOT_VERSION,
        time_unix_ms,
        host: input.host.to_owned(),
        parent: parent_row.as_ref().map(|r| r.id().to_owned()),
        base: None,
        database: captured_db.as_ref().map(|c| c.image.clone()),
        files: file_entries,
    };
    // The manifest is written relative to the parent's base (or the parent, if written
    // whole) while the changes since that base stay a small part of it.
    let base = match (&parent_row, &parent, &parent_base) {
        (_, _, Some((id, base))) => Some((id.as_str(), base)),
        (Some(row), Some(p), None) if p.base.is_none() => Some((row.id(), p)),
        _ => None,
    };
    let relative = base.and_then(|(id, b)| {
        snapshot.base = Some(id.to_owned());
        let manifest = Manifest::of(&snapshot, Some(b));
        (manifest.changes() * MANIFEST_CHANGES_DIVISOR <= snapshot.files.len()).then_some(manifest)
    });
    let manifest = match relative {
        Some(manifest) => {
            tracing::info!(base = ?manifest.base, "manifest written relative to its base");
            manifest
        }
        None => {
            snapshot.base = None;
            Manifest::of(&snapshot, None)
        }
    };
    let unchanged = parent
        .as_ref()
        .is_some_and(|p| p.database == snapshot.database && p.files == snapshot.files);
    let name = match (&parent_row, unchanged) {
        (Some(row), true) => {
            tracing::info!(snapshot = %row.id(), "nothing changed since the last snapshot");
            row.name.clone()
        }
        _ => {
            let (name, size) = repo.write_snapshot(&manifest)?;
            catalog.add_snapshot(&name, size, &manifest, &snapshot)?;
            bytes_written += size;
            name
        }
    };
    let written = started.elapsed();
    catalog.update_file_cache(&cache_changes, forgotten)?;
    catalog.replace_db_baseline(
        &name,
        captured_db
            .as_ref()
            .and_then(|c| c.next.as_ref().map(|(b, ids)| (b, ids))),
        forgotten,
    )?;
    let ms = |d: Duration| d.as_millis() as u64;
    tracing::debug!(
        sync_ms = ms(synced),
        load_ms = ms(loaded - synced),
        capture_ms = ms(stored - loaded),
        index_ms = ms(indexed - stored),
        snapshot_ms = ms(written - indexed),
        bookkeeping_ms = ms(started.elapsed() - written),
        "backup phases"
    );
    let total = counters.total.load(Ordering::Relaxed);
    (input.progress)(total, total);

    Ok(BackupReport {
        snapshot: name.trim_start_matches("snapshots/").to_owned(),
        target: input.target.to_owned(),
        time_unix_ms,
        duration_ms: started.elapsed().as_millis() as u64,
        files: snapshot.files.len() as u64,
        files_read: counters.files_read.into_inner(),
        files_unstable: counters.files_unstable.into_inner(),
        db_pages: snapshot.database.as_ref().map_or(0, |d| d.page_count),
        db_read: captured_db.as_ref().map(|c| match c.reading {
            Reading::Full { reason } => DbRead {
                delta: false,
                why_full: Some(reason.to_owned()),
                bytes: c.bytes_read,
                patch: c.patched,
            },
            Reading::Delta { .. } => DbRead {
                delta: true,
                why_full: None,
                bytes: c.bytes_read,
                patch: c.patched,
            },
        }),
        bytes_read: counters.bytes_read.into_inner(),
        bytes_written,
        chunks_new,
        chunks_reused,
        packs_written,
    })
}

/// The store's files other than the database, sorted.
fn scan(input: &BackupInput<'_>) -> Result<Vec<StoreFile>, EngineError> {
    let (store_files, skipped) = files::scan(input.store, input.database)
        .map_err(EngineError::io("cannot list the store", input.store))?;
    for p in skipped.not_regular.iter().chain(&skipped.not_utf8) {
        tracing::warn!(path = %p.display(), "skipped: not a regular file with a UTF-8 name");
    }
    Ok(store_files)
}

/// The database part of a backup.
struct CapturedDatabase {
    image: DatabaseImage,
    /// How its pages were read (full, or only the runs changed since the baseline).
    reading: Reading,
    bytes_read: u64,
    /// Whether its changes went as a patch on the parent's image.
    patched: bool,
    /// What the next backup can start from.
    next: Option<(Baseline, NextIds)>,
}

/// The new runs of a capture, written aside during its read transaction and queued after
/// it: one part per attempt. The runs of a torn attempt are stored too: their ids were
/// claimed, and a file read meanwhile may have found its chunk among them.
#[derive(Default)]
struct Spool {
    /// Each attempt's spool file and how many runs it holds.
    parts: Vec<(std::fs::File, usize)>,
}

/// An attempt's spool file, being written.
struct SpoolFile {
    file: std::io::BufWriter<std::fs::File>,
    runs: usize,
}

/// A new unnamed file in the spool directory.
fn spool_file(spool_dir: &Path) -> Result<std::fs::File, EngineError> {
    tempfile::tempfile_in(spool_dir)
        .map_err(EngineError::io("cannot create a spool file in", spool_dir))
}

impl SpoolFile {
    fn create(input: &BackupInput<'_>) -> Result<SpoolFile, EngineError> {
        let file = spool_file(input.spool_dir)?;
        Ok(SpoolFile {
            // Buffered: a write per 4 KiB page was a system call per page.
            file: std::io::BufWriter::with_capacity(upload::BATCH_BYTES, file),
            runs: 0,
        })
    }

    /// Spools a run: its id and length ahead of its bytes, in the file rather than in
    /// memory (a full read of the large store spools 232,000 runs: 9 MB of ids and lengths).
    fn write(&mut self, id: ChunkId, data: &[u8]) -> std::io::Result<()> {
        let len = u32::try_from(data.len()).map_err(std::io::Error::other)?;
        self.file.write_all(&id.0)?;
        self.file.write_all(&len.to_le_bytes())?;
        self.file.write_all(data)?;
        self.runs += 1;
        Ok(())
    }
}

impl Spool {
    /// Keeps an attempt's spool file.
    fn add(&mut self, spooled: SpoolFile, input: &BackupInput<'_>) -> Result<(), EngineError> {
        let file = spooled.file.into_inner().map_err(|e| {
            EngineError::io("cannot write the spool file in", input.spool_dir)(e.into_error())
        })?;
        self.parts.push((file, spooled.runs));
        Ok(())
    }

    /// Queues the spooled runs, in batches.
    fn feed(self, input: &BackupInput<'_>, sink: &ChunkSink<'_>) -> Result<(), EngineError> {
        let unreadable = |e| EngineError::io("cannot read the spool file in", input.spool_dir)(e);
        let mut batcher = Batcher::new(sink);
        for (mut file, runs) in self.parts {
            file.seek(SeekFrom::Start(0)).map_err(unreadable)?;
            let mut reader = std::io::BufReader::with_capacity(upload::BATCH_BYTES, file);
            for _ in 0..runs {
                let (mut id, mut len) = ([0u8; 32], [0u8; 4]);
                reader.read_exact(&mut id).map_err(unreadable)?;
                reader.read_exact(&mut len).map_err(unreadable)?;
                let mut data = vec![0u8; u32::from_le_bytes(len) as usize];
                reader.read_exact(&mut data).map_err(unreadable)?;
                batcher.push_run(ChunkId(id), data)?;
            }
        }
        batcher.flush()
    }
}

/// At most this many runs go into one patch (4 MiB of pages, and at most as much of their
/// old contents, held in memory while it is made); a capture that read more writes its
/// image as lists of page blobs.
const PATCH_RUNS: usize = 1024;
/// A database image is its lists and at most this many patches applied in order; a backup
/// after that many reads the whole database and writes its image as lists again.
pub(crate) const MAX_PATCHES: usize = 64;

/// Runs a delta capture read, kept in memory to become a patch.
type Held = Vec<(u64, ChunkId, Vec<u8>)>;

/// What one read of the database gave: the image, the id of each run read, and the runs
/// themselves when few enough were read to make a patch of them (the others were spooled).
struct DatabaseRead {
    image: PageImage,
    read: ReadIds,
    held: Option<Held>,
    /// The baseline's id of each run held, as looked up while reading: what its old
    /// contents must hash to.
    was: HashMap<u64, ChunkId>,
}

/// The id of each run a read read. A full read reads every run in order: its ids (the
/// large store's 232,000, 7 MB) go to a spool file as they are read, are read back from it a
/// list at a time, and the file becomes the next baseline's ([`NextIds::All`]). A read
/// that skips a run (a delta read: a few hundred runs) keeps them in memory with their runs.
#[derive(Default)]
struct ReadIds {
    /// While the runs read are 0, 1, 2...: their ids in that order, and how many.
    ordered: Option<(std::io::BufWriter<std::fs::File>, u64)>,
    /// Once a run was skipped: each run read and its id.
    runs: Vec<(u64, ChunkId)>,
}

impl ReadIds {
    fn new(spool_dir: &Path) -> Result<ReadIds, EngineError> {
        Ok(ReadIds {
            ordered: Some((std::io::BufWriter::new(spool_file(spool_dir)?), 0)),
            runs: Vec::new(),
        })
    }

    fn push(&mut self, run: u64, id: ChunkId) -> std::io::Result<()> {
        if let Some((file, count)) = &mut self.ordered
            && run == *count
        {
            *count += 1;
            return file.write_all(&id.0);
        }
        if let Some(ordered) = self.ordered.take() {
            // The first run skipped: those before it were 0, 1, 2...
            self.runs = (0..).zip(read_back(ordered)?).collect();
        }
        self.runs.push((run, id));
        Ok(())
    }

    fn len(&self) -> u64 {
        self.ordered
            .as_ref()
            .map_or(self.runs.len() as u64, |(_, count)| *count)
    }

    /// Each run read and its id.
    fn into_runs(self) -> std::io::Result<Vec<(u64, ChunkId)>> {
        match self.ordered {
            Some(ordered) => Ok((0..).zip(read_back(ordered)?).collect()),
            None => Ok(self.runs),
        }
    }

    /// The file of the ids, if the runs read were 0, 1, 2..., and how many.
    fn into_ordered(self) -> std::io::Result<Option<(std::fs::File, u64)>> {
        self.ordered
            .map(|(file, count)| Ok((file.into_inner().map_err(|e| e.into_error())?, count)))
            .transpose()
    }
}

/// The ids spooled so far.
fn read_back(
    (file, count): (std::io::BufWriter<std::fs::File>, u64),
) -> std::io::Result<Vec<ChunkId>> {
    let file = file.into_inner().map_err(|e| e.into_error())?;
    read_ids(&file, count)?.collect()
}

/// Where the parent snapshot left the database.
struct ParentDb<'p> {
    /// The parent capture's baseline and the ids of its runs, if it can be started from.
    baseline: Option<(Baseline, BaselineIds)>,
    /// The parent's image of the database (lists and patches).
    image: Option<&'p DatabaseImage>,
}

/// Captures the database. Given the baseline of the parent snapshot, only the runs that
/// changed since are read, and become one patch on top of the parent's image (DESIGN.md
/// §4.1.2); otherwise the image is written as lists of runs, the new ones spooled during
/// the read transaction and queued by [`Spool::feed`] once it has ended.
fn capture_database(
    db_path: &Path,
    input: &BackupInput<'_>,
    parent: ParentDb<'_>,
    began: &dyn Fn(),
    sink: &ChunkSink<'_>,
    counters: &Counters,
) -> Result<Option<(CapturedDatabase, Spool)>, EngineError> {
    let ParentDb {
        baseline,
        image: parent_db,
    } = parent;
    if !db_path.exists() {
        tracing::warn!(path = %db_path.display(), "the message store has no database; backing up its files only");
        return Ok(None);
    }
    let chunk_bytes = sink.repo.config().db_chunk_bytes;
    std::fs::create_dir_all(input.spool_dir).map_err(EngineError::io(
        "cannot create the spool directory",
        input.spool_dir,
    ))?;
    let mut spools = Spool::default();
    let mut bytes_read = 0;
    let mut baseline = baseline;
    let (mut done, run_bytes, runs) = loop {
        let done = read_database(db_path, baseline.as_ref(), input, began, sink, &mut spools)?;
        bytes_read += done.image.bytes_read;
        let page_size = done.image.page_size;
        let run_bytes = (chunk_bytes / page_size).max(1) * page_size;
        let runs = (done.image.page_count * u64::from(page_size)).div_ceil(u64::from(run_bytes));
        // An image with patches can only be continued by another patch: its lists lack
        // the runs the patches changed, so writing it as lists needs every run read.
        let delta = matches!(done.image.reading, Reading::Delta { .. });
        let patched_parent = parent_db.is_some_and(|d| !d.patches.is_empty());
        if delta && patched_parent && patch_base(parent_db, &done, run_bytes).is_none() {
            tracing::info!("too much of the database changed for a patch: reading it whole");
            baseline = None;
            continue;
        }
        break (done, run_bytes, runs);
    };
    if !done.image.wal {
        tracing::warn!(path = %db_path.display(), "the database is not in WAL mode: the app's writers waited while we read it");
    }
    let before: Option<&BaselineIds> = baseline.as_ref().map(|(_, ids)| ids);
    let from_baseline = before.is_some_and(|b| b.runs() > 0);
    let delta = matches!(done.image.reading, Reading::Delta { .. }) && from_baseline;
    let read = std::mem::take(&mut done.read);
    let runs_read = read.len();
    // A full read's ids are in a file, in order; a delta read's are the runs that changed.
    let unreadable = |e| EngineError::io("cannot read the spool file in", input.spool_dir)(e);
    let (ordered, changed) = if delta {
        (None, read.into_runs().map_err(unreadable)?)
    } else {
        (read.into_ordered().map_err(unreadable)?, Vec::new())
    };
    // A delta read covers every run past the baseline's; the others are as they were.
    let covered = if delta {
        let stored = before.map_or(0, BaselineIds::runs);
        let past: HashSet<u64> = changed
            .iter()
            .map(|(run, _)| *run)
            .filter(|&r| r >= stored)
            .collect();
        changed.iter().all(|(run, _)| *run < runs)
            && past.len() as u64 == runs.saturating_sub(stored)
    } else {
        ordered.as_ref().is_some_and(|(_, count)| *count == runs)
    };
    if !covered {
        return Err(EngineError::Repo(sealback_repo::Error::Malformed {
            name: input.database.to_owned(),
            detail: format!("the capture did not cover all {runs} runs"),
        }));
    }
    if delta {
        // The runs not read are reused from the parent snapshot.
        sink.reused
            .fetch_add(runs.saturating_sub(runs_read), Ordering::Relaxed);
    }
    match &done.image.reading {
        Reading::Full { reason } => {
            tracing::info!(reason, "database read in full");
        }
        Reading::Delta { runs: read } => {
            tracing::info!(runs_read = read, runs, "database read where it changed");
        }
    }
    counters.read(bytes_read, input);

    let size = done.image.page_count * u64::from(done.image.page_size);
    let mut batcher = Batcher::new(sink);
    // A read from the baseline, delta or whole, held only runs that differ from the
    // parent's image: few enough, they are a patch on it.
    let base = patch_base(parent_db, &done, run_bytes).filter(|_| from_baseline);
    let DatabaseRead {
        image, held, was, ..
    } = done;
    let mut patched = false;
    let (lists, patches) = match (base, held) {
        (Some(base), Some(held)) => {
            let mut patches = base.patches.clone();
            let file = &image.file;
            if let Some(patch) = make_patch(file, sink, base.size, size, run_bytes, &was, held) {
                patches.push(batcher.add(BlobKind::Patch, patch, false)?);
                patched = true;
            }
            (base.lists.clone(), patches)
        }
        (_, held) => {
            // Runs held for a patch that will not be made are stored like any others.
            for (_, id, data) in held.into_iter().flatten() {
                if sink.claim(id) {
                    batcher.push_run(id, data)?;
                }
            }
            let parent_lists = parent_db
                .filter(|d| d.patches.is_empty())
                .map(|d| d.lists.as_slice());
            let before = match before {
                Some(before) => before.all()?,
                None => Vec::new(),
            };
            let each = |group: ListGroup<'_>| match group {
                ListGroup::Unchanged(list) => {
                    sink.reused.fetch_add(1, Ordering::Relaxed);
                    Ok(list)
                }
                ListGroup::Changed(group) => batcher.add(BlobKind::List, encode_list(group), false),
            };
            let lists = match &ordered {
                Some((file, count)) => {
                    let ids = read_ids(file, *count).map_err(unreadable)?;
                    list_ids(
                        ids.map(|id| id.map_err(unreadable)),
                        &before,
                        parent_lists,
                        each,
                    )?
                }
                None => {
                    let ids = image_ids(&before, runs, &changed);
                    list_ids(ids.into_iter().map(Ok), &before, parent_lists, each)?
                }
            };
            (lists, Vec::new())
        }
    };
    batcher.flush()?;
    let next = image.next.map(|baseline| {
        let ids = match ordered {
            Some((file, runs)) => NextIds::All { file, runs },
            None => NextIds::Changed { runs, changed },
        };
        (baseline, ids)
    });
    let captured = CapturedDatabase {
        image: DatabaseImage {
            path: input.database.to_owned(),
            page_size: image.page_size,
            page_count: image.page_count,
            size,
            chunk_bytes: run_bytes,
            lists,
            patches,
        },
        reading: image.reading,
        bytes_read,
        patched,
        next,
    };
    Ok(Some((captured, spools)))
}

/// The ids of the image's `runs` runs after a delta read: those `changed`, and the
/// baseline's (`before`) for the others.
fn image_ids(before: &[ChunkId], runs: u64, changed: &[(u64, ChunkId)]) -> Vec<ChunkId> {
    let mut ids = before.to_vec();
    ids.resize(runs as usize, ChunkId([0; 32]));
    for (run, id) in changed {
        ids[*run as usize] = *id;
    }
    ids
}

/// The parent's image, if `done` can be a patch on top of it: a read from the baseline of
/// that image (delta, or whole after a checkpoint) that held few enough runs, and room in
/// its chain.
fn patch_base<'p>(
    parent_db: Option<&'p DatabaseImage>,
    done: &DatabaseRead,
    run_bytes: u32,
) -> Option<&'p DatabaseImage> {
    parent_db.filter(|d| {
        done.held.is_some()
            && d.patches.len() < MAX_PATCHES
            && d.page_size == done.image.page_size
            && d.chunk_bytes == run_bytes
    })
}

/// One read of the database, retried when a schema change tears it. A full read spools
/// the runs the repository lacks; a delta read holds what it reads for a patch, and
/// spools it too once it has read more than a patch takes.
fn read_database(
    db_path: &Path,
    baseline: Option<&(Baseline, BaselineIds)>,
    input: &BackupInput<'_>,
    began: &dyn Fn(),
    sink: &ChunkSink<'_>,
    spools: &mut Spool,
) -> Result<DatabaseRead, EngineError> {
    let chunk_bytes = sink.repo.config().db_chunk_bytes;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let mut spool = SpoolFile::create(input)?;
        let mut read = ReadIds::new(input.spool_dir)?;
        let mut held: Option<Held> = baseline.is_some().then(Vec::new);
        let mut old = baseline.map(|(_, ids)| OldIds::new(ids));
        let mut was = HashMap::new();
        let mut to_spool = |id: ChunkId, data: &[u8]| -> std::io::Result<()> {
            if sink.claim(id) {
                spool.write(id, data)?;
            }
            Ok(())
        };
        let baseline = baseline.map(|(b, _)| b);
        let result = capture_pages(db_path, chunk_bytes, baseline, began, |run, data| {
            let id = sink.repo.keys().chunk_id(data);
            read.push(run, id)?;
            // A run as it is in the baseline's image is in the parent's: stored, and no
            // part of a patch. After a checkpoint the whole database is read, and only the
            // runs that differ make the patch.
            let old_id = old.as_mut().and_then(|old| old.get(run));
            if old_id == Some(id) {
                sink.reused.fetch_add(1, Ordering::Relaxed);
                return Ok(());
            }
            match &mut held {
                Some(runs) if runs.len() < PATCH_RUNS => {
                    runs.push((run, id, data.to_vec()));
                    if let Some(old_id) = old_id {
                        was.insert(run, old_id);
                    }
                }
                Some(_) => {
                    // More than a patch takes: everything read goes the way of a full read.
                    for (_, id, data) in held.take().into_iter().flatten() {
                        to_spool(id, &data)?;
                    }
                    to_spool(id, data)?;
                }
                None => to_spool(id, data)?,
            }
            Ok(())
        });
        match result {
            Ok(image) => {
                spools.add(spool, input)?;
                return Ok(DatabaseRead {
                    image,
                    read,
                    held,
                    was,
                });
            }
            Err(DatabaseCaptureError::Torn { .. }) if attempt < DB_ATTEMPTS => {
                spools.add(spool, input)?;
                tracing::info!(
                    attempt,
                    "database changed shape during capture; capturing again"
                );
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// The baseline's id of each run a read asks about: looked up one at a time while few are
/// asked for (a delta read), all loaded once many are (a full read asks for every one).
struct OldIds<'b> {
    ids: &'b BaselineIds,
    all: Option<Vec<ChunkId>>,
    asked: usize,
}

impl<'b> OldIds<'b> {
    fn new(ids: &'b BaselineIds) -> Self {
        OldIds {
            ids,
            all: None,
            asked: 0,
        }
    }

    /// The baseline's id of `run`; `None` past its end, or if the ids cannot be read (the
    /// run then counts as changed, which costs bytes, never a snapshot).
    fn get(&mut self, run: u64) -> Option<ChunkId> {
        self.asked += 1;
        if self.asked == PATCH_RUNS {
            self.all = self.ids.all().ok();
        }
        match &self.all {
            Some(all) => all.get(run as usize).copied(),
            None => self.ids.get(run).ok().flatten(),
        }
    }
}

/// The patch of the runs in `held` that differ from their baseline ids `was`, compressed
/// against their old contents; `None` if nothing changed. A run's old contents are looked
/// for in the database file `db_file` (a page no checkpoint has copied over yet) and in
/// the earlier frames of its WAL (a page changed before the baseline, and again since):
/// a candidate counts only if its keyed hash is the baseline's id for the run. A run whose
/// old contents are nowhere is compressed without them.
fn make_patch(
    db_file: &Path,
    sink: &ChunkSink<'_>,
    size_before: u64,
    size_after: u64,
    run_bytes: u32,
    was: &HashMap<u64, ChunkId>,
    held: Held,
) -> Option<Vec<u8>> {
    let changed: Vec<(u64, Vec<u8>)> = held
        .into_iter()
        .filter(|(run, id, _)| was.get(run) != Some(id))
        .map(|(run, _, data)| (run, data))
        .collect();
    if changed.is_empty() && size_before == size_after {
        return None;
    }
    let keys = sink.repo.keys();
    let file = std::fs::File::open(db_file).ok();
    let wal = std::fs::File::open(crate::capture::database::wal_path(db_file)).ok();
    let mut frames: HashMap<u64, Vec<u64>> = HashMap::new();
    // WAL frames hold one page: they can stand for runs of one page only.
    if let Some(w) = &wal
        && patch::run_len(run_bytes, size_before, 0) == run_bytes as usize
    {
        let pages = changed.iter().map(|(run, _)| run + 1).collect();
        if let Ok(Some((page_size, found))) = wal::frames_of(w, &pages)
            && page_size == u64::from(run_bytes)
        {
            for (page, offset) in found {
                frames.entry(page).or_default().push(offset);
            }
        }
    }
    let old: Vec<(u64, Vec<u8>)> = changed
        .iter()
        .filter_map(|(run, _)| {
            let len = patch::run_len(run_bytes, size_before, *run);
            let want = was.get(run)?;
            let mut data = vec![0u8; len];
            let mut matches = |from: &std::fs::File, offset: u64| {
                from.read_exact_at(&mut data, offset).is_ok() && keys.chunk_id(&data) == *want
            };
            // The file first, then the WAL's frames from the newest back.
            let in_file = file
                .as_ref()
                .is_some_and(|f| matches(f, run * u64::from(run_bytes)));
            let found = in_file
                || wal.as_ref().is_some_and(|w| {
                    let offsets = frames.get(&(run + 1)).map_or(&[][..], Vec::as_slice);
                    offsets.iter().rev().any(|&o| matches(w, o))
                });
            (len > 0 && found).then_some((*run, data))
        })
        .collect();
    let changed: Vec<(u64, &[u8])> = changed.iter().map(|(r, d)| (*r, d.as_slice())).collect();
    let old: Vec<(u64, &[u8])> = old.iter().map(|(r, d)| (*r, d.as_slice())).collect();
    let patch = patch::encode(keys, run_bytes, size_before, size_after, &changed, &old);
    tracing::info!(
        runs = changed.len(),
        against_old = old.len(),
        bytes = patch.len(),
        "database patch"
    );
    Some(patch)
}

/// One list of a database image: the same ids as the parent's list, or others.
enum ListGroup<'i> {
    Unchanged(ChunkId),
    Changed(&'i [ChunkId]),
}

/// The list blobs of a database image of chunk ids `ids`, whose baseline (the parent's
/// image) was `before` in `parent_lists`. A list holding the same ids as in the baseline is
/// the parent's list blob, stored and vouched for with the baseline: only the lists around
/// changed pages are encoded and hashed again (the large store has 3,600 lists, a day
/// changes a few hundred). `each` turns every group into its list's id.
fn list_ids(
    ids: impl Iterator<Item = Result<ChunkId, EngineError>>,
    before: &[ChunkId],
    parent_lists: Option<&[ChunkId]>,
    mut each: impl FnMut(ListGroup<'_>) -> Result<ChunkId, EngineError>,
) -> Result<Vec<ChunkId>, EngineError> {
    let parent_lists = parent_lists
        .filter(|lists| lists.len() == before.len().div_ceil(LIST_IDS))
        .unwrap_or_default();
    let mut lists = Vec::new();
    let mut group = Vec::with_capacity(LIST_IDS);
    let mut ids = ids.peekable();
    while ids.peek().is_some() {
        group.clear();
        for id in ids.by_ref().take(LIST_IDS) {
            group.push(id?);
        }
        let at = lists.len();
        let start = at * LIST_IDS;
        let end = start + group.len();
        // The parent's list covered exactly this stretch, with these ids.
        let unchanged = parent_lists.get(at).filter(|_| {
            before.len().min(start + LIST_IDS) == end && before.get(start..end) == Some(&group)
        });
        lists.push(match unchanged {
            Some(list) => each(ListGroup::Unchanged(*list))?,
            None => each(ListGroup::Changed(&group))?,
        });
    }
    Ok(lists)
}

/// What became of one file.
enum Captured {
    /// Read (or known) with this `stat` and these chunks; `settled` if its last change was
    /// older than the timestamp margin when the read ended, so that a later write within
    /// the same clock tick cannot have kept its `stat`.
    Read {
        stat: FileStat,
        chunks: Vec<ChunkId>,
        settled: bool,
        /// Known from the file cache with this `stat`: its row there stands.
        cached: bool,
    },
    /// It kept changing while read, or vanished.
    Unstable,
}

/// Files known without reading them, when their `stat` is as recorded.
enum Known<'c> {
    /// The file cache of earlier backups: its chunks are checked against the repository
    /// unless the catalog vouches for them.
    Cache { cache: &'c FileCache, trusted: bool },
    /// Read earlier in this backup: its chunks are claimed, and already counted.
    ReadEarlier(&'c FileCache),
}

/// What became of each file, in order: files known with the same `stat` are not read; the
/// others are read, chunked and hashed by one thread per core.
fn collect_files(
    store_files: &[StoreFile],
    known: Known<'_>,
    input: &BackupInput<'_>,
    sink: &ChunkSink<'_>,
    counters: &Counters,
) -> Result<Vec<Option<Captured>>, EngineError> {
    let (cache, trusted, earlier) = match known {
        Known::Cache { cache, trusted } => (cache, trusted, false),
        Known::ReadEarlier(cache) => (cache, true, true),
    };
    let mut outcomes: Vec<Option<Captured>> = Vec::with_capacity(store_files.len());
    let mut to_read = Vec::new();
    for (at, file) in store_files.iter().enumerate() {
        let cached = cache
            .get(&file.path)
            .filter(|(stat, _)| same_file(stat, &file.stat))
            .map(|(_, chunks)| chunks)
            .filter(|chunks| {
                trusted || {
                    let mut known = sink.known();
                    chunks.iter().all(|c| known.contains(c))
                }
            });
        match cached {
            Some(chunks) => {
                if !earlier {
                    sink.reused
                        .fetch_add(chunks.len() as u64, Ordering::Relaxed);
                }
                // Cached and read-early files were settled when they were recorded.
                outcomes.push(Some(Captured::Read {
                    stat: file.stat,
                    chunks: chunks.clone(),
                    settled: true,
                    cached: !earlier,
                }));
            }
            None => {
                outcomes.push(None);
                to_read.push(at);
            }
        }
    }

    counters.total.fetch_add(
        to_read.iter().map(|&at| store_files[at].stat.size).sum(),
        Ordering::Relaxed,
    );
    let read = read_files(store_files, &to_read, input, sink, counters)?;
    for (at, captured) in to_read.into_iter().zip(read) {
        outcomes[at] = Some(captured);
    }
    Ok(outcomes)
}

/// The snapshot's entries for the files, in order, from what became of each; the settled
/// ones read in this backup also go to the file cache's `changes`.
fn file_entries(
    store_files: &[StoreFile],
    outcomes: Vec<Option<Captured>>,
    parent: Option<&Snapshot>,
    counters: &Counters,
    changes: &mut FileCacheChanges,
) -> Vec<FileEntry> {
    let mut entries = Vec::with_capacity(store_files.len());
    for (file, outcome) in store_files.iter().zip(outcomes) {
        match outcome {
            Some(Captured::Read {
                stat,
                chunks,
                settled,
                cached,
            }) => {
                // A file written a moment before it was read is not cached: a rewrite within
                // the same clock tick would keep its stat, and the next backup must read it
                // again.
                if settled && !cached {
                    changes.set.push((file.path.clone(), stat, chunks.clone()));
                }
                entries.push(entry(&file.path, &stat, chunks));
            }
            Some(Captured::Unstable) | None => {
                counters.files_unstable.fetch_add(1, Ordering::Relaxed);
                let previous = parent.and_then(|p| p.files.iter().find(|f| f.path == file.path));
                if let Some(previous) = previous {
                    tracing::warn!(path = %file.path, "file kept changing while read: keeping its previous version");
                    entries.push(previous.clone());
                } else {
                    tracing::warn!(path = %file.path, "file kept changing while read: left for the next backup");
                }
            }
        }
    }
    entries
}

/// Reads the files `which` (indices into `store_files`) on one thread per core; returns
/// what became of each, in the same order.
fn read_files(
    store_files: &[StoreFile],
    which: &[usize],
    input: &BackupInput<'_>,
    sink: &ChunkSink<'_>,
    counters: &Counters,
) -> Result<Vec<Captured>, EngineError> {
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, 8)
        .min(which.len().max(1));
    let results: Vec<Vec<(usize, Result<Captured, EngineError>)>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut done = Vec::new();
                    let config = sink.repo.config();
                    let mut buffers = Buffers::new(config.media_chunk_max as usize);
                    let mut chunker = MediaChunker::new(
                        sink.repo.keys().chunker_seed(),
                        config.media_chunk_min,
                        config.media_chunk_avg,
                        config.media_chunk_max,
                    );
                    while !failed.load(Ordering::Relaxed) {
                        let n = next.fetch_add(1, Ordering::Relaxed);
                        let Some(&at) = which.get(n) else { break };
                        let result = read_stable(
                            &store_files[at],
                            &mut chunker,
                            &mut buffers,
                            input,
                            sink,
                            counters,
                        );
                        if result.is_err() {
                            failed.store(true, Ordering::Relaxed);
                        }
                        done.push((n, result));
                    }
                    done
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_default())
            .collect()
    });
    let mut ordered: Vec<Option<Captured>> = (0..which.len()).map(|_| None).collect();
    for (n, result) in results.into_iter().flatten() {
        ordered[n] = Some(result?);
    }
    ordered
        .into_iter()
        .map(|c| {
            c.ok_or_else(|| {
                EngineError::Repo(sealback_repo::Error::Malformed {
                    name: "file capture".into(),
                    detail: "a file reader stopped early".into(),
                })
            })
        })
        .collect()
}

/// Whether a file is as the cache recorded it: same size, times and inode (its mode alone
/// may have changed, and is taken from the new `stat`).
fn same_file(cached: &FileStat, now: &FileStat) -> bool {
    (cached.size, cached.mtime_ns, cached.ctime_ns, cached.inode)
        == (now.size, now.mtime_ns, now.ctime_ns, now.inode)
}

fn entry(path: &str, stat: &FileStat, chunks: Vec<ChunkId>) -> FileEntry {
    FileEntry {
        path: path.to_owned(),
        size: stat.size,
        mtime_ns: stat.mtime_ns,
        mode: stat.mode,
        chunks,
    }
}

/// Reads a file between two identical `stat`s.
fn read_stable(
    file: &StoreFile,
    chunker: &mut MediaChunker,
    buffers: &mut Buffers,
    input: &BackupInput<'_>,
    sink: &ChunkSink<'_>,
    counters: &Counters,
) -> Result<Captured, EngineError> {
    let compress = worth_compressing(&file.path);
    for attempt in 1..=FILE_ATTEMPTS {
        let (handle, before) = match files::open_for_read(&file.abs) {
            Ok(x) => x,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Captured::Unstable),
            Err(e) => return Err(EngineError::io("cannot read", &file.abs)(e)),
        };
        let mut chunks = Vec::new();
        let mut read = 0u64;
        chunker
            .chunks(&handle, |chunk| {
                if sink.cancel.load(Ordering::Relaxed) {
                    return Err(ReadError::Engine(EngineError::Cancelled));
                }
                read += chunk.len() as u64;
                counters.read(chunk.len() as u64, input);
                chunks.push(sink.add(BlobKind::Data, chunk, compress, buffers)?);
                Ok::<_, ReadError>(())
            })
            .map_err(|e| match e {
                ReadError::Io(e) => EngineError::io("cannot read", &file.abs)(e),
                ReadError::Engine(e) => e,
            })?;
        if read == before.size && files::unchanged_since(&handle, &file.abs, &before) {
            counters.files_read.fetch_add(1, Ordering::Relaxed);
            let settled = before.unsettled_for(std::time::SystemTime::now()).is_zero();
            return Ok(Captured::Read {
                stat: before,
                chunks,
                settled,
                cached: false,
            });
        }
        tracing::debug!(path = %file.path, attempt, "file changed while read; reading it again");
        std::thread::sleep(Duration::from_millis(50 * u64::from(attempt)));
    }
    Ok(Captured::Unstable)
}

/// Reading a file fails on the file or on the backup.
enum ReadError {
    Io(std::io::Error),
    Engine(EngineError),
}

impl From<std::io::Error> for ReadError {
    fn from(e: std::io::Error) -> Self {
        ReadError::Io(e)
    }
}

impl From<EngineError> for ReadError {
    fn from(e: EngineError) -> Self {
        ReadError::Engine(e)
    }
}

pub fn now_unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_ids_stay_in_their_file_while_in_order_and_come_back_with_their_runs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let id = |i: u8| ChunkId([i; 32]);
        let mut full = ReadIds::new(dir.path()).expect("spool");
        for run in 0..5u8 {
            full.push(u64::from(run), id(run)).expect("push");
        }
        assert_eq!(full.len(), 5);
        let (file, count) = full.into_ordered().expect("file").expect("in order");
        let ids: Vec<ChunkId> = read_ids(&file, count)
            .expect("read")
            .collect::<std::io::Result<_>>()
            .expect("ids");
        assert_eq!(ids, (0..5).map(id).collect::<Vec<_>>());

        // A delta read: runs 0 and 1, then 7, then 3.
        let mut delta = ReadIds::new(dir.path()).expect("spool");
        for run in [0u8, 1, 7, 3] {
            delta.push(u64::from(run), id(run)).expect("push");
        }
        assert_eq!(delta.len(), 4);
        assert_eq!(
            delta.into_runs().expect("runs"),
            [0u8, 1, 7, 3].map(|r| (u64::from(r), id(r)))
        );
        let mut skipped = ReadIds::new(dir.path()).expect("spool");
        skipped.push(2, id(2)).expect("push");
        assert!(skipped.into_ordered().expect("no file").is_none());
        let mut few = ReadIds::new(dir.path()).expect("spool");
        few.push(0, id(9)).expect("push");
        assert_eq!(few.into_runs().expect("runs"), [(0, id(9))]);
    }

    /// The lists as `list_ids` makes them, and how many it encoded.
    fn lists(
        ids: &[ChunkId],
        before: &[ChunkId],
        parent: Option<&[ChunkId]>,
    ) -> (Vec<ChunkId>, usize) {
        let mut encoded = 0;
        let lists = list_ids(ids.iter().copied().map(Ok), before, parent, |group| {
            Ok(match group {
                ListGroup::Unchanged(list) => list,
                ListGroup::Changed(group) => {
                    encoded += 1;
                    name(group)
                }
            })
        })
        .expect("lists");
        (lists, encoded)
    }

    fn name(group: &[ChunkId]) -> ChunkId {
        sealback_repo::BackupKey::from_bytes(&mut [1u8; 32])
            .derive()
            .chunk_id(&encode_list(group))
    }

    fn ids(n: usize, seed: u8) -> Vec<ChunkId> {
        (0..n)
            .map(|i| {
                let mut id = [seed; 32];
                id[..8].copy_from_slice(&(i as u64).to_le_bytes());
                ChunkId(id)
            })
            .collect()
    }

    #[test]
    fn only_the_lists_whose_ids_changed_are_made_again() {
        let before = ids(3 * LIST_IDS + 10, 1);
        let (parent, _) = lists(&before, &[], None);
        // Whatever happens, the lists are those of a fresh encoding of the new ids.
        let check = |now: &[ChunkId], encoded_expected: usize| {
            let (fresh, _) = lists(now, &[], None);
            let (made, encoded) = lists(now, &before, Some(&parent));
            assert_eq!(made, fresh);
            assert_eq!(encoded, encoded_expected);
        };
        check(&before, 0);
        let mut one = before.clone();
        one[LIST_IDS + 5] = ChunkId([9; 32]);
        check(&one, 1);
        // Grown: the short last list and the new one.
        check(&ids(4 * LIST_IDS + 1, 1), 2);
        // Shrunk within the last list, and to a whole number of lists: the lists that end
        // elsewhere than the parent's are made again, even with the same leading ids.
        check(&before[..3 * LIST_IDS + 3], 1);
        check(&before[..3 * LIST_IDS], 0);
        check(&before[..2 * LIST_IDS + 7], 1);
        // Parent lists that do not match the baseline are not used.
        let (made, encoded) = lists(&before, &before, Some(&parent[1..]));
        assert_eq!((made.len(), encoded), (parent.len(), parent.len()));
    }
}
