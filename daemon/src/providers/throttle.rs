//! A target's `bandwidth`: the most bytes a second it sends, and the most it receives,
//! whatever its plugin. A token bucket per direction: a put waits, before it is sent, until
//! its bytes fit the rate; a get's bytes are counted when they have arrived and the call
//! returns once they fit, so the next one starts no earlier than the rate allows. Over a
//! backup or a restore the average is the rate; a call may run faster, by at most one
//! second's worth (the bucket's size), after the target was idle.
//!
//! It sits outside the per-call deadline (`Timed`): time spent waiting for the rate is not
//! the provider's. A wait ends at once when the daemon stops.

use bytes::Bytes;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sealback_repo::{ObjectStore, StoreError};

use super::stop::Stop;

/// A rate in bytes a second, with one second's worth of burst. Time is passed in, so that
/// tests can run it on a clock of their own.
pub struct TokenBucket {
    rate: f64,
    state: Mutex<Tokens>,
}

struct Tokens {
    /// May go below zero: a debt that later calls wait off.
    available: f64,
    at: Instant,
}

impl TokenBucket {
    pub fn new(bytes_per_second: u64, now: Instant) -> TokenBucket {
        let rate = bytes_per_second.max(1) as f64;
        TokenBucket {
            rate,
            state: Mutex::new(Tokens {
                available: rate,
                at: now,
            }),
        }
    }

    /// Takes `bytes` at `now`: how long the caller must wait for them to fit the rate.
    pub fn take(&self, bytes: u64, now: Instant) -> Duration {
        let mut tokens = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let elapsed = now.saturating_duration_since(tokens.at).as_secs_f64();
        tokens.available = (tokens.available + elapsed * self.rate).min(self.rate);
        tokens.at = tokens.at.max(now);
        tokens.available -= bytes as f64;
        if tokens.available >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-tokens.available / self.rate)
        }
    }
}

pub struct Throttled<S> {
    inner: S,
    /// `None`: no limit.
    send: Option<TokenBucket>,
    receive: Option<TokenBucket>,
    stop: Stop,
}

impl<S: ObjectStore> Throttled<S> {
    pub fn new(inner: S, bytes_per_second: Option<u64>, stop: Stop) -> Throttled<S> {
        let bucket = || bytes_per_second.map(|rate| TokenBucket::new(rate, Instant::now()));
        Throttled {
            inner,
            send: bucket(),
            receive: bucket(),
            stop,
        }
    }

    /// Waits until `bytes` fit `bucket`'s rate; an error if the daemon stops meanwhile.
    fn pace(
        &self,
        bucket: &Option<TokenBucket>,
        bytes: usize,
        what: &str,
    ) -> Result<(), StoreError> {
        let Some(bucket) = bucket else {
            return Ok(());
        };
        let wait = bucket.take(bytes as u64, Instant::now());
        if !wait.is_zero() && self.stop.wait(wait) {
            return Err(Stop::error(what));
        }
        Ok(())
    }
}

impl<S: ObjectStore> ObjectStore for Throttled<S> {
    fn put(&self, name: &str, data: &[u8]) -> Result<(), StoreError> {
        self.pace(&self.send, data.len(), name)?;
        self.inner.put(name, data)
    }

    fn put_shared(&self, name: &str, data: Bytes) -> Result<(), StoreError> {
        self.pace(&self.send, data.len(), name)?;
        self.inner.put_shared(name, data)
    }

    fn get(&self, name: &str) -> Result<Bytes, StoreError> {
        let data = self.inner.get(name)?;
        self.pace(&self.receive, data.len(), name)?;
        Ok(data)
    }

    fn list(&self, prefix: &str) -> Result<Vec<(String, u64)>, StoreError> {
        self.inner.list(prefix)
    }

