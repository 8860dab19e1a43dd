//! The local catalog: a SQLite cache, one per target, of what that target's repository
//! holds (snapshots, blobs and where they are, object sizes) and of the files last backed
//! up (to skip unchanged media by size, mtime, ctime and inode, as restic's parent
//! snapshot does). It is only a cache: [`Catalog::sync`] rebuilds it from the repository,
//! so deleting it loses nothing.

use std::collections::{HashMap, HashSet};
use std::io::Seek as _;
use std::os::unix::fs::FileExt;
use std::path::Path;

use rusqlite::{Connection, OptionalExtension, params};
use sealback_repo::chunk::IdSet;
use sealback_repo::index::Index;
use sealback_repo::pack::{BlobKind, Compression, PackEntry};
use sealback_repo::snapshot::{Manifest, Snapshot};
use sealback_repo::{ChunkId, Repository, StoreErrorKind};

use crate::capture::database::Baseline;
use crate::capture::files::FileStat;

mod damaged;
mod objects;
mod pruned;
mod remembered;

pub use remembered::{Known, Missing, missing_beside};

/// 8: catalogs of earlier builds may hold a database baseline whose next whole read wrote
/// lists naming runs only a patch held (issue 13); rebuilt, the first backup after the
/// upgrade owes nothing to them.
const SCHEMA_VERSION: i64 = 8;

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error(
        "local catalog {path}: {source} (it is only a cache: delete it and it is rebuilt from the target)"
    )]
    Sqlite {
        path: String,
        source: rusqlite::Error,
    },
    #[error(
        "local catalog {path} is damaged: {source} (it is only a cache: its next use moves it aside and rebuilds it from the target)"
    )]
    Damaged {
        path: String,
        source: rusqlite::Error,
    },
    #[error(
        "local catalog {path}: {source} (it is only a cache: delete it and it is rebuilt from the target)"
    )]
    Io {
        path: String,
        source: std::io::Error,
    },
    /// The record of the snapshots this device remembers (see `remembered`): not a cache.
    #[error(
        "the record of the snapshots this device remembers, {path}: {source} (it is not a cache: it is how this device notices a target hiding snapshots; if it is damaged, move it away and a new one is started, which forgets any alarm it held)"
    )]
    Remembered {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Repo(#[from] sealback_repo::Error),
}

type Result<T> = std::result::Result<T, CatalogError>;

/// The error of a failed SQLite call on the catalog at `path`. Damage is noted for the next
/// open to rebuild the catalog.
fn sqlite(path: &str) -> impl Fn(rusqlite::Error) -> CatalogError + Copy + '_ {
    move |source| {
        let path = path.to_owned();
        if damaged::is_damage(&source) {
            damaged::note(&path);
            return CatalogError::Damaged { path, source };
        }
        CatalogError::Sqlite { path, source }
    }
}

/// The columns a blob's location is read from, in the order [`entry_from_row`] expects: the
/// pack's number, the entry, the blob's id.
const BLOB_COLUMNS: &str = "pack, kind, compression, offset, length, raw_length, id";

/// A blob's entry from a row of [`BLOB_COLUMNS`].
fn entry_from_row(id: ChunkId, r: &rusqlite::Row<'_>) -> rusqlite::Result<PackEntry> {
    let base = 1;
    let kind = match r.get::<_, u8>(base)? {
        1 => BlobKind::List,
        2 => BlobKind::Patch,
        _ => BlobKind::Data,
    };
    let compression = match r.get::<_, u8>(base + 1)? {
        1 => Compression::Zstd,
        _ => Compression::None,
    };
    Ok(PackEntry {
        id,
        kind,
        compression,
        offset: r.get(base + 2)?,
        length: r.get(base + 3)?,
        raw_length: r.get(base + 4)?,
    })
}

/// The first column of `row`, a blob, borrowed: no copy per row of a large scan.
fn first_blob<'r>(row: &'r rusqlite::Row<'_>) -> rusqlite::Result<&'r [u8]> {
    row.get_ref(0)?.as_blob().map_err(Into::into)
}

/// A snapshot as the catalog lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotRow {
    /// Object name, `snapshots/<64 hex>`.
    pub name: String,
    pub time_unix_ms: i64,
    pub host: String,
    pub files: u64,
    pub size: u64,
}

impl SnapshotRow {
    /// The id users see: the 64 hex digits.
    pub fn id(&self) -> &str {
        self.name.trim_start_matches("snapshots/")
    }
}

/// What a sync found.
#[derive(Debug, Default, Clone)]
pub struct SyncReport {
    pub indexes_loaded: u64,
    pub snapshots_loaded: u64,
    /// Whether the target's packs were listed (see [`Packs`]).
    pub packs_checked: bool,
    pub packs_missing: u64,
    pub rebuilt: bool,
    /// Index and snapshot objects that could not be read (damaged or tampered with): left
    /// out of the catalog, so one bad object does not block the rest; `verify` lists them.
    pub damaged: Vec<(String, String)>,
}

/// When [`Catalog::sync`] lists the target's packs, to forget the blobs of any gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Packs {
    /// Always (a restore, `verify`, `snapshots`).
    List,
    /// When the catalog was rebuilt, when another writer's indexes came or went, or when
    /// the last listing is older than [`PACK_CHECK_MS`] (a backup: the listing grows with
    /// the repository, not with the change).
    WhenDue,
}

/// How long a listing of the target's packs stands for a backup: an hour.
pub const PACK_CHECK_MS: i64 = 3_600_000;

pub struct Catalog {
    conn: Connection,
    /// Shown in errors.
    path: String,
    file: std::path::PathBuf,
    /// The file of the database baseline's chunk ids (see [`BaselineIds`]).
    ids_path: std::path::PathBuf,
    /// What the device remembers of the target's snapshots, beyond this cache (see
    /// `remembered`).
    remembered: std::path::PathBuf,
}

