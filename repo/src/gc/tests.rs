//! A simulated month of on-change backups against an in-memory store, then prunes.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use super::*;
use crate::chunk::{ChunkId, LIST_IDS, encode_list};
use crate::index::Index;
use crate::keys::BackupKey;
use crate::pack::{BlobKind, PackReader, PackWriter};
use crate::repository::{ObjectStore, StoreError, StoreErrorKind};
use crate::snapshot::{DatabaseImage, FileEntry, Manifest, SNAPSHOT_VERSION, Snapshot};

#[derive(Default)]
struct Memory(Mutex<BTreeMap<String, Bytes>>);

impl ObjectStore for Memory {
    fn put(&self, name: &str, data: &[u8]) -> Result<(), StoreError> {
        let mut objects = self.0.lock().expect("lock");
        objects.insert(name.to_owned(), Bytes::copy_from_slice(data));
        Ok(())
    }
    fn get(&self, name: &str) -> Result<Bytes, StoreError> {
        let objects = self.0.lock().expect("lock");
        let found = objects.get(name).cloned();
        found.ok_or_else(|| StoreError::new(StoreErrorKind::NotFound, name))
    }
    fn list(&self, prefix: &str) -> Result<Vec<(String, u64)>, StoreError> {
        let objects = self.0.lock().expect("lock");
        Ok(objects
            .iter()
            .filter(|(n, _)| n.starts_with(prefix))
            .map(|(n, b)| (n.clone(), b.len() as u64))
            .collect())
    }
    fn remove(&self, name: &str) -> Result<(), StoreError> {
        self.0.lock().expect("lock").remove(name);
        Ok(())
    }
}

impl Memory {
    fn count(&self, prefix: &str) -> usize {
        self.list(prefix).expect("list").len()
    }
    fn bytes(&self) -> u64 {
        self.list("").expect("list").iter().map(|(_, s)| s).sum()
    }
}

/// A device's store: a database of pages and media files, and the chunks the repository
/// holds as far as this device knows (its catalog).
struct Device {
    pages: Vec<Vec<u8>>,
    media: BTreeMap<String, Vec<u8>>,
    known: HashSet<ChunkId>,
    rng: u64,
    /// Manifests are written relative to the last one written whole, renewed every tenth.
    base: Option<(String, Snapshot)>,
    backups: usize,
}

const PAGE: usize = 4096;

impl Device {
    fn new(seed: u64) -> Device {
        let mut d = Device {
            pages: Vec::new(),
            media: BTreeMap::new(),
            known: HashSet::new(),
            rng: seed,
            base: None,
            backups: 0,
        };
        for i in 0..200 {
            let page = d.bytes(PAGE, i % 3 == 0);
            d.pages.push(page);
        }
        d
    }

