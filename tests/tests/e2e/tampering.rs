//! A damaged target: `verify` names every damaged or missing object, and a restore that
//! needs one stops with an error naming it, leaving no partial file behind.
//!
//! Each test damages a target two backups made, then checks from a new device (the
//! recovery key only), as someone whose phone was lost would.

use sealback_daemon::control::api::VerifyReport;
use sealback_tests::store::walk;
use sealback_tests::{Device, tamper};

use crate::fixtures::{BackedUp, new_device};

/// A target with two snapshots; the second adds messages and images, so each backup wrote
/// at least one pack of its own.
fn two_backups() -> BackedUp {
    let mut fixture = BackedUp::new(100, 10);
    fixture.add_and_back_up(50);
    assert_eq!(fixture.snapshots.len(), 2);
    fixture
}

/// Runs `verify`, which must find problems; returns its report.
#[track_caller]
fn verify_finds_problems(device: &Device) -> VerifyReport {
    let ctl = device.ctl(&["--json", "verify"]);
    assert_eq!(
        ctl.code,
        Some(1),
        "verify must fail on a damaged target: {ctl}{}",
        device.log_tail()
    );
    let report: VerifyReport = serde_json::from_str(&ctl.stdout)
        .unwrap_or_else(|e| panic!("verify --json printed no report ({e}): {ctl}"));
    assert!(!report.problems.is_empty(), "{report:?}");
    report
}

/// The snapshots `verify` says cannot be fully restored.
fn unrestorable(report: &VerifyReport) -> Vec<String> {
    report
        .problems
        .iter()
        .filter_map(|p| p.strip_prefix("snapshot "))
        .filter(|rest| rest.contains("cannot be fully restored"))
        .filter_map(|rest| rest.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

#[track_caller]
fn assert_names(report: &VerifyReport, object: &str) {
    assert!(
        report.problems.iter().any(|p| p.contains(object)),
        "no problem names {object}: {:#?}",
        report.problems
    );
}

/// Restores `snapshot`, which must fail with exit status 1 and a message naming one of
/// `objects` (and containing `also`, if given); no partial file may be left.
#[track_caller]
fn restore_fails(device: &Device, snapshot: &str, objects: &[&str], also: Option<&str>) {
    let short: String = snapshot.chars().take(8).collect();
    let to = device.root().join(format!("restore-{short}"));
    let ctl = device.ctl(&["restore", snapshot, "--to", to.to_str().expect("UTF-8")]);
    assert_eq!(
        ctl.code,
        Some(1),
        "the restore of snapshot {snapshot} must fail: {ctl}{}",
        device.log_tail()
    );
    assert!(
        objects.iter().any(|o| ctl.stderr.contains(o)),
        "the error names none of {objects:?}: {ctl}"
    );
    if let Some(also) = also {
        assert!(
            ctl.stderr.contains(also),
            "the error does not say {also:?}: {ctl}"
        );
    }
    if to.exists() {
        let files = walk(&to).expect("list the restore directory");
        assert!(
            !files.iter().any(|f| f.ends_with(".sealback-partial")),
            "a partial file was left behind: {files:?}"
        );
    }
}

#[test]
fn a_flipped_byte_in_a_pack_is_named_by_verify_and_by_the_restore() {
    let fixture = two_backups();
    let packs = tamper::objects(&fixture.target, "data");
    let pack = &packs[0];
    tamper::flip_middle_byte(&fixture.target, pack);

    let device = new_device(&fixture.target, &fixture.recovery_key);
    let report = verify_finds_problems(&device);
    assert_names(&report, pack);
    let broken = unrestorable(&report);
    assert!(
        !broken.is_empty(),
        "verify does not say which snapshot {pack} breaks: {report:#?}"
    );
    for snapshot in &broken {
        restore_fails(&device, snapshot, &[pack], None);
    }
}

#[test]
fn a_deleted_pack_is_named_missing_by_verify_and_by_the_restore() {
    let fixture = two_backups();
    let packs = tamper::objects(&fixture.target, "data");
    let pack = &packs[0];
    tamper::delete(&fixture.target, pack);

    let device = new_device(&fixture.target, &fixture.recovery_key);
    let report = verify_finds_problems(&device);
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.contains(pack.as_str()) && p.contains("missing")),
        "no problem says {pack} is missing: {:#?}",
        report.problems
    );
    let broken = unrestorable(&report);
    assert!(!broken.is_empty(), "{report:#?}");
    for snapshot in &broken {
        restore_fails(&device, snapshot, &[pack], Some("missing"));
    }
}

#[test]
fn swapped_packs_are_named_by_verify_and_by_the_restore() {
    let fixture = two_backups();
    let packs = tamper::objects(&fixture.target, "data");
    assert!(
        packs.len() >= 2,
        "two backups, two packs at least: {packs:?}"
    );
    let (a, b) = (&packs[0], &packs[1]);
    tamper::swap(&fixture.target, a, b);

    let device = new_device(&fixture.target, &fixture.recovery_key);
    let report = verify_finds_problems(&device);
    assert_names(&report, a);
    assert_names(&report, b);
    let broken = unrestorable(&report);
    assert!(!broken.is_empty(), "{report:#?}");
    for snapshot in &broken {
        restore_fails(&device, snapshot, &[a, b], None);
    }
}

#[test]
fn a_flipped_byte_in_a_snapshot_is_named_by_verify_and_by_its_restore() {
    let fixture = two_backups();
    let first = &fixture.snapshots[0];
    let object = format!("snapshots/{first}");
    tamper::flip_middle_byte(&fixture.target, &object);

    let device = new_device(&fixture.target, &fixture.recovery_key);
    let report = verify_finds_problems(&device);
    assert_names(&report, &object);
    restore_fails(&device, first, &[&object], None);
}

#[test]
fn a_flipped_byte_in_an_index_is_named_by_verify_and_by_a_new_devices_restore() {
    let fixture = two_backups();
    let indexes = tamper::objects(&fixture.target, "index");
    assert_eq!(indexes.len(), 2, "one index per backup: {indexes:?}");
    let index = &indexes[0];
    tamper::flip_middle_byte(&fixture.target, index);

    let device = new_device(&fixture.target, &fixture.recovery_key);
    let report = verify_finds_problems(&device);
    assert_names(&report, index);
    // A new device learns where blobs are from the indexes: it cannot go on without one.
    restore_fails(&device, "latest", &[index], None);
}