/// Closes the catalog's files to everyone but the daemon (mode 0600), whatever umask made
/// them: the catalog names every file of the store, its size and its times.
fn make_private(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    let family = ["", "-wal", "-shm"]
        .map(|suffix| {
            let mut name = path.as_os_str().to_owned();
            name.push(suffix);
            std::path::PathBuf::from(name)
        })
        .into_iter()
        .chain([path.with_extension("baseline")]);
    for file in family {
        match std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    Ok(())
}

impl Catalog {
    /// Opens the catalog at `path`, creating it if there is none; a damaged one is moved
    /// aside and a new one made in its place (the next sync fills it).
    pub fn open(path: &Path) -> Result<Catalog> {
        damaged::open(path, Catalog::open_as_is)
    }

    fn open_as_is(path: &Path) -> Result<Catalog> {
        let shown = path.display().to_string();
        let err = sqlite(&shown);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| err(rusqlite::Error::ToSqlConversionFailure(Box::new(e))))?;
        }
        let conn = Connection::open(path).map_err(err)?;
        conn.busy_timeout(std::time::Duration::from_secs(30))
            .map_err(err)?;
        conn.execute_batch(
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;
             CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);",
        )
        .map_err(err)?;
        make_private(path)
            .map_err(|e| err(rusqlite::Error::ToSqlConversionFailure(Box::new(e))))?;
        // A catalog of another schema is only a cache: its tables are dropped and the
        // catalog is rebuilt from the repository by the next sync.
        let version: Option<String> = conn
            .query_row("SELECT value FROM meta WHERE key = 'schema'", [], |r| {
                r.get(0)
            })
            .optional()
            .map_err(err)?;
        let stale = version.as_deref() != Some(&SCHEMA_VERSION.to_string());
        if stale {
            conn.execute_batch(
                "DROP TABLE IF EXISTS objects; DROP TABLE IF EXISTS indexes;
                 DROP TABLE IF EXISTS blobs; DROP TABLE IF EXISTS snapshots;
                 DROP TABLE IF EXISTS files; DROP TABLE IF EXISTS packs;
                 DROP TABLE IF EXISTS db_capture; DROP TABLE IF EXISTS db_capture_ids;
                 DROP TABLE IF EXISTS remembered; DELETE FROM meta;",
            )
            .map_err(err)?;
        }
        // Blobs name their pack and index by number: with the 69-character names in every
        // row (and in two of its indexes), recording a full backup's 50,000 blobs took
        // 0.22 s and a large store's id scan read 47 MB. Nor are blobs indexed by pack or
        // by index: keeping those two indexes tripled the time to record a full backup
        // (43 -> 115 ms), for the rare forgetting of a pack or an index, which scans instead.
        conn.execute_batch(
            "DROP INDEX IF EXISTS blobs_by_pack; DROP INDEX IF EXISTS blobs_by_idx;
             CREATE TABLE IF NOT EXISTS objects(name TEXT PRIMARY KEY, size INTEGER NOT NULL);
             CREATE TABLE IF NOT EXISTS indexes(id INTEGER PRIMARY KEY, name TEXT UNIQUE NOT NULL);
             CREATE TABLE IF NOT EXISTS blobs(
                 id BLOB PRIMARY KEY, pack INTEGER NOT NULL, idx INTEGER NOT NULL,
                 kind INTEGER NOT NULL, compression INTEGER NOT NULL, offset INTEGER NOT NULL,
                 length INTEGER NOT NULL, raw_length INTEGER NOT NULL) WITHOUT ROWID;
             CREATE TABLE IF NOT EXISTS snapshots(
                 name TEXT PRIMARY KEY, time_unix_ms INTEGER NOT NULL, host TEXT NOT NULL,
                 files INTEGER NOT NULL, size INTEGER NOT NULL, manifest BLOB NOT NULL);
             CREATE TABLE IF NOT EXISTS files(
                 path TEXT PRIMARY KEY, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL,
                 ctime_ns INTEGER NOT NULL, inode INTEGER NOT NULL, mode INTEGER NOT NULL,
                 chunks BLOB NOT NULL);
             CREATE TABLE IF NOT EXISTS packs(id INTEGER PRIMARY KEY, name TEXT UNIQUE NOT NULL);
             CREATE TABLE IF NOT EXISTS db_capture(
                 snapshot TEXT NOT NULL, baseline TEXT NOT NULL, forgotten INTEGER NOT NULL,
                 runs INTEGER NOT NULL);
             CREATE TABLE IF NOT EXISTS remembered(
                 name TEXT PRIMARY KEY, time_unix_ms INTEGER NOT NULL, known TEXT NOT NULL);",
        )
        .map_err(err)?;
        let catalog = Catalog {
            conn,
            path: shown,
            file: path.to_path_buf(),
            ids_path: path.with_extension("baseline"),
            remembered: remembered::path_for(path),
        };
        if stale {
            catalog.set_meta("schema", &SCHEMA_VERSION.to_string())?;
        }
        Ok(catalog)
    }

    /// Another connection to this catalog, for a thread of its own, with a small page
    /// cache (it only appends).
    pub fn reopen(&self) -> Result<Catalog> {
        let catalog = Catalog::open(&self.file)?;
        catalog
            .conn
            .execute_batch("PRAGMA cache_size = -256")
            .map_err(|e| catalog.err(e))?;
        Ok(catalog)
    }

    fn err(&self, source: rusqlite::Error) -> CatalogError {
        sqlite(&self.path)(source)
    }

    fn meta(&self, key: &str) -> Result<Option<String>> {
        self.conn
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()
            .map_err(|e| self.err(e))
    }

    fn set_meta(&self, key: &str, value: &str) -> Result<()> {
        self.conn
            .execute(
                "INSERT OR REPLACE INTO meta(key, value) VALUES (?1, ?2)",
                [key, value],
            )
            .map(drop)
            .map_err(|e| self.err(e))
    }

    /// How many times blobs were forgotten (packs or indexes gone from the target). What the
    /// file cache and the database baseline name was all known when they were written; as
    /// long as this has not moved, it still is, and need not be checked chunk by chunk.
    pub fn forgotten(&self) -> Result<i64> {
        Ok(self
            .meta("forgotten")?
            .and_then(|v| v.parse().ok())
            .unwrap_or(0))
    }

    fn note_forgotten(&self) -> Result<()> {
        self.set_meta("forgotten", &(self.forgotten()? + 1).to_string())
    }

    fn wipe(&self) -> Result<()> {
        self.conn
            .execute_batch(
                "DELETE FROM meta; DELETE FROM objects; DELETE FROM indexes; DELETE FROM blobs;
                 DELETE FROM snapshots; DELETE FROM files; DELETE FROM packs;
                 DELETE FROM db_capture; DELETE FROM remembered;",
            )
            .map_err(|e| self.err(e))
    }

    /// Brings the catalog in line with the repository: a catalog of another repository is
    /// wiped; indexes and snapshots it lacks are read; blobs in packs that are gone from the
    /// target are forgotten (so they are uploaded again rather than referenced). `packs`
    /// says when the packs are listed to find those. A snapshot the device remembers that
    /// is gone, or no longer genuine, is noted missing (see [`Catalog::missing`]).
    ///
    /// An index or snapshot listed and gone when read was removed by a prune beside us
    /// (another device's, which merges indexes and forgets snapshots): the target is listed
    /// again, a bounded number of times, rather than failing the backup.
    pub fn sync(&mut self, repo: &Repository, packs: Packs) -> Result<SyncReport> {
        const TRIES: usize = 5;
        // Only the first attempt finds the catalog to be rebuilt, and reports it.
        let rebuilt = self.meta("repo")?.as_deref() != Some(repo.config().id.as_str());
        for attempt in 1.. {
            match self.sync_once(repo, packs) {
                Err(CatalogError::Repo(sealback_repo::Error::Store(e)))
                    if e.kind == StoreErrorKind::NotFound && attempt < TRIES =>
                {
                    tracing::debug!(object = %e, attempt, "an object listed a moment ago is gone (a prune beside us): listing again");
                }
                Ok(mut report) => {
                    report.rebuilt |= rebuilt;
                    return Ok(report);
                }
                failed => return failed,
            }
        }
        unreachable!("the last attempt returns")
    }

    fn sync_once(&mut self, repo: &Repository, packs: Packs) -> Result<SyncReport> {
        let mut report = SyncReport::default();
        let repo_id = repo.config().id.clone();
        if self.meta("repo")?.as_deref() != Some(repo_id.as_str()) {
            self.wipe()?;
            self.set_meta("schema", &SCHEMA_VERSION.to_string())?;
            self.set_meta("repo", &repo_id)?;
            report.rebuilt = true;
        }
        // What the device remembered before it listed the target: a snapshot a backup
        // writes meanwhile is not missing from a listing taken before it.
        let remembered = self.remembered_before_listing(&repo_id)?;
        let store = repo.store();
        let indexes = store.list("index/").map_err(sealback_repo::Error::from)?;
        let snapshots = store
            .list("snapshots/")
            .map_err(sealback_repo::Error::from)?;
        let pruned = self.forgotten_by_prunes(repo)?;
        let remembered = remembered.without_pruned(self, &pruned)?;
        let known_indexes: HashSet<String> = self.names("SELECT name FROM indexes")?;
        let present: HashSet<&str> = indexes.iter().map(|(n, _)| n.as_str()).collect();
        // Indexes come and go with the packs they name: one this catalog did not record, or
        // one gone, means another writer was at work (or a hand), and the packs are listed.
        let foreign = present.len() != known_indexes.len()
            || !known_indexes.iter().all(|n| present.contains(n.as_str()));
        let now = crate::engine::backup::now_unix_ms();
        let checked: Option<i64> = self.meta("packs_checked")?.and_then(|v| v.parse().ok());
        let due = match packs {
            Packs::List => true,
            Packs::WhenDue => {
                report.rebuilt
                    || foreign
                    || checked.is_none_or(|at| !(at..at + PACK_CHECK_MS).contains(&now))
            }
        };
        let listed: Option<HashMap<String, u64>> = if due {
            let listing = store.list("data/").map_err(sealback_repo::Error::from)?;
            Some(listing.into_iter().collect())
        } else {
            None
        };
        report.packs_checked = listed.is_some();
        let no_packs = HashMap::new();
        let packs = listed.as_ref().unwrap_or(&no_packs);

        // An index gone means a prune (or a repair) at work: it merged indexes, and a blob
        // the catalog recorded under a gone index may be in one it knows under another
        // name (the catalog records each blob once). So every index is read again.
        let mut known_indexes = known_indexes;
        if known_indexes.iter().any(|n| !present.contains(n.as_str())) {
            for name in &known_indexes {
                self.forget_index(name)?;
            }
            known_indexes.clear();
        }
        for (name, size) in &indexes {
            if !known_indexes.contains(name) {
                match repo.read_index(name) {
                    Ok(index) => {
                        self.add_index(name, *size, &index, packs)?;
                        report.indexes_loaded += 1;
                    }
                    Err(e) if e.is_integrity() => {
                        report.damaged.push((name.clone(), e.to_string()))
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        }
        // Packs the target no longer has: forget their blobs.
        if let Some(packs) = &listed {
            let known_packs: HashSet<String> = self.names("SELECT name FROM packs")?;
            for gone in known_packs
                .iter()
                .filter(|p| !packs.contains_key(p.as_str()))
            {
                tracing::warn!(pack = %gone, "pack is missing from the target: its chunks will be stored again");
                self.conn
                    .execute(
                        "DELETE FROM blobs WHERE pack = (SELECT id FROM packs WHERE name = ?1)",
                        [gone],
                    )
                    .and_then(|_| {
                        self.conn
                            .execute("DELETE FROM packs WHERE name = ?1", [gone])
                    })
                    .map_err(|e| self.err(e))?;
                self.note_forgotten()?;
                report.packs_missing += 1;
            }
        }

        let known_snapshots: HashSet<String> = self.names("SELECT name FROM snapshots")?;
        let present: HashSet<&str> = snapshots.iter().map(|(n, _)| n.as_str()).collect();
        for gone in known_snapshots
            .iter()
            .filter(|n| !present.contains(n.as_str()))
        {
            self.conn
                .execute("DELETE FROM snapshots WHERE name = ?1", [gone])
                .map_err(|e| self.err(e))?;
        }
        for (name, size) in &snapshots {
            if !known_snapshots.contains(name) {
                match repo.read_manifest(name) {
                    Ok((manifest, snapshot)) => {
                        self.record_snapshot(name, *size, &manifest, &snapshot)?;
                        report.snapshots_loaded += 1;
                    }
                    Err(e) if e.is_integrity() => {
                        report.damaged.push((name.clone(), e.to_string()))
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        }
        self.check_remembered(&repo_id, remembered, &snapshots, &report.damaged)?;
        for (name, problem) in &report.damaged {
            tracing::warn!(object = %name, %problem, "left out of the catalog: `sealbackctl verify` lists every damaged object, `sealbackctl repair` removes those a torn upload left");
        }
        // Object sizes, for `status`: what the target holds now. Only the rows that differ
        // are written; packs not listed keep theirs.
        let mut now_held: HashMap<&str, u64> = indexes
            .iter()
            .chain(&snapshots)
            .map(|(n, s)| (n.as_str(), *s))
            .collect();
        if let Some(packs) = &listed {
            now_held.extend(packs.iter().map(|(n, s)| (n.as_str(), *s)));
        }
        let held = self.objects(listed.is_some())?;
        let tx = self.conn.transaction().map_err(sqlite(&self.path))?;
        for gone in held.keys().filter(|n| !now_held.contains_key(n.as_str())) {
            tx.execute("DELETE FROM objects WHERE name = ?1", [gone])
                .map_err(sqlite(&self.path))?;
        }
        for (name, size) in now_held.iter().filter(|(n, s)| held.get(**n) != Some(*s)) {
            tx.execute(
                "INSERT OR REPLACE INTO objects(name, size) VALUES (?1, ?2)",
                params![name, *size as i64],
            )
            .map_err(sqlite(&self.path))?;
        }
        if listed.is_some() {
            tx.execute(
                "INSERT OR REPLACE INTO meta(key, value) VALUES ('packs_checked', ?1)",
                [now.to_string()],
            )
            .map_err(sqlite(&self.path))?;
        }
        tx.commit().map_err(sqlite(&self.path))?;
        Ok(report)
    }

    /// The objects the catalog knows the target holds, with their sizes: all of them, or
    /// all but the packs.
    fn objects(&self, packs: bool) -> Result<HashMap<String, u64>> {
        let sql = if packs {
            "SELECT name, size FROM objects"
        } else {
            // `0` follows `/`: the range skips every `data/` name.
            "SELECT name, size FROM objects WHERE name < 'data/' OR name >= 'data0'"
        };
        let mut stmt = self.conn.prepare(sql).map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)))
            .map_err(|e| self.err(e))?;
        rows.collect::<std::result::Result<_, _>>()
            .map_err(|e| self.err(e))
    }

    fn names(&self, sql: &str) -> Result<HashSet<String>> {
        let mut stmt = self.conn.prepare(sql).map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| r.get::<_, String>(0))
            .map_err(|e| self.err(e))?;
        rows.collect::<std::result::Result<_, _>>()
            .map_err(|e| self.err(e))
    }

    fn forget_index(&self, name: &str) -> Result<()> {
        self.conn
            .execute(
                "DELETE FROM blobs WHERE idx = (SELECT id FROM indexes WHERE name = ?1)",
                [name],
            )
            .and_then(|_| {
                self.conn
                    .execute("DELETE FROM indexes WHERE name = ?1", [name])
            })
            .map(drop)
            .map_err(|e| self.err(e))?;
        self.note_forgotten()
    }

    /// Records an index (and the sizes of its packs, where known).
    pub fn add_index(
        &mut self,
        name: &str,
        size: u64,
        index: &Index,
        pack_sizes: &HashMap<String, u64>,
    ) -> Result<()> {
        let path = self.path.clone();
        let err = sqlite(&path);
        let tx = self.conn.transaction().map_err(err)?;
        {
            // The numbers of the index and of its packs.
            tx.execute("INSERT OR IGNORE INTO indexes(name) VALUES (?1)", [name])
                .map_err(err)?;
            let index_id: i64 = tx
                .query_row("SELECT id FROM indexes WHERE name = ?1", [name], |r| {
                    r.get(0)
                })
                .map_err(err)?;
            let mut pack_ids: Vec<i64> = Vec::with_capacity(index.packs.len());
            for pack in &index.packs {
                tx.execute(
                    "INSERT OR IGNORE INTO packs(name) VALUES (?1)",
                    [&pack.name],
                )
                .map_err(err)?;
                let id = tx
                    .query_row("SELECT id FROM packs WHERE name = ?1", [&pack.name], |r| {
                        r.get(0)
                    })
                    .map_err(err)?;
                pack_ids.push(id);
                if let Some(size) = pack_sizes.get(&pack.name) {
                    tx.execute(
                        "INSERT OR REPLACE INTO objects(name, size) VALUES (?1, ?2)",
                        params![pack.name, *size as i64],
                    )
                    .map_err(err)?;
                }
            }
            let mut insert = tx
                .prepare(
                    "INSERT OR IGNORE INTO blobs(id, pack, idx, kind, compression, offset, length, raw_length)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                )
                .map_err(err)?;
            // In id order: random ids inserted as they come touch a random leaf each, and a
            // full backup's 50,000 blobs then rewrote 500 MB of catalog WAL.
            let mut rows: Vec<(&PackEntry, i64)> = index
                .packs
                .iter()
                .zip(pack_ids)
                .flat_map(|(p, pack)| p.entries.iter().map(move |e| (e, pack)))
                .collect();
            rows.sort_unstable_by_key(|(e, _)| e.id);
            for (e, pack) in rows {
                insert
                    .execute(params![
                        &e.id.0[..],
                        pack,
                        index_id,
                        e.kind as u8,
                        e.compression as u8,
                        e.offset,
                        e.length,
                        e.raw_length
                    ])
                    .map_err(err)?;
            }
            tx.execute(
                "INSERT OR REPLACE INTO objects(name, size) VALUES (?1, ?2)",
                params![name, size as i64],
            )
            .map_err(err)?;
        }
        tx.commit().map_err(err)
    }

    /// Records a snapshot this device made: its manifest as stored (a relative one stays
    /// small) and, from `resolved`, what `snapshots` shows of it; and remembers it beyond
    /// this cache (see [`Catalog::missing`]).
    pub fn add_snapshot(
        &mut self,
        name: &str,
        size: u64,
        manifest: &Manifest,
        resolved: &Snapshot,
    ) -> Result<()> {
        self.record_snapshot(name, size, manifest, resolved)?;
        self.remember_made(name, resolved.time_unix_ms)
    }

    /// Records a snapshot in the cache, as [`Catalog::add_snapshot`] does.
    fn record_snapshot(
        &mut self,
        name: &str,
        size: u64,
        manifest: &Manifest,
        resolved: &Snapshot,
    ) -> Result<()> {
        // MessagePack, ids as bytes: a whole manifest of the large store decodes in a
        // quarter of the time its JSON took.
        let manifest = rmp_serde::to_vec_named(manifest)
            .map_err(|e| self.err(rusqlite::Error::ToSqlConversionFailure(Box::new(e))))?;
        self.conn
            .execute(
                "INSERT OR REPLACE INTO snapshots(name, time_unix_ms, host, files, size, manifest)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    name,
                    resolved.time_unix_ms,
                    resolved.host,
                    resolved.files.len() as i64,
                    resolved.size() as i64,
                    manifest
                ],
            )
            .and_then(|_| {
                self.conn.execute(
                    "INSERT OR REPLACE INTO objects(name, size) VALUES (?1, ?2)",
                    params![name, size as i64],
                )
            })
            .map(drop)
            .map_err(|e| self.err(e))
    }

    /// Snapshots, oldest first.
    pub fn snapshots(&self) -> Result<Vec<SnapshotRow>> {
        let mut stmt = self
            .conn
            .prepare("SELECT name, time_unix_ms, host, files, size FROM snapshots ORDER BY time_unix_ms, name")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok(SnapshotRow {
                    name: r.get(0)?,
                    time_unix_ms: r.get(1)?,
                    host: r.get(2)?,
                    files: r.get::<_, i64>(3)? as u64,
                    size: r.get::<_, i64>(4)? as u64,
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<std::result::Result<_, _>>()
            .map_err(|e| self.err(e))
    }

    /// The cached manifest of a snapshot, resolved against its base if it is relative;
    /// `None` if the catalog lacks either.
    pub fn manifest(&self, name: &str) -> Result<Option<Snapshot>> {
        Ok(self.resolved(name)?.map(|(snapshot, _)| snapshot))
    }

    /// As [`Catalog::manifest`], with the base it was resolved against (its id and itself)
    /// if the manifest is relative.
    pub fn resolved(&self, name: &str) -> Result<Option<(Snapshot, Option<Base>)>> {
        let Some(manifest) = self.stored_manifest(name)? else {
            return Ok(None);
        };
        let base = match &manifest.base {
            Some(id) => match self.base(id)? {
                Some(base) => Some((id.clone(), base)),
                None => return Ok(None),
            },
            None => None,
        };
        let snapshot = manifest.resolve(base.as_ref().map(|(_, b)| b)).ok();
        Ok(snapshot.map(|s| (s, base)))
    }

    /// The snapshot `id` as the base of others (written whole), resolved.
    pub fn base(&self, id: &str) -> Result<Option<Snapshot>> {
        Ok(self
            .stored_manifest(&format!("snapshots/{id}"))?
            .filter(|m| m.base.is_none())
            .and_then(|m| m.resolve(None).ok()))
    }

    /// The cached manifest of a snapshot as stored: whole, or relative to its base.
    pub fn stored_manifest(&self, name: &str) -> Result<Option<Manifest>> {
        let blob: Option<Vec<u8>> = self
            .conn
            .query_row(
                "SELECT manifest FROM snapshots WHERE name = ?1",
                [name],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.err(e))?;
        Ok(blob.and_then(|b| rmp_serde::from_slice(&b).ok()))
    }

    /// Ids of every blob the repository holds.
    pub fn known_blobs(&self) -> Result<IdSet> {
        load_ids(&self.conn).map_err(|e| self.err(e))
    }

    /// A second, read-only connection to this catalog: it loads the file cache on another
    /// thread while a backup decodes its parent's manifest, and answers whether single blobs
    /// are known, for a backup that expects to look up a few ids, where loading all of them
    /// (a quarter of a million on the large store) would cost more than the backup.
    pub fn reader(&self) -> Result<CatalogReader> {
        let err = sqlite(&self.path);
        let conn = Connection::open_with_flags(
            &self.file,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(err)?;
        conn.busy_timeout(std::time::Duration::from_secs(30))
            .map_err(err)?;
        Ok(CatalogReader {
            conn,
            path: self.path.clone(),
        })
    }

    /// Where every blob is, as a map (for tests; a restore keeps only what it needs, see
    /// [`Catalog::for_each_blob`]).
    #[cfg(test)]
    pub fn all_blobs(&self) -> Result<HashMap<ChunkId, (std::sync::Arc<str>, PackEntry)>> {
        let mut out = HashMap::new();
        self.for_each_blob(|pack, entry| {
            out.insert(entry.id, (pack.clone(), entry));
        })?;
        Ok(out)
    }

    /// Every blob the catalog knows, with its pack's name, in one pass that keeps nothing:
    /// a restore of the large store keeps only what it needs of a quarter of a million.
    pub fn for_each_blob(
        &self,
        mut each: impl FnMut(&std::sync::Arc<str>, PackEntry),
    ) -> Result<()> {
        // Pack names first, then the blobs in table order: no join, no sort, no allocation
        // per row (the medium store's 50,000 blobs: 90 ms joined and sorted by pack).
        let mut packs: HashMap<i64, std::sync::Arc<str>> = HashMap::new();
        let mut stmt = self
            .conn
            .prepare("SELECT id, name FROM packs")
            .map_err(|e| self.err(e))?;
        let mut rows = stmt.query([]).map_err(|e| self.err(e))?;
        while let Some(r) = rows.next().map_err(|e| self.err(e))? {
            let (id, name): (i64, String) = (
                r.get(0).map_err(|e| self.err(e))?,
                r.get(1).map_err(|e| self.err(e))?,
            );
            packs.insert(id, name.into());
        }
        let mut stmt = self
            .conn
            .prepare(&format!("SELECT {BLOB_COLUMNS} FROM blobs"))
            .map_err(|e| self.err(e))?;
        let mut rows = stmt.query([]).map_err(|e| self.err(e))?;
        while let Some(r) = rows.next().map_err(|e| self.err(e))? {
            let id = r.get_ref(6).and_then(|v| Ok(v.as_blob()?));
            let Some(id) = id.ok().and_then(|b| <[u8; 32]>::try_from(b).ok()) else {
                continue;
            };
            let pack: i64 = r.get(0).map_err(|e| self.err(e))?;
            let Some(name) = packs.get(&pack) else {
                continue;
            };
            each(
                name,
                entry_from_row(ChunkId(id), r).map_err(|e| self.err(e))?,
            );
        }
        Ok(())
    }

    /// Where the blob `id` is, if the catalog knows it: its pack's name and its entry.
    pub fn blob(&self, id: &ChunkId) -> Result<Option<(String, PackEntry)>> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT p.name, b.kind, b.compression, b.offset, b.length, b.raw_length
                 FROM blobs b JOIN packs p ON p.id = b.pack WHERE b.id = ?1",
            )
            .map_err(|e| self.err(e))?;
        stmt.query_row([&id.0[..]], |r| Ok((r.get(0)?, entry_from_row(*id, r)?)))
            .optional()
            .map_err(|e| self.err(e))
    }

    /// Bytes of all objects on the target, as of the last sync and writes.
    pub fn bytes_stored(&self) -> Result<u64> {
        self.conn
            .query_row("SELECT coalesce(sum(size), 0) FROM objects", [], |r| {
                r.get::<_, i64>(0)
            })
            .map(|v| v as u64)
            .map_err(|e| self.err(e))
    }

    pub fn record_object(&self, name: &str, size: u64) -> Result<()> {
        self.conn
            .execute(
                "INSERT OR REPLACE INTO objects(name, size) VALUES (?1, ?2)",
                params![name, size as i64],
            )
            .map(drop)
            .map_err(|e| self.err(e))
    }

    /// The file cache: what the last snapshot recorded of each file (its `stat` and chunk
    /// ids), and whether all those chunks are still known to be stored (false once blobs
    /// have been forgotten since; then check each file's chunks).
    pub fn file_cache(&self) -> Result<(FileCache, bool)> {
        load_file_cache(&self.conn).map_err(|e| self.err(e))
    }

    /// Brings the file cache to the files of the snapshot just written: the rows of the
    /// files read are written, those of the paths gone deleted, the others stand.
    /// `forgotten` is [`Catalog::forgotten`] as of when the backup loaded what it trusted:
    /// a sync that forgets blobs meanwhile (a concurrent `snapshots` or `restore`) then
    /// leaves the new rows unvouched for.
    pub fn update_file_cache(&mut self, changes: &FileCacheChanges, forgotten: i64) -> Result<()> {
        let path = self.path.clone();
        let err = sqlite(&path);
        let tx = self.conn.transaction().map_err(err)?;
        {
            let mut upsert = tx
                .prepare(
                    "INSERT OR REPLACE INTO files(path, size, mtime_ns, ctime_ns, inode, mode, chunks)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )
                .map_err(err)?;
            for (p, stat, chunks) in &changes.set {
                upsert
                    .execute(params![
                        p,
                        stat.size as i64,
                        stat.mtime_ns,
                        stat.ctime_ns,
                        stat.inode as i64,
                        stat.mode,
                        sealback_repo::chunk::encode_list(chunks)
                    ])
                    .map_err(err)?;
            }
            let mut delete = tx
                .prepare("DELETE FROM files WHERE path = ?1")
                .map_err(err)?;
            for gone in &changes.removed {
                delete.execute([gone]).map_err(err)?;
            }
            tx.execute(
                "INSERT OR REPLACE INTO meta(key, value) VALUES ('files_forgotten', ?1)",
                [forgotten.to_string()],
            )
            .map_err(err)?;
        }
        tx.commit().map_err(err)
    }

    /// Where the capture behind `snapshot` left the database, and its chunk ids; `None`
    /// if the baseline belongs to another snapshot, or blobs were forgotten since it was
    /// written (some of its chunks may be gone).
    pub fn db_baseline(&self, snapshot: &str) -> Result<Option<(Baseline, BaselineIds)>> {
        let row: Option<(String, String, i64, i64)> = self
            .conn
            .query_row(
                "SELECT snapshot, baseline, forgotten, runs FROM db_capture",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .optional()
            .map_err(|e| self.err(e))?;
        let Some((owner, baseline, forgotten, runs)) = row else {
            return Ok(None);
        };
        if owner != snapshot || forgotten != self.forgotten()? {
            return Ok(None);
        }
        // A row this build cannot read, or an ids file not as long as the row says, only
        // costs a full capture.
        let Ok(baseline) = serde_json::from_str::<Baseline>(&baseline) else {
            return Ok(None);
        };
        // The ids file is not synced: after a restart of the device it may hold some of the
        // writes of the last backup and not others. A baseline from before the restart is
        // of no use to a capture anyway (the app's last commits may be gone from its WAL).
        if baseline.boot != crate::capture::database::boot_id() {
            return Ok(None);
        }
        let Ok(file) = std::fs::File::open(&self.ids_path) else {
            return Ok(None);
        };
        let len = file.metadata().map_err(|e| self.io(e))?.len();
        if len != runs.max(0) as u64 * ID_BYTES {
            return Ok(None);
        }
        Ok(Some((
            baseline,
            BaselineIds {
                file,
                runs: runs as u64,
                path: self.ids_path.display().to_string(),
            },
        )))
    }

    /// Forgets the file cache and the database baseline: the next backup reads the whole
    /// store and owes nothing to an earlier one (what engine/proof.rs starts its chain
    /// from).
    pub fn start_over(&mut self) -> Result<()> {
        self.conn
            .execute_batch("DELETE FROM files; DELETE FROM db_capture;")
            .map_err(|e| self.err(e))
    }

    /// Notes that a backup is under way, until [`Catalog::end_backup`]; true if the last
    /// one never ended (the daemon was killed, or the device lost power, mid-backup).
    pub fn begin_backup(&mut self) -> Result<bool> {
        let unclean = self.meta(BACKUP_RUNNING)?.is_some();
        self.set_meta(BACKUP_RUNNING, "1")?;
        Ok(unclean)
    }

    /// Notes that the backup under way ended, however it ended.
    pub fn end_backup(&mut self) -> Result<()> {
        self.conn
            .execute("DELETE FROM meta WHERE key = ?1", [BACKUP_RUNNING])
            .map(drop)
            .map_err(|e| self.err(e))
    }

    /// Forgets the database baseline: the next capture reads the database whole.
    pub fn forget_db_baseline(&mut self) -> Result<()> {
        self.conn
            .execute("DELETE FROM db_capture", [])
            .map(drop)
            .map_err(|e| self.err(e))
    }

    /// Keeps only the baseline of `snapshot` (or none). Its ids go to the ids file whole
    /// after a full read; after a delta read, only the runs read are written over the
    /// stored ones, which must be those [`Catalog::db_baseline`] gave the capture.
    /// `forgotten` as for [`Catalog::update_file_cache`].
    pub fn replace_db_baseline(
        &mut self,
        snapshot: &str,
        baseline: Option<(&Baseline, &NextIds)>,
        forgotten: i64,
    ) -> Result<()> {
        // The row goes first: interrupted while the ids are written, the catalog is left
        // with no baseline (a full capture next time), never with a row naming wrong ids.
        self.conn
            .execute("DELETE FROM db_capture", [])
            .map_err(|e| self.err(e))?;
        let Some((baseline, ids)) = baseline else {
            return Ok(());
        };
        let runs = match ids {
            NextIds::All { file, runs } => {
                let mut from = file;
                from.seek(std::io::SeekFrom::Start(0))
                    .map_err(|e| self.io(e))?;
                let mut to = std::fs::File::create(&self.ids_path).map_err(|e| self.io(e))?;
                let copied = std::io::copy(&mut from, &mut to).map_err(|e| self.io(e))?;
                if copied != runs * ID_BYTES {
                    return Err(self.io(std::io::Error::other(format!(
                        "{copied} bytes of ids spooled for {runs} runs"
                    ))));
                }
                *runs
            }
            NextIds::Changed { runs, changed } => {
                let file = std::fs::OpenOptions::new()
                    .write(true)
                    .open(&self.ids_path)
                    .map_err(|e| self.io(e))?;
                file.set_len(runs * ID_BYTES).map_err(|e| self.io(e))?;
                for (run, id) in changed.iter().filter(|(run, _)| run < runs) {
                    file.write_all_at(&id.0, run * ID_BYTES)
                        .map_err(|e| self.io(e))?;
                }
                *runs
            }
        };
        let json = serde_json::to_string(baseline)
            .map_err(|e| self.err(rusqlite::Error::ToSqlConversionFailure(Box::new(e))))?;
        self.conn
            .execute(
                "INSERT INTO db_capture(snapshot, baseline, forgotten, runs) VALUES (?1, ?2, ?3, ?4)",
                params![snapshot, json, forgotten, runs as i64],
            )
            .map(drop)
            .map_err(|e| self.err(e))
    }

    fn io(&self, source: std::io::Error) -> CatalogError {
        CatalogError::Io {
            path: self.ids_path.display().to_string(),
            source,
        }
    }
}

/// The meta key set while a backup runs.
const BACKUP_RUNNING: &str = "backup_running";

/// Bytes of one chunk id in the baseline's ids file.
const ID_BYTES: u64 = 32;

/// The `count` ids at the start of a file of ids (the baseline's, or one a full read
/// spooled), read in order.
pub fn read_ids(
    file: &std::fs::File,
    count: u64,
) -> std::io::Result<impl Iterator<Item = std::io::Result<ChunkId>> + '_> {
    let mut reader = std::io::BufReader::new(file);
    reader.seek(std::io::SeekFrom::Start(0))?;
    Ok((0..count).map(move |_| {
        let mut id = [0u8; 32];
        std::io::Read::read_exact(&mut reader, &mut id).map(|()| ChunkId(id))
    }))
}

/// The chunk ids of the database's runs as of the baseline, in order: a file beside the
/// catalog, 32 bytes per run, read only where a capture needs them (a day's backup of the
/// large store wants a few hundred of its quarter million) and written only where they
/// changed.
pub struct BaselineIds {
    file: std::fs::File,
    runs: u64,
    path: String,
}

impl BaselineIds {
    /// How many runs the baseline's image has.
    pub fn runs(&self) -> u64 {
        self.runs
    }

    /// The id of run `run`, if the image has it.
    pub fn get(&self, run: u64) -> Result<Option<ChunkId>> {
        if run >= self.runs {
            return Ok(None);
        }
        let mut id = [0u8; 32];
        self.file
            .read_exact_at(&mut id, run * ID_BYTES)
            .map_err(|e| self.io(e))?;
        Ok(Some(ChunkId(id)))
    }

    /// Every id, in order.
    pub fn all(&self) -> Result<Vec<ChunkId>> {
        read_ids(&self.file, self.runs)
            .and_then(Iterator::collect)
            .map_err(|e| self.io(e))
    }

    fn io(&self, source: std::io::Error) -> CatalogError {
        CatalogError::Io {
            path: self.path.clone(),
            source,
        }
    }
}

impl std::fmt::Debug for BaselineIds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BaselineIds({} runs in {})", self.runs, self.path)
    }
}

/// The ids of the next baseline, as [`Catalog::replace_db_baseline`] writes them.
#[derive(Debug)]
pub enum NextIds {
    /// Every run's id (a full read), in an unnamed file until the backup is recorded: the
    /// large store has 232,000 (7 MB), not to be held while its files are read.
    All { file: std::fs::File, runs: u64 },
    /// The stored ids with the runs `changed` set, cut or grown to `runs` runs: every run
    /// past the stored ones is among `changed`.
    Changed {
        runs: u64,
        changed: Vec<(u64, ChunkId)>,
    },
}

/// What a backup changes in the file cache.
#[derive(Debug, Default)]
pub struct FileCacheChanges {
    /// The files read and settled, with their `stat` and chunks.
    pub set: Vec<(String, FileStat, Vec<ChunkId>)>,
    /// The paths gone from the store.
    pub removed: Vec<String>,
}

/// A second, read-only connection to a catalog (see [`Catalog::reader`]).
pub struct CatalogReader {
    conn: Connection,
    path: String,
}

/// The file cache of the catalog behind `conn`, and whether it is vouched for.
fn load_file_cache(conn: &Connection) -> rusqlite::Result<(FileCache, bool)> {
    let count: i64 = conn.query_row("SELECT count(*) FROM files", [], |r| r.get(0))?;
    let mut cache = FileCache::with_capacity(count.max(0) as usize);
    let mut stmt =
        conn.prepare("SELECT path, size, mtime_ns, ctime_ns, inode, mode, chunks FROM files")?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        let stat = FileStat {
            size: r.get::<_, i64>(1)? as u64,
            mtime_ns: r.get(2)?,
            ctime_ns: r.get(3)?,
            inode: r.get::<_, i64>(4)? as u64,
            mode: r.get(5)?,
        };
        let chunks = r.get_ref(6)?.as_blob()?;
        if let Some(chunks) = sealback_repo::chunk::decode_list(chunks) {
            cache.insert(r.get::<_, String>(0)?, (stat, chunks));
        }
    }
    let meta = |key: &str| -> rusqlite::Result<Option<i64>> {
        conn.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| {
            r.get::<_, String>(0)
        })
        .optional()
        .map(|v| v.and_then(|v| v.parse().ok()))
    };
    let trusted = meta("files_forgotten")? == Some(meta("forgotten")?.unwrap_or(0));
    Ok((cache, trusted))
}