    fn next(&mut self) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng
    }

    /// `n` bytes: random, or (compressible) a repeated pattern.
    fn bytes(&mut self, n: usize, compressible: bool) -> Vec<u8> {
        let seed = self.next();
        (0..n)
            .map(|i| {
                if compressible {
                    (seed as usize + i / 64) as u8
                } else {
                    (seed.wrapping_mul(i as u64 + 1).wrapping_add(self.rng) >> 29) as u8
                        ^ (i as u8).wrapping_mul(31)
                }
            })
            .collect()
    }

    /// The user's activity between two backups.
    fn act(&mut self, backup: usize) {
        for _ in 0..(1 + self.next() % 3) {
            let at = (self.next() % self.pages.len() as u64) as usize;
            self.pages[at] = self.bytes(PAGE, true);
        }
        if backup.is_multiple_of(3) {
            let len = 20_000 + (self.next() % 200_000) as usize;
            let content = self.bytes(len, false);
            self.media
                .insert(format!("Media/IMG-{backup:04}.jpg"), content);
        }
        // Now and then the user deletes a few old media.
        if backup % 40 == 39 {
            let names: Vec<String> = self.media.keys().take(6).cloned().collect();
            for n in names {
                self.media.remove(&n);
            }
        }
    }

    /// One backup: the chunks the repository lacks into one pack, its index, the snapshot.
    fn backup(&mut self, repo: &Repository, time_unix_ms: i64) -> String {
        let keys = repo.keys();
        let mut pack = PackWriter::new(keys);
        let mut add = |known: &mut HashSet<ChunkId>, kind, data: &[u8]| {
            let id = keys.chunk_id(data);
            if known.insert(id) {
                pack.add(kind, id, data, kind != BlobKind::Data || data.len() == PAGE);
            }
            id
        };
        let mut page_ids = Vec::new();
        for p in &self.pages {
            page_ids.push(add(&mut self.known, BlobKind::Data, p));
        }
        let lists: Vec<ChunkId> = page_ids
            .chunks(LIST_IDS)
            .map(|ids| add(&mut self.known, BlobKind::List, &encode_list(ids)))
            .collect();
        let mut files = Vec::new();
        for (path, content) in &self.media {
            let chunks = vec![add(&mut self.known, BlobKind::Data, content)];
            files.push(FileEntry {
                path: path.clone(),
                size: content.len() as u64,
                mtime_ns: 0,
                mode: 0o644,
                chunks,
            });
        }
        if !pack.is_empty() {
            let stored = repo.write_pack(pack.finish()).expect("pack");
            let index = Index {
                packs: vec![IndexedPack {
                    name: stored.name,
                    entries: stored.entries,
                }],
            };
            repo.write_index(&index).expect("index");
        }
        let whole = self.backups.is_multiple_of(10) || self.base.is_none();
        self.backups += 1;
        let snapshot = Snapshot {
            version: SNAPSHOT_VERSION,
            time_unix_ms,
            host: "phone".into(),
            parent: None,
            base: match (&self.base, whole) {
                (Some((id, _)), false) => Some(id.clone()),
                _ => None,
            },
            database: Some(DatabaseImage {
                path: "msgstore.db".into(),
                page_size: PAGE as u32,
                page_count: self.pages.len() as u64,
                size: (self.pages.len() * PAGE) as u64,
                chunk_bytes: PAGE as u32,
                lists,
                patches: Vec::new(),
            }),
            files,
        };
        let base = self.base.as_ref().map(|(_, b)| b).filter(|_| !whole);
        let name = repo
            .write_snapshot(&Manifest::of(&snapshot, base))
            .expect("snapshot")
            .0;
        if whole {
            let id = name.trim_start_matches("snapshots/").to_owned();
            self.base = Some((id, snapshot));
        }
        name
    }

    /// What a snapshot must restore to.
    fn state(&self) -> State {
        (self.pages.concat(), self.media.clone())
    }
}

/// Restores a snapshot as a new device would: through what [`locate`] finds.
fn restore(repo: &Repository, name: &str) -> State {
    let locate = locate(repo).expect("indexes and markers");
    let blob = |id: &ChunkId| -> Vec<u8> {
        let (pack, entry) = locate
            .get(id)
            .unwrap_or_else(|| panic!("{name}: chunk {id} in no index or marker"));
        let bytes = repo.read_pack(pack).expect("pack present");
        PackReader::new(repo.keys(), pack, &bytes)
            .expect("pack")
            .blob(entry)
            .expect("blob")
    };
    let snapshot = repo.read_snapshot(name).expect("snapshot");
    let mut image = Vec::new();
    for list in snapshot.database.iter().flat_map(|db| &db.lists) {
        for id in crate::chunk::decode_list(&blob(list)).expect("list") {
            image.extend(blob(&id));
        }
    }
    let files = snapshot
        .files
        .iter()
        .map(|f| (f.path.clone(), f.chunks.iter().flat_map(&blob).collect()))
        .collect();
    (image, files)
}

fn no_faults(_: &str) {}

/// What a device keeps between prunes: when it first saw each marker and each indexed
/// pack.
#[derive(Default, Clone)]
struct Local {
    seen: BTreeMap<String, i64>,
    indexed: BTreeMap<String, i64>,
}

fn run(repo: &Repository, forget: &[String], now: i64, local: &mut Local) -> PruneReport {
    run_with_grace(repo, forget, now, GRACE_MS, local)
}

/// Whether the backup numbered in `states` wrote `name` relative to a base (all but every
/// tenth, see [`Device::backup`]).
fn states_relative(states: &BTreeMap<String, (usize, State)>, name: &str) -> bool {
    !states[name].0.is_multiple_of(10)
}

