//! Snapshot manifests: what one backup holds.
//!
//! A snapshot object (`snapshots/<64 hex digits>`) is a JSON manifest, zstd-compressed, then
//! sealed. The database image is described by list blobs (each up to 64 chunk ids, in
//! page order) and the patches applied on top of them; files list their chunk ids inline.
//!
//! A manifest is written either whole or relative to a *base*, an earlier snapshot written
//! whole: then it holds only what differs from the base (the files added or changed since,
//! the paths removed, the lists if they differ), so that a day's backup does not write
//! ten thousand unchanged file entries again. [`Snapshot`] is always the resolved whole;
//! [`Manifest`] is what is stored.

use std::collections::{HashMap, HashSet};

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
    /// The snapshot written whole that this one's manifest is stored relative to, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<String>,
    pub database: Option<DatabaseImage>,
    /// Sorted by path (bytewise), each path once.
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

/// A manifest as stored: whole, or relative to the base it names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub version: u32,
    pub time_unix_ms: i64,
    pub host: String,
    pub parent: Option<String>,
    /// Relative to this snapshot (written whole), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<String>,
    /// In a relative manifest, lists the same as the base's are left out (empty): an
    /// image of any size has at least one list.
    pub database: Option<DatabaseImage>,
    /// Whole: every file. Relative: the files added or changed since the base.
    pub files: Vec<FileEntry>,
    /// Relative: the base's paths that are gone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removed: Vec<String>,
}

/// Why a relative manifest cannot be resolved against the base given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ResolveError(pub String);

impl Manifest {
    /// The manifest of `snapshot`: relative to `base` (the resolved snapshot it names in
    /// `snapshot.base`) when one is given, else whole.
    pub fn of(snapshot: &Snapshot, base: Option<&Snapshot>) -> Manifest {
        let Some(base) = base.filter(|_| snapshot.base.is_some()) else {
            return Manifest {
                version: snapshot.version,
                time_unix_ms: snapshot.time_unix_ms,
                host: snapshot.host.clone(),
                parent: snapshot.parent.clone(),
                base: None,
                database: snapshot.database.clone(),
                files: snapshot.files.clone(),
                removed: Vec::new(),
            };
        };
        let before: HashMap<&str, &FileEntry> =
            base.files.iter().map(|f| (f.path.as_str(), f)).collect();
        let now: HashSet<&str> = snapshot.files.iter().map(|f| f.path.as_str()).collect();
        Manifest {
            version: snapshot.version,
            time_unix_ms: snapshot.time_unix_ms,
            host: snapshot.host.clone(),
            parent: snapshot.parent.clone(),
            base: snapshot.base.clone(),
            database: snapshot.database.as_ref().map(|d| DatabaseImage {
                lists: match &base.database {
                    Some(b) if b.lists == d.lists => Vec::new(),
                    _ => d.lists.clone(),
                },
                ..d.clone()
            }),
            files: snapshot
                .files
                .iter()
                .filter(|f| before.get(f.path.as_str()) != Some(f))
                .cloned()
                .collect(),
            removed: base
                .files
                .iter()
                .filter(|f| !now.contains(f.path.as_str()))
                .map(|f| f.path.clone())
                .collect(),
        }
    }

    /// Entries a relative manifest carries beyond a whole one's header: what it costs.
    pub fn changes(&self) -> usize {
        self.files.len() + self.removed.len()
    }

