//! A backup that reports success restores to exactly what it captured.
//!
//! The property test drives the engine through a random life of the store: the app commits
//! (inserts, edits of a few rows and of many, deletes), checkpoints in every mode, VACUUMs,
//! leaves WAL mode and comes back, closes its database, changes media; the provider fails
//! part-way through a backup (what a crash leaves); the daemon restarts and its catalog is
//! lost. After every backup that succeeds, its snapshot is restored from the repository and
//! compared with the oracle: the database as a full capture reads it at that moment, byte
//! for byte, and every media file.
//!
//! `SEALBACK_CHAIN_STEPS` sets the number of steps (the README's test command runs the
//! default; the README's reliability section gives a longer run), `SEALBACK_CHAIN_SEED`
//! the first seed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rusqlite::{Connection, params};
use sealback_repo::{BackupKey, ChunkId, ObjectStore, Repository, StoreError, StoreErrorKind};

use super::backup::{self, BackupInput};
use super::restore::{self, RestoreInput};
use crate::capture::database::capture_pages;
use crate::capture::files::FileStat;
use crate::catalog::{Catalog, FileCacheChanges};
use crate::control::api::BackupReport;
use crate::test_store::MemoryStore;

const DATABASE: &str = "msgstore.db";
/// Steps of a run, by default: lives of `STEPS / LIVES` steps each, from `LIVES` seeds.
const STEPS: u64 = 2000;
const LIVES: u64 = 4;

/// The memory store, which fails every put after a given number of them while armed: a
/// backup cut short as a crash or a lost connection cuts it.
#[derive(Default)]
struct FailingStore {
    inner: MemoryStore,
    /// Puts left before they fail; `u64::MAX` when not armed.
    puts_left: AtomicU64,
}

impl FailingStore {
    fn new() -> FailingStore {
        FailingStore {
            inner: MemoryStore::default(),
            puts_left: AtomicU64::new(u64::MAX),
        }
    }

    fn fail_after(&self, puts: u64) {
        self.puts_left.store(puts, Ordering::SeqCst);
    }

    fn disarm(&self) {
        self.puts_left.store(u64::MAX, Ordering::SeqCst);
    }
}

impl ObjectStore for FailingStore {
    fn put(&self, name: &str, data: &[u8]) -> Result<(), StoreError> {
        let left = self.puts_left.load(Ordering::SeqCst);
        if left == 0 {
            return Err(StoreError::new(StoreErrorKind::Permanent, name));
        }
        if left != u64::MAX {
            self.puts_left.fetch_sub(1, Ordering::SeqCst);
        }
        self.inner.put(name, data)
    }
    fn get(&self, name: &str) -> Result<bytes::Bytes, StoreError> {
        self.inner.get(name)
    }
    fn list(&self, prefix: &str) -> Result<Vec<(String, u64)>, StoreError> {
        self.inner.list(prefix)
    }
    fn remove(&self, name: &str) -> Result<(), StoreError> {
        self.inner.remove(name)
    }
}

/// The app: its database connection (if open) and what it has written.
struct App {
    db: PathBuf,
    conn: Option<Connection>,
    next_id: i64,
}

impl App {
    fn open(store: &Path) -> App {
        let db = store.join(DATABASE);
        let conn = Connection::open(&db).expect("open");
        conn.execute_batch(
            "PRAGMA journal_mode=WAL;
             CREATE TABLE IF NOT EXISTS message(
                 _id INTEGER PRIMARY KEY, chat INTEGER, starred INTEGER, body TEXT);
             CREATE INDEX IF NOT EXISTS by_chat ON message(chat, _id);",
        )
        .expect("schema");
        App {
            db,
            conn: Some(conn),
            next_id: 1,
        }
    }

    /// A store under `dir` with 20,000 messages folded into its database (8 MB: an edit of
    /// many rows changes more runs than a patch takes), checkpoints left to the test.
    fn with_messages(dir: &Path, rng: &mut StdRng) -> (PathBuf, App) {
        let store = dir.join("store");
        std::fs::create_dir_all(store.join("Media/Images")).expect("media");
        let mut app = App::open(&store);
        app.execute("PRAGMA wal_autocheckpoint=0");
        for _ in 0..10 {
            app.insert(rng, 2000);
        }
        app.checkpoint("TRUNCATE");
        (store, app)
    }