/// Every blob id in the catalog behind `conn`.
fn load_ids(conn: &Connection) -> rusqlite::Result<IdSet> {
    let count: i64 = conn.query_row("SELECT count(*) FROM blobs", [], |r| r.get(0))?;
    let mut out = IdSet::with_capacity(count.max(0) as usize);
    let mut stmt = conn.prepare("SELECT id FROM blobs")?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        if let Ok(id) = <[u8; 32]>::try_from(first_blob(row)?) {
            out.insert(ChunkId(id));
        }
    }
    Ok(out)
}

impl CatalogReader {
    /// The file cache, as [`Catalog::file_cache`].
    pub fn file_cache(&self) -> Result<(FileCache, bool)> {
        load_file_cache(&self.conn).map_err(sqlite(&self.path))
    }

    /// Every blob id the catalog knows.
    pub fn all(&self) -> Result<IdSet> {
        load_ids(&self.conn).map_err(sqlite(&self.path))
    }

    /// Whether the catalog knows the blob `id`.
    pub fn contains(&self, id: &ChunkId) -> Result<bool> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT 1 FROM blobs WHERE id = ?1")
            .map_err(sqlite(&self.path))?;
        stmt.exists([&id.0[..]]).map_err(sqlite(&self.path))
    }
}

/// A snapshot written whole as the base of relative ones: its id and itself.
pub type Base = (String, Snapshot);

