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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use sealback_repo::BackupKey;
    use sealback_repo::gc::marker::{self, Marker};
    use sealback_repo::index::{Index, IndexedPack};
    use sealback_repo::pack::PackWriter;
    use sealback_repo::snapshot::{FileEntry, Manifest, SNAPSHOT_VERSION, Snapshot};

    use super::*;
    use crate::test_store::MemoryStore;

    /// A backup that began before a prune marked the only pack holding a chunk it reused:
    /// its snapshot verifies at once (the pack is out of the index, in the marker).
    #[test]
    fn a_snapshot_naming_a_marked_pack_verifies_before_any_recovery() {
        let store = Arc::new(MemoryStore::default());
        let key = BackupKey::from_bytes(&mut [3u8; 32]);
        let (repo, _) = Repository::open_or_init(store.clone(), &key, 0).expect("init");
        let data = b"a media file only the marked pack holds".to_vec();
        let id = repo.keys().chunk_id(&data);
        let mut pack = PackWriter::new(repo.keys());
        pack.add(BlobKind::Data, id, &data, true);
        let stored = repo.write_pack(pack.finish()).expect("pack");
        let indexed = IndexedPack {
            name: stored.name,
            entries: stored.entries,
        };
        let (index, _) = repo
            .write_index(&Index {
                packs: vec![indexed.clone()],
            })
            .expect("index");
        // The prune marks the pack and deletes the index naming it.
        marker::write(
            &repo,
            &Marker {
                written_unix_ms: 0,
                packs: vec![indexed],
            },
        )
        .expect("marker");
        repo.store().remove(&index).expect("remove");
        // The backup's snapshot comes after.
        let snapshot = Snapshot {
            version: SNAPSHOT_VERSION,
            time_unix_ms: 1,
            host: "phone".into(),
            parent: None,
            base: None,
            database: None,
            files: vec![FileEntry {
                path: "Media/a.jpg".into(),
                size: data.len() as u64,
                mtime_ns: 0,
                mode: 0o644,
                chunks: vec![id],
            }],
        };
        repo.write_snapshot(&Manifest::of(&snapshot, None))
            .expect("snapshot");
        let report = run(&repo, "t", &|_, _| {}).expect("verify");
        assert!(report.problems.is_empty(), "{:?}", report.problems);
        assert_eq!((report.packs, report.blobs), (1, 1));
        let found = sealback_repo::gc::locate(&repo).expect("locate");
        assert!(found.contains_key(&id), "a restore finds it too");
    }
}
