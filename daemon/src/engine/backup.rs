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

use std::collections::HashSet;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sealback_repo::Repository;
use sealback_repo::snapshot::{Manifest, SNAPSHOT_VERSION, Snapshot};

use super::EngineError;
use super::database::{MAX_PATCHES, ParentDb, capture_database};
use super::files::{Captured, Known, collect_files, file_entries};
use super::known::KnownIds;
use super::sink::{ChunkSink, Counters};
use super::upload::{self, Packing, UploadState};
use crate::capture::beneath::StoreRoot;
use crate::capture::database::Reading;
use crate::capture::files::{self, StoreFile};
use crate::catalog::{Catalog, FileCache, FileCacheChanges, Packs};
use crate::config::Selection;
use crate::control::api::{BackupReport, DbRead};

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
    /// Which of the store's files this target takes (`[backup]` include/exclude); the
    /// database always.
    pub selection: &'a Selection,
}

pub fn run(
    repo: &Repository,
    catalog: &mut Catalog,
    input: &BackupInput<'_>,
) -> Result<BackupReport, EngineError> {
    // After a backup that never ended, what the catalog holds of it is checked against
    // the repository (its packs listed, blobs of packs gone forgotten) and the database is
    // read whole: nothing it left half-written is built on.
    let unclean = catalog.begin_backup()?;
    if unclean {
        tracing::warn!(
            target = input.target,
            "the last backup did not end (the daemon was killed or the device lost power): \
             checking the catalog against the target and reading the database whole"
        );
    }
    let result = backup(repo, catalog, input, unclean);
    catalog.end_backup()?;
    result
}

fn backup(
    repo: &Repository,
    catalog: &mut Catalog,
    input: &BackupInput<'_>,
    unclean: bool,
) -> Result<BackupReport, EngineError> {
    let started = Instant::now();
    let time_unix_ms = now_unix_ms();
    catalog.sync(repo, if unclean { Packs::List } else { Packs::WhenDue })?;
    // A generation marked for retirement by a key rotation (on this device or another) is
    // removed once the prune grace period has passed since the mark: a backup that began
    // before the mark ends before then (it ends within half of it, as here), and none begins
    // after it (DESIGN §3.11).
    if let Some(since_unix_ms) = sealback_repo::generation::retiring_since(repo)? {
        return Err(EngineError::Retiring { since_unix_ms });
    }
    if unclean {
        catalog.forget_db_baseline()?;
    }
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

    // The store's path is resolved once: beneath it, no link is ever followed.
    let root = StoreRoot::open(input.store)
        .map_err(EngineError::io("cannot open the store", input.store))?;
    let db_path = root.join(input.database);
    // A store without its database is the wrong folder (or an app not set up yet): backing
    // it up would report an empty backup as a success.
    let db_len = match std::fs::symlink_metadata(&db_path) {
        Ok(m) => m.len(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(EngineError::NoDatabase {
                store: input.store.to_owned(),
                database: input.database.to_owned(),
            });
        }
        Err(e) => return Err(EngineError::io("cannot read the database", &db_path)(e)),
    };
    // The files are added to the total once listed.
    let counters = Counters {
        total: AtomicU64::new(db_len),
        ..Counters::default()
    };

    // Indexes written while the backup runs are recorded on a connection of their own.
    let state = UploadState::new(catalog.reopen()?);
    let (tx, rx) = upload::queue();
    let (database_tx, database_rx) = upload::queue();
    let mut sink = ChunkSink {
        repo,
        known: Mutex::new(known),
        tx,
        database_tx,
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
            scope.spawn(move || upload::run_worker(repo, rx, state, Packing::Media));
        }
        drop(rx);
        let state = &state;
        scope.spawn(move || upload::run_worker(repo, database_rx, state, Packing::Database));
        // A panic below must still close the queue, or the workers would wait for chunks
        // forever and this scope for them.
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            // The store is listed once the capture's snapshot has begun: the app writes a
            // file before it commits the message naming it, so every file the captured
            // database names is in that listing. Its files are read while the capture
            // reads the database.
            let (began, snapshot_began) = std::sync::mpsc::channel::<()>();
            let (captured, listed, later_snapshots) = std::thread::scope(|scope| {
                let (db_path, sink, counters, root) = (&db_path, &sink, &counters, &root);
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
                let listed = scan(root, input).and_then(|files| {
                    let known = Known::Cache {
                        cache: &cached_files,
                        trusted: cache_trusted,
                    };
                    let outcomes = collect_files(root, &files, known, input, sink, counters)?;
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
                    store_files = scan(&root, input)?;
                    let known = Known::ReadEarlier(&read_early);
                    outcomes = collect_files(&root, &store_files, known, input, &sink, &counters)?;
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
        // Closing the queues lets the workers store their last packs and stop.
        for queue in [&mut sink.tx, &mut sink.database_tx] {
            drop(std::mem::replace(queue, crossbeam_channel::bounded(0).0));
        }
        result.unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    });
    let ChunkSink {
        known, new, reused, ..
    } = sink;
    let (chunks_new, chunks_reused) = (new.into_inner(), reused.into_inner());
    // An upload error is the cause of any capture error that follows it: report it first.
    let uploaded = state.finish()?;
    let (mut captured_db, file_entries) = captured?;
    let stored = started.elapsed();

    let mut bytes_written = uploaded.bytes;
    let packs_written = uploaded.packs;
    let blobs_written = uploaded.blobs;
    if !uploaded.unindexed.is_empty() {
        let (index, sizes) = upload::index_of(uploaded.unindexed);
        let (name, size) = repo.write_index(&index)?;
        catalog.add_index(&name, size, &index, &sizes)?;
        bytes_written += size;
    }
    // The snapshot names only stored chunks, or it is not written (engine/proof.rs).
    let mut proof = captured_db
        .as_mut()
        .map(|db| std::mem::take(&mut db.proof))
        .unwrap_or_default();
    let mut known = known.into_inner().unwrap_or_else(|p| p.into_inner());
    let parent_files = parent.as_ref().map(|p| p.files.as_slice());
    proof.files(&mut known, &file_entries, parent_files);
    proof.stored_claims(chunks_new, blobs_written);
    drop(known);
    if let Err(unproven) = proof.result() {
        tracing::error!(target = input.target, error = %unproven, "backup not recorded");
        catalog.start_over()?;
        return Err(unproven.into());
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
            // Past half the prune grace period, a pack this backup counted on when it
            // began may have been marked and swept by a prune (DESIGN §12.4).
            if sealback_repo::gc::too_long(started, super::prune::grace_ms()) {
                return Err(EngineError::TooLong);
            }
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
        proof_us = proof.spent().as_micros() as u64,
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
        chunks_proved: proof.checked(),
        proof_us: proof.spent().as_micros() as u64,
        unchanged,
        failed: Vec::new(),
    })
}

/// The store's files other than the database that the target takes, sorted.
fn scan(root: &StoreRoot, input: &BackupInput<'_>) -> Result<Vec<StoreFile>, EngineError> {
    let (store_files, skipped) = files::scan(root, input.database, input.selection)
        .map_err(EngineError::io("cannot list the store", input.store))?;
    for p in skipped.not_regular.iter().chain(&skipped.not_utf8) {
        tracing::warn!(path = %p.display(), "skipped: not a regular file with a UTF-8 name");
    }
    Ok(store_files)
}

pub fn now_unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
