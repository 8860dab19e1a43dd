//! An object store in memory, for tests that need a repository and no provider (this
//! crate's, the daemon's).

use std::collections::BTreeMap;
use std::sync::Mutex;

use crate::repository::{ObjectStore, StoreError, StoreErrorKind};

#[derive(Default)]
pub struct MemoryStore(Mutex<BTreeMap<String, Vec<u8>>>);

impl ObjectStore for MemoryStore {
    fn put(&self, name: &str, data: &[u8]) -> Result<(), StoreError> {
        self.0
            .lock()
            .expect("lock")
            .insert(name.into(), data.to_vec());
        Ok(())
    }
    fn get(&self, name: &str) -> Result<bytes::Bytes, StoreError> {
        self.0
            .lock()
            .expect("lock")
            .get(name)
            .map(|data| bytes::Bytes::copy_from_slice(data))
            .ok_or(StoreError::new(StoreErrorKind::NotFound, name))
    }
    fn list(&self, prefix: &str) -> Result<Vec<(String, u64)>, StoreError> {
        let map = self.0.lock().expect("lock");
        Ok(map
            .iter()
            .filter(|(n, _)| n.starts_with(prefix))
            .map(|(n, d)| (n.clone(), d.len() as u64))
            .collect())
    }
    fn remove(&self, name: &str) -> Result<(), StoreError> {
        self.0.lock().expect("lock").remove(name);
        Ok(())
    }
}