    fn remove(&self, name: &str) -> Result<(), StoreError> {
        self.inner.remove(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    /// Transfers of `sizes`, one after the other, each waiting what the bucket says, on a
    /// clock that moves only by those waits (and `gap` between calls): the seconds taken.
    fn run(bucket: &TokenBucket, start: Instant, sizes: &[u64], gap: Duration) -> f64 {
        let mut now = start;
        for &size in sizes {
            now += bucket.take(size, now) + gap;
        }
        (now - start).as_secs_f64()
    }

    #[test]
    fn a_long_transfer_runs_at_the_rate() {
        let start = Instant::now();
        let bucket = TokenBucket::new(2 * MIB, start);
        // 64 MiB in packs of 4 MiB: one second's burst, then 2 MiB a second.
        let secs = run(&bucket, start, &[4 * MIB; 16], Duration::ZERO);
        let rate = (64 * MIB - 2 * MIB) as f64 / secs;
        assert!(
            (rate - (2 * MIB) as f64).abs() < 1.0,
            "{rate} bytes/s in {secs} s"
        );
    }

    #[test]
    fn small_calls_add_up_to_the_rate_too() {
        let start = Instant::now();
        let bucket = TokenBucket::new(MIB, start);
        let secs = run(&bucket, start, &[4096; 2560], Duration::from_micros(10));
        // 10 MiB, the first MiB free: 9 s at the rate.
        assert!((secs - 9.0).abs() < 0.05, "{secs} s");
    }

    #[test]
    fn an_idle_target_saves_up_one_second_at_most() {
        let start = Instant::now();
        let bucket = TokenBucket::new(MIB, start);
        assert_eq!(bucket.take(MIB, start), Duration::ZERO);
        let later = start + Duration::from_secs(60);
        assert_eq!(
            bucket.take(MIB, later),
            Duration::ZERO,
            "a second's worth is back"
        );
        let wait = bucket.take(MIB, later);
        assert!(
            (wait.as_secs_f64() - 1.0).abs() < 1e-6,
            "{wait:?}: not 60 s saved up"
        );
    }

    #[test]
    fn callers_at_once_share_the_rate() {
        let start = Instant::now();
        let bucket = TokenBucket::new(MIB, start);
        // Four threads' calls arrive together: their waits queue one behind the other.
        let waits: Vec<f64> = (0..4)
            .map(|_| bucket.take(MIB, start).as_secs_f64())
            .collect();
        assert_eq!(waits, [0.0, 1.0, 2.0, 3.0]);
    }

    /// Stores nothing, answers gets with `size` bytes.
    struct Sink(usize);

    impl ObjectStore for Sink {
        fn put(&self, _: &str, _: &[u8]) -> Result<(), StoreError> {
            Ok(())
        }
        fn get(&self, _: &str) -> Result<Bytes, StoreError> {
            Ok(Bytes::from(vec![0; self.0]))
        }
        fn list(&self, _: &str) -> Result<Vec<(String, u64)>, StoreError> {
            Ok(Vec::new())
        }
        fn remove(&self, _: &str) -> Result<(), StoreError> {
            Ok(())
        }
    }

    /// Through the wrapper, on the real clock: a lower bound only (a loaded machine is
    /// slower, never faster), and the stop ending a wait.
    #[test]
    fn puts_and_gets_wait_for_the_rate_and_a_stop_ends_the_wait() {
        let stop = Stop::default();
        let store = Throttled::new(Sink(256 << 10), Some(MIB), stop.clone());
        let started = Instant::now();
        for _ in 0..6 {
            store.put("p", &[0; 256 << 10]).expect("put");
            store.get("g").expect("get");
        }
        // 1.5 MiB each way, 1 MiB of it free: half a second at least.
        assert!(
            started.elapsed() >= Duration::from_millis(480),
            "{:?}",
            started.elapsed()
        );
        let unlimited = Throttled::new(Sink(0), None, stop.clone());
        unlimited
            .put("p", &vec![0; 64 << 20])
            .expect("no limit, no wait");
        stop.stop();
        let err = store
            .put("p", &vec![0; 8 << 20])
            .expect_err("8 s to wait, ended by the stop");
        assert!(err.message.contains("stopping"), "{err}");
    }
}
