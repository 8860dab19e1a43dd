//! Planning a restore by pack: which packs to read, which of their blobs, and where each
//! blob goes.
//!
//! The plan is the restore's largest structure (the large benchmark store's 232,000
//! database pages and 17,000 media chunks: 16 MB once built), so it is built without a
//! copy of any id: chunks are found by id through a table of their positions in the
//! snapshot's own chunk lists, and each pack's lists are sized once. Planned through a set
//! of the ids beside their locations, the large store's restore reached its heap's peak
//! (55 MiB) before it read a pack; planned this way the peak is in the database phase,
//! packs and plans together, 8 MiB lower (DESIGN §9, memory).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use hashbrown::HashTable;
use sealback_repo::ChunkId;
use sealback_repo::pack::{BlobKind, Compression, PackEntry};

use super::{Job, Locations};
use crate::engine::EngineError;

/// One place a chunk goes: the blob (its position in its pack's plan), the file (its job)
/// and the offset there.
pub(super) struct Place {
    pub(super) blob: u32,
    pub(super) job: u32,
    pub(super) offset: u64,
}

/// One pack to read: the blobs needed from it, each once and in the pack's order, and
/// their places, the places of one blob following each other. A plan holds everything its
/// pack's restore needs, so that the database's plans are freed once its packs are
/// restored, before the media's begin.
pub(super) struct PackPlan {
    pub(super) pack: Arc<str>,
    pub(super) blobs: Vec<PackEntry>,
    pub(super) places: Vec<Place>,
}

/// The distinct chunks of the lists, each numbered by its first appearance and found by id
/// without a copy of it: the table holds positions in the lists, read through `starts`.
struct Distinct<'l> {
    lists: &'l [&'l [ChunkId]],
    /// Where each list starts in the lists laid end to end.
    starts: Vec<u64>,
    /// For each distinct chunk, its number; its first position is `firsts[number]`.
    table: HashTable<u32>,
    firsts: Vec<u64>,
}

impl<'l> Distinct<'l> {
    fn of(lists: &'l [&'l [ChunkId]]) -> Distinct<'l> {
        let mut starts = Vec::with_capacity(lists.len());
        let mut total = 0u64;
        for list in lists {
            starts.push(total);
            total += list.len() as u64;
        }
        let mut distinct = Distinct {
            lists,
            starts,
            // Sized for every place at once: growing, the table briefly holds two copies.
            table: HashTable::with_capacity(total as usize),
            firsts: Vec::new(),
        };
        for (at, id) in (0u64..).zip(lists.iter().copied().flatten()) {
            if distinct.number(id).is_none() {
                let number = distinct.firsts.len() as u32;
                distinct.firsts.push(at);
                let (lists, starts, firsts) = (distinct.lists, &distinct.starts, &distinct.firsts);
                distinct.table.insert_unique(id.table_hash(), number, |&n| {
                    id_at(lists, starts, firsts[n as usize]).table_hash()
                });
            }
        }
        distinct
    }

    fn len(&self) -> usize {
        self.firsts.len()
    }

    /// The number of chunk `id`, if the lists have it.
    fn number(&self, id: &ChunkId) -> Option<u32> {
        self.table
            .find(id.table_hash(), |&n| self.id(n) == id)
            .copied()
    }

    fn id(&self, number: u32) -> &ChunkId {
        id_at(self.lists, &self.starts, self.firsts[number as usize])
    }
}

/// The id at position `at` of the lists laid end to end.
fn id_at<'l>(lists: &[&'l [ChunkId]], starts: &[u64], at: u64) -> &'l ChunkId {
    let list = starts.partition_point(|&s| s <= at) - 1;
    &lists[list][(at - starts[list]) as usize]
}