    fn conn(&mut self) -> &Connection {
        let db = &self.db;
        self.conn
            .get_or_insert_with(|| Connection::open(db).expect("reopen"))
    }

    fn insert(&mut self, rng: &mut StdRng, rows: usize) {
        let first = self.next_id;
        self.next_id += rows as i64;
        let conn = self.conn();
        let tx = conn.unchecked_transaction().expect("begin");
        for id in first..first + rows as i64 {
            tx.execute(
                "INSERT INTO message(_id, chat, starred, body) VALUES (?1, ?2, 0, ?3)",
                params![id, rng.gen_range(0..40), body(rng)],
            )
            .expect("insert");
        }
        tx.commit().expect("commit");
    }

    /// Writes a copy of the database (VACUUM INTO), adds rows to it, and renames it over
    /// the database, as an app restoring its own backup or migrating does.
    fn replace_by_a_copy(&mut self, rng: &mut StdRng) {
        let copy = self.db.with_extension("copy");
        let _ = std::fs::remove_file(&copy);
        let sql = format!("VACUUM INTO '{}'", copy.display());
        self.execute(&sql);
        {
            let other = Connection::open(&copy).expect("open the copy");
            let first = self.next_id;
            self.next_id += 5;
            for id in first..first + 5 {
                other
                    .execute(
                        "INSERT INTO message(_id, chat, starred, body) VALUES (?1, 1, 0, ?2)",
                        params![id, body(rng)],
                    )
                    .expect("insert into the copy");
            }
            other
                .execute_batch("PRAGMA journal_mode=WAL")
                .expect("the copy in WAL mode");
        }
        self.checkpoint("TRUNCATE");
        self.conn = None;
        std::fs::rename(&copy, &self.db).expect("rename over");
    }

    fn execute(&mut self, sql: &str) {
        self.conn().execute_batch(sql).expect(sql);
    }

    fn checkpoint(&mut self, mode: &str) {
        // A checkpoint blocked by a reader is what the app sees too: not an error.
        let _ = self
            .conn()
            .query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |_| Ok(()));
    }
}

fn body(rng: &mut StdRng) -> String {
    let len = rng.gen_range(20..600);
    (0..len)
        .map(|_| char::from(b'a' + rng.gen_range(0..26)))
        .collect()
}

/// The oracle: the database as a full capture reads it now, and the media files.
struct Captured {
    database: Vec<u8>,
    files: BTreeMap<String, Vec<u8>>,
}

fn capture_now(store: &Path) -> Captured {
    let mut database = Vec::new();
    capture_pages(
        &store.join(DATABASE),
        4096,
        None,
        || {},
        |_, data| {
            database.extend_from_slice(data);
            Ok(())
        },
    )
    .expect("full capture");
    Captured {
        database,
        files: files_under(store, &store.join("Media")),
    }
}

fn files_under(root: &Path, dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return files;
    };
    for entry in entries {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            files.extend(files_under(root, &path));
        } else {
            let rel = path.strip_prefix(root).expect("under root");
            let data = std::fs::read(&path).expect("read");
            files.insert(rel.to_string_lossy().into_owned(), data);
        }
    }
    files
}

/// The daemon's side: the repository, its catalog, and what it runs.
struct Device {
    store: Arc<FailingStore>,
    repo: Repository,
    catalog_path: PathBuf,
    catalog: Catalog,
    spool: PathBuf,
}

impl Device {
    fn new(dir: &Path) -> Device {
        let store = Arc::new(FailingStore::new());
        let key = BackupKey::from_bytes(&mut [7u8; 32]);
        let (repo, _) = Repository::open_or_init(store.clone(), &key, 0).expect("init");
        let catalog_path = dir.join("catalog.db");
        let catalog = Catalog::open(&catalog_path).expect("catalog");
        Device {
            store,
            repo,
            catalog_path,
            catalog,
            spool: dir.join("spool"),
        }
    }

