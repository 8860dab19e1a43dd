//! A provider that hides the newest snapshot (or rolls the target back to older ones) is
//! caught by the device that made it: `snapshots` names the missing snapshot, `status`
//! shows the alarm, and `restore latest` refuses to restore an older one in its place,
//! naming it; an older snapshot named explicitly still restores. The device's memory of
//! what it made outlives its catalog, which is only a cache and may be rebuilt.
//!
//! The JSON answers are read as untyped values, so these tests build against a daemon
//! that lacks the alarm and fail there by their assertions.

use std::fs;
use std::path::PathBuf;

use sealback_tests::{Device, tamper};
use serde_json::Value;

use crate::fixtures::{BackedUp, TARGET};

/// Two backups; the second adds messages, so it is a snapshot of its own.
fn two_backups() -> BackedUp {
    let mut fixture = BackedUp::new(40, 10);
    fixture.add_and_back_up(10);
    assert_eq!(fixture.snapshots.len(), 2);
    assert_ne!(fixture.snapshots[0], fixture.snapshots[1]);
    fixture
}

/// Moves the newest snapshot's object out of the target, as a provider hiding it would;
/// returns where it went, to put it back.
fn hide_newest(fixture: &BackedUp) -> PathBuf {
    let object = format!("snapshots/{}", fixture.snapshots[1]);
    let hidden = fixture.path("hidden-snapshot");
    fs::rename(tamper::file(&fixture.target, &object), &hidden).expect("move the snapshot away");
    hidden
}

/// `sealbackctl --json ARGS`, which must succeed, as untyped JSON.
#[track_caller]
fn json(device: &Device, args: &[&str]) -> Value {
    device.ctl_json(args)
}

/// The ids of the snapshots `snapshots --json` lists, and of those it names missing.
#[track_caller]
fn listed_and_missing(device: &Device) -> (Vec<String>, Vec<Value>) {
    let list = json(device, &["snapshots"]);
    let ids = list["snapshots"]
        .as_array()
        .expect("a list of snapshots")
        .iter()
        .map(|s| s["id"].as_str().expect("an id").to_owned())
        .collect();
    let missing = list["missing"].as_array().cloned().unwrap_or_default();
    (ids, missing)
}

/// Everything the device must say once the newest snapshot is hidden.
#[track_caller]
fn the_hidden_snapshot_is_named(fixture: &BackedUp) {
    let device = &fixture.device;
    let (older, newest) = (&fixture.snapshots[0], &fixture.snapshots[1]);

    let (ids, missing) = listed_and_missing(device);
    assert_eq!(
        ids,
        std::slice::from_ref(older),
        "only the older snapshot is listed"
    );
    assert!(
        missing
            .iter()
            .any(|m| m["id"] == newest.as_str() && m["time_unix_ms"].as_i64().is_some()),
        "`snapshots --json` does not name {newest} missing, with when it was made: {missing:?}"
    );
    let text = device.ctl_ok(&["snapshots"]);
    println!("{text}");
    assert!(
        text.stdout.contains(&newest[..8]) && text.stdout.contains("MISSING"),
        "`snapshots` does not name {newest} missing: {text}"
    );

    let status = json(device, &["status"]);
    let alarm = status["targets"][0]["missing_snapshots"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        alarm.iter().any(|m| m["id"] == newest.as_str()),
        "`status --json` shows no alarm for {newest}: {status:#}"
    );
    let text = device.ctl_ok(&["status"]);
    println!("{text}");
    assert!(
        text.stdout.contains(&newest[..8]) && text.stdout.contains("missing"),
        "`status` shows no alarm for {newest}: {text}"
    );

    let to = fixture.path("restore-latest");
    let ctl = device.ctl(&["restore", "latest", "--to", to.to_str().expect("UTF-8")]);
    println!("{ctl}");
    assert_eq!(
        ctl.code,
        Some(1),
        "`restore latest` must refuse while the newest snapshot is missing: {ctl}{}",
        device.log_tail()
    );
    assert!(
        ctl.stderr.contains(newest.as_str()) && ctl.stderr.contains("missing"),
        "the refusal does not name the missing snapshot {newest}: {ctl}"
    );
    assert!(
        ctl.stderr.contains("sealbackctl restore") && ctl.stderr.contains("--acknowledge-missing"),
        "the refusal does not say how to go on: {ctl}"
    );
    assert!(
        !to.exists() || fs::read_dir(&to).expect("list").next().is_none(),
        "the refused restore wrote files"
    );

    let to = fixture.path("restore-older");
    let report = device.restore(older, &to);
    assert_eq!(&report.snapshot, older);
    assert!(report.files > 0, "{report:?}");
}

