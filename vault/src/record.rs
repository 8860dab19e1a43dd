//! What the vault seals with the HSM's record key ([`crate::hsm`]), and the additional data
//! that binds each sealed value to its place.
//!
//! ```text
//! record plaintext = len(registration) (u16 BE) || OPAQUE ServerRegistration || sealed key
//! record AAD       = "sealback-vault v1 record" || len(account) (u16 BE) || account
//!                    || record version (u64 BE)
//! setup plaintext  = the serialized OPAQUE ServerSetup (OPRF seed, server key pair, dummy key)
//! setup AAD        = "sealback-vault v1 server setup"
//! entry tag        = CKM_SHA256_HMAC(entry key, entry data) (32 bytes)
//! entry data       = "sealback-vault v1 entry" || len(account) (u16 BE) || account
//!                    || last_version (u64 BE) || record version (u64 BE, 0: no record)
//!                    || SHA-256(sealed record) (32 zero bytes: no record)
//!                    || guesses (u32 BE) || destroyed (1 byte, 0 or 1) || spent (u64 BE)
//! ```
//!
//! The sealed key inside a record is already sealed by the client under its export key
//! (`sealback_vault_client::protocol::sealed_key`); the HSM layer adds that nobody without the
//! HSM reads the OPAQUE record (which with the ServerSetup would allow offline guessing) and
//! that a record edited in the store, or moved to another account or another version, does
//! not open: the vault refuses it instead of using it.
//!
//! The guess count lives in the account entry, beside the sealed record, and the entry
//! carries the HSM's **tag** over everything the guess limit depends on: the count, the
//! lifetime count `spent`, `destroyed`, the record's version and bytes, the highest version
//! reserved, and the account. The tag is HMAC-SHA256 under the HSM's entry key
//! ([`crate::hsm`]), made and checked inside the HSM; an entry edited in the store (a count
//! set back, `destroyed` cleared, a record put back) fails it. The MAC is deterministic: an
//! entry is written at every guess, too often for GCM under random IVs (2^32 seals per
//! key), and no nonce means none can repeat.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use opaque_ke::{ServerRegistration, ServerSetup};
use sealback_vault_client::protocol::account_version_aad;
use sealback_vault_client::protocol::suite::Suite;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::account::AccountEntry;
use crate::hsm::{Hsm, HsmError};

const RECORD_LABEL: &[u8] = b"sealback-vault v1 record";
const CREDENTIAL_LABEL: &[u8] = b"sealback-vault v1 credential";
const SETUP_LABEL: &[u8] = b"sealback-vault v1 server setup";
const ENTRY_LABEL: &[u8] = b"sealback-vault v1 entry";
const ATTEMPTS_LABEL: &[u8] = b"attempts";
/// Before the entry's place in its key's history (etcd, docs/vault.md §11.3).
const POSITION_LABEL: &[u8] = b"sealback-vault v1 store position";

/// The store key of the sealed ServerSetup.
pub const SERVER_SETUP_KEY: &str = "server-setup";

/// The OPAQUE credential identifier of `account`'s record `version`, from which the OPRF key
/// of that record is derived:
/// `"sealback-vault v1 credential" || len(account) (u16 BE) || account || version (u64 BE)`.
///
/// Each record version has its own OPRF key. `register/start` evaluates the OPRF without
/// consuming a guess, so with one key per account it would be an unlimited oracle: its
/// answers, with one KE2 from a counted login, would let a credential holder test passwords
/// offline. Here `register/start` evaluates under the key of a version it has just reserved,
/// which no existing record uses. Logins on an account without a record use version 0,
/// which no record ever has (versions start at 1), so their counted evaluations cannot be
/// carried over to a future record either.
pub fn credential_identifier(account: &str, version: u64) -> Vec<u8> {
    account_version_aad(CREDENTIAL_LABEL, account, version)
}

/// An opened record.
pub struct Record {
    pub registration: ServerRegistration<Suite>,
    /// K sealed by the client; zeroized on drop (it is not K, but no copy need linger).
    pub sealed_key: Zeroizing<Vec<u8>>,
}

/// Why a stored record cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error(transparent)]
    Hsm(#[from] HsmError),
    #[error("the opened record is malformed: {0}")]
    Malformed(String),
}

/// Seals a record of `account` at `version`.
pub fn seal(
    hsm: &Hsm,
    account: &str,
    version: u64,
    registration: &[u8],
    sealed_key: &[u8],
) -> Result<Vec<u8>, HsmError> {
    let length = u16::try_from(registration.len()).map_err(|_| HsmError::Unsealable)?;
    let mut plain = Zeroizing::new(Vec::with_capacity(
        2 + registration.len() + sealed_key.len(),
    ));
    plain.extend_from_slice(&length.to_be_bytes());
    plain.extend_from_slice(registration);
    plain.extend_from_slice(sealed_key);
    hsm.seal(&account_version_aad(RECORD_LABEL, account, version), &plain)
}

