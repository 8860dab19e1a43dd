//! At most N calls into a provider at once (a counting semaphore), so that a backup's
//! workers and a restore together do not open more connections than the provider likes.

use bytes::Bytes;
use std::sync::{Condvar, Mutex};

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

    fn put_shared(&self, name: &str, data: Bytes) -> Result<(), StoreError> {
        let _permit = self.permit();
        self.inner.put_shared(name, data)
    }

    fn get(&self, name: &str) -> Result<Bytes, StoreError> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    /// Records how many calls are inside it at once.
    #[derive(Default)]
    struct Crowd {
        inside: AtomicUsize,
        most: AtomicUsize,
    }

    impl ObjectStore for Crowd {
        fn put(&self, _: &str, _: &[u8]) -> Result<(), StoreError> {
            let now = self.inside.fetch_add(1, Ordering::SeqCst) + 1;
            self.most.fetch_max(now, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(5));
            self.inside.fetch_sub(1, Ordering::SeqCst);
            Ok(())
        }
        fn get(&self, _: &str) -> Result<Bytes, StoreError> {
            Ok(Bytes::new())
        }
        fn list(&self, _: &str) -> Result<Vec<(String, u64)>, StoreError> {
            Ok(Vec::new())
        }
        fn remove(&self, _: &str) -> Result<(), StoreError> {
            Ok(())
        }
    }

    #[test]
    fn no_more_than_the_limit_are_inside_at_once() {
        let limited = Limited::new(Crowd::default(), 3);
        std::thread::scope(|s| {
            for _ in 0..12 {
                s.spawn(|| {
                    for _ in 0..5 {
                        limited.put("a", b"x").expect("put");
                    }
                });
            }
        });
        assert_eq!(limited.inner.most.load(Ordering::SeqCst), 3);
    }
}
