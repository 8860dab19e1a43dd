//! A sync that lists the target while another device's prune merges its indexes: an index
//! listed a moment ago is gone when read. The sync lists again instead of failing the backup.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use sealback_repo::StoreError;
use sealback_repo::{BackupKey, ObjectStore};

use super::*;
use crate::test_store::MemoryStore;

/// A target where another device prunes right after each of the first `prunes` listings
/// of `index/`: it removes the index `doomed` names (whose packs a merged index also names).
struct PrunedBeside {
    inner: Arc<MemoryStore>,
    doomed: Mutex<Vec<String>>,
}

impl ObjectStore for PrunedBeside {
    fn put(&self, name: &str, data: &[u8]) -> std::result::Result<(), StoreError> {
        self.inner.put(name, data)
    }
    fn get(&self, name: &str) -> std::result::Result<Bytes, StoreError> {
        self.inner.get(name)
    }
    fn list(&self, prefix: &str) -> std::result::Result<Vec<(String, u64)>, StoreError> {
        let listed = self.inner.list(prefix)?;
        if prefix == "index/"
            && let Some(name) = self.doomed.lock().expect("lock").pop()
        {
            self.inner.remove(&name)?;
        }
        Ok(listed)
    }
    fn remove(&self, name: &str) -> std::result::Result<(), StoreError> {
        self.inner.remove(name)
    }
}

#[test]
fn an_index_a_prune_beside_us_merged_away_between_list_and_read_is_listed_again() {
    let (store, _, ids) = super::tests::repository();
    let key = BackupKey::from_bytes(&mut [3u8; 32]);
    let plain = Repository::open(store.clone(), &key).expect("open");
    let first: Vec<String> = store
        .list("index/")
        .expect("list")
        .into_iter()
        .map(|(name, _)| name)
        .collect();
    // The prune beside us: a merged index naming the same packs, then the old one removed
    // (and once more, the merged one merged again, to show the sync keeps listing).
    let index = plain.read_index(&first[0]).expect("read");
    let (merged, _) = plain.write_index(&index).expect("merged");
    let (_, _) = plain.write_index(&index).expect("merged again");
    let target = Arc::new(PrunedBeside {
        inner: store,
        doomed: Mutex::new(vec![merged, first[0].clone()]),
    });
    let repo = Repository::open(target.clone(), &key).expect("open");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut catalog = Catalog::open(&dir.path().join("disk.db")).expect("open");
    catalog.sync(&repo, Packs::List).expect("sync lists again");
    assert_eq!(
        catalog.known_blobs().expect("blobs"),
        ids.iter().copied().collect(),
        "the blobs are known through the index left"
    );
    assert!(target.doomed.lock().expect("lock").is_empty());
}