/// The file cache as loaded: path → (stat, chunk ids).
pub type FileCache = HashMap<String, (FileStat, Vec<ChunkId>)>;

#[cfg(test)]
mod vanishing_tests;

#[cfg(test)]
mod tests {
    use std::io::Write as _;
    use std::sync::Arc;

    use sealback_repo::index::IndexedPack;
    use sealback_repo::pack::PackWriter;
    use sealback_repo::snapshot::{Manifest, SNAPSHOT_VERSION};
    use sealback_repo::{BackupKey, ObjectStore};

    use super::*;
    use crate::engine::backup::now_unix_ms;

    use crate::test_store::MemoryStore;

    /// A repository holding one pack of two chunks, its index and one snapshot.
    pub(super) fn repository() -> (Arc<MemoryStore>, Repository, Vec<ChunkId>) {
        let store = Arc::new(MemoryStore::default());
        let key = BackupKey::from_bytes(&mut [3u8; 32]);
        let (repo, created) = Repository::open_or_init(store.clone(), &key, 0).expect("init");
        assert!(created);
        let mut pack = PackWriter::new(repo.keys());
        let ids: Vec<ChunkId> = [b"one".as_slice(), b"two"]
            .iter()
            .map(|c| {
                let id = repo.keys().chunk_id(c);
                pack.add(BlobKind::Data, id, c, false);
                id
            })
            .collect();
        let stored = repo.write_pack(pack.finish()).expect("pack");
        assert!(
            stored.buffer.is_some_and(|b| b.is_empty()),
            "a store that keeps no reference gives the pack's buffer back, emptied"
        );
        let index = Index {
            packs: vec![IndexedPack {
                name: stored.name,
                entries: stored.entries,
            }],
        };
        repo.write_index(&index).expect("index");
        let snapshot = Snapshot {
            version: SNAPSHOT_VERSION,
            time_unix_ms: 1000,
            host: "phone".into(),
            parent: None,
            base: None,
            database: None,
            files: vec![sealback_repo::snapshot::FileEntry {
                path: "Media/a.jpg".into(),
                size: 6,
                mtime_ns: 1,
                mode: 0o644,
                chunks: ids.clone(),
            }],
        };
        repo.write_snapshot(&Manifest::of(&snapshot, None))
            .expect("snapshot");
        (store, repo, ids)
    }

