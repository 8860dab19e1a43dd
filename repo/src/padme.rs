//! Padmé: the lengths every stored object is padded to, so that its size says little more
//! than its order of magnitude.
//!
//! Nikitin, Barman, Lueks, Underwood, Hubaux, Ford: "Reducing Metadata Leakage from
//! Encrypted Files and Communication with PURBs", PETS 2019, §4. For a length L ≥ 2, let
//! E = ⌊log2 L⌋ and S = ⌊log2 E⌋ + 1; the padded length is L rounded up to a multiple of
//! 2^(E−S), so it has at most S + 1 significant bits. The overhead is at most 11.6% (at L = 129)
//! and falls as L grows: under 3.2% from 1 MiB, 1.6% from 4 GiB. A length of a few hundred
//! kilobytes is one of 32 per power of two, where the exact length of a 183,412-byte photo
//! would have let a provider recognise a photo it knows.
//!
//! The padding travels inside an object's authenticated encryption, as ISO/IEC 7816-4 does
//! it: the plaintext, one `0x80` byte, then zeros up to the padded length. Its true length
//! is known only after decryption; a plaintext whose end is not `0x80` and zeros is refused
//! ([`unpad`]), though only a holder of the key could have sealed one.

use crate::error::{Error, Result};

/// The byte that ends the true plaintext, before the zeros.
const MARKER: u8 = 0x80;

/// The Padmé length for `len`: the smallest length ≥ `len` whose low E − S bits are zero
/// (E = ⌊log2 len⌋, S = ⌊log2 E⌋ + 1).
pub fn padme(len: u64) -> u64 {
    if len < 2 {
        return len;
    }
    let e = u64::from(len.ilog2());
    let s = u64::from(e.ilog2()) + 1;
    let mask = (1u64 << (e - s)) - 1;
    (len + mask) & !mask
}

/// Appends the marker and as many zeros as bring an object of `len_around` bytes besides
/// `plain` (header, tag, trailer) to its Padmé length.
pub(crate) fn pad(plain: &mut Vec<u8>, len_around: usize) {
    let unpadded = len_around + plain.len() + 1;
    let padded = padme(unpadded as u64) as usize;
    plain.reserve(padded - unpadded + 1);
    plain.push(MARKER);
    plain.resize(plain.len() + padded - unpadded, 0);
}

/// The plaintext without its padding; `name` is the object's, for the error.
pub(crate) fn unpad<'p>(name: &str, padded: &'p [u8]) -> Result<&'p [u8]> {
    let end = padded.iter().rposition(|b| *b != 0);
    match end {
        Some(at) if padded[at] == MARKER => Ok(&padded[..at]),
        _ => Err(Error::malformed(
            name,
            "its padding is not 0x80 then zeros (damaged, or sealed by a faulty writer)",
        )),
    }
}

/// [`unpad`] in place.
pub(crate) fn unpad_vec(name: &str, mut padded: Vec<u8>) -> Result<Vec<u8>> {
    let len = unpad(name, &padded)?.len();
    padded.truncate(len);
    Ok(padded)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padme_values_by_hand_from_the_definition() {
        // L, E, S, the bits zeroed (E - S), the padded length.
        let cases: [(u64, u64); 13] = [
            (2, 2),
            (3, 3),
            (9, 10),                // E 3, S 2: one bit, 11.1%
            (129, 144),             // E 7, S 3: four bits, the worst case, 11.6%
            (17, 18),               // E 4, S 3: one bit
            (100, 104),             // E 6, S 3: three bits
            (1000, 1024),           // E 9, S 4: five bits
            (1025, 1088),           // E 10, S 4: six bits
            (183_412, 184_320),     // E 17, S 5: twelve bits (the photo of issue 14)
            (183_536, 184_320),     // its pack, unpadded
            (1 << 20, 1 << 20),     // a power of two is its own length
            (4_194_303, 4_194_304), // E 21, S 5: sixteen bits
            (8_388_609, 8_650_752), // E 23, S 5: eighteen bits, 3.1%
        ];
        for (len, padded) in cases {
            assert_eq!(padme(len), padded, "padme({len})");
        }
        assert_eq!((padme(0), padme(1)), (0, 1));
    }

    /// Whether `len` has at most S + 1 significant bits, S = ⌊log2 E⌋ + 1, E = ⌊log2 len⌋.
    fn is_padme_length(len: u64) -> bool {
        let e = len.ilog2();
        let s = e.max(1).ilog2() + 1;
        len.trailing_zeros() >= e.saturating_sub(s)
    }

    #[test]
    fn padme_is_the_least_padme_length_at_or_above() {
        let mut next = 1 << 18;
        for len in (2..1u64 << 18).rev() {
            if is_padme_length(len) {
                next = len;
            }
            assert_eq!(padme(len), next, "padme({len})");
        }
    }

    #[test]
    fn padme_costs_at_most_twelve_percent_and_three_from_a_mebibyte() {
        let mut worst = 0f64;
        let lens = (2..1u64 << 18).chain((18..48).flat_map(|e| {
            let p = 1u64 << e;
            [p - 1, p, p + 1, p + p / 3, p + p / 2 + 7]
        }));
        for len in lens {
            let padded = padme(len);
            assert!(
                padded >= len && is_padme_length(padded),
                "padme({len}) = {padded}"
            );
            assert_eq!(padme(padded), padded, "padme({len}) = {padded}");
            let overhead = (padded - len) as f64 / len as f64;
            worst = worst.max(overhead);
            assert!(overhead <= 0.12, "padme({len}) = {padded}: {overhead}");
            if len >= 1 << 20 {
                assert!(overhead < 0.032, "padme({len}) = {padded}: {overhead}");
            }
        }
        // The worst case is at 129 (E 7, S 3: rounded to 144).
        assert_eq!(worst, 15.0 / 129.0);
    }

    #[test]
    fn few_lengths_per_power_of_two() {
        // From 128 KiB up to 256 KiB only 32 lengths are ever stored (every 4 KiB).
        let mut lens: Vec<u64> = (131_072..262_144).map(padme).collect();
        lens.dedup();
        assert_eq!(lens.len(), 33, "32 and 256 KiB itself");
    }

    #[test]
    fn pad_reaches_the_padme_length_and_unpad_recovers_the_plaintext() {
        for around in [0, 58, 62] {
            for len in [0usize, 1, 2, 100, 4095, 4096, 183_412] {
                let plain: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
                let mut padded = plain.clone();
                pad(&mut padded, around);
                let total = (around + padded.len()) as u64;
                assert_eq!(total, padme(total), "{around} + {len}");
                assert!(padded.len() > len);
                assert_eq!(unpad("x", &padded).expect("unpads"), plain);
            }
        }
        // Trailing zeros of the plaintext itself survive.
        let mut padded = vec![1, 0, 0];
        pad(&mut padded, 58);
        assert_eq!(unpad("x", &padded).expect("unpads"), [1, 0, 0]);
    }

    #[test]
    fn malformed_padding_is_refused() {
        for bad in [&[][..], &[0, 0, 0], &[1, 2, 3], &[0x80, 0, 1], &[0x81, 0]] {
            let err = unpad("index/x", bad).expect_err("refused");
            assert!(err.is_integrity(), "{err}");
            assert!(err.to_string().contains("padding"), "{err}");
        }
    }
}
