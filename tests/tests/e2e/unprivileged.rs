//! sealbackd as systemd runs it: an unprivileged user of its own (here `nobody`) that reads
//! the store only through a group, backs up and restores.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::Command;

use sealback_tests::store::check_restored;
use sealback_tests::{Device, MessageStore, Setup, Target};

use crate::fixtures::TARGET;

/// The store's group, which the daemon's user is given as a supplementary group (`users`).
const STORE_GID: u32 = 100;
const NOBODY: u32 = 65534;

/// Sets PR_SET_MDWE (65) with PR_MDWE_REFUSE_EXEC_GAIN (1), kept across exec, then execs
/// its arguments.
const DENY_WRITE_EXECUTE: &str = "import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
if libc.prctl(65, 1, 0, 0, 0) != 0:
    sys.exit('prctl(PR_SET_MDWE): ' + os.strerror(ctypes.get_errno()))
os.execvp(sys.argv[1], sys.argv[1:])";

#[track_caller]
fn run(program: &str, args: &[&str]) {
    let status = Command::new(program)
        .args(args)
        .status()
        .unwrap_or_else(|e| panic!("run {program}: {e}"));
    assert!(status.success(), "{program} {args:?}: {status}");
}

fn path(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

/// A directory for the daemon's user alone.
fn daemons_own(dir: &Path) {
    std::fs::create_dir_all(dir).expect("mkdir");
    std::os::unix::fs::chown(dir, Some(NOBODY), Some(NOBODY)).expect("chown");
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).expect("chmod");
}

fn open_to_all(dir: &Path) {
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

#[test]
fn an_unprivileged_daemon_reading_the_store_through_a_group_backs_up_and_restores() {
    let dir = tempfile::tempdir().expect("tempdir");
    open_to_all(dir.path());
    // The app's store: its owner (root here) and the store group may read it, others not.
    // The group may also write the store's folder: SQLite's readers of a WAL database create
    // the -wal and -shm files when the app has closed it (the daemon's connection is
    // query_only and never writes the database).
    let store = MessageStore::create(&dir.path().join("store"), 3);
    store.append(60);
    run("chgrp", &["-R", &STORE_GID.to_string(), path(store.dir())]);
    run("chmod", &["-R", "g+rX,o-rwx", path(store.dir())]);
    run("chmod", &["g+w", path(store.dir())]);
    let target = dir.path().join("target");
    daemons_own(&target);
    let restored = dir.path().join("restored");
    daemons_own(&restored);

    let mut device = Device::new(Setup::new(
        store.dir(),
        vec![Target::local(TARGET, &target)],
    ));
    open_to_all(device.root());
    daemons_own(&device.state_dir());
    daemons_own(device.socket().parent().expect("the socket's directory"));
    let (uid, gid, groups) = (
        format!("--reuid={NOBODY}"),
        format!("--regid={NOBODY}"),
        format!("--groups={STORE_GID}"),
    );
    // As the unit runs it: no new privileges, and no memory both writable and executable
    // (MemoryDenyWriteExecute=, which systemd applies with prctl(PR_SET_MDWE) on this
    // kernel), with the plugins loaded.
    device.run_under(&[
        "python3",
        "-c",
        DENY_WRITE_EXECUTE,
        "setpriv",
        "--no-new-privs",
        &uid,
        &gid,
        &groups,
        "--",
    ]);
    device.start();
    let daemon_uid =
        std::fs::read_to_string(format!("/proc/{}/status", device.pid().expect("pid")))
            .expect("the daemon's status")
            .lines()
            .find(|l| l.starts_with("Uid:"))
            .map(str::to_owned)
            .expect("Uid:");
    assert!(
        daemon_uid
            .split_whitespace()
            .skip(1)
            .all(|u| u == NOBODY.to_string()),
        "the daemon is not running as nobody: {daemon_uid}"
    );

    device.generate_key();
    let report = device.backup();
    assert!(report.files > 0, "{report:?}");
    device.restore("latest", &restored);
    let got = check_restored(&restored).expect("the restored store");
    assert_eq!(got.messages, store.committed());
    let owner = std::os::unix::fs::MetadataExt::uid(
        &std::fs::metadata(restored.join("msgstore.db")).expect("stat the restored database"),
    );
    assert_eq!(
        owner, NOBODY,
        "a restore into the daemon's directory is the daemon's"
    );

    // Into the app's own directory (root's here): the daemon cannot give files to the app
    // without CAP_CHOWN, and says so before it writes anything.
    let apps = dir.path().join("apps-own");
    std::fs::create_dir(&apps).expect("mkdir");
    open_to_all(&apps);
    let refused = device.ctl(&["restore", "latest", "--to", path(&apps)]);
    assert_ne!(refused.code, Some(0), "{refused}");
    assert!(
        refused.stderr.contains("without CAP_CHOWN") && refused.stderr.contains("chown -R"),
        "{refused}"
    );
    assert_eq!(
        std::fs::read_dir(&apps).expect("read").count(),
        0,
        "a refused restore wrote into the app's directory"
    );
    device.stop();
}
