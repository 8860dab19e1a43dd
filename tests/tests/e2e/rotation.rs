//! Key rotation (DESIGN.md §3.11): `key generate --replace` refused while backups under the
//! key exist; `key rotate` moving every target to a new key and generation without a moment
//! when a snapshot does not restore, failed or killed at any point; the old generation's
//! retirement (`key rotate --finish` or any prune) marking it first, so that a device still
//! backing up under the old key is stopped cleanly rather than cut off, and removing it once
//! the grace period has passed, after which the old key opens nothing.

use std::path::Path;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sealback_daemon::control::api::{KeyRotated, PruneReports};
use sealback_tests::store::check_restored;
use sealback_tests::{Device, MessageStore, Setup, Target, tamper};

use crate::fixtures::{BackedUp, CrashRig, TARGET, crashing, env_number, new_device};

/// The prune grace period of these tests' daemons (`SEALBACK_TEST_PRUNE_GRACE_MS`): the
/// retirement of the old generation waits it out after marking it.
const GRACE: &str = "SEALBACK_TEST_PRUNE_GRACE_MS";
const GRACE_MS: u64 = 3000;

/// `fixture`'s device restarted with the grace period `ms`.
fn with_grace(fixture: &mut BackedUp, ms: u64) {
    fixture.device.stop();
    fixture.device.reconfigure(
        Setup::new(
            fixture.store.dir(),
            vec![Target::local(TARGET, &fixture.target)],
        )
        .daemon_env(GRACE, &ms.to_string()),
    );
    fixture.device.start();
}

/// Every snapshot `device` lists restores exactly; returns their ids.
#[track_caller]
fn every_snapshot_restores(device: &Device, scratch: &Path) -> Vec<String> {
    let listed = device.snapshots();
    assert!(
        !listed.is_empty(),
        "no snapshots listed{}",
        device.log_tail()
    );
    for snapshot in &listed {
        let to = scratch.join(format!("restored-{}", &snapshot.id[..12]));
        device.restore(&snapshot.id, &to);
        check_restored(&to).unwrap_or_else(|e| panic!("snapshot {}: {e}", snapshot.id));
        std::fs::remove_dir_all(&to).expect("remove the restore");
    }
    listed.into_iter().map(|s| s.id).collect()
}

fn rotate(device: &Device) -> KeyRotated {
    device.ctl_json(&["key", "rotate"])
}

#[test]
fn key_generate_replace_is_refused_while_the_target_holds_backups_under_the_key() {
    let fixture = BackedUp::new(30, 5);
    let key_file = fixture.device.state_dir().join("backup.key");
    let before = std::fs::read(&key_file).expect("key file");

    let refused = fixture
        .device
        .ctl_fails(&["key", "generate", "--replace"], 1);
    assert!(
        refused.stderr.contains(&format!("{TARGET:?}"))
            && refused.stderr.contains("made with the current key")
            && refused.stderr.contains("sealbackctl key rotate"),
        "the refusal does not say what holds backups and what to do: {refused}"
    );
    assert_eq!(std::fs::read(&key_file).expect("key file"), before);
    // The device goes on backing up, and everything restores.
    fixture.store.append(5);
    fixture.device.backup();
    every_snapshot_restores(&fixture.device, &fixture.path("scratch"));
}

