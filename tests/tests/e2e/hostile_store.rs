//! Hostile store: the store's owner is an adversary of the root daemon, and the app changes
//! files at any moment. Files are deleted, truncated, replaced and appended while backups
//! read them; the database is VACUUMed, checkpointed, replaced and switched out of WAL mode
//! during backups; the store holds FIFOs, dangling links, loops, links out of the store,
//! 100,000 files and a path past PATH_MAX.
//!
//! Changes happen during backups by a mutator running in a bounded loop while several
//! backups run, and every backup is held to the same rule: it either succeeds and its
//! snapshot restores to a state the store was really in (each file a complete version, the
//! database a committed state), or it fails with an error naming what is wrong; and nothing
//! earlier is lost (every snapshot still restores, `verify` passes).

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use sealback_tests::store::{Restored, check_restored, walk};
use sealback_tests::writer::{Pace, Writer};
use sealback_tests::{Device, MessageStore, Setup, Target};

use crate::fixtures::TARGET;

mod entries;
mod links;

/// The directory of the store the file mutators play in.
const HOSTILE_DIR: &str = "Hostile";
/// Backups taken while a mutator runs.
const BACKUPS_UNDER_MUTATION: usize = 8;
/// The longest a mutator runs, whatever happens to the test.
const MUTATOR_LIMIT: Duration = Duration::from_secs(60);

/// Checks a restored hostile file (its path under [`HOSTILE_DIR`], its bytes).
type FileCheck = dyn Fn(&str, &[u8]) -> Result<(), String>;

/// A store, a device backing it up to a local target, and a directory beside the store on
/// the same file system (for files renamed into the store).
struct Bench {
    dir: tempfile::TempDir,
    store: MessageStore,
    device: Device,
}

impl Bench {
    fn new(messages: i64, media_every: i64) -> Bench {
        let dir = tempfile::Builder::new()
            .prefix("sealback-hostile-")
            .tempdir()
            .expect("a temporary directory");
        let store = MessageStore::create(&dir.path().join("store"), media_every);
        store.append(messages);
        fs::create_dir_all(dir.path().join("staging")).expect("create the staging directory");
        let device = Device::started(Setup::new(
            store.dir(),
            vec![Target::local(TARGET, &dir.path().join("target"))],
        ));
        device.generate_key();
        Bench { dir, store, device }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A backup that either succeeds (its snapshot id) or fails with an error that names
    /// one of `culprits` (none: `None`).
    #[track_caller]
    fn backup_or_clear_failure(&self, culprits: &[&str]) -> Option<String> {
        let ctl = self.device.ctl(&["--json", "backup", "--wait"]);
        if ctl.code == Some(0) {
            let report: serde_json::Value =
                serde_json::from_str(&ctl.stdout).expect("a backup report");
            return Some(
                report["snapshot"]
                    .as_str()
                    .expect("a snapshot id")
                    .to_owned(),
            );
        }
        let said = format!("{}{}", ctl.stdout, ctl.stderr);
        assert!(
            culprits.iter().any(|c| said.contains(c)),
            "a backup failed without naming one of {culprits:?}:\n{ctl}{}",
            self.device.log_tail()
        );
        eprintln!("a backup failed, clearly: {}", said.trim());
        None
    }

    /// Restores `snapshot`; checks and removes the hostile files with `check_hostile`, then
    /// checks the rest with [`check_restored`]. Returns that and how many hostile files
    /// the snapshot held.
    fn restore_and_check(&self, snapshot: &str, check_hostile: &FileCheck) -> (Restored, usize) {
        let to = self.path(&format!("restored-{snapshot}"));
        self.device.restore(snapshot, &to);
        let hostile = to.join(HOSTILE_DIR);
        let mut hostile_files = 0;
        if hostile.exists() {
            for name in walk(&hostile).expect("list the restored hostile files") {
                hostile_files += 1;
                let bytes = fs::read(hostile.join(&name)).expect("read a restored file");
                check_hostile(&name, &bytes)
                    .unwrap_or_else(|e| panic!("snapshot {snapshot}: {HOSTILE_DIR}/{name}: {e}"));
            }
            fs::remove_dir_all(&hostile).expect("remove the checked hostile files");
        }
        let restored = check_restored(&to)
            .unwrap_or_else(|e| panic!("snapshot {snapshot} restored wrong: {e}"));
        fs::remove_dir_all(&to).expect("remove the restored store");
        (restored, hostile_files)
    }

    /// Nothing earlier is lost: `verify` passes and every snapshot listed restores.
    fn every_snapshot_restores(&self, check_hostile: &FileCheck) -> usize {
        self.device.ctl_ok(&["verify"]);
        let listed = self.device.snapshots();
        for snapshot in &listed {
            self.restore_and_check(&snapshot.id, check_hostile);
        }
        listed.len()
    }
}

/// A thread changing the store until told to stop (or [`MUTATOR_LIMIT`]); counts its steps.
struct Mutator {
    stop: Arc<AtomicBool>,
    steps: Arc<AtomicU64>,
    handle: Option<JoinHandle<()>>,
}

impl Mutator {
    /// Runs `step(i)` for i = 0, 1, … until stopped.
    fn start(mut step: impl FnMut(u64) + Send + 'static) -> Mutator {
        let stop = Arc::new(AtomicBool::new(false));
        let steps = Arc::new(AtomicU64::new(0));
        let (stop_in, steps_in) = (stop.clone(), steps.clone());
        let handle = std::thread::spawn(move || {
            let began = Instant::now();
            let mut i = 0;
            while !stop_in.load(Ordering::Relaxed) && began.elapsed() < MUTATOR_LIMIT {
                step(i);
                i += 1;
                steps_in.store(i, Ordering::Relaxed);
            }
        });
        Mutator {
            stop,
            steps,
            handle: Some(handle),
        }
    }