/// What a snapshot restores to: the database image and the media by path.
type State = (Vec<u8>, BTreeMap<String, Vec<u8>>);

const HOUR: i64 = 3600 * 1000;
const START: i64 = 1_764_000_000_000;

#[test]
fn a_month_of_small_backups_prunes_to_what_the_kept_snapshots_need() {
    let store = Arc::new(Memory::default());
    let key = BackupKey::from_bytes(&mut [9u8; 32]);
    let (repo, _) = Repository::open_or_init(store.clone(), &key, START).expect("init");
    let mut device = Device::new(0x5eed);
    let mut states = BTreeMap::new();
    let backups = 360; // every two hours for a month
    for b in 0..backups {
        device.act(b);
        let name = device.backup(&repo, START + b as i64 * 2 * HOUR);
        states.insert(name, (b, device.state()));
    }
    assert_eq!(store.count("data/"), backups);
    assert_eq!(store.count("index/"), backups);
    let before = store.bytes();

    // Keep the newest 10 and one a day (every twelfth).
    let forget: Vec<String> = states
        .iter()
        .filter(|(_, (b, _))| !(*b >= backups - 10 || b % 12 == 11))
        .map(|(n, _)| n.clone())
        .collect();
    let kept: Vec<&String> = states.keys().filter(|n| !forget.contains(n)).collect();
    assert_eq!(kept.len(), 10 + 29);
    let now = START + backups as i64 * 2 * HOUR;
    let mut seen = Local::default();

    let dry = prune(
        &repo,
        PruneInput {
            forget: &forget,
            now_unix_ms: now,
            grace_ms: GRACE_MS,
            seen: &mut seen.seen.clone(),
            indexed_seen: &mut seen.indexed.clone(),
            dry_run: true,
            before_change: &|what| panic!("a dry run changed {what}"),
        },
    )
    .expect("dry run");
    assert_eq!(
        dry.snapshots_forgotten.len() + dry.snapshots_kept_as_base.len(),
        forget.len()
    );
    assert_eq!(store.bytes(), before, "a dry run writes nothing");

    // Relative manifests go before their bases: a prune cut short leaves none dangling.
    let changes = Mutex::new(Vec::new());
    let record = |what: &str| changes.lock().expect("lock").push(what.to_owned());
    let first = prune(
        &repo,
        PruneInput {
            forget: &forget,
            now_unix_ms: now,
            grace_ms: GRACE_MS,
            seen: &mut seen.seen,
            indexed_seen: &mut seen.indexed,
            dry_run: false,
            before_change: &record,
        },
    )
    .expect("prune");
    let deleted: Vec<String> = changes
        .into_inner()
        .expect("lock")
        .into_iter()
        .filter(|c| c.starts_with("snapshots/"))
        .collect();
    let first_whole = deleted
        .iter()
        .position(|name| !states_relative(&states, name))
        .expect("whole manifests forgotten");
    assert!(
        deleted[first_whole..]
            .iter()
            .all(|name| !states_relative(&states, name)),
        "a relative manifest was deleted after a whole one"
    );
    assert!(
        !first.snapshots_kept_as_base.is_empty(),
        "some kept snapshot is relative to a forgotten one"
    );
    assert_eq!(
        first.snapshots_forgotten.len() + first.snapshots_kept_as_base.len(),
        forget.len()
    );
    assert_eq!(
        first.packs_marked, 0,
        "the packs of backups are not settled: a backup still running may name them"
    );
    assert_eq!(store.count("index/"), 1, "indexes merged");
    let soon = run(&repo, &[], now + GRACE_MS / 2 - 1, &mut seen);
    assert_eq!(
        soon.packs_marked, 0,
        "settled half a grace period after the merge"
    );
    let mark = run(&repo, &[], now + GRACE_MS / 2, &mut seen);
    assert_eq!(
        mark.packs_deleted, 0,
        "nothing is deleted before the grace period"
    );
    assert_eq!(
        mark.packs_marked, backups as u64,
        "every small pack rewritten or dropped"
    );
    assert_eq!(store.count("index/"), 1, "indexes merged");
    for name in &kept {
        assert_eq!(
            restore(&repo, name),
            states[*name].1,
            "{name} after the mark"
        );
    }
    // Before the grace period, a prune deletes nothing.
    let early = run(&repo, &[], now + GRACE_MS, &mut seen);
    assert_eq!(early.packs_deleted, 0);
    assert_eq!(early.packs_pending, backups as u64);

    let second = run(&repo, &[], now + GRACE_MS / 2 + GRACE_MS, &mut seen);
    assert_eq!(second.packs_deleted, backups as u64);
    assert_eq!(second.markers_deleted, 1);
    for name in &kept {
        assert_eq!(
            restore(&repo, name),
            states[*name].1,
            "{name} after the sweep"
        );
    }
    for name in &first.snapshots_forgotten {
        assert!(store.get(name).is_err(), "{name} forgotten");
    }
    // What is left is what the kept snapshots need: full packs but the last one, an index,
    // the kept snapshots and the config.
    // Every blob the kept snapshots need, pages through their lists, counted once.
    let needed: u64 = {
        let snapshots: Vec<(String, Snapshot)> = kept
            .iter()
            .map(|n| ((*n).clone(), repo.read_snapshot(n).expect("snapshot")))
            .collect();
        let mut locate = HashMap::new();
        for index in repo.list_indexes().expect("list") {
            for p in repo.read_index(&index).expect("index").packs {
                for e in p.entries {
                    locate.insert(e.id, (p.name.clone(), e));
                }
            }
        }
        let ids = usage::used_ids(&repo, &snapshots, &locate).expect("used");
        ids.iter().map(|id| u64::from(locate[id].1.length)).sum()
    };
    let packs = store.count("data/");
    let pack_bytes: u64 = store
        .list("data/")
        .expect("list")
        .iter()
        .map(|(_, s)| s)
        .sum();
    assert!(
        packs as u64 <= needed.div_ceil(TARGET_PACK_BYTES as u64) + 1,
        "{packs} packs for {needed} bytes"
    );
    assert!(
        pack_bytes < needed + needed / 20 + 64 * 1024,
        "{pack_bytes} pack bytes for {needed} needed"
    );
    assert_eq!(store.count("index/"), 1);
    assert_eq!(store.count("prune/"), 0);
    assert_eq!(
        store.count("snapshots/"),
        kept.len() + first.snapshots_kept_as_base.len()
    );
    let after = store.bytes();
    assert_eq!(second.bytes_after, after);
    assert!(
        after < before - before / 20,
        "{before} bytes shrank to {after}"
    );
    eprintln!(
        "a month: {backups} backups, {} objects, {before} bytes; after the prune {} objects ({packs} packs), {after} bytes",
        3 * backups + 1,
        store.count("")
    );

    // The next backup works and a further prune keeps it.
    device.act(backups);
    let next = device.backup(&repo, now + GRACE_MS + 2 * HOUR);
    let state = device.state();
    run(&repo, &[], now + 3 * GRACE_MS, &mut seen);
    assert_eq!(restore(&repo, &next), state);
}