    /// The snapshot this manifest describes; `base` must be the resolved snapshot named by
    /// `self.base` (itself written whole), and is ignored for a whole manifest.
    pub fn resolve(self, base: Option<&Snapshot>) -> Result<Snapshot, ResolveError> {
        let Some(base_name) = self.base.clone() else {
            return Ok(Snapshot {
                version: self.version,
                time_unix_ms: self.time_unix_ms,
                host: self.host,
                parent: self.parent,
                base: None,
                database: self.database,
                files: self.files,
            });
        };
        let base = base.ok_or_else(|| ResolveError(format!("its base {base_name} is needed")))?;
        if base.base.is_some() {
            return Err(ResolveError(format!(
                "its base {base_name} is itself relative to another"
            )));
        }
        let database = match self.database {
            Some(d) if d.lists.is_empty() && d.size > 0 => match &base.database {
                Some(b) => Some(DatabaseImage {
                    lists: b.lists.clone(),
                    ..d
                }),
                None => {
                    return Err(ResolveError(format!(
                        "it takes the database's lists from its base {base_name}, which has no database"
                    )));
                }
            },
            database => database,
        };
        let removed: HashSet<&str> = self.removed.iter().map(String::as_str).collect();
        let changed: HashSet<&str> = self.files.iter().map(|f| f.path.as_str()).collect();
        let mut files: Vec<FileEntry> = base
            .files
            .iter()
            .filter(|f| !removed.contains(f.path.as_str()) && !changed.contains(f.path.as_str()))
            .cloned()
            .collect();
        files.extend(self.files);
        files.sort_by(|a, b| a.path.cmp(&b.path));
        if files.windows(2).any(|w| w[0].path == w[1].path) {
            return Err(ResolveError("it names a path twice".into()));
        }
        Ok(Snapshot {
            version: self.version,
            time_unix_ms: self.time_unix_ms,
            host: self.host,
            parent: self.parent,
            base: Some(base_name),
            database,
            files,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, n: u8) -> FileEntry {
        FileEntry {
            path: path.into(),
            size: u64::from(n),
            mtime_ns: i64::from(n),
            mode: 0o644,
            chunks: vec![ChunkId([n; 32])],
        }
    }

    fn snapshot(base: Option<&str>, files: Vec<FileEntry>, lists: Vec<ChunkId>) -> Snapshot {
        Snapshot {
            version: SNAPSHOT_VERSION,
            time_unix_ms: 5,
            host: "phone".into(),
            parent: None,
            base: base.map(str::to_owned),
            database: Some(DatabaseImage {
                path: "msgstore.db".into(),
                page_size: 4096,
                page_count: 2,
                size: 8192,
                chunk_bytes: 4096,
                lists,
                patches: vec![ChunkId([9; 32])],
            }),
            files,
        }
    }

    #[test]
    fn a_relative_manifest_holds_only_the_changes_and_resolves_to_the_whole() {
        let lists = vec![ChunkId([1; 32])];
        let base = snapshot(
            None,
            vec![file("Media/a", 1), file("Media/b", 2), file("Media/c", 3)],
            lists.clone(),
        );
        // b changed, c removed, a-b and d added ("Media/a-b" sorts between a and b).
        let now = snapshot(
            Some("b"),
            vec![
                file("Media/a", 1),
                file("Media/a-b", 4),
                file("Media/b", 5),
                file("Media/d", 6),
            ],
            lists.clone(),
        );
        let manifest = Manifest::of(&now, Some(&base));
        assert_eq!(manifest.base.as_deref(), Some("b"));
        let paths: Vec<&str> = manifest.files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, ["Media/a-b", "Media/b", "Media/d"]);
        assert_eq!(manifest.removed, ["Media/c"]);
        assert_eq!(manifest.changes(), 4);
        let db = manifest.database.as_ref().expect("database");
        assert!(db.lists.is_empty(), "the base's lists are not repeated");
        assert_eq!(db.patches, vec![ChunkId([9; 32])]);

        // Through JSON, as stored.
        let stored: Manifest =
            serde_json::from_slice(&serde_json::to_vec(&manifest).expect("json")).expect("parse");
        assert_eq!(stored.clone().resolve(Some(&base)).expect("resolves"), now);
        let err = stored.clone().resolve(None).expect_err("needs its base");
        assert!(err.0.contains("base b is needed"), "{err}");
        let relative_base = snapshot(Some("x"), base.files.clone(), lists.clone());
        assert!(stored.resolve(Some(&relative_base)).is_err());

        // Other lists are stored; a whole manifest is the snapshot itself.
        let moved = snapshot(Some("b"), now.files.clone(), vec![ChunkId([2; 32])]);
        let manifest = Manifest::of(&moved, Some(&base));
        assert_eq!(
            manifest.database.as_ref().map(|d| d.lists.clone()),
            Some(vec![ChunkId([2; 32])])
        );
        assert_eq!(manifest.resolve(Some(&base)).expect("resolves"), moved);
        let whole = Manifest::of(&base, None);
        assert_eq!(whole.changes(), 3);
        assert_eq!(whole.resolve(None).expect("resolves"), base);
    }

    #[test]
    fn a_version_1_manifest_reads_as_one_without_patches_or_base() {
        let json = r#"{"version":1,"time_unix_ms":1,"host":"h","parent":null,
            "database":{"path":"msgstore.db","page_size":4096,"page_count":1,"size":4096,
            "chunk_bytes":4096,"lists":[]},"files":[]}"#;
        let manifest: Manifest = serde_json::from_str(json).expect("parse");
        let snapshot = manifest.resolve(None).expect("resolves");
        assert!(snapshot.base.is_none());
        assert!(snapshot.database.expect("database").patches.is_empty());
    }
}
