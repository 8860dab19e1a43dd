//! The repository's stored objects: packs (with the list blobs in them), indexes, snapshot
//! manifests and database patches, each read the way the daemon reads it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use sealback_repo::chunk::decode_list;
use sealback_repo::object::{self, ObjectKind};
use sealback_repo::pack::{BlobKind, BlobScratch, Compression, PackReader, PackWriter};
use sealback_repo::{BackupKey, ChunkId, ObjectStore, RepoKeys, Repository, StoreError};
use sealback_repo::{StoreErrorKind, patch};

/// The snapshot id under which the fixture holds a whole manifest, the base a fuzzed
/// relative manifest may name.
pub const BASE_ID: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
/// Where the fuzzed index and snapshot objects are stored.
pub const INDEX_NAME: &str =
    "index/1111111111111111111111111111111111111111111111111111111111111111";
pub const SNAPSHOT_NAME: &str =
    "snapshots/5555555555555555555555555555555555555555555555555555555555555555";

/// The fixed test key everything is sealed with.
pub fn keys() -> &'static RepoKeys {
    static KEYS: OnceLock<RepoKeys> = OnceLock::new();
    KEYS.get_or_init(|| BackupKey::from_bytes(&mut [7u8; 32]).derive())
}

/// An object store in memory.
#[derive(Default)]
pub struct MemoryStore(Mutex<HashMap<String, Bytes>>);

impl ObjectStore for MemoryStore {
    fn put(&self, name: &str, data: &[u8]) -> Result<(), StoreError> {
        let mut objects = self.0.lock().unwrap_or_else(|p| p.into_inner());
        objects.insert(name.to_owned(), Bytes::copy_from_slice(data));
        Ok(())
    }

    fn get(&self, name: &str) -> Result<Bytes, StoreError> {
        let objects = self.0.lock().unwrap_or_else(|p| p.into_inner());
        objects
            .get(name)
            .cloned()
            .ok_or_else(|| StoreError::new(StoreErrorKind::NotFound, format!("no {name}")))
    }

    fn list(&self, prefix: &str) -> Result<Vec<(String, u64)>, StoreError> {
        let objects = self.0.lock().unwrap_or_else(|p| p.into_inner());
        Ok(objects
            .iter()
            .filter(|(n, _)| n.starts_with(prefix))
            .map(|(n, b)| (n.clone(), b.len() as u64))
            .collect())
    }

    fn remove(&self, name: &str) -> Result<(), StoreError> {
        let mut objects = self.0.lock().unwrap_or_else(|p| p.into_inner());
        objects.remove(name);
        Ok(())
    }
}

/// A repository in memory under the test key, holding a whole manifest under [`BASE_ID`].
pub struct Fixture {
    pub store: Arc<MemoryStore>,
    pub repo: Repository,
}

pub fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let store = Arc::new(MemoryStore::default());
        let key = BackupKey::from_bytes(&mut [7u8; 32]);
        let (repo, _) =
            Repository::open_or_init(store.clone(), &key, 0).expect("a repository in memory");
        let name = format!("snapshots/{BASE_ID}");
        let base = crate::seeds::whole_manifest();
        put_snapshot(&store, &name, &compress(&base));
        Fixture { store, repo }
    })
}

pub fn compress(json: &[u8]) -> Vec<u8> {
    zstd::bulk::compress(json, 3).expect("zstd compresses in memory")
}

fn put_snapshot(store: &MemoryStore, name: &str, stored: &[u8]) {
    let sealed = object::seal(keys(), ObjectKind::Snapshot, name, stored);
    store.put(name, &sealed).expect("memory");
}

/// Index: `data` is the plaintext of an index object, sealed and read through the
/// repository. True if it decoded.
pub fn index(data: &[u8]) -> bool {
    let f = fixture();
    let sealed = object::seal(keys(), ObjectKind::Index, INDEX_NAME, data);
    f.store.put(INDEX_NAME, &sealed).expect("memory");
    // The raw bytes as the stored object too: a provider's answer before any check.
    let _ = object::open(keys(), ObjectKind::Index, INDEX_NAME, data);
    f.repo.read_index(INDEX_NAME).is_ok()
}

/// Snapshot: `data[0]` even, the rest is a manifest's JSON, compressed here; odd, the rest
/// is the zstd stream as stored. Sealed, then read and resolved through the repository (a
/// relative manifest may name [`BASE_ID`]). True if it resolved.
pub fn snapshot(data: &[u8]) -> bool {
    let Some((&mode, rest)) = data.split_first() else {
        return false;
    };
    let f = fixture();
    let stored = if mode % 2 == 0 {
        compress(rest)
    } else {
        rest.to_vec()
    };
    put_snapshot(&f.store, SNAPSHOT_NAME, &stored);
    f.repo.read_snapshot(SNAPSHOT_NAME).is_ok()
}

