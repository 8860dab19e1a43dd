//! Waiting for something to become true, with a deadline. Tests poll; they never sleep and
//! hope.

use std::time::{Duration, Instant};

const POLL: Duration = Duration::from_millis(20);

/// Calls `check` until it returns `Some`, at most for `timeout`; `None` if it never did.
pub fn poll<T>(timeout: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(POLL);
    }
}
