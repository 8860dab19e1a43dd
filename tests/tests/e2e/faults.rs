//! Faults of the device and its targets that a backup must survive without losing or hiding
//! anything: a target whose disk is not mounted, a damaged catalog, a path too long to open,
//! a target that goes away mid-backup, objects torn by a failed put, a stop while a provider
//! keeps a restore waiting.

use std::fs;
use std::time::{Duration, Instant};

use sealback_daemon::control::api::{RepairReport, VerifyReport};
use sealback_tests::device::signal;
use sealback_tests::store::{Restored, check_restored, walk};
use sealback_tests::{Device, Setup, Target, tamper, wait};
use serde_json::json;

use crate::fixtures::{BackedUp, TARGET, new_device};

/// Restores the latest snapshot with `device`, which must hold every message committed.
#[track_caller]
fn restores_the_latest(fixture: &BackedUp, device: &Device) -> Restored {
    let to = fixture.path("restored");
    device.restore("latest", &to);
    let restored = check_restored(&to).expect("restored store");
    assert_eq!(restored.messages, fixture.store.committed());
    restored
}

#[test]
fn an_unmounted_target_that_held_a_repository_is_not_given_a_new_one() {
    let mut fixture = BackedUp::new(40, 10);
    fixture.add_and_back_up(10);
    // The disk is unmounted: its mount point is an empty directory again.
    let mounted = fixture.path("mounted-disk");
    fs::rename(&fixture.target, &mounted).expect("unmount");
    fs::create_dir(&fixture.target).expect("bare mount point");

    let failed = fixture.device.ctl_fails(&["backup", "--wait"], 1);
    assert!(
        failed.stderr.contains(TARGET)
            && failed.stderr.contains("repository")
            && failed.stderr.contains("mounted"),
        "the error names neither the target, the missing repository nor a hint: {failed}"
    );
    assert!(
        tamper::objects(&fixture.target, "").is_empty(),
        "something was written into the bare mount point: {:?}",
        tamper::objects(&fixture.target, "")
    );

    // Mounted again: the backups go on into the real repository, every snapshot in view.
    fs::remove_dir(&fixture.target).expect("remove the mount point");
    fs::rename(&mounted, &fixture.target).expect("mount again");
    fixture.add_and_back_up(5);
    assert_eq!(fixture.device.snapshots().len(), 3);
    restores_the_latest(&fixture, &fixture.device);
}

#[test]
fn a_new_repository_on_a_used_target_is_made_once_its_memory_is_removed() {
    let fixture = BackedUp::new(20, 10);
    // The user empties the target on purpose, and follows the hint the backup gives.
    fs::remove_dir_all(&fixture.target).expect("empty the target");
    fs::create_dir(&fixture.target).expect("target directory");
    let failed = fixture.device.ctl_fails(&["backup", "--wait"], 1);
    let remembered = fixture
        .device
        .state_dir()
        .join("targets")
        .join(format!("{TARGET}.repository"));
    assert!(
        failed.stderr.contains(remembered.to_str().expect("UTF-8")),
        "the hint does not name the file to delete: {failed}"
    );
    fs::remove_file(&remembered).expect("forget the repository");
    let report = fixture.device.backup();
    assert_eq!(fixture.device.snapshots().len(), 1, "{report:?}");
}

#[test]
fn a_deleted_catalog_still_lets_a_never_used_target_get_its_repository() {
    let fixture = BackedUp::new(20, 10);
    let state = fixture.device.state_dir();
    fs::remove_dir_all(state.join("catalog")).expect("delete the catalogs");
    fixture.store.append(5);
    fixture.device.backup();
    assert_eq!(fixture.device.snapshots().len(), 2);
}

/// The catalog file of the fixture's target.
fn catalog_file(fixture: &BackedUp) -> std::path::PathBuf {
    fixture
        .device
        .state_dir()
        .join("catalog")
        .join(format!("{TARGET}.db"))
}