    /// The steps made so far.
    fn steps(&self) -> u64 {
        self.steps.load(Ordering::Relaxed)
    }

    /// Whether the thread has ended (its time limit, or a panic [`Mutator::stop`] raises).
    fn finished(&self) -> bool {
        self.handle.as_ref().is_none_or(JoinHandle::is_finished)
    }

    /// Stops the thread; returns its steps, or panics with its panic.
    fn stop(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(Err(panic)) = self.handle.take().map(JoinHandle::join) {
            std::panic::resume_unwind(panic);
        }
        self.steps.load(Ordering::Relaxed)
    }
}

impl Drop for Mutator {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}

/// Version `v` of the file `name`: a header naming both, then 128 to 512 KiB of bytes that
/// are a function of them, so a restored copy shows which version it is and whether whole.
fn version_bytes(name: &str, v: u64) -> Vec<u8> {
    let mut bytes = format!("{name} v{v:010}\n").into_bytes();
    let body = (128 + (v % 4) * 128) as usize * 1024;
    let mut rest = vec![0u8; body];
    blake3::Hasher::new()
        .update(name.as_bytes())
        .update(&v.to_le_bytes())
        .finalize_xof()
        .fill(&mut rest);
    bytes.extend_from_slice(&rest);
    bytes
}

/// The version a copy of `name` claims to be, from its header.
fn claimed_version(name: &str, found: &[u8]) -> Result<u64, String> {
    let header_len = name.len() + 13;
    let header = found
        .get(..header_len)
        .and_then(|h| std::str::from_utf8(h).ok())
        .ok_or_else(|| {
            format!(
                "{} bytes without a version header: a torn file",
                found.len()
            )
        })?;
    header
        .strip_prefix(&format!("{name} v"))
        .and_then(|h| h.strip_suffix('\n'))
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| format!("a header that is not a version: {header:?}"))
}

/// The bytes the appended file grows by: a stream of which the file is always a prefix.
fn append_stream(len: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; len];
    blake3::Hasher::new()
        .update(b"appended")
        .finalize_xof()
        .fill(&mut bytes);
    bytes
}

