//! The upload side of a backup: a bounded queue of new chunks, and worker threads that
//! each fill their own pack (compressing and encrypting as they add), store it when full,
//! and write an index (recorded in the catalog) every [`INDEX_ENTRIES`] entries stored.
//!
//! Chunks travel in batches: a media chunk alone (256 KiB to 2 MiB), database pages and
//! lists together up to [`BATCH_BYTES`], since a handoff per 4 KiB page cost a context
//! switch per page (a sixth of a full backup's CPU went to waking threads).
//!
//! Memory stays bounded: at most `QUEUE_DEPTH` batches wait in the queue (each at most
//! 2 MiB by default) and each worker holds one pack of at most 4 MiB (a chunk that would not fit closes
//! the pack first); a worker stores its full pack before it starts the next, so no worker
//! ever holds two.
//!
//! A backup's last packs are partial, one per worker, and each would be padded on its own
//! (DESIGN §3.10): a worker leaves its last pack to be merged with the others', and the
//! last worker to finish stores the one (or, if they overflow, two) that remain.
//!
//! The database's blobs (its pages, lists and patches) come on a queue of their own to a
//! worker of their own ([`Packing::Database`]), so that they fill packs that hold nothing
//! else (but for a small last one, merged with the media's like theirs): a restore reads
//! those packs first and has the messages back once it has read about the database's size.
//! With one queue, the workers mixed the pages into nearly every pack, and the medium
//! store's database was ready only after 6.46 s of a 6.84 s restore.
//! Deduplication does not care: a chunk is claimed once, whoever claims it, and a later
//! backup reuses it in whatever pack holds it.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use crossbeam_channel::{Receiver, Sender};
use sealback_repo::index::{Index, IndexedPack};
use sealback_repo::pack::{BlobKind, Compression, PackWriter};
use sealback_repo::{ChunkId, Repository};

use crate::catalog::Catalog;

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
    /// Where `data` goes once packed, if it is a reading thread's buffer ([`Buffers`]).
    pub back: Option<Sender<Vec<u8>>>,
}

impl Drop for NewChunk {
    /// A reader's buffer goes back to it however the chunk ends: packed, or dropped by a
    /// worker draining the queue after a failure.
    fn drop(&mut self) {
        if let Some(back) = self.back.take() {
            let _ = back.try_send(std::mem::take(&mut self.data));
        }
    }
}

/// Buffers each file-reading thread copies its media chunks into: this many, reused.
///
/// A fresh allocation per chunk (1 MiB on average) cost the large store's full backup a
/// quarter of a million page faults (93% of all its faults, a second of CPU), and the
/// buffers, allocated by readers and freed by workers, left 10-20 MB of holes in glibc's
/// per-thread arenas. Two per reader keep a reader busy while a worker packs the other.
pub const READER_BUFFERS: usize = 2;

/// A reading thread's chunk buffers (see [`READER_BUFFERS`]); the workers hand them back.
pub struct Buffers {
    free: Receiver<Vec<u8>>,
    back: Sender<Vec<u8>>,
    made: usize,
    /// Each buffer's capacity, allocated once: the largest chunk (a buffer left to grow
    /// by doubling could end up twice that).
    size: usize,
}

impl Buffers {
    /// Buffers for chunks of at most `size` bytes.
    pub fn new(size: usize) -> Buffers {
        let (back, free) = crossbeam_channel::bounded(READER_BUFFERS);
        Buffers {
            free,
            back,
            made: 0,
            size,
        }
    }

    /// A copy of `data` in one of this reader's buffers, with the way back for it: a free
    /// buffer, a new one while fewer than [`READER_BUFFERS`] exist, or else the first a
    /// worker hands back. Waiting ends early, with a buffer of its own, once `stop` (the
    /// backup failed or was cancelled, and the caller will find out when it queues).
    pub fn copy(
        &mut self,
        data: &[u8],
        stop: impl Fn() -> bool,
    ) -> (Vec<u8>, Option<Sender<Vec<u8>>>) {
        let Some(mut buffer) = self.take(stop) else {
            return (data.to_vec(), None);
        };
        buffer.clear();
        buffer.extend_from_slice(data);
        (buffer, Some(self.back.clone()))
    }