/// Whether the daemon of `device` logged a warning that says `words`.
#[track_caller]
fn logged_a_warning(device: &Device, words: &str) {
    let log = fs::read_to_string(device.log_path()).expect("daemon log");
    assert!(
        log.lines().any(|l| l.contains("WARN") && l.contains(words)),
        "no warning says {words:?}: {}",
        device.log_tail()
    );
}

/// Damages the catalog with `damage`, then checks that `snapshots`, `restore` and `backup`
/// all work, the damaged file kept aside and the move logged.
fn a_damaged_catalog_is_moved_aside_and_rebuilt(damage: fn(&std::path::Path)) {
    let mut fixture = BackedUp::new(40, 10);
    fixture.add_and_back_up(10);
    let catalog = catalog_file(&fixture);
    damage(&catalog);

    assert_eq!(fixture.device.snapshots().len(), 2);
    restores_the_latest(&fixture, &fixture.device);
    fixture.add_and_back_up(5);
    assert_eq!(fixture.device.snapshots().len(), 3);

    let aside: Vec<String> = fs::read_dir(catalog.parent().expect("catalog dir"))
        .expect("list the catalogs")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with(&format!("{TARGET}.db.corrupt-")))
        .collect();
    assert!(
        aside.iter().any(|name| !name.ends_with("-wal")),
        "the damaged catalog was not kept aside: {aside:?}"
    );
    logged_a_warning(&fixture.device, "moved aside");
}

#[test]
fn a_catalog_overwritten_with_garbage_is_moved_aside_and_rebuilt() {
    a_damaged_catalog_is_moved_aside_and_rebuilt(|catalog| {
        let size = fs::metadata(catalog).expect("catalog").len() as usize;
        let garbage: Vec<u8> = (0..size.max(4096)).map(|i| (i * 7 + 13) as u8).collect();
        fs::write(catalog, garbage).expect("overwrite the catalog");
    });
}

#[test]
fn a_truncated_catalog_is_moved_aside_and_rebuilt() {
    a_damaged_catalog_is_moved_aside_and_rebuilt(|catalog| {
        let size = fs::metadata(catalog).expect("catalog").len();
        assert!(size > 8192, "a catalog of a few pages: {size} bytes");
        fs::OpenOptions::new()
            .write(true)
            .open(catalog)
            .and_then(|f| f.set_len(size / 2))
            .expect("truncate the catalog");
    });
}

/// A folder `levels` deep (`deep/d/d/.../d/file`) under `parent`, its path past PATH_MAX
/// (the test's temporary directory removes it: std removes a tree from directory handles):
/// built by wrapping the tree in a new folder again and again, so no call names a long path.
fn make_deep_tree(parent: &std::path::Path, levels: usize) {
    let (top, wrap) = (parent.join("deep"), parent.join("deep-wrap"));
    fs::create_dir(&top).expect("mkdir");
    fs::write(top.join("file"), b"too deep to open").expect("write");
    for _ in 1..levels {
        fs::create_dir(&wrap).expect("mkdir");
        fs::rename(&top, wrap.join("d")).expect("wrap");
        fs::rename(&wrap, &top).expect("rename");
    }
}

#[test]
fn a_path_past_path_max_is_skipped_with_a_warning_and_the_rest_backed_up() {
    let mut fixture = BackedUp::new(20, 5);
    let media = fixture.store.dir().join("Media");
    make_deep_tree(&media, 2_500);
    fixture.add_and_back_up(10);

    let restored = restores_the_latest(&fixture, &fixture.device);
    assert!(restored.complete_media > 0, "{restored:?}");
    logged_a_warning(&fixture.device, "PATH_MAX");
}

