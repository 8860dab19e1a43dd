//! A deadline for every provider call. A call into a plugin cannot be cancelled, so each
//! runs on a thread of its own; when the deadline passes, the caller gets a transient error
//! (and may retry: puts are idempotent) while the stuck call finishes or not in the
//! background, still holding its concurrency permit, so a hung provider cannot be flooded.
//! Data handed to `put_shared` is shared with that thread, not copied.

use bytes::Bytes;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use sealback_repo::{ObjectStore, StoreError, StoreErrorKind};

use super::stop::Stop;

/// How often a call waiting for its provider looks whether the daemon stops.
const STOP_CHECK: Duration = Duration::from_millis(100);

pub struct Timed<S> {
    inner: Arc<S>,
    deadline: Duration,
    /// The target's name, which a timeout names.
    target: String,
    /// A call still waiting when the daemon stops gives up.
    stop: Stop,
}

impl<S: ObjectStore + 'static> Timed<S> {
    pub fn new(inner: Arc<S>, deadline: Duration, target: &str, stop: Stop) -> Timed<S> {
        Timed {
            inner,
            deadline,
            target: target.to_owned(),
            stop,
        }
    }

    fn call<T: Send + 'static>(
        &self,
        what: String,
        op: impl FnOnce(&S) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (tx, rx) = mpsc::sync_channel(1);
        let inner = self.inner.clone();
        let spawned = std::thread::Builder::new()
            .name("sealback-provider-call".into())
            .spawn(move || {
                let _ = tx.send(op(&inner));
            });
        if let Err(e) = spawned {
            return Err(StoreError::new(
                StoreErrorKind::Transient,
                format!("{what}: cannot start a thread for the call: {e}"),
            ));
        }
        let deadline = std::time::Instant::now() + self.deadline;
        let answer = loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match rx.recv_timeout(left.min(STOP_CHECK)) {
                Err(mpsc::RecvTimeoutError::Timeout) if self.stop.is_stopped() => {
                    return Err(Stop::error(&what));
                }
                Err(mpsc::RecvTimeoutError::Timeout) if !left.is_zero() => {}
                other => break other,
            }
        };
        match answer {
            Ok(result) => {
                // The provider answered: the work moves, however slowly (a pack upload to a
                // slow target, a prune's deletions). A call that never answers sends nothing,
                // so a hung provider still stops the pings (crate::notify).
                crate::notify::alive();
                result
            }
            Err(mpsc::RecvTimeoutError::Timeout) => Err(StoreError::new(
                StoreErrorKind::Transient,
                format!(
                    "{what} on target {:?} did not finish within {} (targets.timeout)",
                    self.target,
                    humantime::format_duration(self.deadline)
                ),
            )),
            Err(mpsc::RecvTimeoutError::Disconnected) => Err(StoreError::new(
                StoreErrorKind::Permanent,
                format!("{what}: the call ended without an answer"),
            )),
        }
    }
}

impl<S: ObjectStore + 'static> ObjectStore for Timed<S> {
    fn put(&self, name: &str, data: &[u8]) -> Result<(), StoreError> {
        self.put_shared(name, Bytes::copy_from_slice(data))
    }

    fn put_shared(&self, name: &str, data: Bytes) -> Result<(), StoreError> {
        let owned = name.to_owned();
        self.call(format!("put {name}"), move |s| s.put_shared(&owned, data))
    }

    fn get(&self, name: &str) -> Result<Bytes, StoreError> {
        let owned = name.to_owned();
        self.call(format!("get {name}"), move |s| s.get(&owned))
    }

    fn list(&self, prefix: &str) -> Result<Vec<(String, u64)>, StoreError> {
        let owned = prefix.to_owned();
        self.call(format!("list {prefix}*"), move |s| s.list(&owned))
    }

    fn remove(&self, name: &str) -> Result<(), StoreError> {
        let owned = name.to_owned();
        self.call(format!("remove {name}"), move |s| s.remove(&owned))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Takes as long as it is told to.
    struct Slow(Duration);

    impl ObjectStore for Slow {
        fn put(&self, _: &str, _: &[u8]) -> Result<(), StoreError> {
            std::thread::sleep(self.0);
            Ok(())
        }
        fn get(&self, name: &str) -> Result<Bytes, StoreError> {
            std::thread::sleep(self.0);
            Ok(Bytes::copy_from_slice(name.as_bytes()))
        }
        fn list(&self, _: &str) -> Result<Vec<(String, u64)>, StoreError> {
            Ok(Vec::new())
        }
        fn remove(&self, _: &str) -> Result<(), StoreError> {
            Ok(())
        }
    }

    #[test]
    fn a_call_past_its_deadline_is_a_transient_error_naming_it() {
        let timed = Timed::new(
            Arc::new(Slow(Duration::from_secs(5))),
            Duration::from_millis(50),
            "slow",
            Stop::default(),
        );
        let started = std::time::Instant::now();
        let err = timed.put("data/abc", b"x").expect_err("times out");
        assert!(started.elapsed() < Duration::from_secs(2));
        assert_eq!(err.kind, StoreErrorKind::Transient);
        assert!(
            err.message.contains("put data/abc on target \"slow\"")
                && err.message.contains("targets.timeout"),
            "{}",
            err.message
        );
    }

    #[test]
    fn a_call_waiting_for_a_hung_provider_gives_up_when_the_daemon_stops() {
        let stop = Stop::default();
        let timed = Timed::new(
            Arc::new(Slow(Duration::from_secs(30))),
            Duration::from_secs(60),
            "slow",
            stop.clone(),
        );
        stop.stop();
        let started = std::time::Instant::now();
        let err = timed.get("data/abc").expect_err("given up");
        assert!(started.elapsed() < Duration::from_secs(2));
        assert!(err.message.contains("stopping"), "{}", err.message);
    }

    #[test]
    fn a_call_within_its_deadline_answers_as_usual() {
        let timed = Timed::new(
            Arc::new(Slow(Duration::from_millis(1))),
            Duration::from_secs(5),
            "slow",
            Stop::default(),
        );
        assert_eq!(timed.get("index/x").expect("answers"), &b"index/x"[..]);
        timed
            .put_shared("a", Bytes::from(vec![1, 2, 3]))
            .expect("put");
    }
}