    fn take(&mut self, stop: impl Fn() -> bool) -> Option<Vec<u8>> {
        if let Ok(buffer) = self.free.try_recv() {
            return Some(buffer);
        }
        if self.made < READER_BUFFERS {
            self.made += 1;
            return Some(Vec::with_capacity(self.size));
        }
        loop {
            match self.free.recv_timeout(std::time::Duration::from_millis(50)) {
                Ok(buffer) => return Some(buffer),
                Err(_) if stop() => return None,
                Err(_) => {}
            }
        }
    }
}

/// An index object is written once the packs stored and not yet indexed hold this many
/// entries: a full backup's index (250,000 entries on the large store) never sits whole in
/// memory, in its structs or as JSON, and the packs an interrupted backup stored are
/// indexed and reused by the next.
pub const INDEX_ENTRIES: usize = 16 * 1024;

/// What the workers share.
#[derive(Default)]
pub struct UploadState {
    /// Packs stored and not yet indexed, and their entries.
    pending: Mutex<(Vec<(IndexedPack, u64)>, usize)>,
    /// Where the indexes written on the way are recorded (a connection of its own).
    catalog: Option<Mutex<Catalog>>,
    /// Entries after which an index is written ([`INDEX_ENTRIES`]).
    index_entries: usize,
    error: Mutex<Option<sealback_repo::Error>>,
    failed: AtomicBool,
    /// Bytes of the packs and indexes stored so far.
    pub bytes_written: AtomicU64,
    packs_written: AtomicU64,
    /// Blobs in the packs stored so far.
    blobs_written: AtomicU64,
    /// Workers running, and the last packs those done left ([`leave_last`]).
    workers: AtomicUsize,
    last: Mutex<Option<PackWriter>>,
}

/// What the workers stored, once they are done.
pub struct Stored {
    /// The packs not yet named by an index, with their sizes.
    pub unindexed: Vec<(IndexedPack, u64)>,
    /// Bytes of every pack and index stored.
    pub bytes: u64,
    pub packs: u64,
    /// Blobs in those packs: one per chunk claimed as new (the backup's proof checks it).
    pub blobs: u64,
}

impl UploadState {
    /// Indexes written on the way are recorded in `catalog`.
    pub fn new(catalog: Catalog) -> Self {
        Self::indexing_every(catalog, INDEX_ENTRIES)
    }

    fn indexing_every(catalog: Catalog, entries: usize) -> Self {
        UploadState {
            catalog: Some(Mutex::new(catalog)),
            index_entries: entries,
            ..UploadState::default()
        }
    }

    pub fn failed(&self) -> bool {
        self.failed.load(Ordering::Relaxed)
    }

    fn fail(&self, e: sealback_repo::Error) {
        let mut slot = self.error.lock().unwrap_or_else(|p| p.into_inner());
        slot.get_or_insert(e);
        self.failed.store(true, Ordering::Relaxed);
    }

    /// What was stored, or the first error.
    pub fn finish(self) -> Result<Stored, sealback_repo::Error> {
        if let Some(e) = self.error.into_inner().unwrap_or_else(|p| p.into_inner()) {
            return Err(e);
        }
        Ok(Stored {
            unindexed: self
                .pending
                .into_inner()
                .unwrap_or_else(|p| p.into_inner())
                .0,
            bytes: self.bytes_written.into_inner(),
            packs: self.packs_written.into_inner(),
            blobs: self.blobs_written.into_inner(),
        })
    }

    /// Writes an index of `packs` (all stored) and records it in the catalog.
    fn index(&self, repo: &Repository, packs: Vec<(IndexedPack, u64)>) {
        let (index, sizes) = index_of(packs);
        let (name, size) = match repo.write_index(&index) {
            Ok(written) => written,
            Err(e) => return self.fail(e),
        };
        self.bytes_written.fetch_add(size, Ordering::Relaxed);
        if let Some(catalog) = &self.catalog {
            let mut catalog = catalog.lock().unwrap_or_else(|p| p.into_inner());
            // The index is on the target: a catalog that missed it finds it at its next sync.
            if let Err(e) = catalog.add_index(&name, size, &index, &sizes) {
                tracing::warn!(index = %name, error = %e, "index stored but not recorded in the catalog");
            }
        }
    }
}