#[test]
fn a_hidden_newest_snapshot_is_named_by_snapshots_status_and_restore_latest() {
    let fixture = two_backups();
    hide_newest(&fixture);
    the_hidden_snapshot_is_named(&fixture);
}

#[test]
fn a_hidden_newest_snapshot_is_still_named_after_the_catalog_is_rebuilt() {
    let fixture = two_backups();
    hide_newest(&fixture);
    // Garbage where the catalog was: its next use moves it aside and rebuilds it from the
    // target, which no longer lists the newest snapshot.
    let catalog = fixture
        .device
        .state_dir()
        .join("catalog")
        .join(format!("{TARGET}.db"));
    let size = fs::metadata(&catalog).expect("catalog").len() as usize;
    let garbage: Vec<u8> = (0..size.max(4096)).map(|i| (i * 7 + 13) as u8).collect();
    fs::write(&catalog, garbage).expect("overwrite the catalog");
    the_hidden_snapshot_is_named(&fixture);
    let aside = fs::read_dir(catalog.parent().expect("catalog dir"))
        .expect("list the catalogs")
        .filter_map(|e| e.ok())
        .any(|e| e.file_name().to_string_lossy().contains(".db.corrupt-"));
    assert!(aside, "the catalog was not rebuilt");
}

#[test]
fn the_alarm_ends_when_the_snapshot_reappears() {
    let fixture = two_backups();
    let hidden = hide_newest(&fixture);
    let (_, missing) = listed_and_missing(&fixture.device);
    assert_eq!(missing.len(), 1, "{missing:?}");

    let object = format!("snapshots/{}", fixture.snapshots[1]);
    fs::rename(&hidden, tamper::file(&fixture.target, &object)).expect("put it back");
    let (ids, missing) = listed_and_missing(&fixture.device);
    assert_eq!(ids, fixture.snapshots);
    assert!(missing.is_empty(), "{missing:?}");
    let to = fixture.path("restore");
    let report = fixture.device.restore("latest", &to);
    assert_eq!(report.snapshot, fixture.snapshots[1]);
}

#[test]
fn the_user_can_acknowledge_a_missing_snapshot_and_then_restore_latest() {
    let fixture = two_backups();
    hide_newest(&fixture);
    let (_, missing) = listed_and_missing(&fixture.device);
    assert_eq!(missing.len(), 1, "{missing:?}");

    let ack = fixture
        .device
        .ctl_ok(&["snapshots", "--acknowledge-missing"]);
    assert!(
        ack.stdout.contains(&fixture.snapshots[1][..8]),
        "the acknowledgement does not name what it acknowledged: {ack}"
    );
    let (ids, missing) = listed_and_missing(&fixture.device);
    assert_eq!(ids, &fixture.snapshots[..1]);
    assert!(missing.is_empty(), "{missing:?}");
    let status = json(&fixture.device, &["status"]);
    let alarm = &status["targets"][0]["missing_snapshots"];
    assert!(
        alarm.as_array().is_some_and(Vec::is_empty),
        "the alarm is still shown: {status:#}"
    );
    let to = fixture.path("restore");
    let report = fixture.device.restore("latest", &to);
    assert_eq!(report.snapshot, fixture.snapshots[0]);
}