const APPEND_RECORD: usize = 4096;
const APPEND_RESET: usize = 2 << 20;

/// Whether a restored hostile file is a state it really had: a whole version for the
/// replaced and deleted ones, a whole version or its first half or nothing for the
/// truncated one, a prefix of its stream for the appended one.
fn check_mutated_file(name: &str, found: &[u8]) -> Result<(), String> {
    match name {
        "appended.log" => {
            if found == append_stream(found.len()) {
                Ok(())
            } else {
                Err(format!(
                    "{} bytes that are not what was appended: torn",
                    found.len()
                ))
            }
        }
        "truncated.bin" if found.is_empty() => Ok(()),
        "truncated.bin" | "replaced.bin" | "deleted.bin" => {
            let v = claimed_version(name, found)?;
            let whole = version_bytes(name, v);
            let half = name == "truncated.bin" && found == &whole[..whole.len() / 2];
            if found == whole || half {
                Ok(())
            } else {
                Err(format!(
                    "{} bytes that are neither version {v} ({} bytes) nor a state it was \
                     left in: torn",
                    found.len(),
                    whole.len()
                ))
            }
        }
        other => Err(format!("{other} is not a file the test made")),
    }
}

/// Writes `bytes` beside the store and renames them over `dest`: the file is never seen
/// partly written.
fn install(staging: &Path, dest: &Path, bytes: &[u8]) {
    let tmp = staging.join(dest.file_name().expect("a file name"));
    fs::write(&tmp, bytes).expect("write a staged file");
    fs::rename(&tmp, dest).expect("rename a staged file into the store");
}

/// A pause of 0 to 15 ms that varies with `i`, so that some reads land between changes
/// and some across them.
fn jitter(i: u64) {
    std::thread::sleep(Duration::from_millis((i * 7919) % 16));
}

#[test]
fn files_deleted_truncated_replaced_and_appended_while_read_restore_whole_or_fail_clearly() {
    let bench = Bench::new(200, 20);
    let hostile = bench.store.dir().join(HOSTILE_DIR);
    fs::create_dir_all(&hostile).expect("create the hostile directory");
    let staging = bench.path("staging");
    let first = bench
        .backup_or_clear_failure(&[])
        .expect("the first backup, before any change");

    let mut writer = Writer::start(
        &bench.store,
        Pace {
            per_second: Some(100),
            media_pause_ms: 5,
        },
    );
    let mutator = Mutator::start(move |i| {
        let v = i / 3;
        let at = |name: &str| hostile.join(name);
        install(
            &staging,
            &at("replaced.bin"),
            &version_bytes("replaced.bin", i),
        );
        match i % 3 {
            0 => install(
                &staging,
                &at("truncated.bin"),
                &version_bytes("truncated.bin", v),
            ),
            1 => {
                let file = fs::OpenOptions::new()
                    .write(true)
                    .open(at("truncated.bin"))
                    .expect("open the truncated file");
                let half = version_bytes("truncated.bin", v).len() / 2;
                file.set_len(half as u64).expect("truncate to half");
            }
            _ => fs::OpenOptions::new()
                .write(true)
                .truncate(true)
                .open(at("truncated.bin"))
                .map(drop)
                .expect("truncate to nothing"),
        }
        if i % 2 == 0 {
            install(
                &staging,
                &at("deleted.bin"),
                &version_bytes("deleted.bin", i),
            );
        } else {
            fs::remove_file(at("deleted.bin")).expect("delete the file");
        }
        let log = at("appended.log");
        let len = fs::metadata(&log).map_or(0, |m| m.len() as usize);
        if len >= APPEND_RESET {
            install(&staging, &log, b"");
        } else {
            use std::io::Write as _;
            let stream = append_stream(len + APPEND_RECORD);
            fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log)
                .and_then(|mut f| f.write_all(&stream[len..]))
                .expect("append a record");
        }
        jitter(i);
    });

    let mut snapshots = vec![first];
    for _ in 0..BACKUPS_UNDER_MUTATION {
        writer.assert_running();
        if let Some(snapshot) = bench.backup_or_clear_failure(&[HOSTILE_DIR]) {
            snapshots.push(snapshot);
        }
    }
    let steps = mutator.stop();
    writer.stop();

    let hostile_files: usize = snapshots[1..]
        .iter()
        .map(|s| bench.restore_and_check(s, &check_mutated_file).1)
        .sum();
    let restored = bench.every_snapshot_restores(&check_mutated_file);
    assert!(
        snapshots.len() > BACKUPS_UNDER_MUTATION / 2,
        "only {} of {BACKUPS_UNDER_MUTATION} backups under mutation succeeded",
        snapshots.len() - 1
    );
    println!(
        "hostile store (files changing while read): {} backups under {steps} mutation steps, \
         {hostile_files} changing files captured whole, {restored} snapshots restored",
        snapshots.len() - 1
    );
}

