//! The vault protocol, version 1: what the client and the server (`sealback-vault`) agree
//! on. The server depends on this module, so there is one definition of every message, label
//! and additional-data layout; `docs/vault.md` is their specification.
//!
//! - [`suite`]: the OPAQUE configuration (Ristretto255, TripleDh, Argon2id and its
//!   parameters), the identifiers and the context string both sides pass.
//! - [`wire`]: the HTTP JSON messages and the error codes.
//! - [`sealed_key`]: how the client seals the backup key K under its OPAQUE export key,
//!   so that the vault never sees K in the clear.
//! - [`transfer`]: how the server hands the sealed key back under the login's session key.
//! - [`vault_proof`]: how every answer proves it comes from the holder of the pinned key,
//!   and how the credential travels sealed to that key.

pub mod sealed_key;
pub mod suite;
pub mod transfer;
pub mod vault_proof;
pub mod wire;

/// The version of this protocol; it names the URL prefix (`/v1/...`) and is part of every
/// label and additional-data string.
pub const VERSION: u32 = 1;

/// The AES-256-GCM cipher keyed by HKDF-SHA512(salt = none, IKM = `ikm`, info = `label`,
/// L = 32): how both the sealed key (from the export key) and the transfer (from the session
/// key) derive their keys, each under its own label.
pub(crate) fn derive_cipher(ikm: &[u8], label: &[u8]) -> aes_gcm::Aes256Gcm {
    use aes_gcm::KeyInit;
    let mut key = zeroize::Zeroizing::new([0u8; 32]);
    hkdf::Hkdf::<sha2::Sha512>::new(None, ikm)
        .expand(label, key.as_mut_slice())
        .expect("32 bytes is a valid HKDF-SHA512 output length");
    aes_gcm::Aes256Gcm::new_from_slice(key.as_slice()).expect("the key is 32 bytes")
}

/// The longest account name, in bytes.
pub const MAX_ACCOUNT_LEN: usize = 128;

/// Whether `account` is a valid account name: 1 to 128 bytes of ASCII letters, digits and
/// `.`, `_`, `-`, `@`, `+`. Account names travel in URLs and in additional data, so they are
/// kept to characters that need no escaping.
pub fn check_account_name(account: &str) -> Result<(), String> {
    if account.is_empty() || account.len() > MAX_ACCOUNT_LEN {
        return Err(format!(
            "an account name has 1 to {MAX_ACCOUNT_LEN} characters, not {}",
            account.len()
        ));
    }
    match account
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@' | '+')))
    {
        Some(c) => Err(format!(
            "an account name has only letters, digits and . _ - @ +, not {c:?}"
        )),
        None => Ok(()),
    }
}

/// `label || len(account) (u16 BE) || account || record version (u64 BE)`: the additional
/// data that binds a sealed value to its account and its record version. Both
/// [`sealed_key`] (client side) and the server's HSM record sealing use it, each with its
/// own label.
pub fn account_version_aad(label: &[u8], account: &str, record_version: u64) -> Vec<u8> {
    let mut aad = Vec::with_capacity(label.len() + 2 + account.len() + 8);
    aad.extend_from_slice(label);
    // Account names are at most MAX_ACCOUNT_LEN bytes, so the length fits a u16.
    aad.extend_from_slice(&(account.len() as u16).to_be_bytes());
    aad.extend_from_slice(account.as_bytes());
    aad.extend_from_slice(&record_version.to_be_bytes());
    aad
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_names() {
        assert!(check_account_name("alice@example.org").is_ok());
        assert!(check_account_name("phone-1_a.b+c").is_ok());
        assert!(check_account_name("").is_err());
        assert!(check_account_name("a b").is_err());
        assert!(check_account_name("a/b").is_err());
        assert!(check_account_name(&"a".repeat(129)).is_err());
    }

    #[test]
    fn aad_layout() {
        let aad = account_version_aad(b"L", "ab", 258);
        assert_eq!(aad, b"L\x00\x02ab\x00\x00\x00\x00\x00\x00\x01\x02");
    }
}
