//! What one prune run knows of the target: the listings taken at its start, the manifests,
//! indexes and markers it read then, and what the kept snapshots need. A pass of the run
//! updates it with what the pass itself wrote and deleted, so that the next pass of the same
//! run decides from it without listing or reading anything again.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::marker::{self, MARKER_PREFIX, Marker};
use super::{PruneInput, PruneReport, cannot_prune, forgotten, usage};
use crate::chunk::ChunkId;
use crate::error::Result;
use crate::index::IndexedPack;
use crate::pack::PackEntry;
use crate::repository::Repository;
use crate::snapshot::Snapshot;

pub(super) struct Known {
    /// Every pack present, and its size.
    pub packs: HashMap<String, u64>,
    /// Every index, in name order, with the packs it names.
    pub indexes: Vec<(String, Vec<IndexedPack>)>,
    /// Every marker, in name order.
    pub markers: Vec<(String, Marker)>,
    /// The records of forgotten snapshots (DESIGN §12.6).
    pub records: Vec<String>,
    /// The snapshots the run deletes, sorted, each with whether its manifest is whole
    /// (relative ones go first); emptied once they are gone.
    pub forgotten: Vec<(String, bool)>,
    /// Every chunk a kept snapshot needs, list contents included.
    pub used: HashSet<ChunkId>,
}

/// Lists the target (markers, packs, indexes, snapshots, in the order DESIGN §12.3 needs),
/// reads every kept manifest, every index and every marker (a damaged one stops the run:
/// it may name packs that look like garbage without it) and the kept database images' list
/// blobs. Fills the report's "before" figures and its kept snapshots.
pub(super) fn read(
    repo: &Repository,
    input: &mut PruneInput<'_>,
    report: &mut PruneReport,
) -> Result<Known> {
    let store = repo.store();
    let listed_markers = store.list(MARKER_PREFIX)?;
    let packs: HashMap<String, u64> = store.list("data/")?.into_iter().collect();
    let listed_indexes = store.list("index/")?;
    let snapshots = store.list("snapshots/")?;
    let records = store.list(forgotten::FORGOTTEN_PREFIX)?;
    let config = store.list("config")?;
    let sizes = packs.values().chain(
        [
            &listed_markers,
            &listed_indexes,
            &snapshots,
            &records,
            &config,
        ]
        .into_iter()
        .flatten()
        .map(|(_, s)| s),
    );
    (report.objects_before, report.bytes_before) = sizes.fold((0, 0), |(n, b), s| (n + 1, b + s));
    report.indexes_before = listed_indexes.len() as u64;

    // The snapshots kept, and the forgotten ones that stay as a kept one's base.
    let mut forget: HashSet<&str> = input.forget.iter().map(String::as_str).collect();
    let mut kept: Vec<(String, Snapshot)> = Vec::new();
    let mut bases: Vec<String> = Vec::new();
    for (name, _) in &snapshots {
        if forget.contains(name.as_str()) {
            continue;
        }
        let (manifest, snapshot) = repo.read_manifest(name).map_err(cannot_prune)?;
        if let Some(base) = manifest.base {
            bases.push(format!("snapshots/{base}"));
        }
        kept.push((name.clone(), snapshot));
    }
    for base in bases {
        if forget.remove(base.as_str()) {
            let snapshot = repo.read_snapshot(&base).map_err(cannot_prune)?;
            kept.push((base.clone(), snapshot));
            report.snapshots_kept_as_base.push(base);
        }
    }
    report.snapshots_kept = kept.len() as u64;
    report.snapshots_kept_as_base.sort();
    let mut forgotten: Vec<(String, bool)> = Vec::new();
    for (name, _) in snapshots
        .iter()
        .filter(|(n, _)| forget.contains(n.as_str()))
    {
        // Read only to order the deletions; one that does not read goes last.
        let whole = input.dry_run
            || repo
                .read_manifest(name)
                .is_ok_and(|(manifest, _)| manifest.base.is_none());
        forgotten.push((name.clone(), whole));
    }
    forgotten.sort();

    let mut indexes = Vec::new();
    for (name, _) in &listed_indexes {
        let packs = repo.read_index(name).map_err(cannot_prune)?.packs;
        indexes.push((name.clone(), packs));
    }
    // When this device first saw each indexed pack, by its own clock. A pack that left
    // every index (marked) starts again if it comes back (recovered).
    let indexed: HashSet<&str> = indexes
        .iter()
        .flat_map(|(_, packs)| packs.iter().map(|p| p.name.as_str()))
        .collect();
    input
        .indexed_seen
        .retain(|name, _| indexed.contains(name.as_str()));
    for name in indexed {
        input
            .indexed_seen
            .entry(name.to_owned())
            .or_insert(input.now_unix_ms);
    }
    let mut markers = Vec::new();
    for (name, _) in &listed_markers {
        markers.push((
            name.clone(),
            marker::read(repo, name).map_err(cannot_prune)?,
        ));
    }
    let records: Vec<String> = records.into_iter().map(|(n, _)| n).collect();
    // When this device first saw each marker and record, by its own clock.
    for name in listed_markers.iter().map(|(n, _)| n).chain(&records) {
        input.seen.entry(name.clone()).or_insert(input.now_unix_ms);
    }
    input
        .seen
        .retain(|name, _| markers.iter().any(|(n, _)| n == name) || records.contains(name));

    let mut known = Known {
        packs,
        indexes,
        markers,
        records,
        forgotten,
        used: HashSet::new(),
    };
    known.used = usage::used_ids(repo, &kept, &known.locate())?;
    Ok(known)
}