#[test]
fn after_rotate_and_finish_the_old_key_opens_nothing_and_the_new_one_restores_everything_kept() {
    let mut fixture = BackedUp::new(60, 4);
    with_grace(&mut fixture, GRACE_MS);
    fixture.add_and_back_up(20);
    let old_key = fixture.recovery_key.clone();
    let scratch = fixture.path("scratch");

    let rotated = rotate(&fixture.device);
    let new_key = rotated
        .recovery_key
        .expect("the new recovery key")
        .to_string();
    assert_ne!(new_key, old_key);
    // Until the old generation is retired, both generations list and restore, on this
    // device and on new ones with either key.
    let listed = every_snapshot_restores(&fixture.device, &scratch);
    for old in &fixture.snapshots {
        assert!(listed.contains(old), "{old} is not listed: {listed:?}");
    }
    assert_eq!(listed.len(), fixture.snapshots.len() + 1);
    let with_old = new_device(&fixture.target, &old_key);
    assert_eq!(with_old.snapshots().len(), fixture.snapshots.len());
    drop(with_old);
    let with_new = new_device(&fixture.target, &new_key);
    let new_generation = every_snapshot_restores(&with_new, &scratch);
    assert_eq!(new_generation.len(), 1);
    drop(with_new);
    // Asked again (its answer lost), the rotation shows the same new key.
    let again = rotate(&fixture.device);
    assert_eq!(
        again.recovery_key.expect("shown again").to_string(),
        new_key
    );

    fixture.store.append(10);
    fixture.device.backup();
    // The first `--finish` marks the old generation; it goes after the grace period.
    let marked: KeyRotated = fixture.device.ctl_json(&["key", "rotate", "--finish"]);
    assert_eq!(marked.removed_objects, 0, "{}", marked.message);
    assert!(
        marked.message.contains("marked for removal"),
        "{}",
        marked.message
    );
    assert_eq!(
        every_snapshot_restores(&fixture.device, &scratch).len(),
        fixture.snapshots.len() + 2
    );
    std::thread::sleep(std::time::Duration::from_millis(GRACE_MS + 500));
    let finished: KeyRotated = fixture.device.ctl_json(&["key", "rotate", "--finish"]);
    assert!(finished.recovery_key.is_none());
    assert!(
        finished.removed_objects > 3 * fixture.snapshots.len() as u64,
        "removed {} objects",
        finished.removed_objects
    );
    // Nothing of the old generation is left at the top of the target.
    for prefix in ["config", "data/", "index/", "snapshots/"] {
        assert!(
            tamper::objects(&fixture.target, prefix).is_empty(),
            "{prefix} still holds {:?}",
            tamper::objects(&fixture.target, prefix)
        );
    }
    let kept = every_snapshot_restores(&fixture.device, &scratch);
    assert_eq!(kept.len(), 2, "{kept:?}");
    assert!(fixture.snapshots.iter().all(|s| !kept.contains(s)));
    assert!(
        fixture.device.status().targets[0]
            .missing_snapshots
            .is_empty()
    );

    // The old key opens nothing: a new device refuses it.
    let restoring = Device::started(Setup::restoring_from(vec![Target::local(
        TARGET,
        &fixture.target,
    )]));
    let refused = restoring.ctl_stdin(&["key", "import"], &old_key);
    assert_eq!(refused.code, Some(1), "{refused}");
    assert!(refused.stderr.contains("does not open"), "{refused}");
    // The new key restores everything kept.
    restoring.import_key(&new_key);
    assert_eq!(every_snapshot_restores(&restoring, &scratch), kept);

    // Finished is finished; and the new key is now the one a replacement would strand.
    let twice = fixture.device.ctl_fails(&["key", "rotate", "--finish"], 1);
    assert!(
        twice.stderr.contains("no key rotation to finish"),
        "{twice}"
    );
    fixture
        .device
        .ctl_fails(&["key", "generate", "--replace"], 1);
}

#[test]
fn a_rotation_failing_on_the_target_leaves_the_device_backing_up_and_resumes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = MessageStore::create(&dir.path().join("store"), 5);
    store.append(40);
    let target = dir.path().join("target");
    let setup = |fault: serde_json::Value| {
        Setup::new(store.dir(), vec![Target::faulty(TARGET, &target, fault)]).daemon_env(GRACE, "0")
    };
    let mut device = Device::started(setup(serde_json::json!({})));
    let old_key = device.generate_key();
    device.backup();
    // Every put into the new generation fails for good.
    device.stop();
    device.reconfigure(setup(
        serde_json::json!({"fail": "put", "kind": "permanent", "only": "g/"}),
    ));
    device.start();
    let failed = device.ctl_fails(&["key", "rotate"], 1);
    assert!(failed.stderr.contains(&format!("{TARGET:?}")), "{failed}");
    let refused = device.ctl_fails(&["key", "generate", "--replace"], 1);
    assert!(refused.stderr.contains("key rotate"), "{refused}");
    store.append(10);
    device.backup();
    every_snapshot_restores(&device, dir.path());
    assert_eq!(new_device(&target, &old_key).snapshots().len(), 2);

    device.stop();
    device.reconfigure(setup(serde_json::json!({})));
    device.start();
    let new_key = rotate(&device).recovery_key.expect("key").to_string();
    assert_eq!(every_snapshot_restores(&device, dir.path()).len(), 3);
    // A prune of the one target (as the daemon's own prunes do) retires the old generation
    // once the new one is complete: with no grace period, marked and removed at once.
    let pruned: PruneReports = device.ctl_json(&["prune", "--target", TARGET]);
    let retired = pruned
        .retired_generation
        .expect("the old generation retired");
    assert!(retired.objects > 6, "{retired:?}");
    let with_new = new_device(&target, &new_key);
    assert_eq!(every_snapshot_restores(&with_new, dir.path()).len(), 1);
    let with_old = Device::started(Setup::restoring_from(vec![Target::local(TARGET, &target)]));
    let refused = with_old.ctl_stdin(&["key", "import"], &old_key);
    assert!(refused.stderr.contains("does not open"), "{refused}");
}

/// Points per run of the kill test; `SEALBACK_ROTATION_SEED` picks them.
const KILL_POINTS: u64 = 8;

