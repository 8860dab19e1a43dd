//! Errors of the repository layer. Each names the object it is about and what to do.

use crate::object::ObjectKind;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The object is shorter than its format allows: cut off in transit or on disk.
    #[error("object {name} is truncated ({len} bytes): it was cut off or damaged on the target")]
    Truncated { name: String, len: usize },

    #[error("object {name} is not a sealback object (bad magic): it was damaged or replaced")]
    BadMagic { name: String },

    #[error(
        "object {name} uses repository format v{found}, this sealback reads up to v{supported}: upgrade sealback"
    )]
    UnsupportedVersion {
        name: String,
        found: u8,
        supported: u8,
    },

    #[error(
        "object {name} is a {found} object where a {expected} object was expected: objects were swapped or renamed"
    )]
    WrongKind {
        name: String,
        expected: ObjectKind,
        found: ObjectKind,
    },

    #[error("object {name} has unknown kind {kind}: it was damaged or written by a newer sealback")]
    UnknownKind { name: String, kind: u8 },

    /// AEAD authentication failed: the bytes were changed, the object was moved to another
    /// name, or the key is not this repository's key.
    #[error(
        "object {name} failed authentication: it was tampered with, damaged, or moved from another name (or the key is wrong)"
    )]
    Authentication { name: String },

    #[error("object {name} is malformed: {detail}")]
    Malformed { name: String, detail: String },

    #[error(
        "blob {chunk} in pack {pack} does not hash to its id: the pack was tampered with or damaged"
    )]
    ChunkMismatch { pack: String, chunk: String },

    #[error(
        "blob {chunk} is not in any pack of the index: the repository is missing data (was an object deleted?)"
    )]
    MissingBlob { chunk: String },

    #[error("storage target: {0}")]
    Store(#[from] crate::repository::StoreError),
}

impl Error {
    pub(crate) fn malformed(name: &str, detail: impl Into<String>) -> Self {
        Error::Malformed {
            name: name.to_owned(),
            detail: detail.into(),
        }
    }

    /// True when the error says the stored data is damaged or tampered with, as opposed to
    /// the target being unreachable.
    pub fn is_integrity(&self) -> bool {
        !matches!(self, Error::Store(_))
    }
}
