//! Issue 14, items 1 and 2: a restore cannot be turned against the device. The daemon runs
//! as root and restores into a directory its user names, which the store's owner (the app,
//! an unprivileged user) may write into while it works. Nothing restored comes back
//! setuid, what comes back is owned by the restore directory's owner, and no link planted
//! in the restore directory, before or during a restore, is ever followed.
//!
//! The tests run as root here (the daemon is root on a device); `nobody` plays the app.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sealback_tests::store::{check_restored, media_bytes, media_path};

use crate::fixtures::BackedUp;

const NOBODY: u32 = 65534;

fn is_root() -> bool {
    fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn path_arg(path: &Path) -> &str {
    path.to_str().expect("temporary paths are UTF-8")
}

#[test]
fn a_setuid_file_owned_by_nobody_comes_back_without_setuid_owned_by_the_directorys_owner() {
    assert!(
        is_root(),
        "this test needs root, as the daemon has on a device"
    );
    let backed = BackedUp::new(10, 5);
    let tool = backed.store.dir().join("Media/tool");
    fs::write(&tool, b"#!/bin/sh\nid -u\n").expect("tool");
    std::os::unix::fs::chown(&tool, Some(NOBODY), Some(NOBODY)).expect("chown");
    fs::set_permissions(&tool, fs::Permissions::from_mode(0o4755)).expect("setuid");
    let snapshot = backed.device.backup().snapshot;

    let to = backed.path("restored");
    fs::create_dir(&to).expect("restore dir");
    std::os::unix::fs::chown(&to, Some(NOBODY), Some(NOBODY)).expect("chown");
    backed.device.restore(&snapshot, &to);

    let restored = fs::metadata(to.join("Media/tool")).expect("restored tool");
    assert_eq!(
        restored.mode() & 0o7777,
        0o755,
        "the setuid file came back with mode {:o}, owner {}: a restore must never create \
         setuid, setgid or sticky files",
        restored.mode() & 0o7777,
        restored.uid()
    );
    for rel in [
        "Media/tool",
        "msgstore.db",
        "Media",
        "Media/Images",
        &media_path(5),
    ] {
        let meta = fs::metadata(to.join(rel)).expect("restored");
        assert_eq!(
            (meta.uid(), meta.gid()),
            (NOBODY, NOBODY),
            "{rel} is not owned by the restore directory's owner (nobody)"
        );
    }
}

#[test]
fn with_force_a_planted_media_link_is_replaced_and_never_followed() {
    let backed = BackedUp::new(20, 5);
    let sentinel = backed.path("elsewhere");
    fs::create_dir(&sentinel).expect("sentinel");
    let to = backed.path("restored");
    fs::create_dir(&to).expect("restore dir");
    symlink(&sentinel, to.join("Media")).expect("plant Media");

    backed
        .device
        .ctl_ok(&["restore", "latest", "--to", path_arg(&to), "--force"]);
    assert_eq!(
        entries(&sentinel),
        Vec::<String>::new(),
        "the restore wrote through the planted Media link"
    );
    assert!(
        fs::symlink_metadata(to.join("Media"))
            .expect("Media")
            .is_dir()
    );
    check_restored(&to).unwrap_or_else(|e| panic!("restored wrong: {e}"));
}

/// The names the attacker flips between a link (to the sentinel) and nothing: the
/// directories and the partial files of a restore, as a watcher would.
fn attacked_names() -> Vec<String> {
    vec![
        "Media".into(),
        "Media/Images".into(),
        "msgstore.db.sealback-partial".into(),
        format!("{}.sealback-partial", media_path(5)),
        format!("{}.sealback-partial", media_path(10)),
    ]
}

/// Flips links in whatever directory `current` names until `stop`; counts the links it
/// made in `flips`.
fn attacker(
    current: &Mutex<Option<PathBuf>>,
    sentinel: &Path,
    stop: &AtomicBool,
    flips: &AtomicU64,
) {
    let names = attacked_names();
    while !stop.load(Ordering::Relaxed) {
        let Some(dir) = current.lock().expect("current").clone() else {
            std::thread::yield_now();
            continue;
        };
        // Deepest first, and only beneath real directories: the attacker must not plant
        // through its own links.
        for (n, name) in names.iter().enumerate().rev() {
            let at = dir.join(name);
            let beneath_real_dirs = Path::new(name)
                .ancestors()
                .skip(1)
                .all(|a| fs::symlink_metadata(dir.join(a)).is_ok_and(|m| m.file_type().is_dir()));
            // A directory link, or a link to a file that does not exist yet.
            let points_to = if n < 2 {
                sentinel.to_path_buf()
            } else {
                sentinel.join(format!("victim-{n}"))
            };
            if beneath_real_dirs && symlink(&points_to, &at).is_ok() {
                flips.fetch_add(1, Ordering::Relaxed);
            }
        }
        std::thread::yield_now();
        for name in &names {
            let at = dir.join(name);
            if fs::symlink_metadata(&at).is_ok_and(|m| m.file_type().is_symlink()) {
                let _ = fs::remove_file(&at);
            }
        }
    }
}

#[test]
fn links_flipped_in_the_restore_directory_during_restores_are_never_followed() {
    const FLIPS: u64 = 1000;
    const MIN_ROUNDS: usize = 30;
    let backed = BackedUp::new(20, 5);
    let sentinel = backed.path("elsewhere");
    fs::create_dir(&sentinel).expect("sentinel");
    let current: Arc<Mutex<Option<PathBuf>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let flips = Arc::new(AtomicU64::new(0));
    let thread = {
        let (current, sentinel, stop, flips) = (
            current.clone(),
            sentinel.clone(),
            stop.clone(),
            flips.clone(),
        );
        std::thread::spawn(move || attacker(&current, &sentinel, &stop, &flips))
    };

    let deadline = Instant::now() + Duration::from_secs(240);
    let (mut rounds, mut succeeded, mut refused) = (0usize, 0usize, 0usize);
    let mut refusals = Vec::new();
    while rounds < MIN_ROUNDS || flips.load(Ordering::Relaxed) < FLIPS || succeeded == 0 {
        assert!(
            Instant::now() < deadline,
            "after {rounds} restores ({succeeded} succeeded) and {} flips, the test ran out \
             of time; refusals: {refusals:?}",
            flips.load(Ordering::Relaxed)
        );
        // Into a fresh directory (the emptiness check) and, every other round, again into
        // the same one with --force.
        let to = backed.path(&format!("restored-{}", rounds / 2));
        fs::create_dir_all(&to).expect("restore dir");
        *current.lock().expect("current") = Some(to.clone());
        let mut args = vec!["restore", "latest", "--to", path_arg(&to)];
        if rounds % 2 == 1 {
            args.push("--force");
        }
        let ctl = backed.device.ctl(&args);
        rounds += 1;
        assert_eq!(
            entries(&sentinel),
            Vec::<String>::new(),
            "round {rounds}: a restore wrote outside the restore directory ({ctl})"
        );
        let restored = ctl.code == Some(0);
        if restored {
            succeeded += 1;
        } else {
            refused += 1;
            // Refused for what the attacker did, never for anything else.
            let known = ["not empty", "symbolic link", "restore again", "File exists"];
            assert!(
                known.iter().any(|k| ctl.stderr.contains(k)),
                "a restore failed for another reason: {ctl}{}",
                backed.device.log_tail()
            );
            if refusals.len() < 5 {
                refusals.push(ctl.stderr.trim().to_owned());
            }
        }
        if restored {
            check_media(&to);
        }
    }
    stop.store(true, Ordering::Relaxed);
    thread.join().expect("attacker");
    let flips = flips.load(Ordering::Relaxed);
    println!(
        "{flips} link flips during {rounds} restores: {succeeded} restored, {refused} refused \
         what the attacker planted; nothing written outside"
    );
    assert_eq!(entries(&sentinel), Vec::<String>::new());
}

/// The images a successful restore wrote are regular files with the right bytes (the
/// attacker may still be flipping links beside them).
fn check_media(to: &Path) {
    for id in [5, 10, 15, 20] {
        let rel = media_path(id);
        let meta = fs::symlink_metadata(to.join(&rel)).expect("restored image");
        assert!(meta.is_file(), "{rel} was restored as {meta:?}");
        assert!(
            fs::read(to.join(&rel)).expect("read") == media_bytes(&rel),
            "{rel} restored wrong"
        );
    }
    let db = fs::symlink_metadata(to.join("msgstore.db")).expect("restored database");
    assert!(db.is_file(), "the database was restored as {db:?}");
}

/// A restore holds a descriptor per directory: a store with more folders than systemd's
/// default soft limit of open files (1,024; here lowered to 256 on the running daemon)
/// still restores, the daemon raising its soft limit to the hard one.
#[test]
fn a_store_with_more_folders_than_the_soft_open_files_limit_restores() {
    const FOLDERS: usize = 400;
    let backed = BackedUp::new(10, 5);
    for n in 0..FOLDERS {
        backed.store.put_file(
            &format!("Media/Folders/f{n}/note.txt"),
            format!("note {n}").as_bytes(),
        );
    }
    let snapshot = backed.device.backup().snapshot;
    let pid = backed.device.pid().expect("the daemon runs");
    let hard = fs::read_to_string(format!("/proc/{pid}/limits"))
        .expect("limits")
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(4).map(str::to_owned))
        .expect("the hard limit of open files");
    let lowered = std::process::Command::new("prlimit")
        .args(["--pid", &pid.to_string(), &format!("--nofile=256:{hard}")])
        .status()
        .expect("prlimit (util-linux)");
    assert!(lowered.success(), "prlimit failed");

    let to = backed.path("restored");
    backed.device.restore(&snapshot, &to);
    for n in [0, FOLDERS / 2, FOLDERS - 1] {
        let note = fs::read_to_string(to.join(format!("Media/Folders/f{n}/note.txt")))
            .expect("restored note");
        assert_eq!(note, format!("note {n}"));
    }
}
