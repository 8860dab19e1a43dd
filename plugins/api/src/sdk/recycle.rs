//! Large object buffers, given back by the host and handed out again.
//!
//! A restore reads a few hundred 4 MiB packs; a fresh allocation for each costs the kernel
//! a page fault and a zeroed page per 4 KiB touched (on the benchmark machine, 7% of a
//! restore's CPU). So the buffers the host frees are kept, a few and briefly, for the next
//! [`buffer`]: at most [`KEPT`] of them, and none that waited longer than [`FRESH`], so an
//! idle daemon does not hold them.

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
    if capacity >= MIN {
        let mut pool = POOL.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        pool.retain(|(at, _)| now.duration_since(*at) < FRESH);
        if let Some(at) = pool.iter().position(|(_, b)| b.capacity() >= capacity) {
            return pool.swap_remove(at).1;
        }
    }
    Vec::with_capacity(capacity)
}

/// Keeps `bytes` for a later [`buffer`], or frees it.
pub(crate) fn give_back(mut bytes: Vec<u8>) {
    if bytes.capacity() < MIN {
        return;
    }
    bytes.clear();
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
    fn the_pool_keeps_few_buffers() {
        for _ in 0..(3 * KEPT) {
            give_back(Vec::with_capacity(MIN));
        }
        assert!(POOL.lock().expect("pool").len() <= KEPT);
    }
}
