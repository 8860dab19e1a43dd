//! Several targets at once, and what the daemon does for every provider: retries of
//! transient errors, and a failing target that neither blocks nor fails the others and
//! catches up once it works again. (`faulty` is the local provider with a fault in front.)

use serde_json::json;

use sealback_tests::store::check_restored;
use sealback_tests::{Device, MessageStore, Setup, Target};

fn store_with_messages(dir: &std::path::Path) -> MessageStore {
    let store = MessageStore::create(&dir.join("store"), 5);
    store.append(60);
    store
}

#[test]
fn transient_errors_are_retried_with_the_providers_retry_after_and_counted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = store_with_messages(dir.path());
    let flaky = Target::faulty(
        "flaky",
        &dir.path().join("flaky"),
        json!({ "fail": "put", "kind": "transient", "times": 3, "retry_after_ms": 20 }),
    )
    .with("retries", json!(5));
    let mut device = Device::started(Setup::new(store.dir(), vec![flaky]));
    device.generate_key();
    let report = device.backup();
    assert!(report.bytes_written > 0);
    let status = device.status();
    let counters = status.targets[0].requests;
    assert_eq!(counters.retries, 3, "{status:?}");
    assert_eq!(counters.failures, 0, "{status:?}");
    assert!(counters.bytes_sent >= report.bytes_written, "{status:?}");
    assert_eq!(status.targets[0].last_error, None);
    device.stop();
}

#[test]
fn a_target_that_keeps_failing_transiently_gives_up_after_its_retries() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = store_with_messages(dir.path());
    let flaky = Target::faulty(
        "flaky",
        &dir.path().join("flaky"),
        json!({ "fail": "put", "kind": "transient" }),
    )
    .with("retries", json!(2));
    let mut device = Device::started(Setup::new(store.dir(), vec![flaky]));
    device.generate_key();
    let failed = device.ctl_fails(&["backup", "--wait"], 1);
    assert!(
        failed.stderr.contains("flaky") && failed.stderr.contains("(gave up after 3 attempts)"),
        "{failed}"
    );
    assert_eq!(device.status().targets[0].requests.retries, 2);
    device.stop();
}

#[test]
fn a_failing_target_neither_blocks_nor_fails_the_others_and_catches_up() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = store_with_messages(dir.path());
    let disk = dir.path().join("disk");
    let flaky_dir = dir.path().join("flaky");
    let targets = vec![
        Target::local("disk", &disk),
        Target::faulty(
            "flaky",
            &flaky_dir,
            json!({ "fail": "put", "kind": "permanent", "times": 1 }),
        ),
    ];
    let mut device = Device::started(Setup::new(store.dir(), targets));
    let recovery_key = device.generate_key();

    // The first backup: the disk gets its snapshot, the failing target says why (exit
    // status 4: some targets only).
    let failed = device.ctl_fails(&["backup", "--wait"], 4);
    assert!(failed.stderr.contains("flaky"), "{failed}");
    let status = device.status();
    let (ok, bad) = (&status.targets[0], &status.targets[1]);
    assert!(
        ok.last_snapshot.is_some() && ok.last_error.is_none(),
        "{status:?}"
    );
    assert!(bad.last_snapshot.is_none(), "{status:?}");
    assert!(
        bad.last_error.as_deref().is_some_and(|e| e.contains("put")),
        "{status:?}"
    );

    // The app goes on; the next backup reaches both, the failed one catching up.
    store.append(20);
    let report = device.backup();
    let status = device.status();
    for target in &status.targets {
        assert!(target.last_error.is_none(), "{status:?}");
        assert_eq!(
            target.snapshots as usize,
            if target.name == "disk" { 2 } else { 1 }
        );
    }
    assert_eq!(report.target, "disk");
    device.stop();

    // Each target is a complete repository, restorable alone.
    let expected = store.committed();
    for (name, path) in [("disk", &disk), ("flaky", &flaky_dir)] {
        let target = Target::local(name, path);
        let mut fresh = Device::started(Setup::restoring_from(vec![target]));
        fresh.import_key(&recovery_key);
        let to = dir.path().join(format!("restored-{name}"));
        fresh.ctl_ok(&[
            "restore",
            "latest",
            "--to",
            to.to_str().expect("UTF-8"),
            "--target",
            name,
        ]);
        let restored = check_restored(&to).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(restored.messages, expected, "{name}");
        fresh.stop();
    }
}
