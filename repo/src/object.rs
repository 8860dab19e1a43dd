//! Sealed objects: the framing every object in a repository shares.
//!
//! ```text
//! object  = header || body
//! header  = "SEALBACK" (8 bytes) || format version (1 byte, = 2) || kind (1 byte) || salt (32 bytes)
//! ```
//!
//! Version 2 pads every object to a Padmé length ([`crate::padme`]) inside its encryption:
//! a single payload is sealed as `payload || 0x80 || 0x00*`, a pack's table likewise. Version
//! 1 objects (no padding) are still read; only version 2 is written. The version byte is in
//! every AAD, so a padded object cannot be read as an unpadded one or the other way round.
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
use crate::padme;

pub const MAGIC: &[u8; 8] = b"SEALBACK";
/// The format every object is written in: padded to a Padmé length.
pub const FORMAT_VERSION: u8 = 2;
/// The format before padding, still read.
pub const UNPADDED_VERSION: u8 = 1;
pub const HEADER_LEN: usize = 8 + 1 + 1 + 32;
pub const TAG_LEN: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ObjectKind {
    Config = 1,
    Pack = 2,
    Index = 3,
    Snapshot = 4,
    /// A prune's list of packs to delete once its grace period has passed (DESIGN §12).
    Marker = 5,
    /// The snapshots a prune deleted on purpose, for other devices' alarms (DESIGN §12.6).
    Forgotten = 6,
}

impl ObjectKind {
    fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            1 => ObjectKind::Config,
            2 => ObjectKind::Pack,
            3 => ObjectKind::Index,
            4 => ObjectKind::Snapshot,
            5 => ObjectKind::Marker,
            6 => ObjectKind::Forgotten,
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
            ObjectKind::Marker => "prune marker",
            ObjectKind::Forgotten => "record of forgotten snapshots",
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
        if !(UNPADDED_VERSION..=FORMAT_VERSION).contains(&bytes[8]) {
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

    /// Whether the object's plaintexts end in Padmé padding (format version 2 on).
    pub fn padded(&self) -> bool {
        self.bytes[8] >= FORMAT_VERSION
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
/// then the plaintext and its padding encrypted where they are copied (an index or a
/// snapshot is a megabyte or more, and a backup's last allocations set its peak memory).
pub fn seal(keys: &RepoKeys, kind: ObjectKind, name: &str, plaintext: &[u8]) -> Vec<u8> {
    let header = Header::new(keys, kind);
    let aad = header.aad(name, &[]);
    let padded = padme::padme((HEADER_LEN + plaintext.len() + 1 + TAG_LEN) as u64);
    let mut out = Vec::with_capacity(padded as usize);
    out.extend_from_slice(&header.bytes);
    out.extend_from_slice(plaintext);
    padme::pad(&mut out, TAG_LEN);
    let tag = header
        .cipher
        .encrypt_inout_detached(&counter_nonce(0), &aad, out[HEADER_LEN..].as_mut().into())
        .expect("AES-GCM encrypts any payload below 64 GiB");
    out.extend_from_slice(&tag);
    out
}

/// Opens a single-payload object, checking its kind, its name, its integrity and, from
/// version 2, its padding.
pub fn open(keys: &RepoKeys, kind: ObjectKind, name: &str, bytes: &[u8]) -> Result<Vec<u8>> {
    let header = Header::parse(keys, kind, name, bytes)?;
    let aad = header.aad(name, &[]);
    let plain = header
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
        })?;
    if header.padded() {
        padme::unpad_vec(name, plain)
    } else {
        Ok(plain)
    }
}

/// An object sealed with its header's version set to `version` and `plaintext` as given:
/// a version-1 object, or a version-2 one with padding of the test's choice.
#[cfg(test)]
pub(crate) fn seal_as(
    keys: &RepoKeys,
    kind: ObjectKind,
    version: u8,
    name: &str,
    plaintext: &[u8],
) -> Vec<u8> {
    let mut header = Header::new(keys, kind);
    header.bytes[8] = version;
    let aad = header.aad(name, &[]);
    let payload = Payload {
        msg: plaintext,
        aad: &aad,
    };
    let sealed = header.cipher.encrypt(&counter_nonce(0), payload);
    [&header.bytes[..], &sealed.expect("encrypts")].concat()
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
        assert_eq!(sealed.len(), 72, "42 + 7 + 1 + 16 = 66, padded");
        let opened = open(&keys, ObjectKind::Snapshot, "snapshots/ab", &sealed).expect("opens");
        assert_eq!(opened, b"payload");
    }

    #[test]
    fn every_sealed_object_has_a_padme_length() {
        let keys = keys();
        for len in [0, 1, 5, 6, 7, 100, 1000, 4096, 65_535, 183_412, 1 << 20] {
            let plain: Vec<u8> = (0..len).map(|i| (i % 7) as u8).collect();
            let sealed = seal(&keys, ObjectKind::Index, "index/1", &plain);
            let unpadded = (HEADER_LEN + len + 1 + TAG_LEN) as u64;
            assert_eq!(sealed.len() as u64, padme::padme(unpadded), "{len} bytes");
            assert_eq!(
                sealed.capacity(),
                sealed.len(),
                "{len} bytes: one allocation"
            );
            assert_eq!(
                open(&keys, ObjectKind::Index, "index/1", &sealed).expect("opens"),
                plain
            );
        }
    }

    #[test]
    fn version_1_objects_are_still_read_without_unpadding() {
        let keys = keys();
        let sealed = seal_as(
            &keys,
            ObjectKind::Index,
            UNPADDED_VERSION,
            "index/1",
            b"payload\x80\0",
        );
        let opened = open(&keys, ObjectKind::Index, "index/1", &sealed).expect("opens");
        assert_eq!(opened, b"payload\x80\0");
        let newer = seal_as(
            &keys,
            ObjectKind::Index,
            FORMAT_VERSION + 1,
            "index/1",
            b"payload",
        );
        assert!(matches!(
            open(&keys, ObjectKind::Index, "index/1", &newer),
            Err(Error::UnsupportedVersion { found: 3, .. })
        ));
    }

    #[test]
    fn malformed_padding_is_an_integrity_error() {
        let keys = keys();
        for plain in [&b"payload"[..], b"payload\x80\0\x01", b"", b"\0\0\0"] {
            let sealed = seal_as(&keys, ObjectKind::Index, FORMAT_VERSION, "index/1", plain);
            let err = open(&keys, ObjectKind::Index, "index/1", &sealed).expect_err("refused");
            assert!(matches!(err, Error::Malformed { .. }), "{err}");
            assert!(
                err.is_integrity() && err.to_string().contains("padding"),
                "{err}"
            );
        }
        let good = seal_as(
            &keys,
            ObjectKind::Index,
            FORMAT_VERSION,
            "index/1",
            b"payload\x80\0\0",
        );
        let opened = open(&keys, ObjectKind::Index, "index/1", &good).expect("opens");
        assert_eq!(opened, b"payload");
    }

    #[test]
    fn a_padded_object_cannot_pass_for_an_unpadded_one() {
        let keys = keys();
        let mut sealed = seal(&keys, ObjectKind::Index, "index/1", b"payload");
        sealed[8] = UNPADDED_VERSION;
        assert!(matches!(
            open(&keys, ObjectKind::Index, "index/1", &sealed),
            Err(Error::Authentication { .. })
        ));
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