    /// The daemon restarts; with `mid_backup`, it was killed during a backup; with
    /// `lose_catalog`, its catalog is gone too.
    fn restart(&mut self, mid_backup: bool, lose_catalog: bool) {
        if mid_backup {
            self.catalog.begin_backup().expect("begin");
        }
        // The old connection closes before its files go.
        let closed = std::mem::replace(
            &mut self.catalog,
            Catalog::open(&self.catalog_path.with_extension("aside")).expect("aside"),
        );
        drop(closed);
        if lose_catalog {
            let db = self.catalog_path.display().to_string();
            let ids = self.catalog_path.with_extension("baseline");
            for path in [db.clone(), format!("{db}-wal"), format!("{db}-shm")] {
                let _ = std::fs::remove_file(path);
            }
            let _ = std::fs::remove_file(ids);
        }
        self.catalog = Catalog::open(&self.catalog_path).expect("catalog");
    }

    fn backup(&mut self, store: &Path) -> Result<String, super::EngineError> {
        self.backup_report(store).map(|report| report.snapshot)
    }

    fn backup_report(&mut self, store: &Path) -> Result<BackupReport, super::EngineError> {
        let cancel = AtomicBool::new(false);
        let input = BackupInput {
            store,
            database: DATABASE,
            host: "test",
            target: "memory",
            spool_dir: &self.spool,
            progress: &|_, _| {},
            cancel: &cancel,
            selection: &Default::default(),
        };
        backup::run(&self.repo, &mut self.catalog, &input)
    }

    /// Restores `snapshot` and checks it against `expected`.
    fn check_restores(&self, snapshot: &str, expected: &Captured, to: &Path, what: &str) {
        let rows = self.catalog.snapshots().expect("snapshots");
        let row = rows
            .iter()
            .find(|r| r.id() == snapshot)
            .unwrap_or_else(|| panic!("{what}: snapshot {snapshot} is not listed"));
        let _ = std::fs::remove_dir_all(to);
        let input = RestoreInput {
            snapshot: row,
            target: "memory",
            to,
            force: false,
            owner: Default::default(),
            progress: &|_, _| {},
            cancel: &AtomicBool::new(false),
            database_ready: &|_| {},
            selection: &Default::default(),
        };
        if let Err(e) = restore::run(&self.repo, &self.catalog, &input) {
            panic!("{what}: snapshot {snapshot} reported done but does not restore: {e}");
        }
        let restored = std::fs::read(to.join(DATABASE)).expect("restored database");
        assert!(
            restored == expected.database,
            "{what}: the restored database ({} bytes) is not what was captured ({} bytes)",
            restored.len(),
            expected.database.len()
        );
        let files = files_under(to, &to.join("Media"));
        assert_eq!(
            files.keys().collect::<Vec<_>>(),
            expected.files.keys().collect::<Vec<_>>(),
            "{what}: restored media"
        );
        assert!(files == expected.files, "{what}: restored media contents");
    }
}