/// Opens a record of `account` at `version`.
pub fn open(hsm: &Hsm, account: &str, version: u64, sealed: &[u8]) -> Result<Record, RecordError> {
    let plain = hsm.open_sealed(&account_version_aad(RECORD_LABEL, account, version), sealed)?;
    let malformed = || RecordError::Malformed("truncated".into());
    let length = usize::from(u16::from_be_bytes(
        plain
            .get(..2)
            .ok_or_else(malformed)?
            .try_into()
            .map_err(|_| malformed())?,
    ));
    let registration = plain.get(2..2 + length).ok_or_else(malformed)?;
    let sealed_key = plain.get(2 + length..).ok_or_else(malformed)?;
    Ok(Record {
        registration: ServerRegistration::deserialize(registration)
            .map_err(|err| RecordError::Malformed(format!("OPAQUE registration: {err}")))?,
        sealed_key: Zeroizing::new(sealed_key.to_vec()),
    })
}

/// Seals the ServerSetup.
pub fn seal_setup(hsm: &Hsm, setup: &ServerSetup<Suite>) -> Result<Vec<u8>, HsmError> {
    let plain = Zeroizing::new(setup.serialize().to_vec());
    hsm.seal(SETUP_LABEL, &plain)
}

/// Opens the ServerSetup.
pub fn open_setup(hsm: &Hsm, sealed: &[u8]) -> Result<ServerSetup<Suite>, RecordError> {
    let plain = hsm.open_sealed(SETUP_LABEL, sealed)?;
    ServerSetup::deserialize(&plain)
        .map_err(|err| RecordError::Malformed(format!("OPAQUE server setup: {err}")))
}

/// What `account`'s entry tag authenticates: the entry's state, without the tag and the
/// credential hash (which `account reissue` changes without the HSM).
fn entry_data(account: &str, entry: &AccountEntry) -> Vec<u8> {
    let mut data = account_version_aad(ENTRY_LABEL, account, entry.last_version);
    match &entry.record {
        Some(record) => {
            data.extend_from_slice(&record.version.to_be_bytes());
            data.extend_from_slice(&Sha256::digest(&record.sealed));
        }
        None => {
            data.extend_from_slice(&0u64.to_be_bytes());
            data.extend_from_slice(&[0u8; 32]);
        }
    }
    data.extend_from_slice(&entry.guesses.to_be_bytes());
    data.push(u8::from(entry.destroyed));
    data.extend_from_slice(&entry.spent.to_be_bytes());
    // Only on a store that keeps a key history (etcd); SQLite entries have none, and their
    // tags are what they were before this field existed.
    if let Some([created, version]) = entry.store_position {
        data.extend_from_slice(POSITION_LABEL);
        data.extend_from_slice(&created.to_be_bytes());
        data.extend_from_slice(&version.to_be_bytes());
    }
    // Only when there are any, so that entries tagged before attempts existed keep their tag.
    if !entry.attempts.is_empty() {
        data.extend_from_slice(ATTEMPTS_LABEL);
        data.extend_from_slice(&(entry.attempts.len() as u32).to_be_bytes());
        for attempt in &entry.attempts {
            for field in [&attempt.id, &attempt.ke1_sha256] {
                data.extend_from_slice(&(field.len() as u32).to_be_bytes());
                data.extend_from_slice(field.as_bytes());
            }
            data.extend_from_slice(&attempt.version.to_be_bytes());
        }
    }
    data
}

/// Sets `entry.tag` to the HSM's tag over `account`'s entry as it now is.
pub fn tag_entry(hsm: &Hsm, account: &str, entry: &mut AccountEntry) -> Result<(), HsmError> {
    let tag = hsm.mac(&entry_data(account, entry))?;
    entry.tag = Some(STANDARD.encode(tag));
    Ok(())
}

/// Checks `entry.tag` in the HSM: [`HsmError::Unsealable`] if the entry is untagged, or was
/// changed since the vault tagged it, or is another account's.
pub fn check_entry_tag(hsm: &Hsm, account: &str, entry: &AccountEntry) -> Result<(), HsmError> {
    let tag = entry
        .tag
        .as_deref()
        .and_then(|tag| STANDARD.decode(tag).ok())
        .ok_or(HsmError::Unsealable)?;
    hsm.check_mac(&entry_data(account, entry), &tag)
}