/// The index of `packs` (stored, with their sizes), and each pack's size by name, as
/// [`Catalog::add_index`] records them.
pub fn index_of(packs: Vec<(IndexedPack, u64)>) -> (Index, HashMap<String, u64>) {
    let sizes = packs.iter().map(|(p, s)| (p.name.clone(), *s)).collect();
    let index = Index {
        packs: packs.into_iter().map(|(p, _)| p).collect(),
    };
    (index, sizes)
}

pub fn queue() -> (Sender<Batch>, Receiver<Batch>) {
    crossbeam_channel::bounded(QUEUE_DEPTH)
}

/// Number of packing workers: three for every two cores. A worker waits on the write of
/// its pack about twice as long as it compresses and encrypts (the local provider syncs
/// every pack), so one per core left the cores idle half the time (2.1 s against 1.9 s for
/// the medium store's full backup on two cores). Each holds one pack of up to 4 MiB, so
/// this is also what bounds the backup's memory: on two cores a fourth worker took 5-7%
/// off the full backup and cost 4-5 MiB, which the large store's peak (59 MiB with three,
/// 63-66 with four) cannot spare under its 64 MB goal.
pub fn worker_count() -> usize {
    std::thread::available_parallelism()
        .map_or(3, |n| n.get() * 3 / 2)
        .clamp(2, 8)
}

/// What a worker packs, and so what becomes of its last, partial pack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Packing {
    /// Media, with other workers: the last packs are merged into one (or two).
    Media,
    /// The database alone, by one worker: its last pack is stored as it is, unless it is
    /// smaller than [`SMALL_DATABASE_TAIL`].
    Database,
}

/// Below this, the database worker's last pack is merged with the media's like theirs: an
/// incremental backup's database is a patch of a few hundred kB at most, and a pack of its
/// own would cost its own padding and table (about 34 kB a day on the medium store) to
/// spare a restore one mixed pack read among the database's.
const SMALL_DATABASE_TAIL: usize = sealback_repo::pack::TARGET_PACK_BYTES / 16;

/// One worker: packs chunks from `rx` until it closes, storing each full pack.
pub fn run_worker(repo: &Repository, rx: Receiver<Batch>, state: &UploadState, packing: Packing) {
    // A worker started after the others finished has found the queue closed and drained.
    state.workers.fetch_add(1, Ordering::AcqRel);
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
        // Packing moves the backup on after the last read (the database's spooled pages):
        // it feeds the systemd watchdog, rate-limited there. A worker stuck in a pack's
        // upload stops here and sends nothing.
        crate::notify::alive();
        if open.is_full()
            && let Some(full) = pack.take()
        {
            spare = store(repo, full, state);
        }
    }
    if let Some(last) = pack.filter(|p| !p.is_empty() && !state.failed()) {
        match packing {
            Packing::Database if last.len() >= SMALL_DATABASE_TAIL => {
                drop(store(repo, last, state))
            }
            Packing::Database | Packing::Media => leave_last(repo, last, state),
        }
    }
    if state.workers.fetch_sub(1, Ordering::AcqRel) == 1 {
        let last = state.last.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(last) = last.filter(|_| !state.failed()) {
            store(repo, last, state);
        }
    }
}

/// Merges a worker's `last` pack with the one other workers left, the smaller's blobs
/// moved into the larger (storing it if they overflow it): a backup ends with one or two
/// partial packs rather than one per worker, each padded by up to 1/32 of its size. The
/// cost: decrypting and adding again at most a pack's worth of blobs per worker, once.
fn leave_last(repo: &Repository, last: PackWriter, state: &UploadState) {
    let mut left = state.last.lock().unwrap_or_else(|p| p.into_inner());
    let Some(other) = left.take() else {
        *left = Some(last);
        return;
    };
    let (into, from) = if other.len() >= last.len() {
        (other, last)
    } else {
        (last, other)
    };
    let mut into = Some(into);
    let moved = from.for_each_chunk(repo.keys(), |entry, chunk| {
        let open = match into.take() {
            Some(full) if !full.has_room_for(chunk.len()) => {
                let spare = store(repo, full, state);
                PackWriter::new_in(repo.keys(), spare.unwrap_or_default())
            }
            Some(open) => open,
            None => PackWriter::new(repo.keys()),
        };
        let compress = entry.compression == Compression::Zstd;
        into.insert(open).add(entry.kind, entry.id, chunk, compress);
    });
    match moved {
        Ok(()) => *left = into,
        Err(e) => state.fail(e),
    }
}