#[test]
fn a_backup_that_began_before_the_mark_keeps_what_it_used() {
    let store = Arc::new(Memory::default());
    let key = BackupKey::from_bytes(&mut [8u8; 32]);
    let (repo, _) = Repository::open_or_init(store.clone(), &key, START).expect("init");
    let mut device = Device::new(77);
    device.act(0);
    let old = device.backup(&repo, START);
    // Whole manifests only: the old snapshot must not stay as a base.
    device.base = None;
    let media_before = device.media.clone();
    device.act(1);
    device.media.clear();
    let newer = device.backup(&repo, START + HOUR);
    device.base = None;
    let mut seen = Local::default();
    // The prune forgets the old snapshot: its media are garbage, and once its pack is
    // settled, the pack is marked.
    run(
        &repo,
        std::slice::from_ref(&old),
        START + 2 * HOUR,
        &mut seen,
    );
    let mark = START + 2 * HOUR + GRACE_MS / 2;
    let first = run(&repo, &[], mark, &mut seen);
    assert!(first.packs_marked >= 1, "{first:?}");
    // A backup that began before the mark (its catalog still knows the old media) puts
    // them back in a snapshot without storing them.
    device.media = media_before;
    let late = device.backup(&repo, mark + HOUR);
    let state = device.state();
    // It restores at once, before any prune recovers the pack it used.
    assert_eq!(restore(&repo, &late), state);
    // The next prune, past the grace period, must not delete what that snapshot needs.
    let second = run(&repo, &[], mark + GRACE_MS + 1, &mut seen);
    assert!(second.packs_recovered >= 1, "{second:?}");
    assert_eq!(restore(&repo, &late), state);
    assert!(store.get(&newer).is_ok());
    run(&repo, &[], START + 4 * GRACE_MS, &mut seen);
    assert_eq!(restore(&repo, &late), state);
}

