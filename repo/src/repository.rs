//! A repository on an object store: creating it, checking a key against it, and reading and
//! writing its objects in the order that keeps it valid at every instant (packs, then the
//! index naming them, then the snapshot naming their chunks).

use bytes::Bytes;
use std::fmt;
use std::io::Read;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::chunk::{DB_CHUNK_BYTES, MEDIA_AVG_BYTES, MEDIA_MAX_BYTES, MEDIA_MIN_BYTES};
use crate::error::{Error, Result};
use crate::index::Index;
use crate::keys::{BackupKey, RepoKeys};
use crate::object::{self, ObjectKind};
use crate::pack::{FinishedPack, random_hex};
use crate::snapshot::{Manifest, SNAPSHOT_VERSION, Snapshot};

/// A pack the store has taken.
pub struct StoredPack {
    pub name: String,
    pub entries: Vec<crate::pack::PackEntry>,
    pub size: u64,
    /// The pack's buffer, emptied, for [`crate::pack::PackWriter::new_in`]: a fresh
    /// allocation per pack had glibc keep megabytes per thread in its arenas.
    pub buffer: Option<Vec<u8>>,
}

/// The object store a repository lives on: the daemon's adapter over a provider plugin,
/// or anything else with these semantics (they are the plugin ABI's, see DESIGN.md).
pub trait ObjectStore: Send + Sync {
    /// Stores `data` under `name` atomically; putting a name again replaces it.
    fn put(&self, name: &str, data: &[u8]) -> Result<(), StoreError>;
    /// [`put`](ObjectStore::put) of data the caller hands over: a wrapper that must keep
    /// the data beyond the call (a retry, a call on another thread) shares it instead of
    /// copying it. Packs are stored this way.
    fn put_shared(&self, name: &str, data: Bytes) -> Result<(), StoreError> {
        self.put(name, &data)
    }
    /// The whole object; [`StoreErrorKind::NotFound`] if there is none.
    fn get(&self, name: &str) -> Result<Bytes, StoreError>;
    /// Every object whose name starts with `prefix`, with its size.
    fn list(&self, prefix: &str) -> Result<Vec<(String, u64)>, StoreError>;
    /// Removes an object; removing a missing object succeeds.
    fn remove(&self, name: &str) -> Result<(), StoreError>;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreErrorKind {
    NotFound,
    Transient,
    Auth,
    Quota,
    Permanent,
    InvalidConfig,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreError {
    pub kind: StoreErrorKind,
    pub message: String,
    /// For a transient error: how long the provider asked us to wait before retrying.
    pub retry_after: Option<std::time::Duration>,
}

impl StoreError {
    pub fn new(kind: StoreErrorKind, message: impl Into<String>) -> StoreError {
        StoreError {
            kind,
            message: message.into(),
            retry_after: None,
        }
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for StoreError {}

/// The repository's `config` object: what a new device needs to read the rest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepoConfig {
    pub version: u32,
    /// Random, 64 hex digits; names the repository in messages and the local catalog.
    pub id: String,
    pub created_unix_ms: i64,
    pub media_chunk_min: u32,
    pub media_chunk_avg: u32,
    pub media_chunk_max: u32,
    pub db_chunk_bytes: u32,
}

pub const CONFIG_NAME: &str = "config";

/// An open repository.
pub struct Repository {
    store: Arc<dyn ObjectStore>,
    keys: RepoKeys,
    config: RepoConfig,
    /// The base last read by [`Repository::read_snapshot`], by id.
    base_cache: Mutex<Option<(String, Arc<Snapshot>)>>,
}

impl Repository {
    /// Opens the repository on `store` with `key`; fails if there is none or the key does
    /// not open it.
    pub fn open(store: Arc<dyn ObjectStore>, key: &BackupKey) -> Result<Repository> {
        let keys = key.derive();
        let bytes = store.get(CONFIG_NAME)?;
        let config = read_config(&keys, &bytes)?;
        Ok(Repository {
            store,
            keys,
            config,
            base_cache: Mutex::new(None),
        })
    }

    /// Opens the repository, creating it first if the store holds none. Returns whether it
    /// was created.
    pub fn open_or_init(
        store: Arc<dyn ObjectStore>,
        key: &BackupKey,
        now_unix_ms: i64,
    ) -> Result<(Repository, bool)> {
        let keys = key.derive();
        match store.get(CONFIG_NAME) {
            Ok(bytes) => {
                let config = read_config(&keys, &bytes)?;
                Ok((
                    Repository {
                        store,
                        keys,
                        config,
                        base_cache: Mutex::new(None),
                    },
                    false,
                ))
            }
            Err(e) if e.kind == StoreErrorKind::NotFound => {
                let config = RepoConfig {
                    version: u32::from(object::FORMAT_VERSION),
                    id: random_hex(),
                    created_unix_ms: now_unix_ms,
                    media_chunk_min: MEDIA_MIN_BYTES,
                    media_chunk_avg: MEDIA_AVG_BYTES,
                    media_chunk_max: MEDIA_MAX_BYTES,
                    db_chunk_bytes: DB_CHUNK_BYTES,
                };
                let json = serde_json::to_vec(&config).expect("config serializes");
                store.put(
                    CONFIG_NAME,
                    &object::seal(&keys, ObjectKind::Config, CONFIG_NAME, &json),
                )?;
                Ok((
                    Repository {
                        store,
                        keys,
                        config,
                        base_cache: Mutex::new(None),
                    },
                    true,
                ))
            }
            Err(e) => Err(e.into()),
        }
    }

    pub fn keys(&self) -> &RepoKeys {
        &self.keys
    }

    pub fn config(&self) -> &RepoConfig {
        &self.config
    }

    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// Stores a finished pack; returns its name, its table (for the index), the bytes
    /// written, and its buffer for the next pack once the store holds no reference to it.
    pub fn write_pack(&self, pack: FinishedPack) -> Result<StoredPack> {
        let FinishedPack {
            name,
            bytes,
            entries,
        } = pack;
        let size = bytes.len() as u64;
        let kept = bytes.clone();
        self.store.put_shared(&name, bytes)?;
        // Emptied first, so that taking the allocation back copies nothing.
        let buffer = kept.try_into_mut().ok().map(|mut b| {
            b.clear();
            Vec::from(b)
        });
        Ok(StoredPack {
            name,
            entries,
            size,
            buffer,
        })
    }

    pub fn read_pack(&self, name: &str) -> Result<Bytes> {
        Ok(self.store.get(name)?)
    }

    /// Stores an index; returns its name and the bytes written.
    pub fn write_index(&self, index: &Index) -> Result<(String, u64)> {
        let name = format!("index/{}", random_hex());
        let sealed = object::seal(&self.keys, ObjectKind::Index, &name, &index.encode());
        self.store.put(&name, &sealed)?;
        Ok((name, sealed.len() as u64))
    }

    pub fn read_index(&self, name: &str) -> Result<Index> {
        let bytes = self.store.get(name)?;
        let plain = object::open(&self.keys, ObjectKind::Index, name, &bytes)?;
        Index::decode(name, &plain)
    }

    /// Names of all index objects.
    pub fn list_indexes(&self) -> Result<Vec<String>> {
        self.list_names("index/")
    }

    /// Stores a snapshot's manifest (see [`Manifest::of`]); returns its name and the bytes
    /// written.
    pub fn write_snapshot(&self, manifest: &Manifest) -> Result<(String, u64)> {
        let name = format!("snapshots/{}", random_hex());
        // Compressed as it is serialized: the large store's manifest is megabytes of JSON
        // that need never sit whole in memory.
        let compress = || -> std::io::Result<Vec<u8>> {
            let mut encoder = zstd::stream::Encoder::new(Vec::new(), 3)?;
            let mut json = std::io::BufWriter::with_capacity(64 * 1024, &mut encoder);
            serde_json::to_writer(&mut json, manifest).map_err(std::io::Error::other)?;
            json.into_inner().map_err(|e| e.into_error())?;
            encoder.finish()
        };
        let compressed = compress().expect("zstd compresses a manifest in memory");
        let sealed = object::seal(&self.keys, ObjectKind::Snapshot, &name, &compressed);
        self.store.put(&name, &sealed)?;
        Ok((name, sealed.len() as u64))
    }

    /// A snapshot, resolved against its base if its manifest is relative.
    pub fn read_snapshot(&self, name: &str) -> Result<Snapshot> {
        let manifest = self.read_stored(name)?;
        self.resolve(name, manifest)
    }

    /// A snapshot's manifest as stored (whole or relative), and the snapshot it resolves to.
    pub fn read_manifest(&self, name: &str) -> Result<(Manifest, Snapshot)> {
        let manifest = self.read_stored(name)?;
        let resolved = self.resolve(name, manifest.clone())?;
        Ok((manifest, resolved))
    }

    fn resolve(&self, name: &str, manifest: Manifest) -> Result<Snapshot> {
        let base = match &manifest.base {
            Some(id) => Some(self.read_base(id)?),
            None => None,
        };
        manifest
            .resolve(base.as_deref())
            .map_err(|e| Error::malformed(name, e.0))
    }

    /// The snapshot `id` as the base of others: written whole. The last one read is kept,
    /// since a run of snapshots shares one base.
    fn read_base(&self, id: &str) -> Result<Arc<Snapshot>> {
        let mut cached = self.base_cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((cached_id, base)) = cached.as_ref()
            && cached_id == id
        {
            return Ok(base.clone());
        }
        let name = format!("snapshots/{id}");
        let manifest = self.read_stored(&name)?;
        if manifest.base.is_some() {
            return Err(Error::malformed(
                &name,
                "it is the base of another snapshot but is itself relative to a base",
            ));
        }
        let base = Arc::new(
            manifest
                .resolve(None)
                .map_err(|e| Error::malformed(&name, e.0))?,
        );
        *cached = Some((id.to_owned(), base.clone()));
        Ok(base)
    }

    fn read_stored(&self, name: &str) -> Result<Manifest> {
        let bytes = self.store.get(name)?;
        let plain = object::open(&self.keys, ObjectKind::Snapshot, name, &bytes)?;
        let json = decompress_manifest(name, &plain)?;
        // The version first: a newer manifest's fields are not ours to judge.
        #[derive(serde::Deserialize)]
        struct Versioned {
            version: u32,
        }
        let versioned: Versioned = serde_json::from_slice(&json)
            .map_err(|e| Error::malformed(name, format!("manifest: {e}")))?;
        if versioned.version > SNAPSHOT_VERSION {
            return Err(Error::malformed(
                name,
                format!(
                    "manifest version {}, this sealback reads up to {SNAPSHOT_VERSION}: upgrade sealback",
                    versioned.version
                ),
            ));
        }
        serde_json::from_slice(&json).map_err(|e| Error::malformed(name, format!("manifest: {e}")))
    }

    /// Names of all snapshot objects.
    pub fn list_snapshots(&self) -> Result<Vec<String>> {
        self.list_names("snapshots/")
    }

    fn list_names(&self, prefix: &str) -> Result<Vec<String>> {
        let mut names: Vec<String> = self
            .store
            .list(prefix)?
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        names.sort();
        Ok(names)
    }
}

/// The most bytes a manifest may decompress to: a hundred times the large store's (10,000
/// files, 2.5 MB), and a bound on what a small object can make a reader allocate (zstd
/// turns a few bytes into 128 KiB of zeros, a 1 MB object into gigabytes).
const MAX_MANIFEST_BYTES: u64 = 256 << 20;

/// A stored manifest's JSON: `compressed` decompressed, refused past [`MAX_MANIFEST_BYTES`].
fn decompress_manifest(name: &str, compressed: &[u8]) -> Result<Vec<u8>> {
    let limit = MAX_MANIFEST_BYTES;
    let zstd = |e: std::io::Error| Error::malformed(name, format!("zstd: {e}"));
    let mut json = Vec::new();
    zstd::stream::read::Decoder::new(compressed)
        .map_err(zstd)?
        .take(limit + 1)
        .read_to_end(&mut json)
        .map_err(zstd)?;
    if json.len() as u64 > limit {
        return Err(Error::malformed(
            name,
            format!("its manifest decompresses to more than {limit} bytes"),
        ));
    }
    Ok(json)
}

fn read_config(keys: &RepoKeys, bytes: &[u8]) -> Result<RepoConfig> {
    let plain = object::open(keys, ObjectKind::Config, CONFIG_NAME, bytes)?;
    let config: RepoConfig =
        serde_json::from_slice(&plain).map_err(|e| Error::malformed(CONFIG_NAME, e.to_string()))?;
    // A version-1 repository is read, and written on in version 2 from then on.
    let versions = u32::from(object::UNPADDED_VERSION)..=u32::from(object::FORMAT_VERSION);
    if !versions.contains(&config.version) {
        return Err(Error::UnsupportedVersion {
            name: CONFIG_NAME.to_owned(),
            found: config.version.min(255) as u8,
            supported: object::FORMAT_VERSION,
        });
    }
    // Within the bounds fastcdc accepts, a largest chunk that fits one pack, and database
    // runs no larger than a reader accepts; anything else would make the chunker misbehave.
    let (min, avg, max) = (
        config.media_chunk_min,
        config.media_chunk_avg,
        config.media_chunk_max,
    );
    let even = [min, avg, max].iter().all(|n| n % 2 == 0);
    if !(even
        && (64..=1 << 20).contains(&min)
        && (256..=4 << 20).contains(&avg)
        && (1024..=4 << 20).contains(&max)
        && min <= avg
        && avg <= max
        && (512..=1 << 20).contains(&config.db_chunk_bytes))
    {
        return Err(Error::malformed(
            CONFIG_NAME,
            format!(
                "chunk bounds out of range (media {min}/{avg}/{max}, database {})",
                config.db_chunk_bytes
            ),
        ));
    }
    Ok(config)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    type Memory = crate::memory::MemoryStore;

    #[test]
    fn a_version_1_repository_is_read_and_written_on_in_version_2() {
        let store = Arc::new(Memory::default());
        let key = BackupKey::from_bytes(&mut [4u8; 32]);
        let keys = key.derive();
        let v1 = object::UNPADDED_VERSION;
        let config = format!(
            r#"{{"version":1,"id":"{}","created_unix_ms":0,"media_chunk_min":262144,"media_chunk_avg":1048576,"media_chunk_max":2097152,"db_chunk_bytes":4096}}"#,
            "c".repeat(64)
        );
        let sealed = object::seal_as(
            &keys,
            ObjectKind::Config,
            v1,
            CONFIG_NAME,
            config.as_bytes(),
        );
        store.put(CONFIG_NAME, &sealed).expect("put");
        let old_index = Index {
            packs: vec![crate::index::IndexedPack {
                name: format!("data/{}", "d".repeat(64)),
                entries: Vec::new(),
            }],
        };
        let old_name = format!("index/{}", "e".repeat(64));
        let sealed = object::seal_as(&keys, ObjectKind::Index, v1, &old_name, &old_index.encode());
        store.put(&old_name, &sealed).expect("put");

        let (repo, created) = Repository::open_or_init(store.clone(), &key, 0).expect("opens");
        assert!(!created);
        assert_eq!(repo.config().version, 1);
        assert_eq!(repo.read_index(&old_name).expect("v1 index"), old_index);
        let (new_name, size) = repo.write_index(&old_index).expect("write");
        let stored = store.get(&new_name).expect("stored");
        assert_eq!(stored[8], object::FORMAT_VERSION);
        assert_eq!(size, crate::padme::padme(size));
        assert_eq!(repo.read_index(&new_name).expect("v2 index"), old_index);

        let newer = config.replace(r#""version":1"#, r#""version":3"#);
        let sealed = object::seal(&keys, ObjectKind::Config, CONFIG_NAME, newer.as_bytes());
        store.put(CONFIG_NAME, &sealed).expect("put");
        let err = Repository::open(store, &key).err().expect("refused");
        assert!(
            matches!(err, Error::UnsupportedVersion { found: 3, .. }),
            "{err}"
        );
    }

    #[test]
    fn a_manifest_that_decompresses_past_its_limit_is_refused() {
        let store = Arc::new(Memory::default());
        let key = BackupKey::from_bytes(&mut [3u8; 32]);
        let (repo, _) = Repository::open_or_init(store.clone(), &key, 0).expect("init");
        // Some kilobytes that decompress to one byte more than a manifest may: the reader
        // must stop at its limit, not allocate whatever the frame makes.
        let mut bomb = zstd::stream::Encoder::new(Vec::new(), 3).expect("zstd");
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..MAX_MANIFEST_BYTES >> 20 {
            bomb.write_all(&zeros).expect("zstd");
        }
        bomb.write_all(&[0]).expect("zstd");
        let bomb = bomb.finish().expect("zstd");
        assert!(bomb.len() < 64 << 10, "{} bytes", bomb.len());
        let name = format!("snapshots/{}", "a".repeat(64));
        let sealed = object::seal(repo.keys(), ObjectKind::Snapshot, &name, &bomb);
        store.put(&name, &sealed).expect("put");
        let err = repo.read_snapshot(&name).expect_err("refused");
        assert!(
            err.to_string().contains("decompresses to more than"),
            "{err}"
        );
    }
}