#[test]
fn killed_at_any_point_of_a_rotation_the_device_backs_up_and_everything_restores() {
    let seed = env_number("SEALBACK_ROTATION_SEED", 1);
    let rig = CrashRig::new(60, 5);
    let (dir, store, target, mut device) = (&rig.dir, &rig.store, &rig.target, rig.device);
    let setup = |crash_after: Option<u64>| {
        crashing(store.dir(), target, crash_after).daemon_env(GRACE, "0")
    };
    let mut rng = StdRng::seed_from_u64(seed);
    // Rotations, then retirements, each killed at a provider call chosen by the seed; in
    // increasing order, so that each kill falls in the work the last one left (a rotation
    // of this store makes about 20 calls, a retirement about 30).
    let mut points: Vec<u64> = (0..KILL_POINTS).map(|_| rng.gen_range(0..20)).collect();
    points.sort_unstable();
    let mut finish_points: Vec<u64> = (0..KILL_POINTS).map(|_| rng.gen_range(0..30)).collect();
    finish_points.sort_unstable();
    points.extend(finish_points);
    let mut history = String::new();
    let mut kills = 0;
    for (point, calls) in points.into_iter().enumerate() {
        let finishing = point as u64 >= KILL_POINTS;
        device.reconfigure(setup(Some(calls)));
        device.start();
        let request: &[&str] = if finishing {
            &["key", "rotate", "--finish"]
        } else {
            &["key", "rotate"]
        };
        let answer = device.ctl(request);
        let killed = device.stop_or_reap_killed();
        kills += u64::from(killed);
        history.push_str(&format!(
            "  point {point}: {request:?} killed at call {}: {killed} (exit {:?} {})\n",
            calls + 1,
            answer.code,
            answer.stderr.lines().next().unwrap_or("")
        ));
        if !killed && !finishing {
            assert_eq!(
                answer.code,
                Some(0),
                "{answer}{}\n{history}",
                device.log_tail()
            );
        }
        device.reconfigure(setup(None));
        device.start();
        store.append(3);
        device.backup();
        let listed = every_snapshot_restores(&device, dir.path());
        assert!(listed.len() >= 2, "{listed:?}\n{history}");
        device.ctl_ok(&["verify"]);
        device.stop();
    }
    println!("rotation kill points (seed {seed}), {kills} kills:\n{history}");
    assert!(
        kills >= 2,
        "too few points fell inside the work:\n{history}"
    );
    device.reconfigure(setup(None));
    device.start();
    let new_key = rotate(&device)
        .recovery_key
        .expect("the new key")
        .to_string();
    // A finish killed at its last call may have finished everything but the answer.
    let done = device.ctl(&["key", "rotate", "--finish"]);
    assert!(
        done.code == Some(0) || done.stderr.contains("no key rotation to finish"),
        "{done}"
    );
    let kept = every_snapshot_restores(&device, dir.path());
    let with_new = new_device(target, &new_key);
    assert_eq!(every_snapshot_restores(&with_new, dir.path()), kept);
}

#[test]
fn a_device_still_backing_up_under_the_old_key_is_stopped_at_the_mark_not_cut_off() {
    let mut fixture = BackedUp::new(40, 4);
    with_grace(&mut fixture, GRACE_MS);
    let old_key = fixture.recovery_key.clone();
    let scratch = fixture.path("scratch");
    // The old phone: its own store, the same target, the old key only.
    let old_store = MessageStore::create(&fixture.path("old-phone"), 5);
    old_store.append(20);
    let old_phone = Device::started(
        Setup::new(
            old_store.dir(),
            vec![Target::local(TARGET, &fixture.target)],
        )
        .daemon_env(GRACE, &GRACE_MS.to_string()),
    );
    old_phone.import_key(&old_key);
    old_phone.backup();

    rotate(&fixture.device);
    // The old phone backs up under the old key until the generation is marked ...
    old_store.append(5);
    let before_mark = old_phone.backup().snapshot;
    let pruned: PruneReports = fixture.device.ctl_json(&["prune"]);
    assert!(
        pruned.retired_generation.is_none(),
        "removed before the grace period"
    );
    // ... and after the mark it is told, before it writes anything, what to do; what it
    // made still restores.
    old_store.append(5);
    let refused = old_phone.ctl_fails(&["backup", "--wait"], 1);
    assert!(
        refused.stderr.contains("retired by a key rotation")
            && refused.stderr.contains("key import"),
        "{refused}"
    );
    let restored = scratch.join("before-mark");
    old_phone.restore(&before_mark, &restored);
    check_restored(&restored).expect("restores");
    // Once the grace period has passed, the next prune removes the old generation.
    std::thread::sleep(std::time::Duration::from_millis(GRACE_MS + 500));
    let pruned: PruneReports = fixture.device.ctl_json(&["prune", "--target", TARGET]);
    assert!(pruned.retired_generation.is_some(), "{pruned:?}");
    for prefix in ["config", "data/", "index/", "snapshots/", "retiring"] {
        assert!(
            tamper::objects(&fixture.target, prefix).is_empty(),
            "{prefix} still holds {:?}",
            tamper::objects(&fixture.target, prefix)
        );
    }
    let finished = fixture.device.ctl_fails(&["key", "rotate", "--finish"], 1);
    assert!(
        finished.stderr.contains("no key rotation to finish"),
        "{finished}"
    );
}
