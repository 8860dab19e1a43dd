//! The outermost wrapper: counts what a target was asked and what it answered, for
//! `sealbackctl status`.

use bytes::Bytes;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use sealback_repo::{ObjectStore, StoreError, StoreErrorKind};

/// Counters of one target, kept across plugin reloads.
#[derive(Debug, Default)]
pub struct Counters {
    requests: AtomicU64,
    retries: AtomicU64,
    /// Calls that failed for good; a NOT_FOUND answer is not a failure.
    failures: AtomicU64,
    bytes_sent: AtomicU64,
    bytes_received: AtomicU64,
    /// Calls made and not yet answered.
    in_flight: AtomicU64,
}

/// A copy of the counters at one instant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CounterValues {
    pub requests: u64,
    pub retries: u64,
    pub failures: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub in_flight: u64,
}

impl Counters {
    pub fn note_retry(&self) {
        self.retries.fetch_add(1, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> CounterValues {
        CounterValues {
            requests: self.requests.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
            bytes_sent: self.bytes_sent.load(Ordering::Relaxed),
            bytes_received: self.bytes_received.load(Ordering::Relaxed),
            in_flight: self.in_flight.load(Ordering::Relaxed),
        }
    }

    /// Makes a call, counted in flight while it runs and then by how it went.
    fn call<T>(&self, call: impl FnOnce() -> Result<T, StoreError>) -> Result<T, StoreError> {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        let result = call();
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.count(&result);
        result
    }

    /// Counts a call; a missing object is an answer, not a failure.
    fn count<T>(&self, result: &Result<T, StoreError>) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        if result
            .as_ref()
            .is_err_and(|e| e.kind != StoreErrorKind::NotFound)
        {
            self.failures.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// A target as the engine sees it.
pub struct TargetStore {
    name: String,
    inner: Box<dyn ObjectStore>,
    counters: Arc<Counters>,
    /// Its plugin has an authorization step (`sealbackctl target auth`).
    authorizes: bool,
}

impl TargetStore {
    pub fn new(name: &str, inner: impl ObjectStore + 'static, counters: Arc<Counters>) -> Self {
        TargetStore {
            name: name.to_owned(),
            inner: Box::new(inner),
            counters,
            authorizes: false,
        }
    }

    /// Marks the target as one whose plugin has an authorization step.
    pub fn with_authorization_step(mut self, authorizes: bool) -> Self {
        self.authorizes = authorizes;
        self
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether its credentials come from `sealbackctl target auth` rather than its options.
    pub fn authorizes(&self) -> bool {
        self.authorizes
    }
}

impl ObjectStore for TargetStore {
    fn put(&self, name: &str, data: &[u8]) -> Result<(), StoreError> {
        let result = self.counters.call(|| self.inner.put(name, data));
        if result.is_ok() {
            self.counters
                .bytes_sent
                .fetch_add(data.len() as u64, Ordering::Relaxed);
        }
        result
    }

    fn put_shared(&self, name: &str, data: Bytes) -> Result<(), StoreError> {
        let len = data.len() as u64;
        let result = self.counters.call(|| self.inner.put_shared(name, data));
        if result.is_ok() {
            self.counters.bytes_sent.fetch_add(len, Ordering::Relaxed);
        }
        result
    }

    fn get(&self, name: &str) -> Result<Bytes, StoreError> {
        let result = self.counters.call(|| self.inner.get(name));
        if let Ok(data) = &result {
            self.counters
                .bytes_received
                .fetch_add(data.len() as u64, Ordering::Relaxed);
        }
        result
    }

    fn list(&self, prefix: &str) -> Result<Vec<(String, u64)>, StoreError> {
        self.counters.call(|| self.inner.list(prefix))
    }

    fn remove(&self, name: &str) -> Result<(), StoreError> {
        self.counters.call(|| self.inner.remove(name))
    }
}
