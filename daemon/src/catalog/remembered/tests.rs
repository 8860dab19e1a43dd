//! The device's memory of a target's snapshots against a repository in memory: what hides
//! a snapshot (removed, damaged, a rebuilt catalog meanwhile) and what does not (forgotten
//! on purpose, acknowledged, back again).

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sealback_repo::snapshot::{Manifest, SNAPSHOT_VERSION, Snapshot};
use sealback_repo::{BackupKey, ObjectStore, Repository};

use super::{Known, Missing, Record, path_for};
use crate::catalog::{Catalog, Packs};
use crate::test_store::MemoryStore;

struct Device {
    _dir: tempfile::TempDir,
    path: PathBuf,
    store: Arc<MemoryStore>,
    repo: Repository,
}

impl Device {
    fn new() -> Device {
        let store = Arc::new(MemoryStore::default());
        let key = BackupKey::from_bytes(&mut [5u8; 32]);
        let (repo, _) = Repository::open_or_init(store.clone(), &key, 0).expect("init");
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("disk.db");
        Device {
            _dir: dir,
            path,
            store,
            repo,
        }
    }

    fn catalog(&self) -> Catalog {
        Catalog::open(&self.path).expect("open")
    }

    fn sync(&self) -> Vec<Missing> {
        let mut catalog = self.catalog();
        catalog.sync(&self.repo, Packs::List).expect("sync");
        catalog.missing().expect("missing")
    }

    /// A backup: a snapshot made at `time`, on `parent`.
    fn make(&self, time_unix_ms: i64, parent: Option<&str>) -> String {
        let mut catalog = self.catalog();
        catalog.sync(&self.repo, Packs::List).expect("sync");
        let snapshot = Snapshot {
            version: SNAPSHOT_VERSION,
            time_unix_ms,
            host: "phone".into(),
            parent: parent.map(|p| p.trim_start_matches("snapshots/").to_owned()),
            base: None,
            database: None,
            files: Vec::new(),
        };
        let manifest = Manifest::of(&snapshot, None);
        let (name, size) = self.repo.write_snapshot(&manifest).expect("write");
        catalog
            .add_snapshot(&name, size, &manifest, &snapshot)
            .expect("add");
        name
    }

    /// Takes `name` off the target; returns its bytes, to put it back.
    fn hide(&self, name: &str) -> Vec<u8> {
        let bytes = self.store.get(name).expect("get").to_vec();
        self.store.remove(name).expect("remove");
        bytes
    }

    /// Deletes the catalog (a cache), leaving the record beside it.
    fn rebuild(&self) {
        for suffix in ["", "-wal", "-shm"] {
            let mut p = self.path.as_os_str().to_owned();
            p.push(suffix);
            let _ = std::fs::remove_file(PathBuf::from(p));
        }
    }

    fn record(&self) -> Record {
        super::load(&path_for(&self.path)).expect("record")
    }
}

fn names(missing: &[Missing]) -> Vec<(&str, Known)> {
    missing.iter().map(|m| (m.name.as_str(), m.known)).collect()
}

#[test]
fn a_snapshot_made_then_taken_off_the_target_is_missing_until_it_comes_back() {
    let device = Device::new();
    let first = device.make(1_000, None);
    let second = device.make(2_000, Some(&first));
    assert!(device.sync().is_empty());

    let bytes = device.hide(&second);
    let missing = device.sync();
    assert_eq!(names(&missing), [(second.as_str(), Known::Made)]);
    assert_eq!(missing[0].time_unix_ms, Some(2_000));
    assert!(!missing[0].damaged);
    let listed: Vec<String> = device
        .catalog()
        .snapshots()
        .expect("snapshots")
        .into_iter()
        .map(|r| r.name)
        .collect();
    assert_eq!(
        listed,
        std::slice::from_ref(&first),
        "the cache lists what the target holds"
    );
    // A sync again does not note it twice, nor forget it.
    assert_eq!(device.sync().len(), 1);

    device.store.put(&second, &bytes).expect("put back");
    assert!(device.sync().is_empty());
}

#[test]
fn the_alarm_and_the_newest_snapshot_outlive_a_rebuilt_catalog() {
    let device = Device::new();
    let first = device.make(1_000, None);
    let second = device.make(2_000, Some(&first));
    let third = device.make(3_000, Some(&second));

    // The middle one is hidden and noticed; then the catalog is lost.
    device.hide(&second);
    assert_eq!(names(&device.sync()), [(second.as_str(), Known::Made)]);
    device.rebuild();
    assert_eq!(names(&device.sync()), [(second.as_str(), Known::Made)]);

    // The newest is hidden while the catalog is lost: the record's high-water mark names it.
    device.rebuild();
    device.hide(&third);
    let missing = device.sync();
    assert_eq!(
        names(&missing),
        [
            (second.as_str(), Known::Made),
            (third.as_str(), Known::Made)
        ]
    );
    assert_eq!(missing[1].time_unix_ms, Some(3_000));
    let record = device.record();
    assert_eq!(
        record.newest.as_ref().map(|n| n.name.as_str()),
        Some(third.as_str())
    );
    assert_eq!(
        record.counter, 3,
        "one step per snapshot that became the newest"
    );
}

#[test]
fn the_hidden_parent_of_the_newest_snapshot_is_missing_even_to_a_new_device() {
    let device = Device::new();
    let first = device.make(1_000, None);
    device.make(2_000, Some(&first));
    device.hide(&first);
    // A new device: no catalog, no record.
    device.rebuild();
    std::fs::remove_file(path_for(&device.path)).expect("remove the record");
    let missing = device.sync();
    assert_eq!(names(&missing), [(first.as_str(), Known::Parent)]);
    assert_eq!(
        missing[0].time_unix_ms, None,
        "the new device never loaded it"
    );
}

