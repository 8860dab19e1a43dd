//! Checking a whole repository: every snapshot, index and pack is read and authenticated,
//! every blob decrypted and checked against its id, and every chunk a snapshot needs is
//! found in a pack. What `sealbackctl verify` runs.

use std::collections::{HashMap, HashSet};

use sealback_repo::chunk::decode_list;
use sealback_repo::pack::{BlobKind, BlobScratch, PackEntry, PackReader};
use sealback_repo::{ChunkId, Repository};

use crate::control::api::VerifyReport;

pub fn run(
    repo: &Repository,
    target: &str,
    progress: &(dyn Fn(u64, u64) + Sync),
) -> Result<VerifyReport, sealback_repo::Error> {
    let mut report = VerifyReport {
        target: target.to_owned(),
        ..VerifyReport::default()
    };
    let mut located: HashMap<String, Vec<PackEntry>> = HashMap::new();
    for name in repo.list_indexes()? {
        report.indexes += 1;
        match repo.read_index(&name) {
            Ok(index) => {
                for pack in index.packs {
                    located.entry(pack.name).or_default().extend(pack.entries);
                }
            }
            Err(e) => report.problems.push(e.to_string()),
        }
    }
    let present: HashMap<String, u64> = repo.store().list("data/")?.into_iter().collect();
    // Packs a prune marked are out of the index but still read by restores until their
    // sweep (DESIGN §12.2): a snapshot a backup wrote meanwhile may need them.
    for (_, marker) in sealback_repo::gc::markers(repo)? {
        for pack in marker.packs {
            if present.contains_key(&pack.name) && !located.contains_key(&pack.name) {
                located.insert(pack.name, pack.entries);
            }
        }
    }
    let total: u64 = present.values().sum();
    let mut good: HashSet<ChunkId> = HashSet::new();
    let mut lists: HashMap<ChunkId, Vec<ChunkId>> = HashMap::new();
    let mut packs: Vec<_> = located.into_iter().collect();
    packs.sort_by(|a, b| a.0.cmp(&b.0));
    for (pack, entries) in packs {
        if !present.contains_key(&pack) {
            report.problems.push(format!(
                "pack {pack} is named by an index but missing from the target"
            ));
            continue;
        }
        report.packs += 1;
        let bytes = match repo.read_pack(&pack) {
            Ok(b) => b,
            Err(e) => {
                report.problems.push(e.to_string());
                continue;
            }
        };
        report.bytes_read += bytes.len() as u64;
        progress(report.bytes_read, total);
        let reader = match PackReader::new(repo.keys(), &pack, &bytes) {
            Ok(r) => r,
            Err(e) => {
                report.problems.push(e.to_string());
                continue;
            }
        };
        if let Err(e) = reader.table() {
            report.problems.push(e.to_string());
        }
        let mut scratch = BlobScratch::default();
        for entry in entries {
            report.blobs += 1;
            match reader.blob_in(&entry, &mut scratch) {
                Ok(plain) => {
                    if entry.kind == BlobKind::List
                        && let Some(ids) = decode_list(plain)
                    {
                        lists.insert(entry.id, ids);
                    }
                    good.insert(entry.id);
                }
                Err(e) => report.problems.push(e.to_string()),
            }
        }
    }
    for name in repo.list_snapshots()? {
        report.snapshots += 1;
        let snapshot = match repo.read_snapshot(&name) {
            Ok(s) => s,
            Err(e) => {
                report.problems.push(e.to_string());
                continue;
            }
        };
        let mut needed: Vec<(String, ChunkId)> = Vec::new();
        if let Some(db) = &snapshot.database {
            needed.extend(db.patches.iter().map(|p| (db.path.clone(), *p)));
            for list in &db.lists {
                needed.push((db.path.clone(), *list));
                needed.extend(
                    lists
                        .get(list)
                        .into_iter()
                        .flatten()
                        .map(|c| (db.path.clone(), *c)),
                );
            }
        }
        for file in &snapshot.files {
            needed.extend(file.chunks.iter().map(|c| (file.path.clone(), *c)));
        }
        let missing: Vec<_> = needed.iter().filter(|(_, c)| !good.contains(c)).collect();
        if let Some((path, chunk)) = missing.first() {
            report.problems.push(format!(
                "snapshot {} cannot be fully restored: {} chunk(s) missing or damaged, first {} of {path}",
                name.trim_start_matches("snapshots/"),
                missing.len(),
                chunk.short()
            ));
        }
    }
    Ok(report)
}
