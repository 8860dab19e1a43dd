//! Where every blob a snapshot may name is, for readers (restores, `verify`): the indexes,
//! and the packs prune markers list while they wait for their sweep (DESIGN §12.2).

use std::collections::HashMap;
use std::sync::Arc;

use super::marker::{self, MARKER_PREFIX, Marker};
use crate::chunk::ChunkId;
use crate::error::{Error, Result};
use crate::pack::PackEntry;
use crate::repository::{Repository, StoreErrorKind};

/// Chunk id → the pack that holds it and its entry there.
pub type BlobMap = HashMap<ChunkId, (Arc<str>, PackEntry)>;

/// Every blob the indexes name, and then those only marked packs hold: a prune takes a pack
/// out of the index when it marks it, yet a backup that began before may have used it, and
/// its snapshot must restore before the sweep puts the pack back in the index.
pub fn locate(repo: &Repository) -> Result<BlobMap> {
    let mut map = BlobMap::new();
    for name in repo.list_indexes()? {
        for pack in repo.read_index(&name)?.packs {
            let pack_name: Arc<str> = pack.name.into();
            for entry in pack.entries {
                map.insert(entry.id, (pack_name.clone(), entry));
            }
        }
    }
    for (_, marker) in markers(repo)? {
        for pack in marker.packs {
            let pack_name: Arc<str> = pack.name.into();
            for entry in pack.entries {
                map.entry(entry.id)
                    .or_insert_with(|| (pack_name.clone(), entry));
            }
        }
    }
    Ok(map)
}

/// Every marker on the target; one swept between the listing and its reading is left out
/// (its packs are gone or back in an index).
pub fn markers(repo: &Repository) -> Result<Vec<(String, Marker)>> {
    let mut out = Vec::new();
    for (name, _) in repo.store().list(MARKER_PREFIX)? {
        match marker::read(repo, &name) {
            Ok(m) => out.push((name, m)),
            Err(Error::Store(e)) if e.kind == StoreErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}