#[test]
fn a_remembered_snapshot_that_no_longer_reads_as_genuine_is_missing() {
    let device = Device::new();
    let first = device.make(1_000, None);
    let second = device.make(2_000, Some(&first));
    device.rebuild();
    let mut bytes = device.store.get(&second).expect("get").to_vec();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    device.store.put(&second, &bytes).expect("damage");
    let missing = device.sync();
    assert_eq!(names(&missing), [(second.as_str(), Known::Made)]);
    assert!(missing[0].damaged);
}

#[test]
fn a_snapshot_forgotten_on_purpose_raises_no_alarm_even_after_a_rebuild() {
    let device = Device::new();
    let first = device.make(1_000, None);
    let second = device.make(2_000, Some(&first));
    let third = device.make(3_000, Some(&second));
    // A prune: the two newest go, each forgotten before it is removed.
    let mut catalog = device.catalog();
    for name in [&third, &second] {
        catalog.forget_snapshot(name).expect("forget");
        device.hide(name);
    }
    drop(catalog);
    assert!(device.sync().is_empty());
    let record = device.record();
    assert_eq!(
        record.newest.as_ref().map(|n| n.name.as_str()),
        Some(first.as_str()),
        "the mark falls back to the newest snapshot still remembered"
    );
    assert_eq!(record.counter, 3, "the counter never goes back");
    device.rebuild();
    assert!(device.sync().is_empty());
}

#[test]
fn acknowledging_ends_the_alarm_for_good() {
    let device = Device::new();
    let first = device.make(1_000, None);
    let second = device.make(2_000, Some(&first));
    device.hide(&second);
    assert_eq!(device.sync().len(), 1);
    let acknowledged = device.catalog().acknowledge_missing().expect("acknowledge");
    assert_eq!(names(&acknowledged), [(second.as_str(), Known::Made)]);
    assert!(device.sync().is_empty());
    device.rebuild();
    assert!(device.sync().is_empty());
}

#[test]
fn the_record_is_private_to_root_and_replaced_whole() {
    let device = Device::new();
    device.make(1_000, None);
    let path = path_for(&device.path);
    let mode = std::fs::metadata(&path)
        .expect("record")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let dir: Vec<String> = std::fs::read_dir(path.parent().unwrap_or(Path::new(".")))
        .expect("list")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert!(!dir.iter().any(|n| n.ends_with(".new")), "{dir:?}");
}

#[test]
fn a_record_that_is_not_one_is_an_error_not_an_empty_memory() {
    let device = Device::new();
    device.make(1_000, None);
    std::fs::write(path_for(&device.path), b"not json").expect("spoil");
    let mut catalog = device.catalog();
    let error = catalog
        .sync(&device.repo, Packs::List)
        .expect_err("a spoilt record stops the sync");
    assert!(error.to_string().contains("remembered"), "{error}");
}

#[test]
fn a_snapshot_written_after_the_target_was_listed_is_not_missing_from_that_listing() {
    let device = Device::new();
    device.make(1_000, None);
    // A sync (of `snapshots`) lists the target; a backup then writes a snapshot and
    // records it before that sync compares what it listed with what is remembered.
    let mut listing = device.catalog();
    listing.sync(&device.repo, Packs::List).expect("sync");
    let repo = device.repo.config().id.clone();
    let before = listing.remembered_before_listing(&repo).expect("before");
    let listed = device.store.list("snapshots/").expect("list");
    let newer = device.make(2_000, None);
    listing
        .check_remembered(&repo, before, &listed, &[])
        .expect("check");
    assert!(listing.missing().expect("missing").is_empty());
    // The next sync lists it, and remembers it as made.
    assert!(device.sync().is_empty());
    let record = device.record();
    let newest = record.newest.expect("newest");
    assert_eq!(
        (newest.name.as_str(), newest.known),
        (newer.as_str(), Known::Made)
    );
}

#[test]
fn snapshots_another_devices_prune_forgot_raise_no_alarm_but_one_the_provider_hides_does() {
    let device = Device::new();
    let a = device.make(1_000, None);
    let b = device.make(2_000, Some(&a));
    let c = device.make(3_000, Some(&b));
    let d = device.make(4_000, Some(&c));
    // Another device prunes a and c (the parent of the newest): it writes its sealed
    // record of them, then deletes them.
    let report = sealback_repo::gc::prune(
        &device.repo,
        sealback_repo::gc::PruneInput {
            forget: &[a.clone(), c.clone()],
            now_unix_ms: 10_000,
            grace_ms: 1_000,
            seen: &mut Default::default(),
            indexed_seen: &mut Default::default(),
            dry_run: false,
            before_change: &|_| {},
        },
    )
    .expect("prune");
    assert_eq!(report.snapshots_forgotten.len(), 2);
    assert!(device.sync().is_empty(), "pruned on purpose: no alarm");
    assert!(device.sync().is_empty());
    // The provider hides one alone: the alarm stands.
    device.hide(&b);
    assert_eq!(names(&device.sync()), [(b.as_str(), Known::Made)]);
    // A record it forges (a copy of a genuine one under another name) is not one.
    let genuine = device.store.list("forgotten/").expect("list")[0].0.clone();
    let copy = device.store.get(&genuine).expect("get");
    device
        .store
        .put(&format!("forgotten/{}", "0".repeat(64)), &copy)
        .expect("put");
    assert_eq!(names(&device.sync()), [(b.as_str(), Known::Made)]);
    assert!(device.store.get(&d).is_ok());
}
