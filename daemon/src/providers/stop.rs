//! The daemon's stop, as the provider wrappers see it: a wait between retries ends at once,
//! and a call still waiting for a provider that hangs gives up, so SIGTERM stops the daemon
//! within a bounded time whatever the providers do (a call into a plugin cannot be
//! cancelled: it goes on, or not, on its own thread, and the process exits without it).

use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use sealback_repo::{StoreError, StoreErrorKind};

/// Shared by every target's wrappers; [`Stop::stop`] wakes every wait.
#[derive(Clone, Default)]
pub struct Stop(Arc<(Mutex<bool>, Condvar)>);

impl Stop {
    pub fn stop(&self) {
        let (stopped, woken) = &*self.0;
        *stopped.lock().unwrap_or_else(|p| p.into_inner()) = true;
        woken.notify_all();
    }

    pub fn is_stopped(&self) -> bool {
        *self.0.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits `wait`, or less if the daemon stops meanwhile; true if it did.
    pub fn wait(&self, wait: Duration) -> bool {
        let (stopped, woken) = &*self.0;
        let deadline = Instant::now() + wait;
        let mut guard = stopped.lock().unwrap_or_else(|p| p.into_inner());
        while !*guard {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            guard = woken
                .wait_timeout(guard, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        true
    }

    /// The error of a call given up because the daemon stops.
    pub fn error(what: &str) -> StoreError {
        StoreError::new(
            StoreErrorKind::Permanent,
            format!("{what}: given up, the daemon is stopping"),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wait_ends_when_the_daemon_stops() {
        let stop = Stop::default();
        assert!(!stop.wait(Duration::from_millis(1)));
        let waiter = {
            let stop = stop.clone();
            std::thread::spawn(move || stop.wait(Duration::from_secs(60)))
        };
        stop.stop();
        assert!(waiter.join().expect("waiter"), "woken by the stop");
        assert!(stop.is_stopped());
    }
}