/// One change to the database, as an app (or its owner) might make it during a backup.
#[derive(Debug, Clone, Copy)]
enum DatabaseChange {
    Commit,
    Vacuum,
    CheckpointTruncate,
    /// `journal_mode = DELETE`, a commit in that mode, and back to WAL.
    OutOfWal,
    /// A copy of the database with more messages, renamed over `msgstore.db`.
    Replace,
}

/// Every change but a replacement.
const IN_PLACE_CHANGES: [DatabaseChange; 4] = [
    DatabaseChange::Commit,
    DatabaseChange::Vacuum,
    DatabaseChange::CheckpointTruncate,
    DatabaseChange::OutOfWal,
];

/// Makes `change` to the store's database; false if the database was busy (a backup's read
/// transaction holds off a journal-mode switch or a full checkpoint), which is no failure.
fn change_database(store: &MessageStore, staging: &Path, change: DatabaseChange) -> bool {
    let conn = store.connect();
    conn.busy_timeout(Duration::from_millis(200))
        .expect("set a busy timeout");
    let busy = |e: &rusqlite::Error| {
        matches!(
            e.sqlite_error_code(),
            Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
        )
    };
    let run = |sql: &str| match conn.execute_batch(sql) {
        Ok(()) => true,
        Err(e) if busy(&e) => false,
        Err(e) => panic!("{change:?}: {sql}: {e}"),
    };
    match change {
        DatabaseChange::Commit => {
            drop(conn);
            store.append(3);
            true
        }
        DatabaseChange::Vacuum => run("VACUUM"),
        DatabaseChange::CheckpointTruncate => run("PRAGMA wal_checkpoint(TRUNCATE)"),
        DatabaseChange::OutOfWal => {
            let mode: String =
                match conn.query_row("PRAGMA journal_mode = DELETE", [], |r| r.get(0)) {
                    Ok(mode) => mode,
                    Err(e) if busy(&e) => return false,
                    Err(e) => panic!("journal_mode = DELETE: {e}"),
                };
            if mode != "delete" {
                return false;
            }
            drop(conn);
            store.append(2);
            let conn = store.connect();
            let mode: String = conn
                .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
                .expect("back to WAL");
            assert_eq!(mode, "wal", "the database went back to WAL mode");
            true
        }
        DatabaseChange::Replace => {
            let copy = staging.join(sealback_tests::store::DATABASE);
            let _ = fs::remove_file(&copy);
            if !run(&format!("VACUUM INTO '{}'", copy.display())) {
                return false;
            }
            // The copy gets two more messages, their images in the store first.
            let mut other = rusqlite::Connection::open(&copy).expect("open the copy");
            let (n, media_every) = MessageStore::progress(&other);
            let tx = other.transaction().expect("begin on the copy");
            for id in n + 1..=n + 2 {
                if sealback_tests::store::has_media(id, media_every) {
                    let path = sealback_tests::store::media_path(id);
                    store.put_file(&path, &sealback_tests::store::media_bytes(&path));
                }
                sealback_tests::store::insert_message(&tx, id, media_every);
            }
            tx.commit().expect("commit on the copy");
            other
                .query_row("PRAGMA journal_mode = WAL", [], |_| Ok(()))
                .expect("the copy in WAL mode");
            drop(other);
            // Nothing may stay in the WAL of the database being replaced: it would be
            // applied to the copy.
            let (blocked, _, _): (i64, i64, i64) = conn
                .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })
                .expect("checkpoint before the replacement");
            if blocked != 0 {
                return false;
            }
            drop(conn);
            fs::rename(&copy, store.dir().join(sealback_tests::store::DATABASE))
                .expect("rename the copy over the database");
            true
        }
    }
}

