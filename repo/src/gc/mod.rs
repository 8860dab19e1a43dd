//! Garbage collection without locks: forgetting snapshots, and reclaiming the packs and
//! indexes nothing kept needs, safely beside backups from any number of devices and other
//! prunes (DESIGN §12 has the argument).
//!
//! One [`prune`] run does both phases of two:
//! - **mark**: packs no kept snapshot needs (and packs no index names, which interrupted
//!   backups leave) are taken out of the index and listed in a marker object
//!   (`prune/<64 hex>`, [`marker`]) with the time; packs mostly garbage, and small packs
//!   many small backups leave, have their needed blobs copied into full packs first; all
//!   indexes are merged into as few as hold the entries.
//! - **sweep**: the packs of markers older than the grace period, by the writer's clock and
//!   by this device's (when it first saw the marker), are deleted if no index names them
//!   and no snapshot needs a blob only they hold; a pack a snapshot still needs is put back
//!   in the index instead (a backup that began before the mark used it).
//!
//! [`retire`] is the entry point for objects that are garbage as a whole (an old
//! repository generation after a key rotation): they go through the same marker and grace.

pub mod forgotten;
mod locate;
pub mod marker;
mod repack;
#[cfg(test)]
mod tests;
mod usage;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::chunk::ChunkId;
use crate::error::{Error, Result};
use crate::index::{Index, IndexedPack};
use crate::pack::{PackEntry, PackReader, TARGET_PACK_BYTES};
use crate::repository::Repository;
use crate::snapshot::Snapshot;
pub use locate::{BlobMap, locate, markers};
use marker::{MARKER_PREFIX, Marker};

/// How long a marked pack waits before it is deleted: longer than any backup or prune
/// runs (each refuses to finish past half of it, see [`too_long`]).
pub const GRACE_MS: i64 = 24 * 3600 * 1000;

/// Entries per merged index object (3 MB sealed).
const INDEX_ENTRIES: usize = 65_536;

/// A pack is rewritten once more than this fraction (1/n) of its bytes is garbage.
const GARBAGE_DIVISOR: u64 = 5;

/// Packs below this size are merged into full ones (when there are at least two).
pub const SMALL_PACK_BYTES: u64 = (TARGET_PACK_BYTES / 4) as u64;

pub struct PruneInput<'a> {
    /// Snapshot objects to delete (`snapshots/<64 hex>`): what the retention policy forgets.
    pub forget: &'a [String],
    pub now_unix_ms: i64,
    pub grace_ms: i64,
    /// When this device first saw each marker, by its own clock: updated by the run.
    pub seen: &'a mut BTreeMap<String, i64>,
    /// The indexes this device's prunes wrote, and when (its own clock): updated by the
    /// run. Only packs such an index has named for half the grace period are *settled*,
    /// that is, may be dropped or rewritten (DESIGN §12.2).
    pub own_indexes: &'a mut BTreeMap<String, i64>,
    pub dry_run: bool,
    /// Called before every object written or deleted, naming it (fault injection in tests).
    pub before_change: &'a (dyn Fn(&str) + Sync),
}

/// What a prune did (or, dry, would do).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PruneReport {
    pub dry_run: bool,
    /// Snapshots deleted.
    pub snapshots_forgotten: Vec<String>,
    /// Snapshots the policy forgets that stay as the base of a kept one's manifest.
    pub snapshots_kept_as_base: Vec<String>,
    pub snapshots_kept: u64,
    pub objects_before: u64,
    pub bytes_before: u64,
    /// Packs whose needed blobs were copied into new packs (then marked).
    pub packs_rewritten: u64,
    pub bytes_rewritten: u64,
    pub packs_written: u64,
    pub bytes_written: u64,
    /// Packs newly marked for deletion (taken out of the index), orphans included.
    pub packs_marked: u64,
    pub bytes_marked: u64,
    /// Of those, packs no index named (left by interrupted backups).
    pub orphans_marked: u64,
    /// Packs deleted (marked at least the grace period ago).
    pub packs_deleted: u64,
    pub bytes_deleted: u64,
    /// Marked packs a snapshot still needed, put back in the index.
    pub packs_recovered: u64,
    /// Marked packs still waiting for their grace period.
    pub packs_pending: u64,
    pub bytes_pending: u64,
    pub indexes_before: u64,
    pub indexes_written: u64,
    pub markers_deleted: u64,
    pub objects_after: u64,
    pub bytes_after: u64,
}

