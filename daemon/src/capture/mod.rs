//! Reading the live message store consistently.
//!
//! - [`database`]: the SQLite database as of one committed transaction, read as pages
//!   inside one short read transaction (WAL commits included; the app is never blocked).
//! - [`files`]: media and other files, each read between two identical `stat`s so that a
//!   file changing under us is retried, never recorded half-written.

pub mod database;
pub mod files;
pub mod wal;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A file unchanged for this long is settled: any later write to it gets a later `ctime`.
/// File systems with nanosecond fields stamp with the kernel's coarse clock (one tick, at
/// most 10 ms); those without (FAT, ext4 with small inodes) in 1 or 2 s.
const SETTLED_FINE: Duration = Duration::from_millis(50);
const SETTLED_COARSE: Duration = Duration::from_secs(2);

/// How long until a file last modified at `mtime_ns` and changed at `ctime_ns` (nanoseconds
/// since the epoch) is settled, as seen at `now`; zero if it is. Only a settled file's
/// `stat` can stand for its content later: a write within the same clock tick as the
/// last one would leave the timestamps as they are.
pub(crate) fn unsettled_for(mtime_ns: i64, ctime_ns: i64, now: SystemTime) -> Duration {
    let at = |ns: i64| UNIX_EPOCH + Duration::from_nanos(ns.max(0) as u64);
    let coarse = mtime_ns % 1_000_000_000 == 0 && ctime_ns % 1_000_000_000 == 0;
    let margin = if coarse { SETTLED_COARSE } else { SETTLED_FINE };
    (at(mtime_ns).max(at(ctime_ns)) + margin)
        .duration_since(now)
        .unwrap_or(Duration::ZERO)
}

/// The longest wait [`unsettled_for`] can ask that a capture may spend waiting.
pub(crate) const SETTLE_WAIT: Duration = SETTLED_FINE;
