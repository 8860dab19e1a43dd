//! Retries of transient provider errors: exponential backoff with jitter, honouring the
//! provider's retry-after. Only errors the provider classified as transient (or a call that
//! timed out) are retried: a missing object, refused credentials or a full target are
//! answered at once. Retrying is safe because every operation of the provider contract is
//! idempotent (puts replace, removes of missing objects succeed).

use bytes::Bytes;
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use sealback_repo::{ObjectStore, StoreError, StoreErrorKind};

use super::metrics::Counters;
use super::stop::Stop;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Tries in all, the first included.
    pub attempts: u32,
    /// The wait before the first retry; it doubles for each further one.
    pub base: Duration,
    /// No backoff wait is longer than this.
    pub max: Duration,
    /// A provider's retry-after is honoured up to this, even past `max`: a server that asks
    /// for a minute (Drive's rate limits do) and is asked again after 30 s only refuses again,
    /// and each early retry spends one of `attempts`. The bound keeps a server that asks for
    /// hours from holding a backup that long; a stopping daemon ends the wait at once.
    pub retry_after_max: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 6,
            base: Duration::from_millis(250),
            max: Duration::from_secs(30),
            retry_after_max: Duration::from_secs(600),
        }
    }
}

impl RetryPolicy {
    /// The wait before retry number `retry` (1-based): `base * 2^(retry-1)`, capped, with
    /// "equal jitter" (a random point in its upper half) so that several workers that failed
    /// together do not retry together; at least the provider's retry-after (up to
    /// `retry_after_max`).
    pub fn wait(&self, retry: u32, retry_after: Option<Duration>) -> Duration {
        let exp = self
            .base
            .saturating_mul(
                1u32.checked_shl(retry.saturating_sub(1))
                    .unwrap_or(u32::MAX),
            )
            .min(self.max);
        let half = exp / 2;
        let jittered = half + rand::thread_rng().gen_range(Duration::ZERO..=half);
        match retry_after {
            Some(asked) => asked.min(self.retry_after_max).max(jittered),
            None => jittered,
        }
    }
}

pub struct Retrying<S> {
    inner: S,
    policy: RetryPolicy,
    counters: Arc<Counters>,
    /// Ends a wait between retries at once.
    stop: Stop,
}

impl<S: ObjectStore> Retrying<S> {
    pub fn new(inner: S, policy: RetryPolicy, counters: Arc<Counters>, stop: Stop) -> Retrying<S> {
        Retrying {
            inner,
            policy,
            counters,
            stop,
        }
    }

    fn run<T>(&self, mut op: impl FnMut(&S) -> Result<T, StoreError>) -> Result<T, StoreError> {
        let mut retry = 0;
        loop {
            match op(&self.inner) {
                Err(e)
                    if e.kind == StoreErrorKind::Transient && retry + 1 < self.policy.attempts =>
                {
                    retry += 1;
                    let wait = self.policy.wait(retry, e.retry_after);
                    self.counters.note_retry();
                    tracing::info!(error = %e, retry, wait_ms = wait.as_millis() as u64, "transient error; retrying");
                    if self.stop.wait(wait) {
                        return Err(Stop::error(&e.message));
                    }
                }
                Err(mut e) => {
                    if retry > 0 {
                        e.message = format!("{} (gave up after {} attempts)", e.message, retry + 1);
                    }
                    return Err(e);
                }
                Ok(v) => return Ok(v),
            }
        }
    }
}

impl<S: ObjectStore> ObjectStore for Retrying<S> {
    fn put(&self, name: &str, data: &[u8]) -> Result<(), StoreError> {
        self.run(|s| s.put(name, data))
    }

    fn put_shared(&self, name: &str, data: Bytes) -> Result<(), StoreError> {
        self.run(|s| s.put_shared(name, data.clone()))
    }

    fn get(&self, name: &str) -> Result<Bytes, StoreError> {
        self.run(|s| s.get(name))
    }

    fn list(&self, prefix: &str) -> Result<Vec<(String, u64)>, StoreError> {
        self.run(|s| s.list(prefix))
    }

