//! The key hierarchy.
//!
//! The backup key K is 32 random bytes made on the device. Every key the repository uses
//! is derived from it with HKDF-SHA256 (RFC 5869), extract salt `sealback repository v1`,
//! each under its own `info` label, so that no key serves two purposes:
//!
//! | label                          | key                                    |
//! |--------------------------------|----------------------------------------|
//! | `sealback v1 object encryption`| master key M of the per-object keys    |
//! | `sealback v1 chunk id`         | BLAKE3 key of chunk ids                |
//! | `sealback v1 chunker seed`     | 8 bytes: the seed of the chunker's gear table |
//!
//! Each object then gets its own AES-256-GCM key, HKDF-SHA256 with the object's random
//! 32-byte salt as extract salt, M as input and `sealback v1 object key` as info (see
//! [`crate::object`] for why this makes nonce reuse impossible).
//!
//! K leaves the device only as the 64-digit recovery key the user writes down: 64
//! hexadecimal digits, exactly the 256 bits of K, shown in 16 groups of 4.

use std::fmt::Write as _;

use aes_gcm::{Aes256Gcm, KeyInit};
use hkdf::Hkdf;
use rand::RngCore;
use sha2::Sha256;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::chunk::ChunkId;

const EXTRACT_SALT: &[u8] = b"sealback repository v1";
const LABEL_OBJECT_ENCRYPTION: &[u8] = b"sealback v1 object encryption";
const LABEL_CHUNK_ID: &[u8] = b"sealback v1 chunk id";
const LABEL_CHUNKER_SEED: &[u8] = b"sealback v1 chunker seed";
const LABEL_OBJECT_KEY: &[u8] = b"sealback v1 object key";

/// Number of digits in a recovery key.
pub const RECOVERY_DIGITS: usize = 64;

/// The backup key K. No Debug, Display or Clone; zeroized on drop.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct BackupKey(Box<[u8; 32]>);

impl BackupKey {
    /// A fresh key from the operating system's CSPRNG.
    pub fn generate() -> Self {
        let mut key = Box::new([0u8; 32]);
        rand::rngs::OsRng.fill_bytes(key.as_mut_slice());
        BackupKey(key)
    }

    /// Takes the key's bytes; the caller's copy is zeroized.
    pub fn from_bytes(bytes: &mut [u8; 32]) -> Self {
        let key = Box::new(*bytes);
        bytes.zeroize();
        BackupKey(key)
    }

    pub fn expose_secret(&self) -> &[u8; 32] {
        &self.0
    }

    /// The key as the user writes it down: 64 hex digits in 16 groups of 4.
    pub fn to_recovery_key(&self) -> Zeroizing<String> {
        let mut out = Zeroizing::new(String::with_capacity(RECOVERY_DIGITS + 15));
        for (i, byte) in self.0.iter().enumerate() {
            if i > 0 && i % 2 == 0 {
                out.push(' ');
            }
            // Writing to a String cannot fail.
            let _ = write!(out, "{byte:02x}");
        }
        out
    }

    /// Reads a recovery key as typed: digits 0-9 and a-f (either case), with any spaces,
    /// dashes or line breaks between them. Says precisely what is wrong with a mistyped key.
    pub fn from_recovery_key(typed: &str) -> Result<Self, RecoveryKeyError> {
        let mut nibbles = Zeroizing::new(Vec::with_capacity(RECOVERY_DIGITS));
        for c in typed.chars() {
            if c.is_whitespace() || c == '-' {
                continue;
            }
            match c.to_digit(16) {
                Some(v) => nibbles.push(v as u8),
                None => {
                    return Err(RecoveryKeyError::BadCharacter {
                        character: c,
                        digits_before: nibbles.len(),
                    });
                }
            }
        }
        if nibbles.len() != RECOVERY_DIGITS {
            return Err(RecoveryKeyError::WrongLength {
                found: nibbles.len(),
            });
        }
        let mut bytes = [0u8; 32];
        for (i, pair) in nibbles.chunks_exact(2).enumerate() {
            bytes[i] = (pair[0] << 4) | pair[1];
        }
        Ok(BackupKey::from_bytes(&mut bytes))
    }

    /// Derives the repository keys.
    pub fn derive(&self) -> RepoKeys {
        let hk = Hkdf::<Sha256>::new(Some(EXTRACT_SALT), self.0.as_slice());
        let mut keys = RepoKeys {
            object_master: [0; 32],
            chunk_id: [0; 32],
            chunker_seed: 0,
        };
        expand(&hk, LABEL_OBJECT_ENCRYPTION, &mut keys.object_master);
        expand(&hk, LABEL_CHUNK_ID, &mut keys.chunk_id);
        let mut seed = [0u8; 8];
        expand(&hk, LABEL_CHUNKER_SEED, &mut seed);
        keys.chunker_seed = u64::from_le_bytes(seed);
        keys
    }
}

fn expand(hk: &Hkdf<Sha256>, info: &[u8], out: &mut [u8]) {
    // HKDF-SHA256 can expand up to 255 * 32 bytes; we never ask for more than 32.
    hk.expand(info, out)
        .expect("HKDF output length is at most 32 bytes");
}