/// One random life of the store, `steps` long; returns how many backups were checked.
fn random_life(seed: u64, steps: u64) -> u64 {
    let mut rng = StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, mut app) = App::with_messages(dir.path(), &mut rng);
    let restored = dir.path().join("restored");
    let mut device = Device::new(dir.path());
    let mut checked = 0;
    let mut history = String::new();
    for step in 0..steps {
        let action = rng.gen_range(0..100);
        let what = match action {
            0..=19 => {
                let rows = rng.gen_range(1..50);
                app.insert(&mut rng, rows);
                format!("insert {rows}")
            }
            20..=27 => {
                let id = rng.gen_range(1..app.next_id);
                app.execute(&format!(
                    "UPDATE message SET body = body || 'x' WHERE _id = {id}"
                ));
                "edit one".into()
            }
            28..=31 => {
                // Star one message in n: pages all over the file change.
                let n = rng.gen_range(2..12);
                app.execute(&format!(
                    "UPDATE message SET starred = 1 - starred WHERE _id % {n} = 0"
                ));
                format!("edit many (1 in {n})")
            }
            32..=35 => {
                let n = rng.gen_range(3..30);
                let at = rng.gen_range(0..n);
                app.execute(&format!("DELETE FROM message WHERE _id % {n} = {at}"));
                format!("delete 1 in {n}")
            }
            36..=43 => {
                let mode = ["PASSIVE", "FULL", "RESTART", "TRUNCATE"][rng.gen_range(0..4)];
                app.checkpoint(mode);
                format!("checkpoint {mode}")
            }
            44..=45 => {
                app.execute("VACUUM");
                "vacuum".into()
            }
            46..=47 => {
                app.checkpoint("TRUNCATE");
                app.execute("PRAGMA journal_mode=DELETE");
                let rows = rng.gen_range(1..20);
                app.insert(&mut rng, rows);
                app.execute("PRAGMA journal_mode=WAL");
                "out of WAL mode and back".into()
            }
            48..=49 => {
                app.conn = None;
                "app closes its database".into()
            }
            66..=67 => {
                app.replace_by_a_copy(&mut rng);
                "the app renames a copy over its database".into()
            }
            50..=57 => {
                let name = format!("Media/Images/IMG-{}.jpg", rng.gen_range(0..30));
                let len = rng.gen_range(0..200_000);
                let data: Vec<u8> = (0..len).map(|_| rng.r#gen()).collect();
                std::fs::write(store.join(&name), data).expect("media");
                format!("write {name}")
            }
            58..=59 => {
                let name = format!("Media/Images/IMG-{}.jpg", rng.gen_range(0..30));
                let _ = std::fs::remove_file(store.join(&name));
                format!("remove {name}")
            }
            60..=63 => {
                let puts = rng.gen_range(0..6);
                device.store.fail_after(puts);
                let failed = device.backup(&store).is_err();
                device.store.disarm();
                format!("backup cut after {puts} puts (failed: {failed})")
            }
            64..=65 => {
                let (killed, lose) = (rng.gen_bool(0.5), rng.gen_bool(0.3));
                device.restart(killed, lose);
                format!("restart (mid-backup: {killed}, catalog lost: {lose})")
            }
            _ => {
                let expected = capture_now(&store);
                let snapshot = device
                    .backup(&store)
                    .unwrap_or_else(|e| panic!("seed {seed} step {step}: backup: {e}\n{history}"));
                let what = format!("seed {seed} step {step}\n{history}");
                device.check_restores(&snapshot, &expected, &restored, &what);
                checked += 1;
                format!("backup {}", &snapshot[..8])
            }
        };
        history.push_str(&format!("  {step}: {what}\n"));
    }
    checked
}

#[test]
fn every_backup_restores_to_what_it_captured_whatever_the_app_and_the_provider_do() {
    let steps = std::env::var("SEALBACK_CHAIN_STEPS").map_or(STEPS, |v| {
        v.parse().expect("SEALBACK_CHAIN_STEPS is a number")
    });
    let seed = std::env::var("SEALBACK_CHAIN_SEED").map_or(1u64, |v| {
        v.parse().expect("SEALBACK_CHAIN_SEED is a number")
    });
    let lives = LIVES.min(steps.max(1));
    let checked: u64 = (seed..seed + lives)
        .map(|seed| random_life(seed, steps / lives))
        .sum();
    println!(
        "property: {steps} steps in {lives} lives, {checked} backups restored and compared \
         with a full capture (seeds {seed}..{})",
        seed + lives
    );
    assert!(checked > steps / 5, "too few backups checked: {checked}");
}

