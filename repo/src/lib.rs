//! The sealback repository format, version 2 (version 1 objects are still read).
//!
//! A repository is a set of named objects on a storage provider. Everything in it is
//! encrypted and authenticated under keys derived from one 32-byte backup key; the
//! provider sees only object names (random) and sizes (padded to Padmé lengths). DESIGN.md
//! is the specification; each module here implements one part of it:
//!
//! - [`keys`]: the backup key, its 64-digit recovery form, and the keys derived from it.
//! - [`object`]: the sealed-object framing every object shares (header, AEAD, AAD).
//! - [`padme`]: the Padmé lengths every object is padded to, inside its encryption.
//! - [`chunk`]: chunk ids (keyed BLAKE3) and the content-defined chunker.
//! - [`pack`]: pack objects, many encrypted blobs and an encrypted table.
//! - [`patch`]: database patches, changed runs compressed against their old contents.
//! - [`index`]: index objects, which pack holds which blob.
//! - [`snapshot`]: snapshot manifests, what one backup holds.
//! - [`generation`]: several repositories (one per key) on one store, for key rotation.
//! - [`memory`]: an object store in memory, for tests.
//! - [`repository`]: reading and writing all of these through an [`ObjectStore`].
#![forbid(unsafe_code)]

pub mod chunk;
pub mod error;
pub mod gc;
pub mod generation;
pub mod index;
pub mod keys;
pub mod memory;
pub mod object;
pub mod pack;
pub mod padme;
pub mod patch;
pub mod repository;
pub mod snapshot;

pub use chunk::ChunkId;
pub use error::{Error, Result};
pub use keys::{BackupKey, RecoveryKeyError, RepoKeys};
pub use repository::{ObjectStore, Repository, StoreError, StoreErrorKind};
