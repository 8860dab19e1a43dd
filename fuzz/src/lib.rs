//! What the fuzz targets run, one function per target, so that the targets in
//! `fuzz_targets/` are one line each and `cargo test` here can check that every committed
//! seed gets past the checks in front of its decoder (a seed that stopped at the AEAD or at a
//! header would fuzz nothing behind it).
//!
//! The attacker is a storage provider returning any bytes, and a repository written by a
//! buggy or older sealback: the targets therefore seal the fuzzer's plaintext with a fixed
//! test key, so that the decoders behind authentication see arbitrary input too.
#![forbid(unsafe_code)]

pub mod control;
pub mod repo;
pub mod seeds;
pub mod text;

/// Splits `data` at its first `0` byte: the part before, and the part after (empty if none).
pub fn split_at_nul(data: &[u8]) -> (&[u8], &[u8]) {
    match data.iter().position(|&b| b == 0) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &[]),
    }
}
