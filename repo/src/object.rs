//! Sealed objects: the framing every object in a repository shares.
//!
//! ```text
//! object  = header || body
//! header  = "SEALBACK" (8 bytes) || format version (1 byte, = 1) || kind (1 byte) || salt (32 bytes)
//! ```
//!
//! The salt is 32 fresh random bytes each time an object is written. The object's
//! AES-256-GCM key is derived from it ([`crate::RepoKeys`]), so every object has its own key
//! and nonces only need to be unique within one object: a single-payload object
//! (config, index, snapshot) uses nonce 0 once; a pack numbers its blobs (see
//! [`crate::pack`]). Two objects share a key only if two 256-bit random salts collide.
//!
//! The additional data of a single payload is `header || name`: it binds the kind, the
//! format version, the salt and the object's name, so an object cannot be passed off as
//! another kind, or renamed or swapped with another object, without failing
//! authentication.

use std::fmt;

use aes_gcm::aead::{Aead, AeadInOut, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use rand::RngCore;

use crate::error::{Error, Result};
use crate::keys::RepoKeys;

pub const MAGIC: &[u8; 8] = b"SEALBACK";
pub const FORMAT_VERSION: u8 = 1;
pub const HEADER_LEN: usize = 8 + 1 + 1 + 32;
pub const TAG_LEN: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ObjectKind {
    Config = 1,
    Pack = 2,
    Index = 3,
    Snapshot = 4,
}

impl ObjectKind {
    fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            1 => ObjectKind::Config,
            2 => ObjectKind::Pack,
            3 => ObjectKind::Index,
            4 => ObjectKind::Snapshot,
            _ => return None,
        })
    }
}

impl fmt::Display for ObjectKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ObjectKind::Config => "config",
            ObjectKind::Pack => "pack",
            ObjectKind::Index => "index",
            ObjectKind::Snapshot => "snapshot",
        })
    }
}

/// A parsed header: the object's kind and the cipher its salt selects.
pub(crate) struct Header {
    pub bytes: [u8; HEADER_LEN],
    pub cipher: Aes256Gcm,
}

impl Header {
    /// A new header with a fresh random salt.
    pub fn new(keys: &RepoKeys, kind: ObjectKind) -> Header {
        let mut salt = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut salt);
        let mut bytes = [0u8; HEADER_LEN];
        bytes[..8].copy_from_slice(MAGIC);
        bytes[8] = FORMAT_VERSION;
        bytes[9] = kind as u8;
        bytes[10..].copy_from_slice(&salt);
        Header {
            bytes,
            cipher: keys.object_cipher(&salt),
        }
    }

    /// Parses and checks the header of `bytes`, which must be an object of `expected` kind.
    pub fn parse(
        keys: &RepoKeys,
        expected: ObjectKind,
        name: &str,
        bytes: &[u8],
    ) -> Result<Header> {
        if bytes.len() < HEADER_LEN + TAG_LEN {
            return Err(Error::Truncated {
                name: name.to_owned(),
                len: bytes.len(),
            });
        }
        if &bytes[..8] != MAGIC {
            return Err(Error::BadMagic {
                name: name.to_owned(),
            });
        }
        if bytes[8] != FORMAT_VERSION {
            return Err(Error::UnsupportedVersion {
                name: name.to_owned(),
                found: bytes[8],
                supported: FORMAT_VERSION,
            });
        }
        let found = ObjectKind::from_u8(bytes[9]).ok_or_else(|| Error::UnknownKind {
            name: name.to_owned(),
            kind: bytes[9],
        })?;
        if found != expected {
            return Err(Error::WrongKind {
                name: name.to_owned(),
                expected,
                found,
            });
        }
        let mut header = [0u8; HEADER_LEN];
        header.copy_from_slice(&bytes[..HEADER_LEN]);
        let mut salt = [0u8; 32];
        salt.copy_from_slice(&bytes[10..HEADER_LEN]);
        Ok(Header {
            bytes: header,
            cipher: keys.object_cipher(&salt),
        })
    }

    /// `header || name || extra`: the additional data of the object's own payloads.
    pub fn aad(&self, name: &str, extra: &[u8]) -> Vec<u8> {
        let mut aad = Vec::with_capacity(HEADER_LEN + name.len() + extra.len());
        aad.extend_from_slice(&self.bytes);
        aad.extend_from_slice(name.as_bytes());
        aad.extend_from_slice(extra);
        aad
    }
}

