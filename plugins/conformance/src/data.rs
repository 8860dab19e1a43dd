//! Object contents: incompressible bytes from a seed, so that every object differs from every
//! other and a mix of two, a shifted copy or a truncation shows.

/// `len` pseudo-random bytes from `seed` (SplitMix64; statistical quality only, no secrecy).
pub(crate) fn bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        out.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Compares what a get returned with what was stored; says how they differ.
pub(crate) fn compare(name: &str, got: &[u8], stored: &[u8]) -> Result<(), String> {
    if got.len() != stored.len() {
        return Err(format!(
            "get {name:?} returned {} bytes, but {} were stored",
            got.len(),
            stored.len()
        ));
    }
    match got.iter().zip(stored).position(|(a, b)| a != b) {
        None => Ok(()),
        Some(at) => Err(format!(
            "get {name:?} returned {} bytes that differ from the stored ones, first at byte {at}",
            got.len()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contents_depend_on_the_seed_and_have_the_asked_length() {
        assert_eq!(bytes(1, 13).len(), 13);
        assert_eq!(bytes(1, 13), bytes(1, 13));
        assert_ne!(bytes(1, 13), bytes(2, 13));
        assert_eq!(bytes(1, 20)[..13], bytes(1, 13));
        assert!(bytes(0, 0).is_empty());
    }

    #[test]
    fn differences_are_located() {
        assert_eq!(compare("a", b"abc", b"abc"), Ok(()));
        assert_eq!(
            compare("a", b"ab", b"abc"),
            Err("get \"a\" returned 2 bytes, but 3 were stored".into())
        );
        assert_eq!(
            compare("a", b"abd", b"abc"),
            Err(
                "get \"a\" returned 3 bytes that differ from the stored ones, first at byte 2"
                    .into()
            )
        );
    }
}