#[test]
fn a_target_gone_during_a_backup_is_said_to_have_gone_away() {
    let fixture = BackedUp::new(20, 5);
    // The disk goes away after the backup read the repository's `config`: a mount point is
    // left where the target was (holding `config` here, so that only the puts can tell).
    // Objects written there would vanish from the repository when the disk came back.
    // (Moved aside, not removed: a new directory must not reuse its inode number.)
    let config = fs::read(fixture.target.join("config")).expect("read config");
    fs::rename(&fixture.target, fixture.target.with_extension("gone")).expect("move aside");
    fs::create_dir(&fixture.target).expect("a mount point");
    fs::write(fixture.target.join("config"), config).expect("write config");
    fixture.store.append(10);
    let failed = fixture.device.ctl_fails(&["backup", "--wait"], 1);
    assert!(
        failed.stderr.contains(&format!("target {TARGET:?}"))
            && failed.stderr.contains("went away")
            && !failed.stderr.contains("which only get may return"),
        "the error does not say the target went away: {failed}"
    );
    let left: Vec<_> = fs::read_dir(&fixture.target)
        .expect("list the mount point")
        .map(|entry| entry.expect("entry").file_name())
        .collect();
    assert_eq!(left, ["config"], "objects were left on the mount point");
}

/// A second backup to the fixture's target through the faulty provider, whose next put of an
/// object named `prefix...` fails torn, as a provider without atomic puts would leave it.
/// Returns the objects `verify` then finds damaged.
fn a_backup_with_a_torn_put(fixture: &mut BackedUp, prefix: &str) -> Vec<String> {
    fixture.device.stop();
    let faulty = Target::faulty(
        TARGET,
        &fixture.target,
        json!({ "fail": "put", "kind": "permanent", "torn": true, "only": prefix, "times": 1 }),
    );
    fixture
        .device
        .reconfigure(Setup::new(fixture.store.dir(), vec![faulty]));
    fixture.device.start();
    fixture.store.append(10);
    fixture.device.ctl_fails(&["backup", "--wait"], 1);
    let ctl = fixture.device.ctl(&["--json", "verify"]);
    let report: VerifyReport = serde_json::from_str(&ctl.stdout)
        .unwrap_or_else(|e| panic!("verify --json printed no report ({e}): {ctl}"));
    report.problems
}

/// After a torn put: the next backup succeeds (the faulty provider fails only once) and a new
/// device restores it; `repair` removes the damaged object `torn` and nothing else, and
/// `verify` is then clean.
fn the_next_backup_and_repair_get_past(fixture: &mut BackedUp, torn: &str) {
    let report = fixture.device.backup();
    fixture.snapshots.push(report.snapshot);
    fixture.device.stop();
    let fresh = new_device(&fixture.target, &fixture.recovery_key);
    restores_the_latest(fixture, &fresh);
    let listed: Vec<String> = fresh.snapshots().into_iter().map(|s| s.id).collect();
    assert_eq!(listed, fixture.snapshots, "only the complete snapshots");

    let repair: RepairReport = fresh.ctl_json(&["repair"]);
    assert_eq!(repair.removed.len(), 1, "{repair:?}");
    assert!(repair.removed[0].starts_with(torn), "{repair:?}");
    let verify: VerifyReport = fresh.ctl_json(&["verify"]);
    assert!(verify.problems.is_empty(), "{verify:?}");
}

#[test]
fn a_torn_index_is_left_out_its_chunks_stored_again_and_removed_by_repair() {
    let mut fixture = BackedUp::new(40, 10);
    let problems = a_backup_with_a_torn_put(&mut fixture, "index/");
    let torn: Vec<&String> = problems.iter().filter(|p| p.contains("index/")).collect();
    assert!(
        torn.len() == 1 && torn[0].contains("authentication"),
        "the torn object is not the index: {problems:?}"
    );
    let name = torn[0]
        .split_whitespace()
        .nth(1)
        .expect("object name")
        .to_owned();
    the_next_backup_and_repair_get_past(&mut fixture, &name);
}

