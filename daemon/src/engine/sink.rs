//! Where a backup's chunks go: new ones to the upload workers (alone, or batched when
//! small), known ones only counted; and the running totals its readers share.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use sealback_repo::pack::BlobKind;
use sealback_repo::{ChunkId, Repository};

use super::EngineError;
use super::backup::BackupInput;
use super::known::KnownIds;
use super::upload::{self, Batch, Buffers, NewChunk, UploadState};

/// New chunks go to the workers; known ones are only counted. Shared by the file readers.
pub(super) struct ChunkSink<'a> {
    pub(super) repo: &'a Repository,
    pub(super) known: Mutex<KnownIds>,
    /// The media workers' queue.
    pub(super) tx: crossbeam_channel::Sender<Batch>,
    /// The database worker's queue ([`upload::Packing::Database`]).
    pub(super) database_tx: crossbeam_channel::Sender<Batch>,
    pub(super) state: &'a UploadState,
    pub(super) cancel: &'a AtomicBool,
    pub(super) new: AtomicU64,
    pub(super) reused: AtomicU64,
}

impl ChunkSink<'_> {
    pub(super) fn known(&self) -> std::sync::MutexGuard<'_, KnownIds> {
        self.known.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// True, and remembered, if the repository lacks `id`.
    pub(super) fn claim(&self, id: ChunkId) -> bool {
        if self.known().claim(id) {
            self.new.fetch_add(1, Ordering::Relaxed);
            true
        } else {
            self.reused.fetch_add(1, Ordering::Relaxed);
            false
        }
    }

    /// Queues `batch` for the media workers, or for the database's if `database`.
    pub(super) fn submit_batch(&self, batch: Batch, database: bool) -> Result<(), EngineError> {
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
        let queue = if database {
            &self.database_tx
        } else {
            &self.tx
        };
        let _ = queue.send(batch);
        Ok(())
    }

    /// Hashes `data`, queues a copy of it in one of `buffers` if new, and returns its id.
    pub(super) fn add(
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
            self.submit_batch(
                vec![NewChunk {
                    kind,
                    id,
                    data,
                    compress,
                    back,
                }],
                false,
            )?;
        }
        Ok(id)
    }
}

/// Small chunks (database pages, lists, patches) on their way to the database's worker,
/// sent together once they reach [`upload::BATCH_BYTES`].
pub(super) struct Batcher<'s, 'a> {
    sink: &'s ChunkSink<'a>,
    batch: Batch,
    bytes: usize,
}

impl<'s, 'a> Batcher<'s, 'a> {
    pub(super) fn new(sink: &'s ChunkSink<'a>) -> Self {
        Batcher {
            sink,
            batch: Vec::new(),
            bytes: 0,
        }
    }

    pub(super) fn push(&mut self, chunk: NewChunk) -> Result<(), EngineError> {
        self.bytes += chunk.data.len();
        self.batch.push(chunk);
        if self.bytes >= upload::BATCH_BYTES {
            self.flush()?;
        }
        Ok(())
    }

    /// Queues a run of the database already claimed as new.
    pub(super) fn push_run(&mut self, id: ChunkId, data: Vec<u8>) -> Result<(), EngineError> {
        self.push(NewChunk {
            kind: BlobKind::Data,
            id,
            data,
            compress: true,
            back: None,
        })
    }

    /// Hashes `data`, queues it if new, and returns its id.
    pub(super) fn add(
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

    pub(super) fn flush(&mut self) -> Result<(), EngineError> {
        self.bytes = 0;
        match std::mem::take(&mut self.batch) {
            batch if batch.is_empty() => Ok(()),
            batch => self.sink.submit_batch(batch, true),
        }
    }
}

/// Running totals, shared by the file readers.
#[derive(Default)]
pub(super) struct Counters {
    pub(super) bytes_read: AtomicU64,
    pub(super) total: AtomicU64,
    pub(super) files_read: AtomicU64,
    pub(super) files_unstable: AtomicU64,
}

impl Counters {
    /// Counts `n` bytes read and reports progress.
    pub(super) fn read(&self, n: u64, input: &BackupInput<'_>) {
        let done = self.bytes_read.fetch_add(n, Ordering::Relaxed) + n;
        (input.progress)(done, self.total.load(Ordering::Relaxed));
    }
}