#[test]
fn orphan_packs_go_after_the_grace_period_unless_an_index_names_them_by_then() {
    let store = Arc::new(Memory::default());
    let key = BackupKey::from_bytes(&mut [6u8; 32]);
    let (repo, _) = Repository::open_or_init(store.clone(), &key, START).expect("init");
    let mut device = Device::new(5);
    device.act(0);
    device.backup(&repo, START);
    // Two packs without an index: one of an interrupted backup, one of a backup running.
    let orphan = |byte: u8| {
        let mut pack = PackWriter::new(repo.keys());
        let data = vec![byte; 5000];
        pack.add(BlobKind::Data, repo.keys().chunk_id(&data), &data, false);
        repo.write_pack(pack.finish()).expect("pack")
    };
    let interrupted = orphan(1);
    let running = orphan(2);
    let mut seen = Local::default();
    let first = run(&repo, &[], START + HOUR, &mut seen);
    assert_eq!(first.orphans_marked, 2);
    // The running backup indexes its pack within the grace period.
    repo.write_index(&Index {
        packs: vec![IndexedPack {
            name: running.name.clone(),
            entries: running.entries.clone(),
        }],
    })
    .expect("index");
    let second = run(&repo, &[], START + HOUR + GRACE_MS + 1, &mut seen);
    assert_eq!(second.packs_deleted, 1, "{second:?}");
    assert!(
        store.get(&interrupted.name).is_err(),
        "the orphan is reclaimed"
    );
    assert!(store.get(&running.name).is_ok(), "the indexed pack stays");
}

#[test]
fn a_marker_another_device_wrote_waits_the_grace_period_on_this_devices_clock() {
    let store = Arc::new(Memory::default());
    let key = BackupKey::from_bytes(&mut [5u8; 32]);
    let (repo, _) = Repository::open_or_init(store.clone(), &key, START).expect("init");
    let mut pack = PackWriter::new(repo.keys());
    pack.add(BlobKind::Data, repo.keys().chunk_id(b"x"), b"x", false);
    let stored = repo.write_pack(pack.finish()).expect("pack");
    // Another device marks the orphan; this device, whose clock may differ, first sees the
    // marker when its own clock says a whole grace period has passed since the marker's time.
    let mut theirs = Local::default();
    run(&repo, &[], START, &mut theirs);
    let mut mine = Local::default();
    let first = run(&repo, &[], START + GRACE_MS, &mut mine);
    assert_eq!(first.packs_deleted, 0, "first seen here now");
    let later = run(&repo, &[], START + GRACE_MS + GRACE_MS / 2, &mut mine);
    assert_eq!(
        later.packs_deleted, 0,
        "seen here for less than the grace period"
    );
    assert!(store.get(&stored.name).is_ok());
    let ripe = run(&repo, &[], START + 2 * GRACE_MS, &mut mine);
    assert_eq!(ripe.packs_deleted, 1);
    assert!(store.get(&stored.name).is_err());
    // A marker from a clock ahead waits for its own time too.
    let mut pack = PackWriter::new(repo.keys());
    pack.add(BlobKind::Data, repo.keys().chunk_id(b"y"), b"y", false);
    let ahead = repo.write_pack(pack.finish()).expect("pack");
    run(&repo, &[], START + 10 * GRACE_MS, &mut theirs);
    run(&repo, &[], START + 3 * GRACE_MS, &mut mine);
    let report = run(&repo, &[], START + 5 * GRACE_MS, &mut mine);
    assert_eq!(report.packs_deleted, 0);
    assert!(store.get(&ahead.name).is_ok());
}

fn run_with_grace(
    repo: &Repository,
    forget: &[String],
    now: i64,
    grace_ms: i64,
    local: &mut Local,
) -> PruneReport {
    prune(
        repo,
        PruneInput {
            forget,
            now_unix_ms: now,
            grace_ms,
            seen: &mut local.seen,
            indexed_seen: &mut local.indexed,
            dry_run: false,
            before_change: &no_faults,
        },
    )
    .expect("prune")
}

