//! Large object buffers, given back by the host and handed out again.
//!
//! A restore reads a few hundred 4 MiB packs; a fresh allocation for each costs the kernel
//! a page fault and a zeroed page per 4 KiB touched (on the benchmark machine, 7% of a
//! restore's CPU). So the buffers the host frees are kept, a few and briefly, for the next
//! [`buffer`]: at most [`KEPT`] of them, and none that waited longer than [`FRESH`]. The
//! pool has no thread of its own (one would outlive an unloaded plugin's code), so stale
//! buffers go at the next call: a daemon idle after a restore holds up to [`KEPT`] until
//! its next large object. A request that none of them fits (packs differ in size)
//! frees one before it allocates: the buffers kept and handed out together never outnumber
//! the most that were in use at once (a restore's threads), where keeping the misfits beside
//! the new ones held up to four 4 MiB buffers more than the restore used (issue 20).

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Buffers smaller than this are not worth keeping.
const MIN: usize = 1 << 20;
/// How many are kept at most.
const KEPT: usize = 4;
/// How long one is kept without being taken.
const FRESH: Duration = Duration::from_secs(2);

static POOL: Mutex<Vec<(Instant, Vec<u8>)>> = Mutex::new(Vec::new());

/// An empty vector with room for at least `capacity` bytes: a recycled one if any fits.
pub fn buffer(capacity: usize) -> Vec<u8> {
    match kept(capacity) {
        Some(mut kept) => {
            kept.clear();
            kept
        }
        None => Vec::with_capacity(capacity),
    }
}

/// A vector of `len` bytes for a caller that overwrites them (a read into place): a
/// recycled one keeps what it held, where zeroing 4 MiB before each pack was read took 1%
/// of a restore's CPU; a fresh one is allocated zeroed (`calloc`, which writes no zeros
/// where the memory comes freshly mapped from the kernel).
pub fn filled(len: usize) -> Vec<u8> {
    fill(kept(len), len)
}

fn fill(kept: Option<Vec<u8>>, len: usize) -> Vec<u8> {
    match kept {
        Some(mut kept) => {
            // Only bytes past what it held are written.
            kept.resize(len, 0);
            kept
        }
        None => vec![0; len],
    }
}

/// A kept buffer with room for `capacity` bytes, if any.
fn kept(capacity: usize) -> Option<Vec<u8>> {
    if capacity < MIN {
        return None;
    }
    let mut pool = POOL.lock().unwrap_or_else(|p| p.into_inner());
    take(&mut pool, capacity, Instant::now())
}

/// A fresh buffer of `pool` that fits `capacity`; if none fits, one is freed (a miss
/// allocates, and the misfit kept beside the new buffer would only add to the peak).
fn take(pool: &mut Vec<(Instant, Vec<u8>)>, capacity: usize, now: Instant) -> Option<Vec<u8>> {
    pool.retain(|(at, _)| now.duration_since(*at) < FRESH);
    match pool.iter().position(|(_, b)| b.capacity() >= capacity) {
        Some(at) => Some(pool.swap_remove(at).1),
        None => {
            drop(pool.pop());
            None
        }
    }
}

/// Keeps `bytes` (and what it holds, for [`filled`]) for a later [`buffer`], or frees it.
pub(crate) fn give_back(bytes: Vec<u8>) {
    if bytes.capacity() < MIN {
        return;
    }
    let mut pool = POOL.lock().unwrap_or_else(|p| p.into_inner());
    let now = Instant::now();
    pool.retain(|(at, _)| now.duration_since(*at) < FRESH);
    if pool.len() < KEPT {
        pool.push((now, bytes));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_large_buffer_given_back_is_handed_out_again_while_fresh() {
        give_back(Vec::<u8>::with_capacity(3 * MIN));
        let again = buffer(2 * MIN);
        assert!(again.is_empty());
        // Other tests may share the pool: ours, or another that fits.
        assert!(again.capacity() >= 2 * MIN);
        // Small ones are neither kept nor taken from the pool.
        give_back(vec![1u8; 10]);
        assert!(buffer(10).capacity() >= 10);
    }

    #[test]
    fn a_filled_buffer_has_the_length_asked_and_keeps_what_a_recycled_one_held() {
        assert_eq!(fill(Some(vec![7; 2 * MIN]), MIN), vec![7; MIN]);
        let mut grown = vec![7; 10];
        grown.extend([0; 10]);
        assert_eq!(
            fill(Some(vec![7; 10]), 20),
            grown,
            "zeros past what it held"
        );
        assert_eq!(fill(None, 5), vec![0; 5]);
        // Given back with its bytes, a buffer is handed out empty all the same.
        give_back(vec![7u8; 2 * MIN]);
        assert!(buffer(2 * MIN).is_empty());
        assert_eq!(filled(3).len(), 3);
    }

    #[test]
    fn a_request_no_kept_buffer_fits_frees_one_first() {
        let now = Instant::now();
        let mut pool = vec![
            (now, Vec::with_capacity(MIN)),
            (now, Vec::with_capacity(MIN)),
        ];
        assert!(take(&mut pool, 2 * MIN, now).is_none(), "none fits");
        assert_eq!(
            pool.len(),
            1,
            "a misfit freed, not kept beside the new buffer"
        );
        assert!(take(&mut pool, MIN, now).is_some());
        assert!(pool.is_empty());
        let mut stale = vec![(now, Vec::with_capacity(MIN))];
        assert!(take(&mut stale, MIN, now + FRESH).is_none(), "too old");
    }

    #[test]
    fn the_pool_keeps_few_buffers() {
        for _ in 0..(3 * KEPT) {
            give_back(Vec::with_capacity(MIN));
        }
        assert!(POOL.lock().expect("pool").len() <= KEPT);
    }
}