/// The listings a run starts from, in the order taken (see DESIGN §12.3).
struct Listed {
    markers: Vec<String>,
    packs: HashMap<String, u64>,
    indexes: Vec<(String, u64)>,
    snapshots: Vec<(String, u64)>,
    other: Vec<(String, u64)>,
}

fn list(repo: &Repository) -> Result<Listed> {
    let store = repo.store();
    let markers = store.list(MARKER_PREFIX)?;
    let packs = store.list("data/")?;
    let indexes = store.list("index/")?;
    let snapshots = store.list("snapshots/")?;
    let mut other = markers.clone();
    other.extend(store.list(forgotten::FORGOTTEN_PREFIX)?);
    other.extend(store.list("config")?);
    let mut markers: Vec<String> = markers.into_iter().map(|(n, _)| n).collect();
    markers.sort();
    Ok(Listed {
        markers,
        packs: packs.into_iter().collect(),
        indexes,
        snapshots,
        other,
    })
}

impl Listed {
    fn totals(&self) -> (u64, u64) {
        let sizes = self
            .packs
            .values()
            .chain(self.indexes.iter().map(|(_, s)| s))
            .chain(self.snapshots.iter().map(|(_, s)| s))
            .chain(self.other.iter().map(|(_, s)| s));
        sizes.fold((0, 0), |(n, b), s| (n + 1, b + s))
    }
}

/// Whether a run that began at `started` has gone on too long to write what it decided:
/// past half the grace period, a pack it counts on may be swept (DESIGN §12.4).
/// A grace period of 0 (the benchmark's, one device) turns the check off.
pub fn too_long(started: Instant, grace_ms: i64) -> bool {
    grace_ms > 0 && started.elapsed().as_millis() as i64 > grace_ms / 2
}