/// A 96-bit GCM nonce holding `counter` big-endian.
pub(crate) fn counter_nonce(counter: u64) -> Nonce<aes_gcm::aead::consts::U12> {
    let mut n = [0u8; 12];
    n[4..].copy_from_slice(&counter.to_be_bytes());
    Nonce::from(n)
}

/// Seals a single-payload object (config, index, snapshot), in one buffer: the header,
/// then the plaintext encrypted where it is copied (an index or a snapshot is a megabyte
/// or more, and a backup's last allocations set its peak memory).
pub fn seal(keys: &RepoKeys, kind: ObjectKind, name: &str, plaintext: &[u8]) -> Vec<u8> {
    let header = Header::new(keys, kind);
    let aad = header.aad(name, &[]);
    let mut out = Vec::with_capacity(HEADER_LEN + plaintext.len() + TAG_LEN);
    out.extend_from_slice(&header.bytes);
    out.extend_from_slice(plaintext);
    let tag = header
        .cipher
        .encrypt_inout_detached(&counter_nonce(0), &aad, out[HEADER_LEN..].as_mut().into())
        .expect("AES-GCM encrypts any payload below 64 GiB");
    out.extend_from_slice(&tag);
    out
}

/// Opens a single-payload object, checking its kind, its name and its integrity.
pub fn open(keys: &RepoKeys, kind: ObjectKind, name: &str, bytes: &[u8]) -> Result<Vec<u8>> {
    let header = Header::parse(keys, kind, name, bytes)?;
    let aad = header.aad(name, &[]);
    header
        .cipher
        .decrypt(
            &counter_nonce(0),
            Payload {
                msg: &bytes[HEADER_LEN..],
                aad: &aad,
            },
        )
        .map_err(|_| Error::Authentication {
            name: name.to_owned(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::BackupKey;

    fn keys() -> RepoKeys {
        BackupKey::from_bytes(&mut [7u8; 32]).derive()
    }

    #[test]
    fn seal_open_round_trip() {
        let keys = keys();
        let sealed = seal(&keys, ObjectKind::Snapshot, "snapshots/ab", b"payload");
        assert_eq!(sealed.len(), HEADER_LEN + 7 + TAG_LEN);
        let opened = open(&keys, ObjectKind::Snapshot, "snapshots/ab", &sealed).expect("opens");
        assert_eq!(opened, b"payload");
    }

    #[test]
    fn each_seal_uses_a_fresh_salt() {
        let keys = keys();
        let a = seal(&keys, ObjectKind::Index, "index/1", b"same");
        let b = seal(&keys, ObjectKind::Index, "index/1", b"same");
        assert_ne!(a[10..HEADER_LEN], b[10..HEADER_LEN]);
        assert_ne!(a[HEADER_LEN..], b[HEADER_LEN..]);
    }

    #[test]
    fn tampering_renaming_and_kind_confusion_fail() {
        let keys = keys();
        let sealed = seal(&keys, ObjectKind::Index, "index/1", b"payload");
        for i in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 0x01;
            assert!(
                open(&keys, ObjectKind::Index, "index/1", &bad).is_err(),
                "flip at {i}"
            );
        }
        assert!(matches!(
            open(&keys, ObjectKind::Index, "index/2", &sealed),
            Err(Error::Authentication { .. })
        ));
        assert!(matches!(
            open(&keys, ObjectKind::Snapshot, "index/1", &sealed),
            Err(Error::WrongKind { .. })
        ));
        assert!(matches!(
            open(&keys, ObjectKind::Index, "index/1", &sealed[..20]),
            Err(Error::Truncated { .. })
        ));
        let other = BackupKey::from_bytes(&mut [8u8; 32]).derive();
        assert!(matches!(
            open(&other, ObjectKind::Index, "index/1", &sealed),
            Err(Error::Authentication { .. })
        ));
    }
}
