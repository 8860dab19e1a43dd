//! sealbackd as systemd runs it: an unprivileged user of its own (here `nobody`) that reads
//! the store only through a group, backs up and restores.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

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

/// A daemon running as `nobody` in the store's group, as the unit runs it, over `store`.
/// Also returns the directory to restore into, the daemon's own.
fn unprivileged_device(dir: &Path, store: &MessageStore) -> (Device, std::path::PathBuf) {
    run("chgrp", &["-R", &STORE_GID.to_string(), path(store.dir())]);
    run("chmod", &["-R", "g+rX,o-rwx", path(store.dir())]);
    let target = dir.join("target");
    daemons_own(&target);
    let restored = dir.join("restored");
    daemons_own(&restored);

    let mut device = Device::new(Setup::new(
        store.dir(),
        vec![Target::local(TARGET, &target)],
    ));
    open_to_all(device.root());
    daemons_own(&device.state_dir());
    daemons_own(device.socket().parent().expect("the socket's directory"));
    // As the unit runs it: no new privileges, and no memory both writable and executable
    // (MemoryDenyWriteExecute=, which systemd applies with prctl(PR_SET_MDWE) on this
    // kernel), with the plugins loaded.
    let mut under = vec!["python3", "-c", DENY_WRITE_EXECUTE];
    under.extend(AS_THE_DAEMON.iter().map(String::as_str));
    device.run_under(&under);
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
    (device, restored)
}

/// `setpriv` arguments that run a command as the daemon's user, in the store's group.
static AS_THE_DAEMON: std::sync::LazyLock<[String; 6]> = std::sync::LazyLock::new(|| {
    [
        "setpriv".into(),
        "--no-new-privs".into(),
        format!("--reuid={NOBODY}"),
        format!("--regid={NOBODY}"),
        format!("--groups={STORE_GID}"),
        "--".into(),
    ]
});

/// Whether the daemon's user may create a file in `dir`.
fn daemon_may_create_in(dir: &Path) -> bool {
    let probe = dir.join("probe-of-the-daemons-user");
    let mut args: Vec<&str> = AS_THE_DAEMON.iter().skip(1).map(String::as_str).collect();
    args.extend(["touch", path(&probe)]);
    let made = Command::new("setpriv")
        .args(&args)
        .stderr(std::process::Stdio::null())
        .status()
        .expect("run setpriv")
        .success();
    let _ = std::fs::remove_file(&probe);
    made
}