/// The contents the fuzzed patches' dictionary runs had: byte `i` of them all, back to back.
pub fn old_byte(i: usize) -> u8 {
    (i.wrapping_mul(31) as u8) ^ 0x5a
}

/// Patch: `data` is a patch blob's plaintext, decoded and applied to dictionary runs holding
/// [`old_byte`]s, as a restore does. True if it applied.
pub fn patch(data: &[u8]) -> bool {
    let Ok(patch) = patch::decode(data, "patch") else {
        return false;
    };
    let _ = patch.new_len();
    // A restore reads the dictionary from the image it restores, no larger than that image.
    let dictionary = patch.dictionary_len();
    if dictionary > 64 << 20 {
        return false;
    }
    let prefix: Vec<u8> = (0..dictionary).map(old_byte).collect();
    patch.decompress(keys(), &prefix, "patch").is_ok()
}

/// Pack: `data[0]` even, the rest is a pack object as a provider returned it, whose table
/// and blobs are read. Odd, the rest describes a pack built here under the test key (so
/// that its table and blobs authenticate) and edits to its table entries (the fields the
/// AEAD does not bind, and those it does), then every blob is read, list blobs decoded:
///
/// ```text
/// n (u8, at most 16) || n × (kind (u8) || compress (u8) || length (u16 LE) || chunk)
///   || edits: (entry (u8) || field (u8) || value (u32 LE))*
/// ```
///
/// The number of blobs read whole, their id checked.
pub fn pack(data: &[u8]) -> usize {
    let Some((&mode, rest)) = data.split_first() else {
        return 0;
    };
    let keys = keys();
    if mode % 2 == 0 {
        let name = "data/0000000000000000000000000000000000000000000000000000000000000000";
        let Ok(reader) = PackReader::new(keys, name, rest) else {
            return 0;
        };
        let Ok(table) = reader.table() else {
            return 0;
        };
        return table.iter().filter(|e| reader.blob(e).is_ok()).count();
    }
    let (chunks, edits) = pack_chunks(rest);
    let mut writer = PackWriter::new(keys);
    for (kind, compress, chunk) in &chunks {
        writer.add(*kind, keys.chunk_id(chunk), chunk, *compress);
    }
    let finished = writer.finish();
    let reader = PackReader::new(keys, &finished.name, &finished.bytes).expect("our own pack");
    let mut entries = reader.table().expect("our own table");
    for edit in edits.chunks_exact(6) {
        let Some(entry) = entries.get_mut(usize::from(edit[0]) % chunks.len().max(1)) else {
            break;
        };
        let value = u32::from_le_bytes([edit[2], edit[3], edit[4], edit[5]]);
        match edit[1] % 6 {
            0 => entry.offset = value,
            1 => entry.length = value,
            2 => entry.raw_length = value,
            3 => {
                entry.compression = match value % 2 {
                    0 => Compression::None,
                    _ => Compression::Zstd,
                }
            }
            4 => entry.kind = blob_kind(value as u8),
            _ => entry.id.0[value as usize % 32] ^= (value >> 8) as u8 | 1,
        }
    }
    let mut scratch = BlobScratch::default();
    let mut read = 0;
    for entry in &entries {
        let phase = Some((entry.offset as usize % 4096, 4096));
        let Ok(plain) = reader.blob_placed(entry, &mut scratch, phase) else {
            continue;
        };
        read += 1;
        if entry.kind == BlobKind::List {
            let _: Option<Vec<ChunkId>> = decode_list(plain);
        }
    }
    read
}

fn blob_kind(b: u8) -> BlobKind {
    match b % 3 {
        0 => BlobKind::Data,
        1 => BlobKind::List,
        _ => BlobKind::Patch,
    }
}

type Chunks<'a> = Vec<(BlobKind, bool, &'a [u8])>;

/// The chunks a structured pack input describes, and the edits after them.
fn pack_chunks(data: &[u8]) -> (Chunks<'_>, &[u8]) {
    let Some((&n, mut rest)) = data.split_first() else {
        return (Vec::new(), &[]);
    };
    let mut chunks = Vec::new();
    for _ in 0..n.min(16) {
        let [kind, compress, lo, hi, tail @ ..] = rest else {
            break;
        };
        let len = usize::from(u16::from_le_bytes([*lo, *hi])).min(tail.len());
        chunks.push((blob_kind(*kind), compress % 2 == 1, &tail[..len]));
        rest = &tail[len..];
    }
    (chunks, rest)
}