/// Stores a pack; returns its buffer for the next.
fn store(repo: &Repository, pack: PackWriter, state: &UploadState) -> Option<Vec<u8>> {
    match repo.write_pack(pack.finish()) {
        Ok(stored) => {
            state
                .bytes_written
                .fetch_add(stored.size, Ordering::Relaxed);
            state.packs_written.fetch_add(1, Ordering::Relaxed);
            let entries = stored.entries.len();
            state
                .blobs_written
                .fetch_add(entries as u64, Ordering::Relaxed);
            let indexed = IndexedPack {
                name: stored.name,
                entries: stored.entries,
            };
            let full = {
                let mut pending = state.pending.lock().unwrap_or_else(|p| p.into_inner());
                pending.0.push((indexed, stored.size));
                pending.1 += entries;
                let due = state.index_entries > 0 && pending.1 >= state.index_entries;
                due.then(|| std::mem::take(&mut *pending).0)
            };
            if let Some(packs) = full {
                state.index(repo, packs);
            }
            stored.buffer
        }
        Err(e) => {
            state.fail(e);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use sealback_repo::pack::PackReader;
    use sealback_repo::padme::padme;
    use sealback_repo::{BackupKey, ObjectStore};

    use super::*;
    use crate::catalog::Packs;
    use crate::test_store::MemoryStore;

    #[test]
    fn a_reader_reuses_its_buffers_and_gets_them_back_however_a_chunk_ends() {
        let mut buffers = Buffers::new(64);
        let chunk = |buffers: &mut Buffers, byte: u8, stop: &dyn Fn() -> bool| {
            let (data, back) = buffers.copy(&[byte; 10], stop);
            NewChunk {
                kind: BlobKind::Data,
                id: ChunkId([byte; 32]),
                data,
                compress: false,
                back,
            }
        };
        let first = chunk(&mut buffers, 1, &|| false);
        let second = chunk(&mut buffers, 2, &|| false);
        assert_eq!((first.data.len(), first.data.capacity()), (10, 64));
        let made = [first.data.as_ptr(), second.data.as_ptr()];
        // Both out: the next copy waits for one, and a chunk dropped unpacked (a worker
        // draining after a failure) hands its buffer back all the same. A copy asks `stop`
        // only while it waits, so the chunk is dropped once the copy has said it waits.
        let (waits, waiting) = std::sync::mpsc::channel();
        let returner = std::thread::spawn(move || {
            let waited = waiting.recv();
            drop(second);
            waited
        });
        let third = chunk(&mut buffers, 3, &move || {
            let _ = waits.send(());
            false
        });
        returner
            .join()
            .expect("join")
            .expect("the third copy waited for a buffer instead of making one");
        assert_eq!(third.data, [3; 10]);
        assert!(made.contains(&third.data.as_ptr()), "a buffer reused");
        // With every buffer out and the backup failed, a copy of its own, with no way back.
        let (data, back) = buffers.copy(&[4; 5], || true);
        assert_eq!(data, [4; 5]);
        assert!(back.is_none());
        drop((first, third));
        assert!(
            buffers.copy(&[5; 5], || false).1.is_some(),
            "returned again"
        );
    }

    #[test]
    fn the_workers_last_packs_are_merged_into_one() {
        let store = Arc::new(MemoryStore::default());
        let key = BackupKey::from_bytes(&mut [6u8; 32]);
        let (repo, _) = Repository::open_or_init(store.clone(), &key, 0).expect("init");
        let dir = tempfile::tempdir().expect("tempdir");
        let catalog = Catalog::open(&dir.path().join("disk.db")).expect("open");
        let state = UploadState::new(catalog);
        // 40 chunks of 100 kB, half of them compressed: one pack, however they spread over
        // four workers.
        let chunks: Vec<Vec<u8>> = (0..40u8).map(|i| vec![i; 100_000]).collect();
        let ids: Vec<ChunkId> = chunks.iter().map(|c| repo.keys().chunk_id(c)).collect();
        let (tx, rx) = queue();
        std::thread::scope(|scope| {
            for _ in 0..4 {
                let rx = rx.clone();
                let (repo, state) = (&repo, &state);
                scope.spawn(move || run_worker(repo, rx, state, Packing::Media));
            }
            for (i, (data, id)) in chunks.iter().zip(&ids).enumerate() {
                let chunk = NewChunk {
                    kind: BlobKind::Data,
                    id: *id,
                    data: data.clone(),
                    compress: i % 2 == 0,
                    back: None,
                };
                tx.send(vec![chunk]).expect("send");
            }
            drop(tx);
        });
        let stored = state.finish().expect("stored");
        assert_eq!(
            (stored.packs, stored.blobs),
            (1, 40),
            "one pack, every blob"
        );
        let (name, size) = &store.list("data/").expect("list")[0];
        assert_eq!(*size, padme(*size), "padded once");
        let bytes = store.get(name).expect("pack");
        let reader = PackReader::new(repo.keys(), name, &bytes).expect("header");
        let table = reader.table().expect("table");
        assert_eq!(table, stored.unindexed[0].0.entries);
        let mut found: Vec<ChunkId> = table.iter().map(|e| e.id).collect();
        found.sort();
        let mut expected = ids.clone();
        expected.sort();
        assert_eq!(found, expected);
        for entry in &table {
            let chunk = reader.blob(entry).expect("blob");
            assert_eq!(chunk, chunks[usize::from(chunk[0])]);
        }
    }

    #[test]
    fn indexes_are_written_and_recorded_as_packs_fill_not_all_at_the_end() {
        let store = Arc::new(MemoryStore::default());
        let key = BackupKey::from_bytes(&mut [5u8; 32]);
        let (repo, _) = Repository::open_or_init(store.clone(), &key, 0).expect("init");
        let dir = tempfile::tempdir().expect("tempdir");
        let mut catalog = Catalog::open(&dir.path().join("disk.db")).expect("open");
        catalog.sync(&repo, Packs::List).expect("sync");
        // 1.5 MiB chunks: two to a pack, an index every two packs.
        let state = UploadState::indexing_every(catalog.reopen().expect("reopen"), 3);
        let chunks: Vec<Vec<u8>> = (0..10u8).map(|i| vec![i; 1536 * 1024]).collect();
        let ids: Vec<ChunkId> = chunks.iter().map(|c| repo.keys().chunk_id(c)).collect();
        let (tx, rx) = queue();
        std::thread::scope(|scope| {
            scope.spawn(|| run_worker(&repo, rx, &state, Packing::Media));
            for (data, id) in chunks.into_iter().zip(&ids) {
                let chunk = NewChunk {
                    kind: BlobKind::Data,
                    id: *id,
                    data,
                    compress: false,
                    back: None,
                };
                tx.send(vec![chunk]).expect("send");
            }
            drop(tx);
        });
        let stored = state.finish().expect("stored");
        assert_eq!(stored.packs, 5);
        let indexed_on_the_way = store.list("index/").expect("list");
        assert_eq!(indexed_on_the_way.len(), 2, "after packs 2 and 4");
        assert_eq!(
            stored.unindexed.len(),
            1,
            "the last pack waits for the backup's end"
        );
        let packs_bytes: u64 = store
            .list("data/")
            .expect("list")
            .iter()
            .map(|(_, s)| s)
            .sum();
        let index_bytes: u64 = indexed_on_the_way.iter().map(|(_, s)| s).sum();
        assert_eq!(stored.bytes, packs_bytes + index_bytes);
        // Recorded in the catalog as they were written: a sync finds nothing new.
        let report = catalog.sync(&repo, Packs::WhenDue).expect("sync");
        assert_eq!(report.indexes_loaded, 0);
        let known = catalog.known_blobs().expect("blobs");
        let unindexed: Vec<ChunkId> = stored.unindexed[0].0.entries.iter().map(|e| e.id).collect();
        for id in &ids {
            assert_eq!(known.contains(id), !unindexed.contains(id), "{id:?}");
        }
    }
}