#[test]
fn a_database_vacuumed_checkpointed_and_taken_out_of_wal_during_backups_restores_committed() {
    database_changed_during_backups(
        "VACUUM, TRUNCATE checkpoints, journal_mode=DELETE",
        &IN_PLACE_CHANGES,
    );
}

#[test]
#[ignore = "flaky by its own hand: renaming a copy over a database other connections hold \
            open is SQLite's documented corruption hazard, and the app's own connection then \
            reports `database disk image is malformed` in 3 of 4 runs. The daemon-side defect \
            it found (a snapshot failing integrity_check) is fixed: the capture starts again \
            when the file is replaced; run with --include-ignored to try it"]
fn a_database_replaced_during_backups_restores_committed() {
    database_changed_during_backups(
        "replacements by rename",
        &[DatabaseChange::Commit, DatabaseChange::Replace],
    );
}

/// Backups while `changes` are made to the database in turn, each with commits between.
fn database_changed_during_backups(what: &str, changes: &'static [DatabaseChange]) {
    // No images: those `MessageStore::append` writes in place may be caught half written.
    let bench = Bench::new(300, 0);
    let first = bench
        .backup_or_clear_failure(&[])
        .expect("the first backup, before any change");
    let store = bench.store.clone();
    let staging = bench.path("staging");
    let made = Arc::new(AtomicU64::new(0));
    let made_in = made.clone();
    let mutator = Mutator::start(move |i| {
        let change = changes[(i % changes.len() as u64) as usize];
        if change_database(&store, &staging, change) {
            made_in.fetch_add(1, Ordering::Relaxed);
        }
        jitter(i);
    });
    let mut snapshots = vec![first];
    for _ in 0..BACKUPS_UNDER_MUTATION {
        if let Some(snapshot) = bench.backup_or_clear_failure(&["msgstore.db", "database"]) {
            snapshots.push(snapshot);
        }
    }
    let steps = mutator.stop();
    let live: String = bench
        .store
        .connect()
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .expect("check the store's own database");
    assert_eq!(
        live, "ok",
        "the changes left the store's own database unsound"
    );
    let last = bench
        .backup_or_clear_failure(&[])
        .expect("a backup once the database is left alone");
    let no_hostile_files = |name: &str, _: &[u8]| Err(format!("{name} was not made"));
    let mut previous = 0;
    for snapshot in &snapshots {
        let (restored, _) = bench.restore_and_check(snapshot, &no_hostile_files);
        assert!(
            restored.messages >= previous,
            "snapshot {snapshot} holds {} messages, an earlier one {previous}",
            restored.messages
        );
        previous = restored.messages;
    }
    let (restored, _) = bench.restore_and_check(&last, &no_hostile_files);
    assert_eq!(
        restored.messages,
        bench.store.committed(),
        "the backup after the changes holds every message"
    );
    let listed = bench.every_snapshot_restores(&no_hostile_files);
    assert!(
        snapshots.len() > BACKUPS_UNDER_MUTATION / 2,
        "only {} of {BACKUPS_UNDER_MUTATION} backups under database changes succeeded",
        snapshots.len() - 1
    );
    println!(
        "hostile store (database changed during backups: commits, {what}): {} backups under \
         {steps} steps ({} changes made), {listed} snapshots restored",
        snapshots.len() - 1,
        made.load(Ordering::Relaxed)
    );
}
