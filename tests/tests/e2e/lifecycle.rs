//! Starting, stopping, and the rules of a restore's destination.

use std::fs;
use std::time::Duration;

use sealback_daemon::control::api::{Activity, Status};
use sealback_tests::store::{self, check_restored};
use sealback_tests::{Device, MessageStore, Setup, Target, raw_http, wait};

use crate::fixtures::{BackedUp, TARGET};

#[test]
fn sigterm_stops_an_idle_daemon_with_status_0_and_removes_its_socket() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = MessageStore::create(&dir.path().join("store"), 0);
    let mut device = Device::started(Setup::new(
        store.dir(),
        vec![Target::local(TARGET, &dir.path().join("target"))],
    ));
    device.ctl_ok(&["status"]);
    assert!(device.socket().exists(), "the daemon answers on its socket");

    device.stop();
    assert!(
        !device.socket().exists(),
        "{} is left behind after a clean stop{}",
        device.socket().display(),
        device.log_tail()
    );
    let unreachable = device.ctl_fails(&["status"], 3);
    assert!(
        unreachable
            .stderr
            .contains(&device.socket().display().to_string()),
        "the error names the socket: {unreachable}"
    );
}

#[test]
fn restore_into_a_non_empty_directory_needs_force() {
    let fixture = BackedUp::new(50, 10);
    let to = fixture.path("restored");
    let to_arg = to.to_str().expect("UTF-8");
    fs::create_dir_all(&to).expect("mkdir");
    fs::write(to.join("mine.txt"), "not the app's").expect("write");
    fs::write(to.join(store::DATABASE), "an old database").expect("write");
    fs::write(to.join(format!("{}-wal", store::DATABASE)), "its stale WAL").expect("write");
    // A partial copy left by an interrupted restore, longer than the database: a restore
    // writing over it instead of starting afresh would fail its size check or keep its tail.
    let stale_partial = to.join(format!("{}.sealback-partial", store::DATABASE));
    fs::write(&stale_partial, vec![0xA5u8; 8 << 20]).expect("write");

    let refused = fixture
        .device
        .ctl_fails(&["restore", "latest", "--to", to_arg], 1);
    assert!(
        refused.stderr.contains("not empty") && refused.stderr.contains("--force"),
        "the refusal says why and what to do: {refused}"
    );
    assert_eq!(
        fs::read_to_string(to.join(store::DATABASE)).expect("read"),
        "an old database",
        "a refused restore writes nothing"
    );

    fixture
        .device
        .ctl_ok(&["restore", "latest", "--to", to_arg, "--force"]);
    assert_eq!(
        fs::read_to_string(to.join("mine.txt")).expect("read"),
        "not the app's",
        "--force replaces files of the snapshot, and only those"
    );
    fs::remove_file(to.join("mine.txt")).expect("remove");
    assert!(
        !stale_partial.exists(),
        "the stale partial copy became the database"
    );
    // check_restored also fails on a stale -wal left next to the database.
    let restored = check_restored(&to).unwrap_or_else(|e| panic!("restored with --force: {e}"));
    assert_eq!(restored.messages, 50);
    assert_eq!(restored.complete_media, 5);
}

#[test]
fn usage_errors_exit_with_2() {
    let dir = tempfile::tempdir().expect("tempdir");
    let device = Device::new(Setup::restoring_from(vec![Target::local(
        TARGET,
        &dir.path().join("target"),
    )]));
    // Neither needs a daemon: both are refused before any request.
    let no_to = device.ctl_fails(&["restore", "latest"], 2);
    assert!(no_to.stderr.contains("--to"), "{no_to}");
    let no_key = device.ctl_stdin(&["key", "import"], "");
    assert_eq!(no_key.code, Some(2), "{no_key}");
    assert!(no_key.stderr.contains("no recovery key"), "{no_key}");
}

/// Images in the store of the next test: enough for a backup of a few hundred milliseconds.
const IMAGES: i64 = 250;

#[test]
fn sigterm_during_a_backup_exits_0_and_leaves_the_target_sound() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = MessageStore::create(&dir.path().join("store"), 1);
    store.append(IMAGES);
    let target = dir.path().join("target");
    let mut device = Device::started(Setup::new(
        store.dir(),
        vec![Target::local(TARGET, &target)],
    ));
    device.generate_key();

    let socket = device.socket();
    let backing_up = || {
        let response = raw_http::get(&socket, "/v1/status");
        let status: Status = serde_json::from_str(&response.body).expect("a status");
        status.activity == Activity::BackingUp
    };
    let interrupted = std::thread::scope(|scope| {
        let backup = scope.spawn(|| device.ctl(&["backup", "--wait"]));
        let seen = wait::poll(Duration::from_secs(10), || backing_up().then_some(()));
        assert!(seen.is_some(), "the backup never showed in status");
        let pid = device.pid().expect("running");
        sealback_tests::device::signal(pid, "TERM");
        backup.join().expect("the backup thread")
    });
    assert_ne!(
        interrupted.code,
        Some(0),
        "the backup finished before SIGTERM: make the store bigger ({interrupted})"
    );
    assert!(
        interrupted.stderr.contains("stop"),
        "the backup's error does not say the daemon stopped: {interrupted}"
    );
    device.stop_after_signal();
    assert!(!device.socket().exists(), "the socket is left behind");

    device.start();
    device.ctl_ok(&["verify"]);
    assert!(
        device.snapshots().is_empty(),
        "a stopped backup made a snapshot"
    );
    device.backup();
    let to = dir.path().join("restored");
    device.restore("latest", &to);
    let restored = check_restored(&to).unwrap_or_else(|e| panic!("after the restart: {e}"));
    assert_eq!(restored.messages, IMAGES);
    assert_eq!(restored.complete_media, IMAGES as usize);
}