/// Why a typed recovery key was refused. No variant carries the key itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecoveryKeyError {
    #[error(
        "a recovery key has 64 digits, this one has {found}: check for a missing or doubled group"
    )]
    WrongLength { found: usize },
    /// `digits_before`: how many good digits precede the character, so the message can say
    /// where it is ("before the first digit", "after digit 4").
    #[error(
        "'{character}' ({}) is not a recovery-key digit: recovery keys use only 0-9 and a-f{}",
        place(*digits_before),
        confusable_hint(*character)
    )]
    BadCharacter {
        character: char,
        digits_before: usize,
    },
}

fn place(digits_before: usize) -> String {
    match digits_before {
        0 => "before the first digit".to_owned(),
        n => format!("after digit {n}"),
    }
}

fn confusable_hint(c: char) -> &'static str {
    match c {
        'o' | 'O' => " (did you mean 0?)",
        'l' | 'I' | 'i' => " (did you mean 1?)",
        's' | 'S' => " (did you mean 5?)",
        _ => "",
    }
}

/// The keys derived from K. No Debug or Clone; zeroized on drop.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct RepoKeys {
    object_master: [u8; 32],
    chunk_id: [u8; 32],
    chunker_seed: u64,
}

impl RepoKeys {
    /// The keyed id of a chunk: BLAKE3 keyed with the chunk-id key, so the provider cannot
    /// compute the id of a file it knows and look for it.
    pub fn chunk_id(&self, plaintext: &[u8]) -> ChunkId {
        ChunkId(*blake3::keyed_hash(&self.chunk_id, plaintext).as_bytes())
    }

    /// The seed of the content-defined chunker's gear table.
    pub fn chunker_seed(&self) -> u64 {
        self.chunker_seed
    }

    /// The AES-256-GCM key of the object with this salt.
    pub(crate) fn object_cipher(&self, salt: &[u8; 32]) -> Aes256Gcm {
        let key = self.object_key(salt);
        Aes256Gcm::new_from_slice(key.as_slice()).expect("AES-256 key is 32 bytes")
    }

    fn object_key(&self, salt: &[u8; 32]) -> Zeroizing<[u8; 32]> {
        let hk = Hkdf::<Sha256>::new(Some(salt), &self.object_master);
        let mut key = Zeroizing::new([0u8; 32]);
        expand(&hk, LABEL_OBJECT_KEY, key.as_mut_slice());
        key
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixed_key() -> BackupKey {
        let mut bytes = [0u8; 32];
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = i as u8;
        }
        BackupKey::from_bytes(&mut bytes)
    }

    #[test]
    fn recovery_key_round_trip_and_format() {
        let key = fixed_key();
        let shown = key.to_recovery_key();
        assert_eq!(
            shown.as_str(),
            "0001 0203 0405 0607 0809 0a0b 0c0d 0e0f 1011 1213 1415 1617 1819 1a1b 1c1d 1e1f"
        );
        let back = BackupKey::from_recovery_key(&shown.to_uppercase().replace(' ', "-"))
            .expect("valid key");
        assert_eq!(back.expose_secret(), key.expose_secret());
        let random = BackupKey::generate();
        let again = BackupKey::from_recovery_key(&random.to_recovery_key()).expect("valid");
        assert_eq!(again.expose_secret(), random.expose_secret());
    }

    #[test]
    fn mistyped_recovery_keys_are_refused_precisely() {
        let shown = fixed_key().to_recovery_key();
        let short = &shown[..shown.len() - 1];
        assert!(matches!(
            BackupKey::from_recovery_key(short),
            Err(RecoveryKeyError::WrongLength { found: 63 })
        ));
        let typo = shown.replacen('0', "o", 1);
        let err = BackupKey::from_recovery_key(&typo).err().expect("refused");
        assert_eq!(
            err,
            RecoveryKeyError::BadCharacter {
                character: 'o',
                digits_before: 0
            }
        );
        let message = err.to_string();
        assert!(message.contains("did you mean 0?"), "{message}");
        assert!(message.contains("before the first digit"), "{message}");
        // "0001 0203 0405 0607 0809 ...": the 8 in the fifth group is digit 18.
        let err = BackupKey::from_recovery_key(&shown.replacen('8', "x", 1))
            .err()
            .expect("refused");
        assert!(err.to_string().contains("'x' (after digit 17)"), "{err}");
    }

    /// Fixed vectors, computed independently (Python's hmac/hashlib for HKDF-SHA256, the
    /// blake3 package for keyed BLAKE3) from K = 00 01 .. 1f. If these change, every
    /// existing repository becomes unreadable.
    #[test]
    fn derived_keys_match_the_specification_vectors() {
        let keys = fixed_key().derive();
        assert_eq!(
            hex(&keys.object_master),
            "064d7756a584f97f64f01f3a5e282c70450a9d7e36de4095fc8485d48ea128b7"
        );
        assert_eq!(
            keys.chunk_id(b"hello").to_string(),
            "66ff1e00083d0cb61276afa74d2e228e9d71e3ad3b6b2403087f4abdca610989"
        );
        assert_eq!(keys.chunker_seed(), 18232855066526137791);
        assert_eq!(
            hex(keys.object_key(&[0x11; 32]).as_slice()),
            "d240171050c97e54c476c94c850215d45434ef06e51b87e8238cc983ff24ac2f"
        );
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }
}