#[test]
fn an_unprivileged_daemon_reading_the_store_through_a_group_backs_up_and_restores() {
    let dir = tempfile::tempdir().expect("tempdir");
    open_to_all(dir.path());
    // The app's store: its owner (root here) and the store group may read it, others not.
    // The group may also write the store's folder (as devices whose app shares its group
    // with the daemon may have it).
    let store = MessageStore::create(&dir.path().join("store"), 3);
    store.append(60);
    let (mut device, restored) = unprivileged_device(dir.path(), &store);
    run("chmod", &["g+w", path(store.dir())]);
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

/// The store readable, not writable, by the daemon's user, with the app's database closed:
/// no `-wal` or `-shm` beside it, and none the daemon's SQLite may create.
fn read_only_store(dir: &Path) -> (MessageStore, Device, std::path::PathBuf) {
    let store = MessageStore::create(&dir.join("store"), 3);
    store.append(60);
    let (device, restored) = unprivileged_device(dir, &store);
    for member in ["-wal", "-shm"] {
        let name = format!("{}{member}", sealback_tests::store::DATABASE);
        assert!(
            !store.dir().join(&name).exists(),
            "the app left {name}: it has not closed the database"
        );
    }
    assert!(
        !daemon_may_create_in(store.dir()),
        "the daemon's user may create files in the store's folder"
    );
    (store, device, restored)
}

/// How many captures read the database as its file alone, without locks, as the daemon's
/// log says.
fn unlocked_reads(device: &Device) -> usize {
    std::fs::read_to_string(device.log_path())
        .expect("the daemon's log")
        .matches("reading the file alone, without locks")
        .count()
}

#[test]
fn a_store_the_daemon_may_only_read_backs_up_a_closed_database_and_restores_exactly() {
    let dir = tempfile::tempdir().expect("tempdir");
    open_to_all(dir.path());
    let (store, mut device, restored) = read_only_store(dir.path());
    device.backup();
    // A second backup, from the first one's baseline, after the app committed more.
    store.append(7);
    device.backup();
    assert_eq!(unlocked_reads(&device), 2, "{}", device.log_tail());
    device.restore("latest", &restored);
    let got = check_restored(&restored).expect("the restored store");
    assert_eq!(got.messages, store.committed());
    device.stop();
}

#[test]
fn a_store_the_daemon_may_only_read_backs_up_while_the_app_reopens_and_writes() {
    let dir = tempfile::tempdir().expect("tempdir");
    open_to_all(dir.path());
    let (store, mut device, restored) = read_only_store(dir.path());
    let stop = std::sync::atomic::AtomicBool::new(false);
    let mut snapshots = Vec::new();
    let mut failures = Vec::new();
    let commits = std::thread::scope(|scope| {
        // The app opens the database, commits a few times, and closes it (its last
        // connection checkpoints into the file and removes the WAL and wal-index), again
        // and again.
        let app = scope.spawn(|| {
            let mut commits = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let open = store.connect();
                for _ in 0..1 + commits % 3 {
                    store.append(1);
                    commits += 1;
                    std::thread::sleep(Duration::from_millis(5 + commits % 10));
                }
                drop(open);
                std::thread::sleep(Duration::from_millis(20 + 7 * (commits % 7)));
            }
            commits
        });
        for _ in 0..BACKUPS_WHILE_WRITTEN {
            let ctl = device.ctl(&["--json", "backup", "--wait"]);
            match ctl.code {
                Some(0) => {
                    let report: serde_json::Value =
                        serde_json::from_str(&ctl.stdout).expect("a backup report");
                    let id = report["snapshot"].as_str().expect("a snapshot id");
                    snapshots.push(id.to_owned());
                }
                _ => failures.push(format!("{}{}", ctl.stdout, ctl.stderr)),
            }
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        app.join().expect("the app's thread")
    });
    // A backup may give up on a database written under every one of its attempts; it says
    // so, naming the database.
    for said in &failures {
        assert!(said.contains("msgstore.db"), "a backup failed: {said}");
    }
    assert!(
        snapshots.len() > BACKUPS_WHILE_WRITTEN / 2,
        "only {} of {BACKUPS_WHILE_WRITTEN} backups succeeded while the app wrote: {failures:?}",
        snapshots.len()
    );
    let mut previous = 0;
    for (i, snapshot) in snapshots.iter().enumerate() {
        let to = restored.join(i.to_string());
        device.restore(snapshot, &to);
        let got = check_restored(&to)
            .unwrap_or_else(|e| panic!("snapshot {snapshot} restored wrong: {e}"));
        assert!(got.messages >= previous, "snapshot {snapshot} went back");
        previous = got.messages;
    }
    // Once the app is done, a backup holds every message.
    device.backup();
    let to = restored.join("last");
    device.restore("latest", &to);
    let got = check_restored(&to).expect("the restored store");
    assert_eq!(got.messages, store.committed());
    println!(
        "read-only store: {} of {BACKUPS_WHILE_WRITTEN} backups while the app made {commits} \
         commits, reopening the database; {} captures read it without locks, {} found it \
         written meanwhile",
        snapshots.len(),
        unlocked_reads(&device),
        std::fs::read_to_string(device.log_path())
            .expect("the daemon's log")
            .matches("while sealbackd read it without locks")
            .count()
    );
    device.stop();
}

/// Backups while the app reopens and writes the database.
const BACKUPS_WHILE_WRITTEN: usize = 8;
