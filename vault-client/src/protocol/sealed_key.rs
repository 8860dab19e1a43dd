//! The backup key K sealed by the client under its OPAQUE export key.
//!
//! ```text
//! key    = HKDF-SHA512(salt = none, IKM = export key, info = LABEL, L = 32)
//! sealed = nonce (12 random bytes) || AES-256-GCM(key, nonce, AAD, K)     60 bytes
//! AAD    = LABEL || len(account) (u16 BE) || account || record version (u64 BE)
//! LABEL  = "sealback-vault v1 sealed key"
//! ```
//!
//! The export key is a 64-byte secret only the password holder can compute; the server never
//! learns it. It changes with every registration (the OPAQUE envelope has a fresh random
//! nonce), so each sealing key seals one K, once: the random nonce is not needed for safety
//! and costs nothing. The AAD binds the sealed key to its account and to the record version
//! it was registered as, so a sealed key moved to another account, or an old one put back
//! under a newer record, fails to open.

use aes_gcm::aead::{Aead, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use rand::RngCore;
use zeroize::Zeroizing;

use super::account_version_aad;

const LABEL: &[u8] = b"sealback-vault v1 sealed key";
const NONCE_LEN: usize = 12;

/// Length of a sealed key: nonce, K, tag.
pub const SEALED_KEY_LEN: usize = NONCE_LEN + 32 + 16;

/// Seals K for `account`'s record `record_version`.
pub fn seal(export_key: &[u8], account: &str, record_version: u64, key: &[u8; 32]) -> Vec<u8> {
    let cipher = cipher(export_key);
    let mut nonce = [0u8; NONCE_LEN];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    let aad = account_version_aad(LABEL, account, record_version);
    let ciphertext = cipher
        .encrypt(
            &Nonce::from(nonce),
            Payload {
                msg: key,
                aad: &aad,
            },
        )
        .expect("AES-GCM encrypts 32 bytes");
    let mut sealed = Vec::with_capacity(SEALED_KEY_LEN);
    sealed.extend_from_slice(&nonce);
    sealed.extend_from_slice(&ciphertext);
    sealed
}

/// Opens a sealed K; `None` if it was not sealed under this export key for this account
/// and record version, or is damaged.
pub fn open(
    export_key: &[u8],
    account: &str,
    record_version: u64,
    sealed: &[u8],
) -> Option<Zeroizing<[u8; 32]>> {
    if sealed.len() != SEALED_KEY_LEN {
        return None;
    }
    let (nonce, ciphertext) = sealed.split_first_chunk::<NONCE_LEN>()?;
    let aad = account_version_aad(LABEL, account, record_version);
    let plain = Zeroizing::new(
        cipher(export_key)
            .decrypt(
                &Nonce::from(*nonce),
                Payload {
                    msg: ciphertext,
                    aad: &aad,
                },
            )
            .ok()?,
    );
    let mut key = Zeroizing::new([0u8; 32]);
    key.copy_from_slice(plain.get(..32)?);
    Some(key)
}

fn cipher(export_key: &[u8]) -> Aes256Gcm {
    super::derive_cipher(export_key, LABEL)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_only_for_its_account_version_and_export_key() {
        let export = [5u8; 64];
        let k = [9u8; 32];
        let sealed = seal(&export, "alice", 3, &k);
        assert_eq!(sealed.len(), SEALED_KEY_LEN);
        assert_eq!(*open(&export, "alice", 3, &sealed).expect("opens"), k);
        assert!(open(&export, "bob", 3, &sealed).is_none());
        assert!(open(&export, "alice", 4, &sealed).is_none());
        assert!(open(&[6u8; 64], "alice", 3, &sealed).is_none());
        let mut flipped = sealed.clone();
        flipped[20] ^= 1;
        assert!(open(&export, "alice", 3, &flipped).is_none());
    }

    /// A fixed vector: the key derivation and the AAD layout must not drift.
    #[test]
    fn fixed_vector() {
        let cipher = cipher(&[1u8; 64]);
        let aad = account_version_aad(LABEL, "a", 1);
        let ct = cipher
            .encrypt(
                &Nonce::from([0u8; 12]),
                Payload {
                    msg: &[2u8; 32],
                    aad: &aad,
                },
            )
            .expect("encrypts");
        assert_eq!(hex(&ct), VECTOR);
    }

    /// Computed independently with Python's `hmac`/`hashlib` (HKDF-SHA512) and the
    /// `cryptography` package's AESGCM: export key 64 × 0x01, account `a`, version 1,
    /// K = 32 × 0x02, nonce 0.
    const VECTOR: &str = "b870c8b3b990dad7ddce194a683da95396d72518b86f2ef9c109d5df754ba602\
                          9f2c76520a4b39153c21733b5eecd307";

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }
}
