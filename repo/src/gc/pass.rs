//! One pass of a prune over what the run knows ([`Known`]): recovery, sweep and mark as
//! DESIGN §12.1 lists them, then the writes, in the order that keeps every kept snapshot
//! restorable at every instant. A pass updates [`Known`] with what it wrote and deleted.

use std::collections::{BTreeMap, HashSet};
use std::time::Instant;

use super::marker::{self, Marker};
use super::state::Known;
use super::{
    FORGOTTEN_RECORD_MS, INDEX_ENTRIES, PruneInput, PruneReport, forgotten, ran_too_long, repack,
    split, too_long,
};
use crate::chunk::ChunkId;
use crate::error::{Error, Result};
use crate::index::{Index, IndexedPack};
use crate::pack::{PackEntry, PackReader, TARGET_PACK_BYTES};
use crate::repository::Repository;

/// Runs one pass; returns whether it wrote or deleted anything (a dry run: whether it
/// would).
pub(super) fn run(
    repo: &Repository,
    known: &mut Known,
    input: &mut PruneInput<'_>,
    report: &mut PruneReport,
    started: Instant,
) -> Result<bool> {
    let before_change = input.before_change;
    let change = |what: &str| before_change(what);
    let indexed = known.indexed();
    let settled = known.settled(input);
    let marked_packs = known.marked(&indexed);
    let indexed_ids: HashSet<ChunkId> = indexed.values().flatten().map(|e| e.id).collect();

    // Marked packs holding a needed blob no index has go back in the index (a backup that
    // began before the mark used them); a marker's orphans are read for their tables only
    // when some needed blob is in no index at all.
    let missing: HashSet<ChunkId> = known.used.difference(&indexed_ids).copied().collect();
    let mut recovered: BTreeMap<String, Vec<PackEntry>> = BTreeMap::new();
    if !missing.is_empty() {
        for (pack, entries) in &marked_packs {
            let entries = if entries.is_empty() {
                let bytes = repo.read_pack(pack)?;
                PackReader::new(repo.keys(), pack, &bytes)?.table()?
            } else {
                entries.clone()
            };
            if entries.iter().any(|e| missing.contains(&e.id)) {
                recovered.insert(pack.clone(), entries);
            }
        }
    }
    report.packs_recovered += recovered.len() as u64;
    let mut still_missing = missing;
    for e in recovered.values().flatten() {
        still_missing.remove(&e.id);
    }
    if let Some(id) = still_missing.iter().next() {
        return Err(Error::malformed(
            "snapshots/",
            format!(
                "a kept snapshot needs chunk {} that no index or pack holds ({} such chunks): run `sealbackctl verify`; nothing was pruned",
                id.short(),
                still_missing.len()
            ),
        ));
    }

    // The sweep's decisions: ripe markers' packs that no index names and nobody needs.
    let first_seen = |name: &str| input.seen.get(name).copied().unwrap_or(input.now_unix_ms);
    let ripe = |name: &str, m: &Marker| {
        input.now_unix_ms - first_seen(name) >= input.grace_ms
            && input.now_unix_ms - m.written_unix_ms >= input.grace_ms
    };
    let mut doomed: BTreeMap<String, u64> = BTreeMap::new();
    let mut done_markers: Vec<String> = Vec::new();
    report.packs_pending = 0;
    report.bytes_pending = 0;
    for (name, m) in &known.markers {
        let pending = m.packs.iter().filter(|p| {
            known.packs.contains_key(&p.name)
                && !indexed.contains_key(&p.name)
                && !recovered.contains_key(&p.name)
        });
        if ripe(name, m) {
            doomed.extend(pending.map(|p| (p.name.clone(), known.packs[&p.name])));
            done_markers.push(name.clone());
        } else {
            for p in pending {
                report.packs_pending += 1;
                report.bytes_pending += known.packs[&p.name];
            }
        }
    }
    // Records of forgotten snapshots that every device syncing meanwhile has read.
    let old_records: Vec<String> = known
        .records
        .iter()
        .filter(|name| input.now_unix_ms - first_seen(name) >= FORGOTTEN_RECORD_MS)
        .cloned()
        .collect();

    // The mark: each indexed pack (recovered ones too) is kept, rewritten or marked.
    let mut all = indexed;
    all.extend(recovered.clone());
    let plan = repack::classify(&all, &known.packs, &known.used, &settled);
    let mut new_index: Vec<IndexedPack> = Vec::new();
    let mut new_marker: Vec<IndexedPack> = Vec::new();
    for (pack, entries) in &all {
        let pack = IndexedPack {
            name: pack.clone(),
            entries: entries.clone(),
        };
        match plan.fate(&pack.name) {
            repack::Fate::Keep => new_index.push(pack),
            repack::Fate::Gone => {}
            repack::Fate::Rewrite | repack::Fate::Drop => new_marker.push(pack),
        }
    }
    // Orphans: present, named by no index, no marker.
    let in_markers: HashSet<&str> = known
        .markers
        .iter()
        .flat_map(|(_, m)| m.packs.iter().map(|p| p.name.as_str()))
        .collect();
    let mut orphans: Vec<&String> = known
        .packs
        .keys()
        .filter(|p| !all.contains_key(*p) && !in_markers.contains(p.as_str()))
        .collect();
    orphans.sort();
    report.orphans_marked += orphans.len() as u64;
    new_marker.extend(orphans.into_iter().map(|name| IndexedPack {
        name: name.clone(),
        entries: Vec::new(),
    }));
    report.packs_marked += new_marker.len() as u64;
    report.bytes_marked += new_marker.iter().map(|p| known.packs[&p.name]).sum::<u64>();
    report.packs_rewritten += plan.rewrite.len() as u64;
    report.bytes_rewritten += plan.rewrite.iter().map(|p| known.packs[p]).sum::<u64>();
    report.packs_deleted += doomed.len() as u64;
    report.bytes_deleted += doomed.values().sum::<u64>();
    report.markers_deleted += done_markers.len() as u64;
    report.records_deleted += old_records.len() as u64;

    // Indexes are rewritten when the mark changed what they hold, or when there are more
    // than their entries need.
    let entries: usize = new_index.iter().map(|p| p.entries.len()).sum();
    let index_changes = !new_marker.is_empty()
        || !recovered.is_empty()
        || plan.gone > 0
        || known.indexes.len() > entries.div_ceil(INDEX_ENTRIES).max(1);
    let changes = index_changes
        || !doomed.is_empty()
        || !done_markers.is_empty()
        || !old_records.is_empty()
        || !known.forgotten.is_empty();
    if input.dry_run {
        report.snapshots_forgotten = known.forgotten.iter().map(|(n, _)| n.clone()).collect();
        let written = plan.needed_bytes(&all);
        report.packs_written = written.div_ceil(TARGET_PACK_BYTES as u64);
        report.bytes_written = written;
        report.objects_after = report.objects_before
            - report.snapshots_forgotten.len() as u64
            - report.packs_deleted
            - report.records_deleted
            + report.packs_written;
        report.bytes_after = report.bytes_before + written - report.bytes_deleted;
        return Ok(changes);
    }

    // Writes: forgotten snapshots go; new packs; the merged index; the marker; the old
    // indexes; the swept packs; their markers; old records.
    if !known.forgotten.is_empty() {
        // Written first: another device that finds them gone forgets them quietly.
        change("forgotten");
        let name = forgotten::write(
            repo,
            &forgotten::Forgotten {
                written_unix_ms: input.now_unix_ms,
                snapshots: known.forgotten.iter().map(|(n, _)| n.clone()).collect(),
            },
        )?;
        input.seen.insert(name.clone(), input.now_unix_ms);
        known.records.push(name);
        // Relative manifests before whole ones: a prune cut short never leaves a snapshot
        // whose base is gone.
        let mut relative_first: Vec<&(String, bool)> = known.forgotten.iter().collect();
        relative_first.sort_by_key(|(name, whole)| (*whole, name.clone()));
        for (name, _) in relative_first {
            change(name);
            repo.store().remove(name)?;
        }
        report.snapshots_forgotten = known.forgotten.drain(..).map(|(n, _)| n).collect();
    }
    let written = repack::rewrite(repo, &plan, &all, &known.used, &change)?;
    report.packs_written += written.len() as u64;
    report.bytes_written += written.iter().map(|(_, size, _)| size).sum::<u64>();
    for (name, size, entries) in written {
        known.packs.insert(name.clone(), size);
        new_index.push(IndexedPack { name, entries });
    }
    if too_long(started, input.grace_ms) {
        return Err(ran_too_long());
    }
    let mut indexes = Vec::new();
    if index_changes {
        for packs in split(new_index) {
            change("index");
            let (name, _) = repo.write_index(&Index {
                packs: packs.clone(),
            })?;
            for pack in &packs {
                input
                    .indexed_seen
                    .entry(pack.name.clone())
                    .or_insert(input.now_unix_ms);
            }
            report.indexes_written += 1;
            indexes.push((name, packs));
        }
    }
    if !new_marker.is_empty() {
        change("marker");
        let marker = Marker {
            written_unix_ms: input.now_unix_ms,
            packs: new_marker,
        };
        let (name, _) = marker::write(repo, &marker)?;
        for pack in &marker.packs {
            input.indexed_seen.remove(&pack.name);
        }
        input.seen.insert(name.clone(), input.now_unix_ms);
        known.markers.push((name, marker));
    }
    if index_changes {
        for (name, _) in std::mem::replace(&mut known.indexes, indexes) {
            change(&name);
            repo.store().remove(&name)?;
        }
    }
    for pack in doomed.keys() {
        change(pack);
        repo.store().remove(pack)?;
        known.packs.remove(pack);
    }
    for name in done_markers.iter().chain(&old_records) {
        change(name);
        repo.store().remove(name)?;
        input.seen.remove(name);
    }
    known.markers.retain(|(n, _)| !done_markers.contains(n));
    known.records.retain(|n| !old_records.contains(n));
    Ok(changes)
}
