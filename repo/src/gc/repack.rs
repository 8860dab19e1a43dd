//! Which packs a prune keeps, rewrites or drops, and the rewriting: the needed blobs of
//! packs mostly garbage, and of small packs, copied into full packs.

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::chunk::ChunkId;
use crate::error::Result;
use crate::pack::{BlobScratch, Compression, PackEntry, PackReader, PackWriter};
use crate::repository::Repository;

use super::{GARBAGE_DIVISOR, SMALL_PACK_BYTES};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// Stays in the index as it is.
    Keep,
    /// Its needed blobs are copied into new packs; then it is marked.
    Rewrite,
    /// Holds nothing needed: marked.
    Drop,
    /// An index names it but the target does not hold it: left out of the index.
    Gone,
}

pub struct Plan {
    fates: HashMap<String, Fate>,
    /// The packs to rewrite, in name order.
    pub rewrite: Vec<String>,
    /// The one pack each needed blob is taken from.
    chosen: HashMap<ChunkId, String>,
    pub gone: usize,
}

impl Plan {
    pub fn fate(&self, pack: &str) -> Fate {
        self.fates.get(pack).copied().unwrap_or(Fate::Drop)
    }

    fn copied<'a>(
        &'a self,
        pack: &'a str,
        entries: &'a [PackEntry],
    ) -> impl Iterator<Item = &'a PackEntry> + 'a {
        entries
            .iter()
            .filter(move |e| self.chosen.get(&e.id).map(String::as_str) == Some(pack))
    }

    /// The blob bytes the rewrite copies.
    pub fn needed_bytes(&self, all: &BTreeMap<String, Vec<PackEntry>>) -> u64 {
        self.rewrite
            .iter()
            .flat_map(|p| self.copied(p, &all[p]))
            .map(|e| u64::from(e.length))
            .sum()
    }
}

/// Decides each pack's fate. Each needed blob is counted in one pack only, the largest
/// holding it, so a blob stored twice makes the smaller copy garbage.
pub fn classify(
    all: &BTreeMap<String, Vec<PackEntry>>,
    sizes: &HashMap<String, u64>,
    used: &HashSet<ChunkId>,
    settled: &HashSet<String>,
) -> Plan {
    let mut order: Vec<(&String, u64)> = all
        .keys()
        .filter_map(|p| sizes.get(p).map(|s| (p, *s)))
        .collect();
    order.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let mut chosen: HashMap<ChunkId, String> = HashMap::new();
    let mut used_bytes: HashMap<&str, u64> = HashMap::new();
    for (pack, _) in &order {
        for e in &all[*pack] {
            if used.contains(&e.id) && !chosen.contains_key(&e.id) {
                chosen.insert(e.id, (*pack).clone());
                *used_bytes.entry(pack.as_str()).or_default() += u64::from(e.length);
            }
        }
    }
    let mut fates = HashMap::new();
    let mut small = Vec::new();
    let mut rewrite = Vec::new();
    let mut gone = 0;
    for pack in all.keys() {
        let Some(&size) = sizes.get(pack) else {
            fates.insert(pack.clone(), Fate::Gone);
            gone += 1;
            continue;
        };
        let needed = used_bytes.get(pack.as_str()).copied().unwrap_or(0);
        // A pack not yet settled may hold what a backup still running will name.
        let fate = if !settled.contains(pack) {
            Fate::Keep
        } else if needed == 0 {
            Fate::Drop
        } else if size.saturating_sub(needed) * GARBAGE_DIVISOR > size {
            rewrite.push(pack.clone());
            Fate::Rewrite
        } else {
            if size < SMALL_PACK_BYTES {
                small.push(pack.clone());
            }
            Fate::Keep
        };
        fates.insert(pack.clone(), fate);
    }
    // Small packs are merged when there are two, or something else is rewritten anyway.
    if small.len() >= 2 || (!rewrite.is_empty() && !small.is_empty()) {
        for pack in small {
            fates.insert(pack.clone(), Fate::Rewrite);
            rewrite.push(pack);
        }
    }
    rewrite.sort();
    Plan {
        fates,
        rewrite,
        chosen,
        gone,
    }
}

/// Copies the needed blobs of the packs to rewrite into new packs; returns each new pack's
/// name, size and entries.
pub fn rewrite(
    repo: &Repository,
    plan: &Plan,
    all: &BTreeMap<String, Vec<PackEntry>>,
    used: &HashSet<ChunkId>,
    change: &dyn Fn(&str),
) -> Result<Vec<(String, u64, Vec<PackEntry>)>> {
    let mut written = Vec::new();
    let mut writer = PackWriter::new(repo.keys());
    let mut scratch = BlobScratch::default();
    let store = |writer: PackWriter, written: &mut Vec<_>| -> Result<()> {
        change("pack");
        let stored = repo.write_pack(writer.finish())?;
        written.push((stored.name, stored.size, stored.entries));
        Ok(())
    };
    for pack in &plan.rewrite {
        let bytes = repo.read_pack(pack)?;
        let reader = PackReader::new(repo.keys(), pack, &bytes)?;
        for entry in plan.copied(pack, &all[pack]) {
            debug_assert!(used.contains(&entry.id));
            let plain = reader.blob_in(entry, &mut scratch)?;
            if !writer.has_room_for(plain.len()) {
                let full = std::mem::replace(&mut writer, PackWriter::new(repo.keys()));
                store(full, &mut written)?;
            }
            writer.add(
                entry.kind,
                entry.id,
                plain,
                entry.compression == Compression::Zstd,
            );
        }
    }
    if !writer.is_empty() {
        store(writer, &mut written)?;
    }
    Ok(written)
}