/// The defect of issue 13, as found: a patch, then a checkpoint and an edit of many rows:
/// the whole-database read that follows wrote lists naming runs stored only inside the
/// patch.
#[test]
fn a_full_read_after_a_patch_stores_the_runs_only_the_patch_held() {
    let mut rng = StdRng::seed_from_u64(13);
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, mut app) = App::with_messages(dir.path(), &mut rng);
    let mut device = Device::new(dir.path());
    let restored = dir.path().join("restored");
    let mut backup_and_check = |what: &str| {
        let expected = capture_now(&store);
        let snapshot = device.backup(&store).expect(what);
        device.check_restores(&snapshot, &expected, &restored, what);
    };
    backup_and_check("full backup");
    app.execute("UPDATE message SET body = body || 'day 4' WHERE _id % 50 = 0");
    backup_and_check("a day's edits, stored as a patch");
    app.execute("UPDATE message SET starred = 1 WHERE _id % 7 = 0");
    app.checkpoint("TRUNCATE");
    backup_and_check("many edits after a checkpoint: a full read");
    app.insert(&mut rng, 10);
    backup_and_check("the next backup");
}

/// The proof in the path that commits: a file cache that names a chunk nothing stored (a
/// defect like issue 13's, elsewhere) fails the backup instead of writing the snapshot,
/// and the next backup owes nothing to the cache and restores.
#[test]
fn a_snapshot_naming_a_chunk_nothing_stored_is_not_written_and_the_next_backup_starts_over() {
    let mut rng = StdRng::seed_from_u64(14);
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("store");
    std::fs::create_dir_all(store.join("Media/Images")).expect("media");
    let mut app = App::open(&store);
    app.insert(&mut rng, 100);
    let mut device = Device::new(dir.path());
    device.backup(&store).expect("first backup");

    let name = "Media/Images/IMG-1.jpg";
    std::fs::write(store.join(name), vec![7u8; 100_000]).expect("media");
    let meta = std::fs::metadata(store.join(name)).expect("stat");
    let lie = ChunkId([0xab; 32]);
    let changes = FileCacheChanges {
        set: vec![(name.to_owned(), FileStat::of(&meta), vec![lie])],
        removed: Vec::new(),
    };
    let forgotten = device.catalog.forgotten().expect("forgotten");
    device
        .catalog
        .update_file_cache(&changes, forgotten)
        .expect("cache");
    let err = device
        .backup(&store)
        .expect_err("the snapshot would name a chunk not stored");
    let message = err.to_string();
    assert!(
        matches!(err, super::EngineError::Unproven(_)) && message.contains(&lie.to_string()),
        "{message}"
    );
    assert!(
        message.contains(name),
        "names what names the chunk: {message}"
    );
    assert_eq!(device.catalog.snapshots().expect("snapshots").len(), 1);

    let expected = capture_now(&store);
    let snapshot = device
        .backup(&store)
        .expect("the next backup reads the file");
    let restored = dir.path().join("restored");
    device.check_restores(&snapshot, &expected, &restored, "after the failed proof");
}

/// A backup that never ended (the daemon killed mid-way) leaves nothing the next one
/// builds on: it reads the database whole instead of from the baseline.
#[test]
fn after_a_backup_that_never_ended_the_database_is_read_whole() {
    let mut rng = StdRng::seed_from_u64(15);
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("store");
    std::fs::create_dir_all(&store).expect("store");
    let mut app = App::open(&store);
    app.insert(&mut rng, 500);
    let mut device = Device::new(dir.path());
    device.backup(&store).expect("first backup");
    app.insert(&mut rng, 1);
    let delta = device.backup_report(&store).expect("second backup");
    assert!(delta.db_read.as_ref().is_some_and(|r| r.delta), "{delta:?}");

    device.restart(true, false);
    app.insert(&mut rng, 1);
    let expected = capture_now(&store);
    let after = device.backup_report(&store).expect("after the kill");
    assert!(
        after.db_read.as_ref().is_some_and(|r| !r.delta),
        "{after:?}"
    );
    let restored = dir.path().join("restored");
    device.check_restores(&after.snapshot, &expected, &restored, "after the kill");
    app.insert(&mut rng, 1);
    let next = device.backup_report(&store).expect("the one after");
    assert!(
        next.db_read.as_ref().is_some_and(|r| r.delta),
        "a clean end: {next:?}"
    );
}