pub fn prune(repo: &Repository, input: PruneInput<'_>) -> Result<PruneReport> {
    let started = Instant::now();
    let listed = list(repo)?;
    let (objects_before, bytes_before) = listed.totals();
    let mut report = PruneReport {
        dry_run: input.dry_run,
        objects_before,
        bytes_before,
        indexes_before: listed.indexes.len() as u64,
        ..PruneReport::default()
    };
    let change = |what: &str| {
        (input.before_change)(what);
    };

    // The snapshots kept, and the forgotten ones that stay as a kept one's base.
    let mut forget: HashSet<&str> = input.forget.iter().map(String::as_str).collect();
    let mut kept: Vec<(String, Snapshot)> = Vec::new();
    let mut bases: Vec<String> = Vec::new();
    for (name, _) in &listed.snapshots {
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
    let mut forgotten: Vec<String> = listed
        .snapshots
        .iter()
        .map(|(n, _)| n.clone())
        .filter(|n| forget.contains(n.as_str()))
        .collect();
    forgotten.sort();
    report.snapshots_kept_as_base.sort();

    // Every index and marker, read whole: a damaged one stops the run (it may name packs
    // that look like garbage without it).
    let mut indexed: BTreeMap<String, Vec<PackEntry>> = BTreeMap::new();
    let mut settled: HashSet<String> = HashSet::new();
    input
        .own_indexes
        .retain(|name, _| listed.indexes.iter().any(|(n, _)| n == name));
    for (name, _) in &listed.indexes {
        let settled_index = input
            .own_indexes
            .get(name)
            .is_some_and(|at| input.now_unix_ms - at >= input.grace_ms / 2);
        for pack in repo.read_index(name).map_err(cannot_prune)?.packs {
            if settled_index {
                settled.insert(pack.name.clone());
            }
            let entries = indexed.entry(pack.name).or_default();
            if entries.is_empty() {
                *entries = pack.entries;
            }
        }
    }
    let mut markers: Vec<(String, Marker)> = Vec::new();
    for name in &listed.markers {
        markers.push((
            name.clone(),
            marker::read(repo, name).map_err(cannot_prune)?,
        ));
        input.seen.entry(name.clone()).or_insert(input.now_unix_ms);
    }
    input.seen.retain(|name, _| listed.markers.contains(name));

    // Where each blob is: indexed packs first, then marked ones still present.
    let mut locate: HashMap<ChunkId, (String, PackEntry)> = HashMap::new();
    for (pack, entries) in &indexed {
        for e in entries {
            locate.entry(e.id).or_insert_with(|| (pack.clone(), *e));
        }
    }
    let indexed_ids: HashSet<ChunkId> = locate.keys().copied().collect();
    let mut marked_packs: BTreeMap<String, Vec<PackEntry>> = BTreeMap::new();
    for (_, m) in &markers {
        for p in &m.packs {
            if listed.packs.contains_key(&p.name) && !indexed.contains_key(&p.name) {
                marked_packs
                    .entry(p.name.clone())
                    .or_default()
                    .extend(&p.entries);
            }
        }
    }
    for (pack, entries) in &marked_packs {
        for e in entries {
            locate.entry(e.id).or_insert_with(|| (pack.clone(), *e));
        }
    }
    let used = usage::used_ids(repo, &kept, &locate)?;

    // Marked packs holding a needed blob no index has go back in the index (a backup that
    // began before the mark used them); a marker's orphans are read for their tables only
    // when some needed blob is in no index at all.
    let missing: HashSet<ChunkId> = used.difference(&indexed_ids).copied().collect();
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
    report.packs_recovered = recovered.len() as u64;
    let mut still_missing = missing.clone();
    for entries in recovered.values() {
        for e in entries {
            still_missing.remove(&e.id);
        }
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
    let ripe = |name: &str, m: &Marker| {
        let first_seen = input.seen.get(name).copied().unwrap_or(input.now_unix_ms);
        input.now_unix_ms - first_seen >= input.grace_ms
            && input.now_unix_ms - m.written_unix_ms >= input.grace_ms
    };
    let mut doomed: BTreeMap<String, u64> = BTreeMap::new();
    let mut done_markers: Vec<String> = Vec::new();
    for (name, m) in &markers {
        let pending = m.packs.iter().filter(|p| {
            listed.packs.contains_key(&p.name)
                && !indexed.contains_key(&p.name)
                && !recovered.contains_key(&p.name)
        });
        if ripe(name, m) {
            doomed.extend(pending.map(|p| (p.name.clone(), listed.packs[&p.name])));
            done_markers.push(name.clone());
        } else {
            for p in pending {
                report.packs_pending += 1;
                report.bytes_pending += listed.packs[&p.name];
            }
        }
    }

    // The mark: each indexed pack (recovered ones too) is kept, rewritten or marked.
    let mut all: BTreeMap<String, Vec<PackEntry>> = indexed.clone();
    all.extend(recovered.clone());
    let plan = repack::classify(&all, &listed.packs, &used, &settled);
    let mut new_index: Vec<IndexedPack> = Vec::new();
    let mut new_marker: Vec<IndexedPack> = Vec::new();
    for (pack, entries) in &all {
        match plan.fate(pack) {
            repack::Fate::Keep => new_index.push(IndexedPack {
                name: pack.clone(),
                entries: entries.clone(),
            }),
            repack::Fate::Gone => {}
            repack::Fate::Rewrite | repack::Fate::Drop => {
                report.packs_marked += 1;
                report.bytes_marked += listed.packs[pack];
                new_marker.push(IndexedPack {
                    name: pack.clone(),
                    entries: entries.clone(),
                });
            }
        }
    }
    // Orphans: present, named by no index, no marker.
    let in_markers: HashSet<&str> = markers
        .iter()
        .flat_map(|(_, m)| m.packs.iter().map(|p| p.name.as_str()))
        .collect();
    let mut orphans: Vec<&String> = listed
        .packs
        .keys()
        .filter(|p| !all.contains_key(*p) && !in_markers.contains(p.as_str()))
        .collect();
    orphans.sort();
    for pack in orphans {
        report.orphans_marked += 1;
        report.packs_marked += 1;
        report.bytes_marked += listed.packs[pack];
        new_marker.push(IndexedPack {
            name: pack.clone(),
            entries: Vec::new(),
        });
    }
    report.packs_rewritten = plan.rewrite.len() as u64;
    report.bytes_rewritten = plan.rewrite.iter().map(|p| listed.packs[p]).sum();
    report.packs_deleted = doomed.len() as u64;
    report.bytes_deleted = doomed.values().sum();
    report.markers_deleted = done_markers.len() as u64;

    let index_changes = !new_marker.is_empty()
        || !recovered.is_empty()
        || listed.indexes.len() > 1
        || plan.gone > 0;
    if input.dry_run {
        report.snapshots_forgotten = forgotten;
        let written = plan.needed_bytes(&all);
        report.packs_written = written.div_ceil(TARGET_PACK_BYTES as u64);
        report.bytes_written = written;
        report.objects_after =
            objects_before - report.snapshots_forgotten.len() as u64 - report.packs_deleted
                + report.packs_written;
        report.bytes_after = bytes_before + written - report.bytes_deleted;
        return Ok(report);
    }

    // Writes, in the order that keeps every kept snapshot restorable at every instant:
    // forgotten snapshots go; new packs; the merged index; the marker; the old indexes;
    // the swept packs; their markers.
    // Relative manifests before whole ones: a prune cut short never leaves a snapshot
    // whose base is gone.
    let mut relative_first: Vec<(bool, &String)> = forgotten
        .iter()
        .map(|name| {
            let whole = repo
                .read_manifest(name)
                .is_ok_and(|(manifest, _)| manifest.base.is_none());
            (whole, name)
        })
        .collect();
    relative_first.sort();
    // Written first: another device that finds them gone forgets them quietly.
    if !forgotten.is_empty() {
        change("forgotten");
        forgotten::write(
            repo,
            &forgotten::Forgotten {
                written_unix_ms: input.now_unix_ms,
                snapshots: forgotten.clone(),
            },
        )?;
    }
    for (_, name) in relative_first {
        change(name);
        repo.store().remove(name)?;
    }
    report.snapshots_forgotten = forgotten;
    let written = repack::rewrite(repo, &plan, &all, &used, &change)?;
    report.packs_written = written.len() as u64;
    report.bytes_written = written.iter().map(|(_, size, _)| size).sum();
    new_index.extend(
        written
            .into_iter()
            .map(|(name, _, entries)| IndexedPack { name, entries }),
    );
    if too_long(started, input.grace_ms) {
        return Err(ran_too_long());
    }
    if index_changes {
        for packs in split(new_index) {
            change("index");
            let (name, _) = repo.write_index(&Index { packs })?;
            input.own_indexes.insert(name, input.now_unix_ms);
            report.indexes_written += 1;
        }
    }
    if !new_marker.is_empty() {
        change("marker");
        let (name, _) = marker::write(
            repo,
            &Marker {
                written_unix_ms: input.now_unix_ms,
                packs: new_marker,
            },
        )?;
        input.seen.insert(name, input.now_unix_ms);
    }
    if index_changes {
        for (name, _) in &listed.indexes {
            change(name);
            repo.store().remove(name)?;
        }
    }
    for pack in doomed.keys() {
        change(pack);
        repo.store().remove(pack)?;
    }
    for name in &done_markers {
        change(name);
        repo.store().remove(name)?;
        input.seen.remove(name);
    }
    let after = list(repo)?;
    (report.objects_after, report.bytes_after) = after.totals();
    Ok(report)
}

/// Marks packs that are garbage as a whole (those of a retired repository generation,
/// once its snapshots and indexes are gone): they are listed in a marker now and deleted by a
/// [`prune`] once the grace period has passed, so that a backup still running under the
/// old generation finishes first. Returns the marker's name.
pub fn retire(repo: &Repository, packs: Vec<String>, now_unix_ms: i64) -> Result<String> {
    if let Some(other) = packs.iter().find(|p| {
        p.strip_prefix("data/")
            .is_none_or(|id| ChunkId::from_hex(id).is_none())
    }) {
        return Err(Error::malformed(
            other,
            "only packs are retired this way: forget snapshots and remove indexes first",
        ));
    }
    let packs = packs
        .into_iter()
        .map(|name| IndexedPack {
            name,
            entries: Vec::new(),
        })
        .collect();
    Ok(marker::write(
        repo,
        &Marker {
            written_unix_ms: now_unix_ms,
            packs,
        },
    )?
    .0)
}

fn split(packs: Vec<IndexedPack>) -> Vec<Vec<IndexedPack>> {
    let mut out: Vec<Vec<IndexedPack>> = vec![Vec::new()];
    let mut entries = 0;
    for pack in packs {
        if entries + pack.entries.len() > INDEX_ENTRIES && entries > 0 {
            out.push(Vec::new());
            entries = 0;
        }
        entries += pack.entries.len();
        out.last_mut().expect("one").push(pack);
    }
    out.retain(|p| !p.is_empty());
    out
}

fn cannot_prune(e: Error) -> Error {
    if !e.is_integrity() {
        return e;
    }
    match e {
        Error::Malformed { name, detail } => Error::Malformed {
            name,
            detail: format!(
                "{detail}; nothing was pruned: `sealbackctl repair` removes objects a torn upload left"
            ),
        },
        other => other,
    }
}

fn ran_too_long() -> Error {
    Error::malformed(
        "prune",
        "the prune ran longer than half its grace period, so packs it counted on may have been deleted by another device's prune; it wrote nothing more: run it again",
    )
}