    fn remove(&self, name: &str) -> Result<(), StoreError> {
        self.run(|s| s.remove(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// Fails with the queued errors, then succeeds; records each call.
    struct Flaky(Mutex<Vec<StoreError>>, Mutex<u32>);

    impl ObjectStore for Flaky {
        fn put(&self, _: &str, _: &[u8]) -> Result<(), StoreError> {
            *self.1.lock().expect("lock") += 1;
            match self.0.lock().expect("lock").pop() {
                Some(e) => Err(e),
                None => Ok(()),
            }
        }
        fn get(&self, _: &str) -> Result<Bytes, StoreError> {
            unreachable!()
        }
        fn list(&self, _: &str) -> Result<Vec<(String, u64)>, StoreError> {
            unreachable!()
        }
        fn remove(&self, _: &str) -> Result<(), StoreError> {
            unreachable!()
        }
    }

    fn quick() -> RetryPolicy {
        RetryPolicy {
            attempts: 3,
            base: Duration::from_millis(1),
            max: Duration::from_millis(4),
            retry_after_max: Duration::from_millis(4),
        }
    }

    fn transient() -> StoreError {
        StoreError::new(StoreErrorKind::Transient, "busy")
    }

    #[test]
    fn transient_errors_are_retried_until_the_attempts_run_out() {
        let counters = Arc::new(Counters::default());
        let flaky = Flaky(Mutex::new(vec![transient(), transient()]), Mutex::new(0));
        let store = Retrying::new(flaky, quick(), counters.clone(), Stop::default());
        assert!(store.put("a", b"x").is_ok());
        assert_eq!(*store.inner.1.lock().expect("lock"), 3);
        assert_eq!(counters.snapshot().retries, 2);

        let always = Flaky(Mutex::new(vec![transient(); 5]), Mutex::new(0));
        let store = Retrying::new(
            always,
            quick(),
            Arc::new(Counters::default()),
            Stop::default(),
        );
        let err = store.put("a", b"x").expect_err("gives up");
        assert!(
            err.message.ends_with("(gave up after 3 attempts)"),
            "{}",
            err.message
        );
    }

    #[test]
    fn a_wait_between_retries_ends_when_the_daemon_stops() {
        let slow = RetryPolicy {
            attempts: 3,
            base: Duration::from_secs(60),
            max: Duration::from_secs(60),
            retry_after_max: Duration::from_secs(60),
        };
        let stop = Stop::default();
        let always = Flaky(Mutex::new(vec![transient(); 3]), Mutex::new(0));
        let store = Retrying::new(always, slow, Arc::new(Counters::default()), stop.clone());
        stop.stop();
        let started = std::time::Instant::now();
        let err = store.put("a", b"x").expect_err("given up");
        assert!(started.elapsed() < Duration::from_secs(2));
        assert_eq!(err.kind, StoreErrorKind::Permanent);
        assert!(err.message.contains("stopping"), "{}", err.message);
        assert_eq!(
            *store.inner.1.lock().expect("lock"),
            1,
            "no retry once stopped"
        );
    }

    #[test]
    fn other_errors_are_answered_at_once() {
        for kind in [
            StoreErrorKind::NotFound,
            StoreErrorKind::Auth,
            StoreErrorKind::Quota,
            StoreErrorKind::Permanent,
        ] {
            let flaky = Flaky(Mutex::new(vec![StoreError::new(kind, "no")]), Mutex::new(0));
            let store = Retrying::new(
                flaky,
                quick(),
                Arc::new(Counters::default()),
                Stop::default(),
            );
            assert_eq!(store.put("a", b"x").expect_err("fails").kind, kind);
            assert_eq!(*store.inner.1.lock().expect("lock"), 1);
        }
    }

    #[test]
    fn waits_double_with_jitter_and_honour_retry_after() {
        let policy = RetryPolicy {
            attempts: 10,
            base: Duration::from_millis(100),
            max: Duration::from_secs(1),
            retry_after_max: Duration::from_secs(5),
        };
        for _ in 0..100 {
            let first = policy.wait(1, None);
            assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(100));
            let third = policy.wait(3, None);
            assert!(third >= Duration::from_millis(200) && third <= Duration::from_millis(400));
            assert!(policy.wait(30, None) <= Duration::from_secs(1));
            assert!(policy.wait(1, Some(Duration::from_millis(700))) >= Duration::from_millis(700));
            // A retry-after past the backoff cap is still honoured, up to its own bound.
            assert_eq!(
                policy.wait(1, Some(Duration::from_secs(3))),
                Duration::from_secs(3)
            );
            assert_eq!(
                policy.wait(1, Some(Duration::from_secs(3600))),
                Duration::from_secs(5)
            );
        }
    }

    /// Drive answers a rate limit with `Retry-After: 60`: the daemon waits the full minute
    /// (it used to come back after 30 s, be refused again and spend its retries), and a server
    /// asking for an hour is asked again after ten minutes.
    #[test]
    fn the_default_policy_honours_a_minute_long_retry_after() {
        let policy = RetryPolicy::default();
        for retry in 1..=5 {
            assert_eq!(
                policy.wait(retry, Some(Duration::from_secs(60))),
                Duration::from_secs(60)
            );
            assert_eq!(
                policy.wait(retry, Some(Duration::from_secs(3600))),
                Duration::from_secs(600)
            );
        }
    }
}