    #[test]
    fn the_catalogs_files_are_the_daemons_alone() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("disk.db");
        drop(Catalog::open(&path).expect("create"));
        // A catalog made before, or under a looser umask.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let _catalog = Catalog::open(&path).expect("open");
        for entry in std::fs::read_dir(dir.path()).expect("list") {
            let entry = entry.expect("entry");
            let mode = entry.metadata().expect("stat").permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{} has mode {mode:o}", entry.path().display());
        }
    }

    #[test]
    fn a_deleted_catalog_is_rebuilt_from_the_repository() {
        let (_store, repo, ids) = repository();
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("disk.db");
        for round in 0..2 {
            let mut catalog = Catalog::open(&path).expect("open");
            let report = catalog.sync(&repo, Packs::List).expect("sync");
            assert!(report.rebuilt);
            assert_eq!((report.indexes_loaded, report.snapshots_loaded), (1, 1));
            assert_eq!(
                catalog.known_blobs().expect("blobs"),
                ids.iter().copied().collect()
            );
            let blobs = catalog.all_blobs().expect("query");
            let (pack, entry) = blobs.get(&ids[1]).expect("found");
            assert!(pack.starts_with("data/"));
            assert_eq!(entry.raw_length, 3);
            let rows = catalog.snapshots().expect("rows");
            assert_eq!(rows.len(), 1);
            let manifest = catalog
                .manifest(&rows[0].name)
                .expect("query")
                .expect("cached");
            assert_eq!(manifest.files[0].chunks, ids);
            assert!(catalog.bytes_stored().expect("bytes") > 0);
            // A second sync finds nothing new.
            let again = catalog.sync(&repo, Packs::List).expect("sync");
            assert_eq!((again.indexes_loaded, again.rebuilt), (0, false));
            drop(catalog);
            if round == 0 {
                std::fs::remove_file(&path).expect("delete the cache");
            }
        }
    }

    #[test]
    fn a_relative_manifest_is_kept_relative_and_resolved_through_its_base() {
        let (_store, repo, ids) = repository();
        let base_name = repo.list_snapshots().expect("list").remove(0);
        let base = repo.read_snapshot(&base_name).expect("base");
        let mut later = base.clone();
        later.time_unix_ms += 1;
        later.parent = Some(base_name.trim_start_matches("snapshots/").to_owned());
        later.base = later.parent.clone();
        later.files.push(sealback_repo::snapshot::FileEntry {
            path: "Media/b.jpg".into(),
            size: 3,
            mtime_ns: 2,
            mode: 0o644,
            chunks: vec![ids[1]],
        });
        let manifest = Manifest::of(&later, Some(&base));
        let (name, _) = repo.write_snapshot(&manifest).expect("snapshot");
        let dir = tempfile::tempdir().expect("tempdir");
        let mut catalog = Catalog::open(&dir.path().join("disk.db")).expect("open");
        catalog.sync(&repo, Packs::List).expect("sync");
        let stored = catalog
            .stored_manifest(&name)
            .expect("query")
            .expect("cached");
        assert_eq!(stored, manifest, "kept as stored: only the file added");
        assert_eq!(stored.files.len(), 1);
        let resolved = catalog.manifest(&name).expect("query").expect("resolved");
        assert_eq!(resolved, later);
        let row = catalog.snapshots().expect("rows").pop().expect("a row");
        assert_eq!((row.files, row.size), (2, later.size()));
        // Without its base the catalog cannot resolve it, and says so with `None`.
        catalog
            .conn
            .execute("DELETE FROM snapshots WHERE name = ?1", [&base_name])
            .expect("delete");
        assert_eq!(catalog.manifest(&name).expect("query"), None);
    }

    #[test]
    fn a_catalog_of_an_older_schema_is_rebuilt() {
        let (_store, repo, ids) = repository();
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("disk.db");
        // Schema 2 named packs and indexes by text in every blob row.
        let old = Connection::open(&path).expect("open");
        old.execute_batch(
            "CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
             INSERT INTO meta VALUES ('schema', '2'), ('forgotten', '7');
             CREATE TABLE blobs(id BLOB PRIMARY KEY, pack TEXT NOT NULL, idx TEXT NOT NULL,
                 kind INTEGER NOT NULL, compression INTEGER NOT NULL, offset INTEGER NOT NULL,
                 length INTEGER NOT NULL, raw_length INTEGER NOT NULL) WITHOUT ROWID;
             INSERT INTO blobs VALUES (x'00', 'data/x', 'index/y', 0, 0, 42, 1, 1);
             CREATE TABLE packs(name TEXT PRIMARY KEY) WITHOUT ROWID;
             CREATE TABLE indexes(name TEXT PRIMARY KEY);",
        )
        .expect("an old catalog");
        drop(old);
        let mut catalog = Catalog::open(&path).expect("open");
        assert!(catalog.sync(&repo, Packs::List).expect("sync").rebuilt);
        assert_eq!(
            catalog.known_blobs().expect("blobs"),
            ids.iter().copied().collect()
        );
        let blobs = catalog.all_blobs().expect("query");
        assert!(blobs.get(&ids[0]).expect("found").0.starts_with("data/"));
        assert_eq!(catalog.forgotten().expect("counter"), 0);
    }

    #[test]
    fn blobs_of_a_pack_gone_from_the_target_are_forgotten() {
        let (store, repo, _ids) = repository();
        let dir = tempfile::tempdir().expect("tempdir");
        let mut catalog = Catalog::open(&dir.path().join("disk.db")).expect("open");
        catalog.sync(&repo, Packs::List).expect("sync");
        let pack = store.list("data/").expect("list")[0].0.clone();
        store.remove(&pack).expect("remove");
        let report = catalog.sync(&repo, Packs::List).expect("sync");
        assert_eq!(report.packs_missing, 1);
        assert!(catalog.known_blobs().expect("blobs").is_empty());
    }

    #[test]
    fn a_backup_lists_the_packs_when_due_or_when_another_writer_was_at_work() {
        let (store, repo, ids) = repository();
        let dir = tempfile::tempdir().expect("tempdir");
        let mut catalog = Catalog::open(&dir.path().join("disk.db")).expect("open");
        let first = catalog.sync(&repo, Packs::WhenDue).expect("sync");
        assert!(
            first.rebuilt && first.packs_checked,
            "a new catalog lists them"
        );
        let stored = catalog.bytes_stored().expect("bytes");
        let again = catalog.sync(&repo, Packs::WhenDue).expect("sync");
        assert!(!again.packs_checked, "listed a moment ago");
        assert_eq!(catalog.bytes_stored().expect("bytes"), stored, "sizes kept");

        // A pack gone within the hour is found by the next listing that is asked for.
        let pack = store.list("data/").expect("list")[0].0.clone();
        let data = store.get(&pack).expect("pack");
        store.remove(&pack).expect("remove");
        let report = catalog.sync(&repo, Packs::WhenDue).expect("sync");
        assert_eq!((report.packs_checked, report.packs_missing), (false, 0));
        let report = catalog.sync(&repo, Packs::List).expect("sync");
        assert_eq!((report.packs_checked, report.packs_missing), (true, 1));
        assert!(catalog.bytes_stored().expect("bytes") < stored);
        store.put(&pack, &data).expect("put back");

        // An index this catalog did not record: another writer, whose packs are listed.
        let index = Index {
            packs: vec![IndexedPack {
                name: pack.clone(),
                entries: repo
                    .read_index(&store.list("index/").expect("list")[0].0)
                    .expect("index")
                    .packs
                    .remove(0)
                    .entries,
            }],
        };
        let (_, index_size) = repo.write_index(&index).expect("index");
        let report = catalog.sync(&repo, Packs::WhenDue).expect("sync");
        assert!(report.packs_checked);
        assert_eq!(report.indexes_loaded, 1);
        assert_eq!(
            catalog.known_blobs().expect("blobs"),
            ids.iter().copied().collect(),
            "its blobs are known again"
        );
        assert_eq!(
            catalog.bytes_stored().expect("bytes"),
            stored + index_size,
            "the pack counted again, and the new index"
        );

        // An hour on, a backup lists them again.
        catalog
            .set_meta(
                "packs_checked",
                &(now_unix_ms() - PACK_CHECK_MS - 1).to_string(),
            )
            .expect("meta");
        assert!(
            catalog
                .sync(&repo, Packs::WhenDue)
                .expect("sync")
                .packs_checked
        );
    }

    #[test]
    fn a_catalog_of_another_repository_is_wiped() {
        let (_store, repo, _) = repository();
        let (_other_store, other, _) = repository();
        let dir = tempfile::tempdir().expect("tempdir");
        let mut catalog = Catalog::open(&dir.path().join("disk.db")).expect("open");
        catalog.sync(&repo, Packs::List).expect("sync");
        let report = catalog.sync(&other, Packs::List).expect("sync");
        assert!(report.rebuilt);
        assert_eq!(catalog.snapshots().expect("rows").len(), 1);
    }

    #[test]
    fn the_file_cache_writes_what_was_read_and_deletes_what_is_gone_and_is_vouched_for_until_blobs_are_forgotten()
     {
        let (store, repo, ids) = repository();
        let dir = tempfile::tempdir().expect("tempdir");
        let mut catalog = Catalog::open(&dir.path().join("disk.db")).expect("open");
        catalog.sync(&repo, Packs::List).expect("sync");
        let stat = FileStat {
            size: 10,
            mtime_ns: 5,
            ctime_ns: 6,
            inode: 7,
            mode: 0o644,
        };
        let files = FileCacheChanges {
            set: vec![
                ("Media/a.jpg".to_owned(), stat, vec![ids[0]]),
                ("Media/b.jpg".to_owned(), stat, vec![ids[1]]),
            ],
            removed: Vec::new(),
        };
        catalog.update_file_cache(&files, 0).expect("write");
        let (cache, trusted) = catalog.file_cache().expect("cache");
        assert!(trusted);
        assert_eq!(cache.len(), 2);
        assert_eq!(cache["Media/a.jpg"], (stat, vec![ids[0]]));

        // b changed, a is gone, c is new.
        let touched = FileStat {
            ctime_ns: 8,
            ..stat
        };
        let files = FileCacheChanges {
            set: vec![
                ("Media/b.jpg".to_owned(), touched, vec![ids[1]]),
                ("Media/c.jpg".to_owned(), stat, ids.clone()),
            ],
            removed: vec!["Media/a.jpg".to_owned()],
        };
        catalog.update_file_cache(&files, 0).expect("write");
        let (cache, _) = catalog.file_cache().expect("cache");
        let mut paths: Vec<&str> = cache.keys().map(String::as_str).collect();
        paths.sort_unstable();
        assert_eq!(paths, ["Media/b.jpg", "Media/c.jpg"]);
        assert_eq!(cache["Media/b.jpg"].0, touched);

        // A pack goes missing: the cache is no longer vouched for, nor is the baseline.
        let baseline = Baseline {
            page_size: 4096,
            page_count: 2,
            device: 1,
            inode: 2,
            boot: crate::capture::database::boot_id(),
            since: crate::capture::database::Since::File {
                size: 8192,
                mtime_ns: 1,
                ctime_ns: 1,
            },
        };
        let snapshot = catalog.snapshots().expect("rows")[0].name.clone();
        let stored = |catalog: &Catalog, snapshot: &str| {
            catalog
                .db_baseline(snapshot)
                .expect("baseline")
                .map(|(b, ids)| (b, ids.all().expect("ids")))
        };
        // Every id spooled to a file by a full read: copied whole, and checked for length.
        let spooled = |ids: &[ChunkId], runs: u64| {
            let mut file = tempfile::tempfile().expect("spool");
            for id in ids {
                file.write_all(&id.0).expect("write");
            }
            NextIds::All { file, runs }
        };
        let all = || spooled(&ids, 2);
        catalog
            .replace_db_baseline(&snapshot, Some((&baseline, &all())), 0)
            .expect("baseline");
        assert_eq!(
            stored(&catalog, &snapshot),
            Some((baseline.clone(), ids.clone()))
        );
        let (_, lazy) = catalog
            .db_baseline(&snapshot)
            .expect("baseline")
            .expect("some");
        assert_eq!(lazy.runs(), 2);
        assert_eq!(lazy.get(1).expect("read"), Some(ids[1]));
        assert_eq!(lazy.get(2).expect("read"), None);
        // A delta capture changed run 1 and grew the image by a run: only those are written.
        let grown = NextIds::Changed {
            runs: 3,
            changed: vec![(1, ChunkId([4; 32])), (2, ChunkId([5; 32]))],
        };
        catalog
            .replace_db_baseline(&snapshot, Some((&baseline, &grown)), 0)
            .expect("baseline");
        let expected = vec![ids[0], ChunkId([4; 32]), ChunkId([5; 32])];
        assert_eq!(
            stored(&catalog, &snapshot),
            Some((baseline.clone(), expected))
        );
        // Then shrank to one run.
        let shrunk = NextIds::Changed {
            runs: 1,
            changed: vec![],
        };
        catalog
            .replace_db_baseline(&snapshot, Some((&baseline, &shrunk)), 0)
            .expect("baseline");
        assert_eq!(
            stored(&catalog, &snapshot),
            Some((baseline.clone(), vec![ids[0]]))
        );
        catalog
            .replace_db_baseline(&snapshot, Some((&baseline, &all())), 0)
            .expect("baseline");
        assert_eq!(
            stored(&catalog, &snapshot),
            Some((baseline.clone(), ids.clone()))
        );
        let short = catalog.replace_db_baseline(&snapshot, Some((&baseline, &spooled(&ids, 3))), 0);
        assert!(short.is_err(), "{short:?}");
        assert_eq!(stored(&catalog, &snapshot), None, "no row for a short file");
        // An ids file that is not as long as the row says (cut short by hand, or left by a
        // backup that stopped while writing it) is no baseline.
        catalog
            .replace_db_baseline(&snapshot, Some((&baseline, &all())), 0)
            .expect("baseline");
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(dir.path().join("disk.baseline"))
            .expect("ids file");
        file.set_len(40).expect("cut");
        assert_eq!(stored(&catalog, &snapshot), None);
        catalog
            .replace_db_baseline(&snapshot, Some((&baseline, &all())), 0)
            .expect("baseline");
        assert_eq!(stored(&catalog, "snapshots/other"), None);
        // Nor is one taken before the device restarted.
        let before_restart = Baseline {
            boot: Some("another boot".into()),
            ..baseline.clone()
        };
        catalog
            .replace_db_baseline(&snapshot, Some((&before_restart, &all())), 0)
            .expect("baseline");
        assert_eq!(stored(&catalog, &snapshot), None);
        catalog
            .replace_db_baseline(&snapshot, Some((&baseline, &all())), 0)
            .expect("baseline");
        let pack = store.list("data/").expect("list")[0].0.clone();
        store.remove(&pack).expect("remove");
        catalog.sync(&repo, Packs::List).expect("sync");
        assert!(!catalog.file_cache().expect("cache").1);
        assert_eq!(stored(&catalog, &snapshot), None);

        // A backup that loaded its cache before that sync (a concurrent `snapshots`) writes
        // rows vouched for as of its load: they stay unvouched for.
        catalog.update_file_cache(&files, 0).expect("write");
        assert!(!catalog.file_cache().expect("cache").1);
        let now = catalog.forgotten().expect("counter");
        catalog.update_file_cache(&files, now).expect("write");
        assert!(catalog.file_cache().expect("cache").1);
    }
}