/// Where every chunk of `jobs` (in `chunk_lists`, one list per job) comes from: each blob
/// once, located in one pass over the catalog (the repository's indexes for any it has
/// forgotten), and per pack the places of its blobs in the pack's order. Each job learns
/// how many chunks it waits for, and a file whose chunks do not add up to its size fails.
pub(super) fn plan(
    locations: &Locations<'_>,
    jobs: &[Job<'_>],
    chunk_lists: &[&[ChunkId]],
) -> Result<Vec<PackPlan>, EngineError> {
    let distinct = Distinct::of(chunk_lists);
    // Where each distinct chunk is, by its number: one pass over the catalog.
    let mut packs: Vec<Arc<str>> = Vec::new();
    let mut pack_at: HashMap<Arc<str>, u32> = HashMap::new();
    let mut spot = |pack: &Arc<str>, entry: &PackEntry| Spot {
        pack: *pack_at.entry(pack.clone()).or_insert_with(|| {
            packs.push(pack.clone());
            (packs.len() - 1) as u32
        }),
        kind: entry.kind,
        compression: entry.compression,
        offset: entry.offset,
        length: entry.length,
        raw_length: entry.raw_length,
    };
    let mut spots = vec![Spot::NOWHERE; distinct.len()];
    locations.catalog.for_each_blob(|pack, entry| {
        if let Some(number) = distinct.number(&entry.id) {
            spots[number as usize] = spot(pack, &entry);
        }
    })?;
    // Blobs the catalog forgot: the indexes name their packs, or the restore fails here.
    for (number, slot) in spots.iter_mut().enumerate() {
        if slot.pack == u32::MAX {
            let (pack, entry) = locations.find(distinct.id(number as u32))?;
            *slot = spot(&pack, &entry);
        }
    }
    // Each pack's blobs in the pack's order, in a list of its own sized once; `located`
    // says where each distinct chunk went (its plan, its position there).
    let mut order: Vec<u32> = (0..distinct.len() as u32).collect();
    order.sort_unstable_by_key(|&n| (spots[n as usize].pack, spots[n as usize].offset));
    let mut plans: Vec<PackPlan> = packs
        .into_iter()
        .map(|pack| PackPlan {
            pack,
            blobs: Vec::new(),
            places: Vec::new(),
        })
        .collect();
    let mut counts = vec![0usize; plans.len()];
    for spot in &spots {
        counts[spot.pack as usize] += 1;
    }
    for (plan, &count) in plans.iter_mut().zip(&counts) {
        plan.blobs.reserve_exact(count);
    }
    let mut located = vec![(0u32, 0u32); distinct.len()];
    for &number in &order {
        let spot = spots[number as usize];
        let blobs = &mut plans[spot.pack as usize].blobs;
        located[number as usize] = (spot.pack, blobs.len() as u32);
        blobs.push(spot.entry(*distinct.id(number)));
    }
    drop((order, spots));
    // The places, each pack's list sized once too.
    counts.fill(0);
    for id in chunk_lists.iter().copied().flatten() {
        if let Some(number) = distinct.number(id) {
            counts[located[number as usize].0 as usize] += 1;
        }
    }
    for (plan, &count) in plans.iter_mut().zip(&counts) {
        plan.places.reserve_exact(count);
    }
    for (index, (job, chunks)) in jobs.iter().zip(chunk_lists).enumerate() {
        let mut offset = 0u64;
        for id in *chunks {
            let Some(number) = distinct.number(id) else {
                return Err(sealback_repo::Error::MissingBlob {
                    chunk: id.to_string(),
                }
                .into());
            };
            let (at, blob) = located[number as usize];
            let plan = &mut plans[at as usize];
            plan.places.push(Place {
                blob,
                job: index as u32,
                offset,
            });
            offset += u64::from(plan.blobs[blob as usize].raw_length);
        }
        // A patched database's image is checked against its first patch instead.
        if !job.patched && offset != job.size {
            return Err(EngineError::SizeMismatch {
                path: job.shown.to_owned(),
                expected: job.size,
                found: offset,
            });
        }
        job.remaining.store(chunks.len(), Ordering::Relaxed);
    }
    drop((located, distinct));
    plans.iter_mut().for_each(by_blob);
    plans.sort_by(|a, b| a.pack.cmp(&b.pack));
    Ok(plans)
}

/// Where a blob is: its pack (by position in the plan's list) and its entry there but
/// the id.
#[derive(Clone, Copy)]
struct Spot {
    pack: u32,
    kind: BlobKind,
    compression: Compression,
    offset: u32,
    length: u32,
    raw_length: u32,
}

impl Spot {
    /// Not located yet.
    const NOWHERE: Spot = Spot {
        pack: u32::MAX,
        kind: BlobKind::Data,
        compression: Compression::None,
        offset: 0,
        length: 0,
        raw_length: 0,
    };

    fn entry(&self, id: ChunkId) -> PackEntry {
        PackEntry {
            id,
            kind: self.kind,
            compression: self.compression,
            offset: self.offset,
            length: self.length,
            raw_length: self.raw_length,
        }
    }
}

/// Orders a plan's places by blob (the blobs are in the pack's order), so that the pack is
/// read front to back and each blob decrypted once.
fn by_blob(plan: &mut PackPlan) {
    plan.places
        .sort_unstable_by_key(|p| (p.blob, p.job, p.offset));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_distinct_chunk_is_numbered_once_in_order_of_first_place_across_lists() {
        // `b` and `c` share the bytes the table hashes: told apart by the whole id.
        let id = |first: u8, last: u8| {
            let mut bytes = [first; 32];
            bytes[31] = last;
            ChunkId(bytes)
        };
        let (a, b, c, d, absent) = (id(1, 1), id(2, 2), id(2, 3), id(4, 4), id(2, 9));
        let (first, second, third) = ([a, b, a], [c, b], [d, d]);
        let lists: Vec<&[ChunkId]> = vec![&first, &[], &second, &third];
        let distinct = Distinct::of(&lists);
        assert_eq!(distinct.len(), 4);
        for (number, chunk) in [a, b, c, d].iter().enumerate() {
            assert_eq!(distinct.number(chunk), Some(number as u32));
            assert_eq!(distinct.id(number as u32), chunk);
        }
        assert_eq!(distinct.number(&absent), None);
        assert_eq!(Distinct::of(&[]).len(), 0);
    }
}
