//! Targets with their own schedule: the local disk follows every change while a second
//! target (a cloud target, in life) is backed up only when asked. A change of the store
//! triggers a snapshot on the on-change target alone; `sealbackctl backup` covers both;
//! `status` shows each target's schedule and its next planned backup.

use std::time::Duration;

use serde_json::json;

use sealback_tests::{Device, MessageStore, Setup, Target, wait};

#[test]
fn a_change_backs_up_only_the_targets_that_follow_changes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = MessageStore::create(&dir.path().join("store"), 5);
    store.append(20);
    let disk = Target::local("disk", &dir.path().join("disk"));
    let cloud = Target::local("cloud", &dir.path().join("cloud")).with("schedule", json!("manual"));
    let weekly =
        Target::local("weekly", &dir.path().join("weekly")).with("schedule", json!("weekly"));
    // [schedule] is on-change: "disk" follows it, the others have their own.
    let mut device =
        Device::started(Setup::new(store.dir(), vec![disk, cloud, weekly]).on_change("200ms"));
    device.generate_key();
    // Every target is backed up once by hand, so that the weekly one is not due (its next
    // backup is one week after its newest snapshot; it may also have made its first one on
    // its own, right after start).
    device.backup();
    let snapshots = |device: &Device| -> Vec<u64> {
        device
            .status()
            .targets
            .iter()
            .map(|t| t.snapshots)
            .collect()
    };
    let before = snapshots(&device);
    assert_eq!(&before[..2], &[1, 1]);

    store.append(10);
    let after_change = wait::poll(Duration::from_secs(30), || {
        let counts = snapshots(&device);
        (counts[0] >= 2).then_some(counts)
    })
    .unwrap_or_else(|| {
        panic!(
            "no change-triggered snapshot on the on-change target{}",
            device.log_tail()
        )
    });
    assert_eq!(
        &after_change[1..],
        &before[1..],
        "the change was backed up to targets that do not follow changes"
    );

    let status = device.status();
    let schedules: Vec<(&str, &str)> = status
        .targets
        .iter()
        .map(|t| (t.name.as_str(), t.schedule.as_str()))
        .collect();
    assert_eq!(
        schedules,
        vec![
            ("disk", "on-change"),
            ("cloud", "manual"),
            ("weekly", "interval (7days)")
        ]
    );
    assert_eq!(
        status.targets[1].next_backup_unix_ms, None,
        "a manual target has no planned backup"
    );
    let week_ms = 7 * 86_400_000;
    let weekly_last = status.targets[2]
        .last_snapshot_unix_ms
        .expect("weekly has a snapshot");
    let weekly_next = status.targets[2]
        .next_backup_unix_ms
        .expect("the weekly target has a planned backup");
    assert!(
        (weekly_next - (weekly_last + week_ms)).abs() < 60_000,
        "next weekly backup at {weekly_next}, its last at {weekly_last}"
    );
    let shown = device.ctl(&["status"]);
    assert!(
        shown.stdout.contains("SCHEDULE") && shown.stdout.contains("interval (7days) (next "),
        "{shown}"
    );

    // Asked for: every target.
    device.backup();
    let counts = snapshots(&device);
    assert_eq!(&counts[1..], &[before[1] + 1, before[2] + 1], "{counts:?}");
    device.stop();
}