/// A repository under a key made of `key_byte` holding forty small backups two hours
/// apart; with each snapshot's state and backup number.
fn forty_backups(key_byte: u8) -> (Arc<Memory>, Repository, BTreeMap<String, (usize, State)>) {
    let store = Arc::new(Memory::default());
    let key = BackupKey::from_bytes(&mut [key_byte; 32]);
    let (repo, _) = Repository::open_or_init(store.clone(), &key, START).expect("init");
    let mut device = Device::new(0xf0);
    let mut states = BTreeMap::new();
    for b in 0..40 {
        device.act(b);
        let name = device.backup(&repo, START + b as i64 * 2 * HOUR);
        states.insert(name, (b, device.state()));
    }
    (store, repo, states)
}

/// The snapshots of backups numbered below `first_kept`.
fn made_before(states: &BTreeMap<String, (usize, State)>, first_kept: usize) -> Vec<String> {
    states
        .iter()
        .filter(|(_, (b, _))| *b < first_kept)
        .map(|(n, _)| n.clone())
        .collect()
}

#[test]
fn with_no_grace_period_one_run_merges_marks_and_sweeps() {
    let (store, repo, states) = forty_backups(4);
    let forget = made_before(&states, 37);
    let mut local = Local::default();
    let report = run_with_grace(&repo, &forget, START + 100 * HOUR, 0, &mut local);
    // Merge and mark (rewriting the small packs), sweep, and one pass that finds nothing.
    assert_eq!(report.passes, 3, "{report:?}");
    assert_eq!(report.packs_deleted, 40, "{report:?}");
    assert_eq!(report.packs_pending, 0);
    assert_eq!(store.count("prune/"), 0, "the run's own marker is swept");
    assert_eq!(store.count("index/"), 1);
    assert_eq!(
        store.count("data/") as u64,
        report.packs_written,
        "only the packs the rewrite wrote are left"
    );
    assert_eq!(report.bytes_after, store.bytes());
    for (name, (_, state)) in &states {
        if store.get(name).is_ok() {
            assert_eq!(&restore(&repo, name), state, "{name}");
        }
    }
    // A second run has nothing left to do.
    let again = run_with_grace(&repo, &[], START + 101 * HOUR, 0, &mut local);
    assert_eq!(
        (again.passes, again.packs_marked, again.indexes_written),
        (1, 0, 0)
    );
}

#[test]
fn with_the_grace_period_a_run_sweeps_earlier_markers_and_marks_but_never_its_own() {
    let (store, repo, states) = forty_backups(3);
    let forget = made_before(&states, 37);
    let mut local = Local::default();
    let now = START + 100 * HOUR;
    let merge = run(&repo, &forget, now, &mut local);
    assert_eq!((merge.passes, merge.packs_marked), (2, 0), "{merge:?}");
    let mark = run(&repo, &[], now + GRACE_MS / 2, &mut local);
    assert_eq!((mark.packs_marked, mark.packs_deleted), (40, 0), "{mark:?}");
    assert_eq!(
        mark.passes, 2,
        "the second pass finds nothing ripe or settled"
    );
    assert_eq!(store.count("prune/"), 1);
    let sweep = run(&repo, &[], now + GRACE_MS / 2 + GRACE_MS, &mut local);
    assert_eq!(sweep.packs_deleted, 40, "{sweep:?}");
    assert_eq!(store.count("prune/"), 0);
}

#[test]
fn records_of_forgotten_snapshots_go_once_this_device_has_seen_them_for_thirty_days() {
    let (store, repo, states) = forty_backups(2);
    let forget = made_before(&states, 10);
    let now = START + 100 * HOUR;
    let mut local = Local::default();
    run(&repo, &forget, now, &mut local);
    assert_eq!(store.count("forgotten/"), 1);
    // Another device, whose catalog never saw the record, keeps it a full period too.
    let mut other = Local::default();
    let early = run(&repo, &[], now + FORGOTTEN_RECORD_MS - 1, &mut local);
    assert_eq!(early.records_deleted, 0);
    run(&repo, &[], now + FORGOTTEN_RECORD_MS - 1, &mut other);
    assert_eq!(store.count("forgotten/"), 1);
    let due = run(&repo, &[], now + FORGOTTEN_RECORD_MS, &mut local);
    assert_eq!(due.records_deleted, 1, "{due:?}");
    assert_eq!(store.count("forgotten/"), 0);
}

