//! Full disks: the target, then the restore directory, on a size-limited tmpfs the test
//! mounts. A backup that does not fit fails naming the target as full, and loses nothing
//! earlier; a restore that does not fit fails naming the file and the full disk, and leaves
//! no file that looks complete but is not; once space is freed, both succeed.
//!
//! Mounting needs root (tests run as root here and in CI); elsewhere these tests say so and
//! pass without running.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use sealback_tests::store::{DATABASE, check_restored, media_bytes, walk};
use sealback_tests::{Ctl, Device, MessageStore, Setup, Target};

use crate::fixtures::TARGET;

/// What a restore leaves for a file it has not finished.
const PARTIAL_SUFFIX: &str = ".sealback-partial";

/// A tmpfs mounted on a directory, unmounted on drop (even when the test fails).
struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (as `mount -o size=` reads it) on `dir`; `None`, with a
    /// message, if this process may not mount.
    fn mount(dir: &Path, size: &str) -> Option<Tmpfs> {
        fs::create_dir_all(dir).expect("create the mount point");
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()
            .expect("run mount");
        if !out.status.success() {
            println!(
                "full disks: skipped, cannot mount a tmpfs (run as root): {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
            return None;
        }
        Some(Tmpfs {
            dir: dir.to_path_buf(),
        })
    }

    /// Makes room: the same tmpfs, `size` large.
    fn grow(&self, size: &str) {
        let status = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.dir)
            .status()
            .expect("run mount");
        assert!(status.success(), "remount {} failed", self.dir.display());
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

/// Whether a failure's output says a disk is full (the words of the daemon, or of the
/// system it quotes), and names `what`.
fn says_full(ctl: &Ctl, what: &str) -> bool {
    let said = format!("{}{}", ctl.stdout, ctl.stderr).to_lowercase();
    let full = ["full", "no space left", "quota"]
        .iter()
        .any(|w| said.contains(w));
    full && said.contains(&what.to_lowercase())
}

#[test]
fn a_backup_to_a_full_target_fails_clearly_loses_nothing_and_succeeds_once_there_is_room() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(disk) = Tmpfs::mount(&dir.path().join("disk"), "8m") else {
        return;
    };
    let target = disk.dir.join("repo");
    // Every message has an image of 50 to 400 KB: 10 fit in 8 MB, 60 do not.
    let store = MessageStore::create(&dir.path().join("store"), 1);
    store.append(10);
    let device = Device::started(Setup::new(
        store.dir(),
        vec![Target::local(TARGET, &target)],
    ));
    device.generate_key();
    let first = device.backup();

    store.append(50);
    let failed = device.ctl(&["backup", "--wait"]);
    assert!(
        failed.code != Some(0) && says_full(&failed, TARGET),
        "a backup that does not fit should fail naming target {TARGET:?} as full:\n{failed}{}",
        device.log_tail()
    );
    device.ctl_ok(&["status"]);
    device.ctl_ok(&["verify"]);
    let to = dir.path().join("restored-first");
    device.restore(&first.snapshot, &to);
    let restored = check_restored(&to).unwrap_or_else(|e| panic!("first snapshot: {e}"));
    assert_eq!(restored.messages, 10, "the first snapshot is intact");

    disk.grow("64m");
    let second = device.backup();
    let to = dir.path().join("restored-second");
    device.restore(&second.snapshot, &to);
    let restored = check_restored(&to).unwrap_or_else(|e| panic!("after making room: {e}"));
    assert_eq!(
        restored.messages, 60,
        "the backup after making room holds everything"
    );
    device.ctl_ok(&["verify"]);
    let snapshots = device.snapshots().len();
    println!(
        "full disks (target): the backup past 8 MB failed naming the target, {snapshots} \
         snapshots restore after room was made ({})",
        failed.stderr.trim()
    );
}

#[test]
fn a_restore_to_a_full_disk_fails_clearly_leaves_nothing_false_and_succeeds_once_there_is_room() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(disk) = Tmpfs::mount(&dir.path().join("disk"), "16m") else {
        return;
    };
    let store = MessageStore::create(&dir.path().join("store"), 1);
    store.append(30);
    let device = Device::started(Setup::new(
        store.dir(),
        vec![Target::local(TARGET, &dir.path().join("target"))],
    ));
    device.generate_key();
    let report = device.backup();
    assert!(
        report_size(&device, &report.snapshot) > 4 << 20,
        "the snapshot is past 4 MB"
    );

    // Leaves 2 MB free.
    let filler = disk.dir.join("filler");
    fs::write(&filler, vec![1u8; 14 << 20]).expect("fill the disk");
    let to = disk.dir.join("restored");
    let to_str = to.to_str().expect("a UTF-8 path");
    let failed = device.ctl(&["restore", &report.snapshot, "--to", to_str]);
    assert!(
        failed.code != Some(0) && says_full(&failed, "restored"),
        "a restore that does not fit should fail naming the file and the full disk:\n{failed}{}",
        device.log_tail()
    );
    let left = nothing_false_left(&to);

    fs::remove_file(&filler).expect("remove the filler");
    let again = disk.dir.join("restored-again");
    device.restore(&report.snapshot, &again);
    let restored = check_restored(&again).unwrap_or_else(|e| panic!("after making room: {e}"));
    assert_eq!(
        restored.messages, 30,
        "the restore after making room is whole"
    );
    println!(
        "full disks (restore): failed naming the full disk, {left} file(s) left all whole, \
         restored whole after room was made ({})",
        failed.stderr.trim()
    );
}

/// The size of `snapshot`, as listed.
fn report_size(device: &Device, snapshot: &str) -> u64 {
    device
        .snapshots()
        .iter()
        .find(|s| s.id == snapshot)
        .map(|s| s.size)
        .expect("the snapshot is listed")
}

/// Checks that every file a failed restore left in `to` is whole, or still named as
/// partial; returns how many whole files it left.
fn nothing_false_left(to: &Path) -> usize {
    let mut whole = 0;
    for file in walk(to).unwrap_or_default() {
        if file.ends_with(PARTIAL_SUFFIX) {
            continue;
        }
        let found = fs::read(to.join(&file)).expect("read a file the restore left");
        if file == DATABASE {
            let conn = rusqlite::Connection::open(to.join(&file)).expect("open the database");
            let check: String = conn
                .query_row("PRAGMA integrity_check", [], |r| r.get(0))
                .unwrap_or_else(|e| format!("{e}"));
            assert_eq!(check, "ok", "{file} was left looking complete but is not");
        } else {
            assert!(
                found == media_bytes(&file),
                "{file} was left looking complete with {} bytes, not its image",
                found.len()
            );
        }
        whole += 1;
    }
    whole
}
