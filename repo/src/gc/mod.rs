//! Garbage collection without locks: forgetting snapshots, and reclaiming the packs and
//! indexes nothing kept needs, safely beside backups from any number of devices and other
//! prunes (DESIGN §12 has the argument).
//!
//! A [`prune`] run lists the target and reads what it needs once ([`state`]), then makes
//! passes ([`pass`]) over what it knows, each doing both phases of two:
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
//! A pack is *settled*, and may be marked, once this device has seen it named by an index
//! (any index, whoever wrote it) for half the grace period. A pass after the first acts
//! only on what an earlier pass of the run wrote: the packs it wrote become settled, and
//! its marker ripe, only once half the grace period (the whole of it) has passed, so with
//! the real grace period the second pass changes nothing and the run ends; with a grace
//! period of 0 (one device, the benchmark) one run marks and sweeps.
//!
//! A whole repository generation retired after a key rotation goes through the same grace
//! period, marked as a whole (`crate::generation::mark_retiring`, DESIGN §3.11).

pub mod forgotten;
mod locate;
pub mod marker;
mod pass;
mod repack;
mod state;
#[cfg(test)]
mod tests;
mod usage;

use std::collections::BTreeMap;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::index::IndexedPack;
use crate::pack::TARGET_PACK_BYTES;
use crate::repository::Repository;
pub use locate::{BlobMap, locate, markers};
use marker::MARKER_PREFIX;

/// How long a marked pack waits before it is deleted: longer than any backup or prune
/// runs (each refuses to finish past half of it, see [`too_long`]).
pub const GRACE_MS: i64 = 24 * 3600 * 1000;

/// Entries per merged index object (3 MB sealed).
const INDEX_ENTRIES: usize = 65_536;

/// A pack is rewritten once more than this fraction (1/n) of its bytes is garbage.
const GARBAGE_DIVISOR: u64 = 5;

/// A record of forgotten snapshots is deleted once this device has seen it listed this
/// long (30 days): by then every device that syncs at least that often has read it (see
/// [`forgotten`]).
pub const FORGOTTEN_RECORD_MS: i64 = 30 * 24 * 3600 * 1000;

/// The most passes one run makes (merge, mark, sweep, and one that finds nothing to do).
const MAX_PASSES: u32 = 5;

/// Packs below this size are merged into full ones (when there are at least two).
pub const SMALL_PACK_BYTES: u64 = (TARGET_PACK_BYTES / 4) as u64;

pub struct PruneInput<'a> {
    /// Snapshot objects to delete (`snapshots/<64 hex>`): what the retention policy forgets.
    pub forget: &'a [String],
    pub now_unix_ms: i64,
    pub grace_ms: i64,
    /// When this device first saw each marker and record of forgotten snapshots, by its
    /// own clock: updated by the run.
    pub seen: &'a mut BTreeMap<String, i64>,
    /// When this device first saw each pack named by an index, by its own clock: updated
    /// by the run. Only packs indexed for half the grace period on this clock are
    /// *settled*, that is, may be dropped or rewritten (DESIGN §12.2). Kept per pack, not
    /// per index, so that another device's prune merging the indexes does not start the
    /// wait again.
    pub indexed_seen: &'a mut BTreeMap<String, i64>,
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
    /// Records of forgotten snapshots deleted ([`FORGOTTEN_RECORD_MS`]).
    #[serde(default)]
    pub records_deleted: u64,
    /// Passes the run made over what it read (DESIGN §12.1).
    #[serde(default)]
    pub passes: u64,
    pub objects_after: u64,
    pub bytes_after: u64,
}

/// Whether a run that began at `started` has gone on too long to write what it decided:
/// past half the grace period, a pack it counts on may be swept (DESIGN §12.4).
/// A grace period of 0 (the benchmark's, one device) turns the check off.
pub fn too_long(started: Instant, grace_ms: i64) -> bool {
    grace_ms > 0 && started.elapsed().as_millis() as i64 > grace_ms / 2
}

/// Prunes the target: lists and reads it once ([`state::read`]), then runs passes over what
/// it knows until one changes nothing (see the module's documentation). A dry run makes one
/// pass and writes nothing.
pub fn prune(repo: &Repository, mut input: PruneInput<'_>) -> Result<PruneReport> {
    let started = Instant::now();
    let mut report = PruneReport {
        dry_run: input.dry_run,
        ..PruneReport::default()
    };
    let mut known = state::read(repo, &mut input, &mut report)?;
    for _ in 0..MAX_PASSES {
        report.passes += 1;
        let changed = pass::run(repo, &mut known, &mut input, &mut report, started)?;
        if !changed || input.dry_run {
            break;
        }
    }
    if !input.dry_run {
        let store = repo.store();
        let mut sizes = Vec::new();
        for prefix in [
            MARKER_PREFIX,
            "data/",
            "index/",
            "snapshots/",
            forgotten::FORGOTTEN_PREFIX,
            "config",
        ] {
            sizes.extend(store.list(prefix)?.into_iter().map(|(_, s)| s));
        }
        report.objects_after = sizes.len() as u64;
        report.bytes_after = sizes.iter().sum();
    }
    Ok(report)
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
