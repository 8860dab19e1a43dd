//! Messages first: a backup packs the database's blobs apart from the media's, and a
//! restore reads the database's packs before any media pack, so the database is back (and
//! checked) after reading about its own size rather than most of the repository.

use std::collections::HashSet;
use std::fs;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use sealback_repo::pack::PackReader;
use sealback_repo::{BackupKey, ChunkId, ObjectStore, Repository, StoreError};

use super::backup::{self, BackupInput};
use super::restore::{self, RestoreInput};
use super::restore_dir::Owner;
use super::restore_hostile_tests::bytes as noise;
use crate::catalog::Catalog;
use crate::test_store::MemoryStore;

/// A memory store that records the objects read, in order.
#[derive(Default)]
struct Recording {
    inner: MemoryStore,
    gets: Mutex<Vec<String>>,
}

impl ObjectStore for Recording {
    fn put(&self, name: &str, data: &[u8]) -> Result<(), StoreError> {
        self.inner.put(name, data)
    }
    fn get(&self, name: &str) -> Result<bytes::Bytes, StoreError> {
        self.gets.lock().expect("gets").push(name.to_owned());
        self.inner.get(name)
    }
    fn list(&self, prefix: &str) -> Result<Vec<(String, u64)>, StoreError> {
        self.inner.list(prefix)
    }
    fn remove(&self, name: &str) -> Result<(), StoreError> {
        self.inner.remove(name)
    }
}

/// A store of a 2 MB database and 10 MB of media (several packs of each), backed up.
fn backed_up(dir: &Path, store: Arc<Recording>) -> (Repository, Catalog) {
    let root = dir.join("store");
    fs::create_dir_all(root.join("Media/Video")).expect("media dir");
    let conn = rusqlite::Connection::open(root.join("msgstore.db")).expect("db");
    conn.execute_batch("CREATE TABLE message(_id INTEGER PRIMARY KEY, body TEXT);")
        .expect("schema");
    let tx = conn.unchecked_transaction().expect("begin");
    for n in 0..8000u64 {
        let body: String = noise(n as usize, 120)
            .iter()
            .map(|b| char::from(b'a' + b % 26))
            .collect();
        tx.execute("INSERT INTO message(body) VALUES (?1)", [body])
            .expect("insert");
    }
    tx.commit().expect("commit");
    drop(conn);
    for n in 0..4u64 {
        let path = root.join(format!("Media/Video/{n}.mp4"));
        fs::write(path, noise(100 + n as usize, 2_500_000)).expect("media");
    }
    let key = BackupKey::from_bytes(&mut [3u8; 32]);
    let (repo, _) = Repository::open_or_init(store, &key, 0).expect("init");
    let mut catalog = Catalog::open(&dir.join("catalog.db")).expect("catalog");
    let input = BackupInput {
        store: &root,
        database: "msgstore.db",
        host: "test",
        target: "memory",
        spool_dir: &dir.join("spool"),
        progress: &|_, _| {},
        cancel: &AtomicBool::new(false),
        selection: &Default::default(),
    };
    backup::run(&repo, &mut catalog, &input).expect("backup");
    (repo, catalog)
}

#[test]
fn the_database_is_packed_apart_from_the_media_and_its_packs_are_restored_first() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(Recording::default());
    let (repo, catalog) = backed_up(dir.path(), store.clone());
    let row = restore::resolve(&catalog, "latest").expect("snapshot");
    let snapshot = repo.read_snapshot(&row.name).expect("read snapshot");
    let media: HashSet<ChunkId> = snapshot
        .files
        .iter()
        .flat_map(|f| f.chunks.iter().copied())
        .collect();

    // Every pack holds the database's blobs (pages, lists) or media, never both.
    let mut database_packs = HashSet::new();
    let mut media_packs = HashSet::new();
    for (name, _) in store.list("data/").expect("list") {
        let bytes = store.inner.get(&name).expect("pack");
        let table = PackReader::new(repo.keys(), &name, &bytes)
            .and_then(|r| r.table())
            .expect("table");
        let of_media = table.iter().filter(|e| media.contains(&e.id)).count();
        assert!(
            of_media == 0 || of_media == table.len(),
            "{name} mixes {of_media} media blobs with {} of the database's",
            table.len() - of_media
        );
        if of_media == 0 {
            database_packs.insert(name);
        } else {
            media_packs.insert(name);
        }
    }
    assert!(
        !database_packs.is_empty() && media_packs.len() >= 2,
        "the store fills packs of both kinds: {} of the database, {} of media",
        database_packs.len(),
        media_packs.len()
    );

    // The restore reads every database pack before the first media pack, and says when
    // the database is ready.
    store.gets.lock().expect("gets").clear();
    let to = dir.path().join("restored");
    let ready = Mutex::new(None);
    let input = RestoreInput {
        snapshot: &row,
        target: "memory",
        to: &to,
        force: false,
        owner: Owner::Directory,
        progress: &|_, _| {},
        database_ready: &|ms| *ready.lock().expect("ready") = Some(ms),
        cancel: &AtomicBool::new(false),
        selection: &Default::default(),
    };
    let report = restore::run(&repo, &catalog, &input).expect("restore");
    let gets = store.gets.lock().expect("gets").clone();
    let packs: Vec<&String> = gets.iter().filter(|n| n.starts_with("data/")).collect();
    let first_media = packs
        .iter()
        .position(|n| media_packs.contains(*n))
        .expect("media packs read");
    let database_read: HashSet<&String> = packs[..first_media].iter().copied().collect();
    assert!(
        database_packs.iter().all(|p| database_read.contains(p)),
        "every database pack is read before the first media pack: {packs:?}"
    );
    assert!(
        packs[first_media..]
            .iter()
            .all(|n| media_packs.contains(*n)),
        "no database pack is read after the media began"
    );
    let ready = ready
        .lock()
        .expect("ready")
        .expect("the database was reported ready");
    assert_eq!(report.database.map(|d| d.ready_ms), Some(ready));
}
