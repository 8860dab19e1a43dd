//! Accounts: the credential that lets a device speak for an account, and the entry the
//! store keeps for it.
//!
//! A credential is `sbv1_` followed by 32 random bytes in unpadded base64url, made by
//! `sealback-vault account add NAME` and shown once. The store keeps only its SHA-256: a
//! credential has 256 bits of entropy, so a fast hash is enough to make a leaked store
//! useless for speaking to the vault. Requests are checked in constant time, and a request
//! without a valid credential for its account touches nothing else.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

const CREDENTIAL_PREFIX: &str = "sbv1_";

/// The store key of an account's entry.
pub fn store_key(account: &str) -> String {
    format!("account/{account}")
}

/// The account name in a store key made by [`store_key`].
pub fn account_of(store_key: &str) -> Option<&str> {
    store_key.strip_prefix("account/")
}

/// A new credential, and the hash the store keeps.
pub fn new_credential() -> (Zeroizing<String>, String) {
    let mut secret = Zeroizing::new([0u8; 32]);
    rand::rngs::OsRng.fill_bytes(secret.as_mut_slice());
    let credential = Zeroizing::new(format!(
        "{CREDENTIAL_PREFIX}{}",
        URL_SAFE_NO_PAD.encode(secret.as_slice())
    ));
    let hash = credential_hash(&credential);
    (credential, hash)
}

/// The stored form of a credential: its SHA-256, in standard base64.
pub fn credential_hash(credential: &str) -> String {
    STANDARD.encode(Sha256::digest(credential.as_bytes()))
}

/// Everything the vault keeps about one account, under [`store_key`]. JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountEntry {
    /// [`credential_hash`] of the account's current credential.
    pub credential_sha256: String,
    /// Guesses consumed since the last successful login or registration.
    pub guesses: u32,
    /// The highest record version handed out to a registration of this account. Versions
    /// are never reused, so a sealed record or sealed key is bound to one registration.
    pub last_version: u64,
    /// The current record, if any.
    pub record: Option<StoredRecord>,
    /// The last record was erased because the guess limit was reached.
    pub destroyed: bool,
    /// Guesses consumed over the account's whole life: never reset, so an older copy of the
    /// entry put back in the store has a lower `spent` than the vault has seen
    /// ([`crate::keyvault`]'s rollback check).
    #[serde(default)]
    pub spent: u64,
    /// The HSM's tag over the entry's state ([`crate::record::tag_entry`]), base64; absent
    /// only on an entry `account add` made, which has never been written by the vault.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// Where the vault wrote this entry in its key's history, on a store that keeps one
    /// (etcd: `[create_revision, version]`, [`crate::store::Versioned::lineage`]); under the
    /// tag. An entry found anywhere else was put there by someone else, and is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store_position: Option<[u64; 2]>,
    /// The last logins that spent a guess and named their attempt (oldest first, at most
    /// [`MAX_COUNTED_ATTEMPTS`]): the same attempt tried again spends no guess
    /// (docs/vault.md §7.2). Under the entry's tag.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attempts: Vec<Attempt>,
}

/// How many counted attempts an entry remembers: as many as logins may be in progress on one
/// account ([`crate::logins::MAX_LOGINS_PER_ACCOUNT`]), so an attempt is forgotten only after
/// that many later guesses of the account.
pub const MAX_COUNTED_ATTEMPTS: usize = 16;

/// A login attempt that spent a guess: the client's attempt id, what it evaluated, against
/// which record version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Attempt {
    /// 32 hexadecimal digits, as the client sent them.
    pub id: String,
    /// SHA-256 of the attempt's KE1, base64.
    pub ke1_sha256: String,
    /// The record version the guess was spent on (0: none).
    pub version: u64,
}

impl Attempt {
    /// The attempt `id` (checked: 32 hexadecimal digits) of a login with `ke1`, not yet
    /// tied to a record version.
    pub fn new(id: &str, ke1: &[u8]) -> Result<Attempt, String> {
        if id.len() != 32 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!(
                "attempt_id must be 32 hexadecimal digits (16 random bytes), not {} characters",
                id.len()
            ));
        }
        Ok(Attempt {
            id: id.to_ascii_lowercase(),
            ke1_sha256: STANDARD.encode(Sha256::digest(ke1)),
            version: 0,
        })
    }
}

/// A record as stored: its version and the HSM-sealed bytes ([`crate::record`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoredRecord {
    pub version: u64,
    #[serde(with = "sealback_vault_client::protocol::wire::b64")]
    pub sealed: Vec<u8>,
}

impl AccountEntry {
    /// A new account with no record.
    pub fn new(credential_sha256: String) -> AccountEntry {
        AccountEntry {
            credential_sha256,
            guesses: 0,
            last_version: 0,
            record: None,
            destroyed: false,
            spent: 0,
            tag: None,
            store_position: None,
            attempts: Vec::new(),
        }
    }

    /// Whether this is an entry as `account add` makes it: untagged, and nothing ever
    /// happened to it (no guess, no registration).
    pub fn is_fresh(&self) -> bool {
        self.tag.is_none()
            && self.guesses == 0
            && self.spent == 0
            && self.last_version == 0
            && self.record.is_none()
            && !self.destroyed
            && self.attempts.is_empty()
    }

    /// Whether `credential` is this account's, in constant time.
    pub fn accepts(&self, credential: &str) -> bool {
        credential_hash(credential)
            .as_bytes()
            .ct_eq(self.credential_sha256.as_bytes())
            .into()
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("an account entry serializes")
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<AccountEntry, String> {
        serde_json::from_slice(bytes).map_err(|err| format!("malformed account entry: {err}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_checked_against_their_hash() {
        let (credential, hash) = new_credential();
        assert!(credential.starts_with(CREDENTIAL_PREFIX));
        assert_eq!(credential.len(), CREDENTIAL_PREFIX.len() + 43);
        let entry = AccountEntry::new(hash);
        assert!(entry.accepts(&credential));
        assert!(!entry.accepts("sbv1_other"));
        assert!(
            !entry
                .to_bytes()
                .windows(10)
                .any(|w| credential.as_bytes().windows(10).any(|c| c == w))
        );
    }

    #[test]
    fn entries_round_trip() {
        let mut entry = AccountEntry::new("h".into());
        entry.record = Some(StoredRecord {
            version: 3,
            sealed: vec![1, 2, 3],
        });
        let back = AccountEntry::from_bytes(&entry.to_bytes()).expect("parses");
        assert_eq!(back, entry);
        assert!(AccountEntry::from_bytes(b"{\"x\":1}").is_err());
    }
}
