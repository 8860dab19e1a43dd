//! The store's files, all but the database, in a backup: those whose `stat` is as the
//! file cache (or this backup) recorded are known without reading; the others are read
//! between two identical `stat`s, chunked and hashed on one thread per core.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use sealback_repo::ChunkId;
use sealback_repo::chunk::{MediaChunker, worth_compressing};
use sealback_repo::pack::BlobKind;
use sealback_repo::snapshot::{FileEntry, Snapshot};

use super::EngineError;
use super::backup::BackupInput;
use super::sink::{ChunkSink, Counters};
use super::upload::Buffers;
use crate::capture::beneath::StoreRoot;
use crate::capture::files::{self, FileStat, StoreFile};
use crate::catalog::{FileCache, FileCacheChanges};

/// How often a file that changes while we read it is read again.
const FILE_ATTEMPTS: u32 = 3;

/// What became of one file.
pub(super) enum Captured {
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
pub(super) enum Known<'c> {
    /// The file cache of earlier backups: its chunks are checked against the repository
    /// unless the catalog vouches for them.
    Cache { cache: &'c FileCache, trusted: bool },
    /// Read earlier in this backup: its chunks are claimed, and already counted.
    ReadEarlier(&'c FileCache),
}

/// What became of each file, in order: files known with the same `stat` are not read; the
/// others are read, chunked and hashed by one thread per core.
pub(super) fn collect_files(
    root: &StoreRoot,
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
    let read = read_files(root, store_files, &to_read, input, sink, counters)?;
    for (at, captured) in to_read.into_iter().zip(read) {
        outcomes[at] = Some(captured);
    }
    Ok(outcomes)
}

/// The snapshot's entries for the files, in order, from what became of each; the settled
/// ones read in this backup also go to the file cache's `changes`.
pub(super) fn file_entries(
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
    root: &StoreRoot,
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
                            root,
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
    root: &StoreRoot,
    file: &StoreFile,
    chunker: &mut MediaChunker,
    buffers: &mut Buffers,
    input: &BackupInput<'_>,
    sink: &ChunkSink<'_>,
    counters: &Counters,
) -> Result<Captured, EngineError> {
    let compress = worth_compressing(&file.path);
    for attempt in 1..=FILE_ATTEMPTS {
        // Gone, or no longer the file the scan saw: left as an unstable file is.
        let Some((handle, before)) =
            files::open_for_read(root, file).map_err(EngineError::io("cannot read", &file.abs))?
        else {
            return Ok(Captured::Unstable);
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
        if read == before.size && files::unchanged_since(root, &handle, file, &before) {
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
