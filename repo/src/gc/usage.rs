//! What the kept snapshots need: every chunk they name, and the chunks their database
//! lists name (read from the lists' packs, each pack once).

use std::collections::{HashMap, HashSet};

use crate::chunk::{ChunkId, decode_list};
use crate::error::{Error, Result};
use crate::pack::{BlobKind, PackEntry, PackReader};
use crate::repository::Repository;
use crate::snapshot::Snapshot;

/// Every chunk id `snapshots` need, list contents included. `locate` finds a list blob's
/// pack and entry (in an index, or in a pack a marker names).
pub fn used_ids(
    repo: &Repository,
    snapshots: &[(String, Snapshot)],
    locate: &HashMap<ChunkId, (String, PackEntry)>,
) -> Result<HashSet<ChunkId>> {
    let mut used: HashSet<ChunkId> = HashSet::new();
    let mut lists: HashSet<ChunkId> = HashSet::new();
    for (name, snapshot) in snapshots {
        if let Some(db) = &snapshot.database {
            used.extend(db.patches.iter().copied());
            for list in &db.lists {
                used.insert(*list);
                if !locate.contains_key(list) {
                    return Err(Error::malformed(
                        name,
                        format!(
                            "it names database list {} that no index holds: run `sealbackctl verify` before pruning",
                            list.short()
                        ),
                    ));
                }
                lists.insert(*list);
            }
        }
        for file in &snapshot.files {
            used.extend(file.chunks.iter().copied());
        }
    }
    // The lists, grouped by pack so that each pack is read once.
    let mut by_pack: HashMap<&str, Vec<&PackEntry>> = HashMap::new();
    for list in &lists {
        let (pack, entry) = &locate[list];
        by_pack.entry(pack.as_str()).or_default().push(entry);
    }
    for (pack, entries) in by_pack {
        let bytes = repo.read_pack(pack)?;
        let reader = PackReader::new(repo.keys(), pack, &bytes)?;
        for entry in entries {
            if entry.kind != BlobKind::List {
                return Err(Error::malformed(
                    pack,
                    format!("blob {} is used as a list but is not one", entry.id.short()),
                ));
            }
            let plain = reader.blob(entry)?;
            let ids = decode_list(&plain).ok_or_else(|| {
                Error::malformed(pack, format!("list {} is malformed", entry.id.short()))
            })?;
            used.extend(ids);
        }
    }
    Ok(used)
}
