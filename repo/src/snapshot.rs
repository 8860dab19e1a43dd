//! Snapshot manifests: what one backup holds.
//!
//! A snapshot object (`snapshots/<64 hex digits>`) is the JSON below, zstd-compressed, then
//! sealed. The database image is described by list blobs (each up to 64 chunk ids, in
//! page order) so that an unchanged stretch of the database costs nothing in the next
//! manifest; files list their chunk ids inline.

use serde::{Deserialize, Serialize};

use crate::chunk::ChunkId;

/// Version 2 added database patches; a version-1 manifest reads as one without them.
pub const SNAPSHOT_VERSION: u32 = 2;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Snapshot {
    pub version: u32,
    /// When the capture was taken (milliseconds since the Unix epoch, UTC).
    pub time_unix_ms: i64,
    pub host: String,
    /// The snapshot this one was made incrementally from, if any.
    pub parent: Option<String>,
    pub database: Option<DatabaseImage>,
    pub files: Vec<FileEntry>,
}

impl Snapshot {
    /// Bytes the snapshot restores to.
    pub fn size(&self) -> u64 {
        self.database.as_ref().map_or(0, |d| d.size)
            + self.files.iter().map(|f| f.size).sum::<u64>()
    }
}

/// The database as of one committed transaction: its pages in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseImage {
    /// Path relative to the store, e.g. `msgstore.db`.
    pub path: String,
    pub page_size: u32,
    pub page_count: u64,
    /// `page_size * page_count`.
    pub size: u64,
    /// Bytes of database per chunk (a multiple of the page size; the last chunk may be shorter).
    pub chunk_bytes: u32,
    /// List blobs, in order; their concatenation is the chunk ids of the image the
    /// patches start from.
    pub lists: Vec<ChunkId>,
    /// Patch blobs ([`crate::patch`]), applied in order to the image the lists name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub patches: Vec<ChunkId>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileEntry {
    /// Path relative to the store, `/`-separated.
    pub path: String,
    pub size: u64,
    /// Modification time, nanoseconds since the Unix epoch.
    pub mtime_ns: i64,
    /// Permission bits.
    pub mode: u32,
    pub chunks: Vec<ChunkId>,
}
