//! The upload side of a backup: a bounded queue of new chunks, and worker threads that
//! each fill their own pack (compressing and encrypting as they add), store it when full,
//! and report what they stored for the index.
//!
//! Chunks travel in batches: a media chunk alone (256 KiB to 2 MiB), database pages and
//! lists together up to [`BATCH_BYTES`], since a handoff per 4 KiB page cost a context
//! switch per page (a sixth of a full backup's CPU went to waking threads).
//!
//! Memory stays bounded: at most `QUEUE_DEPTH` batches wait in the queue (each at most
//! 2 MiB by default) and each worker holds one pack of at most 4 MiB (a chunk that would not fit closes
//! the pack first); a worker stores its full pack before it starts the next, so no worker
//! ever holds two.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crossbeam_channel::{Receiver, Sender};
use sealback_repo::index::IndexedPack;
use sealback_repo::pack::{BlobKind, PackWriter};
use sealback_repo::{ChunkId, Repository};

const QUEUE_DEPTH: usize = 2;
/// A batch of small chunks is sent once it holds this many bytes.
pub const BATCH_BYTES: usize = 256 * 1024;

/// Chunks handed to the workers together.
pub type Batch = Vec<NewChunk>;

/// A chunk the repository lacks.
pub struct NewChunk {
    pub kind: BlobKind,
    pub id: ChunkId,
    pub data: Vec<u8>,
    pub compress: bool,
}

/// What the workers share.
#[derive(Default)]
pub struct UploadState {
    packs: Mutex<Vec<(IndexedPack, u64)>>,
    error: Mutex<Option<sealback_repo::Error>>,
    failed: AtomicBool,
    pub bytes_written: AtomicU64,
}

impl UploadState {
    pub fn failed(&self) -> bool {
        self.failed.load(Ordering::Relaxed)
    }

    fn fail(&self, e: sealback_repo::Error) {
        let mut slot = self.error.lock().unwrap_or_else(|p| p.into_inner());
        slot.get_or_insert(e);
        self.failed.store(true, Ordering::Relaxed);
    }

    /// The packs stored (with their sizes), or the first error.
    pub fn finish(self) -> Result<Vec<(IndexedPack, u64)>, sealback_repo::Error> {
        if let Some(e) = self.error.into_inner().unwrap_or_else(|p| p.into_inner()) {
            return Err(e);
        }
        Ok(self.packs.into_inner().unwrap_or_else(|p| p.into_inner()))
    }
}

pub fn queue() -> (Sender<Batch>, Receiver<Batch>) {
    crossbeam_channel::bounded(QUEUE_DEPTH)
}

/// Number of packing workers: two per core. A worker waits on the write of its pack about
/// twice as long as it compresses and encrypts (the local provider syncs every pack), so
/// one per core left the cores idle half the time: 2.1 s against 1.9 s for the medium
/// store's full backup on two cores. Each holds one pack of up to 4 MiB, so this is also
/// what bounds the backup's memory (57 MiB at its peak there, against 45 MiB with two).
pub fn worker_count() -> usize {
    std::thread::available_parallelism()
        .map_or(4, |n| 2 * n.get())
        .clamp(2, 8)
}

/// One worker: packs chunks from `rx` until it closes, storing each full pack.
pub fn run_worker(repo: &Repository, rx: Receiver<Batch>, state: &UploadState) {
    let mut pack: Option<PackWriter> = None;
    // The buffer of the pack last stored, for the next.
    let mut spare: Option<Vec<u8>> = None;
    for chunk in rx.into_iter().flatten() {
        if state.failed() {
            continue; // drain, so the producer never blocks on a dead queue
        }
        if pack
            .as_ref()
            .is_some_and(|p| !p.has_room_for(chunk.data.len()))
            && let Some(full) = pack.take()
        {
            spare = store(repo, full, state);
        }
        let open = pack.get_or_insert_with(|| {
            PackWriter::new_in(repo.keys(), spare.take().unwrap_or_default())
        });
        open.add(chunk.kind, chunk.id, &chunk.data, chunk.compress);
        drop(chunk);
        if open.is_full()
            && let Some(full) = pack.take()
        {
            spare = store(repo, full, state);
        }
    }
    if let Some(last) = pack.filter(|p| !p.is_empty() && !state.failed()) {
        store(repo, last, state);
    }
}

/// Stores a pack; returns its buffer for the next.
fn store(repo: &Repository, pack: PackWriter, state: &UploadState) -> Option<Vec<u8>> {
    match repo.write_pack(pack.finish()) {
        Ok(stored) => {
            state
                .bytes_written
                .fetch_add(stored.size, Ordering::Relaxed);
            let indexed = IndexedPack {
                name: stored.name,
                entries: stored.entries,
            };
            state
                .packs
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push((indexed, stored.size));
            stored.buffer
        }
        Err(e) => {
            state.fail(e);
            None
        }
    }
}