/// The old phone and the new one, both on the default daily prune of one repository: each
/// run merges the indexes the other's wrote, and the packs must still settle and go (they
/// never did while only packs of an index this device wrote could settle). The new phone's
/// clock is three days ahead: each device's settling runs on its own clock alone.
#[test]
fn two_devices_pruning_in_turn_reclaim_space_and_keep_a_running_backups_packs() {
    let (store, repo, states) = forty_backups(11);
    let forget = made_before(&states, 37);
    let before_packs = store.count("data/");
    let (mut old, mut new) = (Local::default(), Local::default());
    let skew = 3 * 24 * HOUR;
    let now = START + 100 * HOUR;
    let (mut marked, mut deleted) = (0, 0);
    let mut late: Option<(String, State)> = None;
    // Half a day apart, in turn, for four days.
    for turn in 0..8 {
        let at = now + turn * GRACE_MS / 2;
        if turn == 3 {
            // A backup begins an hour before this turn; its pack and index are there, its
            // snapshot comes just before half the grace period has passed since it began,
            // after a prune of each device.
            let packs: HashSet<String> = store
                .list("data/")
                .expect("list")
                .into_iter()
                .map(|(n, _)| n)
                .collect();
            let mut device = Device::new(0xbac);
            device.act(0);
            let name = device.backup(&repo, at - HOUR);
            let sealed = store.get(&name).expect("snapshot");
            store.remove(&name).expect("withheld");
            let pack = store
                .list("data/")
                .expect("list")
                .into_iter()
                .map(|(n, _)| n)
                .find(|n| !packs.contains(n))
                .expect("its pack");
            run(&repo, &[], at + skew, &mut new);
            run(&repo, &[], at + HOUR, &mut old);
            run(&repo, &[], at + GRACE_MS / 2 - 2 * HOUR + skew, &mut new);
            run(&repo, &[], at + GRACE_MS / 2 - 2 * HOUR, &mut old);
            let indexed = repo.list_indexes().expect("list").iter().any(|i| {
                repo.read_index(i)
                    .expect("index")
                    .packs
                    .iter()
                    .any(|p| p.name == pack)
            });
            assert!(
                indexed,
                "the running backup's pack left the index before its snapshot came"
            );
            store.put(&name, &sealed).expect("snapshot");
            late = Some((name, device.state()));
        }
        let (device, clock) = if turn % 2 == 0 {
            (&mut old, 0)
        } else {
            (&mut new, skew)
        };
        let forget: &[String] = if turn == 0 { &forget } else { &[] };
        let report = run(&repo, forget, at + clock, device);
        marked += report.packs_marked;
        deleted += report.packs_deleted;
        for (name, (b, state)) in &states {
            if *b >= 37 {
                assert_eq!(&restore(&repo, name), state, "{name} after turn {turn}");
            }
        }
        if let Some((name, state)) = &late {
            assert_eq!(&restore(&repo, name), state, "{name} after turn {turn}");
        }
    }
    assert!(
        marked >= before_packs as u64,
        "every small pack marked: {marked}"
    );
    assert!(deleted >= before_packs as u64, "and swept: {deleted}");
    assert!(
        store.count("data/") <= 3,
        "{} packs left of {before_packs}",
        store.count("data/")
    );
    assert_eq!(store.count("index/"), 1);
}