#[test]
fn a_torn_snapshot_is_left_out_nobodys_parent_and_removed_by_repair() {
    let mut fixture = BackedUp::new(40, 10);
    let problems = a_backup_with_a_torn_put(&mut fixture, "snapshots/");
    let torn: Vec<&String> = problems
        .iter()
        .filter(|p| p.contains("snapshots/"))
        .collect();
    assert!(
        torn.len() == 1 && torn[0].contains("authentication"),
        "the torn object is not the snapshot: {problems:?}"
    );
    let name = torn[0]
        .split_whitespace()
        .nth(1)
        .expect("object name")
        .to_owned();
    assert_eq!(
        fixture.device.snapshots().len(),
        1,
        "a torn snapshot is not listed"
    );
    the_next_backup_and_repair_get_past(&mut fixture, &name);
}

/// Starts a restore whose provider misbehaves as `faulty` says (a failure only once the
/// restore has read every pack but the last), sends SIGTERM once `stuck` says the restore is stuck on it, and
/// checks that the daemon stops within a bounded time and leaves no partial file.
fn sigterm_stops_a_stuck_restore(faulty: serde_json::Value, stuck: fn(&Device) -> bool) {
    let mut fixture = BackedUp::new(60, 5);
    fixture.device.stop();
    let packs = tamper::objects(&fixture.target, "data").len() as u64;
    let mut options = faulty;
    if options.get("fail").is_some() {
        options["only"] = json!("data/");
        options["after"] = json!(packs - 1);
    }
    let slow = Target::faulty(TARGET, &fixture.target, options);
    fixture
        .device
        .reconfigure(Setup::new(fixture.store.dir(), vec![slow]));
    fixture.device.start();
    let to = fixture.path("restored");
    let device = &fixture.device;
    let (restore, stopped_in) = std::thread::scope(|scope| {
        let restore =
            scope.spawn(|| device.ctl(&["restore", "latest", "--to", to.to_str().expect("UTF-8")]));
        let waiting = wait::poll(Duration::from_secs(30), || stuck(device).then_some(()));
        assert!(
            waiting.is_some(),
            "the restore never got stuck on its provider: {}",
            device.log_tail()
        );
        let started = Instant::now();
        signal(device.pid().expect("running"), "TERM");
        let restore = restore.join().expect("the restore's client");
        (restore, started)
    });
    fixture.device.stop_after_signal();
    let stopped_in = stopped_in.elapsed();
    eprintln!("sealbackd stopped {stopped_in:?} after SIGTERM");
    assert!(
        stopped_in < Duration::from_secs(10),
        "the daemon took {stopped_in:?} to stop"
    );
    assert_ne!(
        restore.code,
        Some(0),
        "the restore cannot have finished: {restore}"
    );
    let left = walk(&to).unwrap_or_default();
    assert!(
        !left.iter().any(|f| f.ends_with(".sealback-partial")),
        "a partial file was left behind: {left:?}"
    );
}

#[test]
fn sigterm_stops_a_restore_waiting_on_its_provider_in_bounded_time_leaving_no_partial_file() {
    // The last pack read fails transiently, the provider asking for a minute's wait (the
    // daemon waits all of it: it honours a retry-after up to 10 minutes).
    sigterm_stops_a_stuck_restore(
        json!({ "fail": "get", "kind": "transient", "retry_after_ms": 60_000 }),
        |device| device.status().targets[0].requests.retries > 0,
    );
}

#[test]
fn sigterm_stops_a_restore_whose_provider_call_hangs_in_bounded_time() {
    // Every pack read hangs inside the plugin for ten minutes, as a call to a server that
    // streams its answer a byte at a time would: the call cannot be cancelled, and the daemon
    // must stop without it.
    sigterm_stops_a_stuck_restore(json!({ "slow_ms": 600_000, "slow_op": "get" }), |device| {
        device.status().targets[0].requests.in_flight > 0
    });
}
