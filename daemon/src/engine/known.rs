//! Which chunks the repository already holds, as far as one backup needs to know.
//!
//! A full backup asks about every chunk it makes (50,000 on the medium store), so it loads
//! every id the catalog knows at once. An incremental asks about a few dozen (the day's new
//! media; a database patch is one blob), while loading the ids grows with the repository:
//! a quarter of a million on the large store, a third of a day-1 backup's time. So an
//! incremental looks ids up one at a time, and loads them all after all if it turns out to
//! ask about many (a capture that had to read the whole database).

use sealback_repo::ChunkId;
use sealback_repo::chunk::IdSet;

use crate::catalog::{Catalog, CatalogError, CatalogReader};

/// Lookups one at a time after which all ids are loaded: 512 point queries cost about as
/// much as loading the medium store's 50,000 ids.
const LOOKUPS: usize = 512;

pub enum KnownIds {
    /// Every id the catalog knows, and those claimed since.
    Loaded(IdSet),
    /// Looked up one at a time; `seen` holds the ids found or claimed.
    Lazy {
        lookup: CatalogReader,
        seen: IdSet,
        lookups: usize,
    },
}

impl KnownIds {
    /// All ids, loaded now.
    pub fn loaded(catalog: &Catalog) -> Result<KnownIds, CatalogError> {
        Ok(KnownIds::Loaded(catalog.known_blobs()?))
    }

    /// Ids looked up as they are asked about, on `reader`.
    pub fn lazy(reader: CatalogReader) -> KnownIds {
        KnownIds::Lazy {
            lookup: reader,
            seen: IdSet::default(),
            lookups: 0,
        }
    }

    /// Whether the repository holds `id` (or this backup has claimed it).
    pub fn contains(&mut self, id: &ChunkId) -> bool {
        self.settle();
        match self {
            KnownIds::Loaded(ids) => ids.contains(id),
            KnownIds::Lazy {
                lookup,
                seen,
                lookups,
            } => {
                if seen.contains(id) {
                    return true;
                }
                *lookups += 1;
                // A failed lookup counts as unknown: the chunk is read or stored again,
                // which costs bytes, never a snapshot.
                let found = lookup.contains(id).unwrap_or(false);
                if found {
                    seen.insert(*id);
                }
                found
            }
        }
    }

    /// Claims `id` for this backup: true if the repository lacks it and nobody claimed it
    /// before; either way it is known from now on.
    pub fn claim(&mut self, id: ChunkId) -> bool {
        if let KnownIds::Loaded(ids) = self {
            return ids.insert(id);
        }
        let new = !self.contains(&id);
        match self {
            KnownIds::Loaded(ids) => {
                ids.insert(id);
            }
            KnownIds::Lazy { seen, .. } => {
                seen.insert(id);
            }
        }
        new
    }

    /// Past [`LOOKUPS`] lookups, loads every id (keeping the claims).
    fn settle(&mut self) {
        let KnownIds::Lazy {
            lookup,
            seen,
            lookups,
        } = self
        else {
            return;
        };
        if *lookups < LOOKUPS {
            return;
        }
        match lookup.all() {
            Ok(mut ids) => {
                ids.extend(std::mem::take(seen));
                *self = KnownIds::Loaded(ids);
            }
            // Keep looking up one at a time.
            Err(e) => {
                tracing::warn!(error = %e, "cannot load the catalog's chunk ids; looking them up one by one");
                *lookups = 0;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use sealback_repo::index::{Index, IndexedPack};
    use sealback_repo::pack::{BlobKind, Compression, PackEntry};

    use super::*;

    /// A catalog that knows ids 0..n.
    fn catalog(n: u8) -> (tempfile::TempDir, Catalog) {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut catalog = Catalog::open(&dir.path().join("c.db")).expect("catalog");
        let entries = (0..n)
            .map(|i| PackEntry {
                id: ChunkId([i; 32]),
                kind: BlobKind::Data,
                compression: Compression::None,
                offset: 100 + u32::from(i),
                length: 20,
                raw_length: 4,
            })
            .collect();
        let index = Index {
            packs: vec![IndexedPack {
                name: format!("data/{}", ChunkId([200; 32])),
                entries,
            }],
        };
        catalog
            .add_index(
                &format!("index/{}", ChunkId([201; 32])),
                10,
                &index,
                &HashMap::new(),
            )
            .expect("index");
        (dir, catalog)
    }

    #[test]
    fn looked_up_and_loaded_ids_answer_alike_and_keep_claims() {
        let (_dir, catalog) = catalog(10);
        for mut known in [
            KnownIds::lazy(catalog.reader().expect("reader")),
            KnownIds::loaded(&catalog).expect("loaded"),
        ] {
            assert!(known.contains(&ChunkId([3; 32])));
            assert!(!known.contains(&ChunkId([50; 32])));
            assert!(!known.claim(ChunkId([4; 32])), "known: not new");
            assert!(known.claim(ChunkId([50; 32])), "unknown: new");
            assert!(!known.claim(ChunkId([50; 32])), "claimed once only");
            assert!(known.contains(&ChunkId([50; 32])));
        }
    }

    #[test]
    fn many_lookups_load_everything_and_keep_what_was_claimed() {
        let (_dir, catalog) = catalog(10);
        let mut known = KnownIds::lazy(catalog.reader().expect("reader"));
        assert!(known.claim(ChunkId([99; 32])));
        for i in 0..LOOKUPS {
            // Ids the catalog lacks, each asked once.
            let mut id = [7u8; 32];
            id[..8].copy_from_slice(&(i as u64).to_le_bytes());
            assert!(!known.contains(&ChunkId(id)));
        }
        assert!(known.contains(&ChunkId([1; 32])));
        assert!(
            matches!(known, KnownIds::Loaded(_)),
            "loaded after {LOOKUPS} lookups"
        );
        assert!(
            !known.claim(ChunkId([99; 32])),
            "the claim survived the loading"
        );
        assert!(!known.claim(ChunkId([9; 32])));
    }
}