/// A pack of at least 1 MiB (not merged as small) is rewritten once more than a fifth of
/// it is garbage, and kept as it is below: one pack just past that line, one just short
/// of it.
#[test]
fn a_large_pack_is_rewritten_just_past_a_fifth_garbage_and_kept_just_short_of_it() {
    let store = Arc::new(Memory::default());
    let key = BackupKey::from_bytes(&mut [12u8; 32]);
    let (repo, _) = Repository::open_or_init(store.clone(), &key, START).expect("init");
    let mut random = Device::new(0x1a29e);
    const BLOBS: usize = 20;
    // Two packs of twenty 64 KiB blobs that do not compress, each its own backup's.
    let mut packs = Vec::new();
    let mut files: Vec<Vec<(String, Vec<u8>, ChunkId)>> = Vec::new();
    for p in 0..2 {
        let mut pack = PackWriter::new(repo.keys());
        let mut blobs = Vec::new();
        for b in 0..BLOBS {
            let data = random.bytes(64 * 1024, false);
            let id = repo.keys().chunk_id(&data);
            pack.add(BlobKind::Data, id, &data, false);
            blobs.push((format!("Media/{p}-{b:02}.jpg"), data, id));
        }
        let stored = repo.write_pack(pack.finish()).expect("pack");
        assert!(stored.size >= SMALL_PACK_BYTES, "{} bytes", stored.size);
        repo.write_index(&Index {
            packs: vec![IndexedPack {
                name: stored.name.clone(),
                entries: stored.entries.clone(),
            }],
        })
        .expect("index");
        packs.push(stored);
        files.push(blobs);
    }
    // How many blobs of a pack a kept snapshot may need for the rest to be just more than a
    // fifth of the pack (`past`), and one more (just short of a fifth).
    let size = packs[0].size;
    let blob = u64::from(packs[0].entries[0].length);
    let past = (0..BLOBS as u64)
        .rev()
        .find(|k| (size - k * blob) * 5 > size)
        .expect("some share is past a fifth") as usize;
    let garbage = |k: usize| (size - k as u64 * blob) as f64 / size as f64;
    assert!(
        garbage(past) < 0.25 && garbage(past + 1) > 0.15,
        "{} {}",
        garbage(past),
        garbage(past + 1)
    );
    let snapshot = |time: i64, wanted: &[&[(String, Vec<u8>, ChunkId)]]| -> (String, State) {
        let chosen: Vec<&(String, Vec<u8>, ChunkId)> =
            wanted.iter().flat_map(|f| f.iter()).collect();
        let snapshot = Snapshot {
            version: SNAPSHOT_VERSION,
            time_unix_ms: time,
            host: "phone".into(),
            parent: None,
            base: None,
            database: None,
            files: chosen
                .iter()
                .map(|(path, data, id)| FileEntry {
                    path: path.clone(),
                    size: data.len() as u64,
                    mtime_ns: 0,
                    mode: 0o644,
                    chunks: vec![*id],
                })
                .collect(),
        };
        let name = repo
            .write_snapshot(&Manifest::of(&snapshot, None))
            .expect("snapshot")
            .0;
        let state = chosen
            .iter()
            .map(|(p, d, _)| (p.clone(), d.clone()))
            .collect();
        (name, (Vec::new(), state))
    };
    let (old, _) = snapshot(START, &[&files[0], &files[1]]);
    // The user deleted media: the kept snapshot needs `past` blobs of the first pack and
    // one more of the second.
    let (kept, state) = snapshot(START + HOUR, &[&files[0][..past], &files[1][..past + 1]]);

    let mut local = Local::default();
    let now = START + 2 * HOUR;
    run(&repo, std::slice::from_ref(&old), now, &mut local);
    let mark = run(&repo, &[], now + GRACE_MS / 2, &mut local);
    assert_eq!(
        (mark.packs_rewritten, mark.packs_marked),
        (1, 1),
        "{mark:?}"
    );
    assert_eq!(mark.bytes_rewritten, size);
    assert_eq!(restore(&repo, &kept), state, "after the mark");
    let sweep = run(&repo, &[], now + GRACE_MS / 2 + GRACE_MS, &mut local);
    assert_eq!(sweep.packs_deleted, 1, "{sweep:?}");
    assert!(
        store.get(&packs[0].name).is_err(),
        "the mostly-garbage pack is rewritten and gone"
    );
    assert!(
        store.get(&packs[1].name).is_ok(),
        "the other is kept as it is"
    );
    assert_eq!(restore(&repo, &kept), state, "after the sweep");
    assert_eq!(
        store.count("data/"),
        2,
        "the kept pack and the rewritten one"
    );
    let again = run(&repo, &[], now + 3 * GRACE_MS, &mut local);
    assert_eq!(
        (again.packs_rewritten, again.packs_marked),
        (0, 0),
        "{again:?}"
    );
}
