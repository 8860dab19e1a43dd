//! At most N calls into a provider at once (a counting semaphore), so that a backup's
//! workers and a restore together do not open more connections than the provider likes.

use std::sync::{Arc, Condvar, Mutex};

use sealback_repo::{ObjectStore, StoreError};

pub struct Limited<S> {
    inner: S,
    free: Mutex<usize>,
    freed: Condvar,
}

struct Permit<'a, S>(&'a Limited<S>);

impl<S> Drop for Permit<'_, S> {
    fn drop(&mut self) {
        *self.0.free.lock().unwrap_or_else(|p| p.into_inner()) += 1;
        self.0.freed.notify_one();
    }
}

impl<S: ObjectStore> Limited<S> {
    pub fn new(inner: S, concurrency: usize) -> Limited<S> {
        Limited {
            inner,
            free: Mutex::new(concurrency.max(1)),
            freed: Condvar::new(),
        }
    }

    fn permit(&self) -> Permit<'_, S> {
        let mut free = self.free.lock().unwrap_or_else(|p| p.into_inner());
        while *free == 0 {
            free = self.freed.wait(free).unwrap_or_else(|p| p.into_inner());
        }
        *free -= 1;
        Permit(self)
    }
}

impl<S: ObjectStore> ObjectStore for Limited<S> {
    fn put(&self, name: &str, data: &[u8]) -> Result<(), StoreError> {
        let _permit = self.permit();
        self.inner.put(name, data)
    }

    fn put_shared(&self, name: &str, data: Arc<Vec<u8>>) -> Result<(), StoreError> {
        let _permit = self.permit();
        self.inner.put_shared(name, data)
    }

    fn get(&self, name: &str) -> Result<Vec<u8>, StoreError> {
        let _permit = self.permit();
        self.inner.get(name)
    }

    fn list(&self, prefix: &str) -> Result<Vec<(String, u64)>, StoreError> {
        let _permit = self.permit();
        self.inner.list(prefix)
    }

    fn remove(&self, name: &str) -> Result<(), StoreError> {
        let _permit = self.permit();
        self.inner.remove(name)
    }
}