impl Known {
    /// Each index's packs by name; the first index naming a pack gives its entries.
    pub fn indexed(&self) -> BTreeMap<String, Vec<PackEntry>> {
        let mut indexed: BTreeMap<String, Vec<PackEntry>> = BTreeMap::new();
        for (_, packs) in &self.indexes {
            for pack in packs {
                indexed
                    .entry(pack.name.clone())
                    .or_insert_with(|| pack.entries.clone());
            }
        }
        indexed
    }

    /// The packs present that markers list and no index names, with the entries the
    /// markers give (none for orphans).
    pub fn marked(
        &self,
        indexed: &BTreeMap<String, Vec<PackEntry>>,
    ) -> BTreeMap<String, Vec<PackEntry>> {
        let mut marked: BTreeMap<String, Vec<PackEntry>> = BTreeMap::new();
        for (_, m) in &self.markers {
            for p in &m.packs {
                if self.packs.contains_key(&p.name) && !indexed.contains_key(&p.name) {
                    marked.entry(p.name.clone()).or_default().extend(&p.entries);
                }
            }
        }
        marked
    }

    /// Where each blob is: indexed packs first, then marked ones still present.
    fn locate(&self) -> HashMap<ChunkId, (String, PackEntry)> {
        let indexed = self.indexed();
        let marked = self.marked(&indexed);
        let mut locate: HashMap<ChunkId, (String, PackEntry)> = HashMap::new();
        for (pack, entries) in indexed.iter().chain(&marked) {
            for e in entries {
                locate.entry(e.id).or_insert_with(|| (pack.clone(), *e));
            }
        }
        locate
    }

    /// The indexed packs this device first saw named by an index at least half the grace
    /// period ago: only those may be dropped or rewritten (DESIGN §12.2).
    pub fn settled(&self, input: &PruneInput<'_>) -> HashSet<String> {
        let mut settled = HashSet::new();
        for pack in self.indexes.iter().flat_map(|(_, packs)| packs) {
            if input
                .indexed_seen
                .get(&pack.name)
                .is_some_and(|at| input.now_unix_ms - at >= input.grace_ms / 2)
            {
                settled.insert(pack.name.clone());
            }
        }
        settled
    }
}
