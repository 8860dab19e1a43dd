//! Issue #2's main acceptance test: backups taken while the app writes as fast as it does,
//! every one restored on a new device from the recovery key alone, and each found to be the
//! store exactly as it was after one committed transaction.

use std::time::Duration;

use sealback_tests::store::check_restored;
use sealback_tests::wait;
use sealback_tests::writer::{Pace, Writer};
use sealback_tests::{Device, MessageStore, Setup, Target};

use crate::fixtures::{TARGET, new_device};

/// Messages the app writes between two requested backups.
const MESSAGES_BETWEEN_BACKUPS: i64 = 500;
const REQUESTED_BACKUPS: usize = 4;

#[test]
fn every_snapshot_taken_while_the_app_writes_restores_to_one_committed_state() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = MessageStore::create(&dir.path().join("store"), 40);
    store.append(100);
    let target = dir.path().join("target");
    let mut device = Device::started(
        Setup::new(store.dir(), vec![Target::local(TARGET, &target)]).on_change("200ms"),
    );
    let recovery_key = device.generate_key();

    let mut writer = Writer::start(
        &store,
        Pace {
            per_second: None,
            media_pause_ms: 20,
        },
    );
    let mut requested = Vec::new();
    for _ in 0..REQUESTED_BACKUPS {
        let wanted = store.committed() + MESSAGES_BETWEEN_BACKUPS;
        let reached = wait::poll(Duration::from_secs(30), || {
            writer.assert_running();
            (store.committed() >= wanted).then_some(())
        });
        assert!(
            reached.is_some(),
            "the writer did not reach message {wanted}"
        );
        requested.push(device.backup());
    }
    let last = writer.stop();
    let final_backup = device.backup();

    let snapshots = device.snapshots();
    assert!(
        snapshots.len() >= REQUESTED_BACKUPS + 2,
        "{} snapshots: the {REQUESTED_BACKUPS} requested while the app wrote, the final one, \
         and at least one the daemon made on its own (on-change) were expected{}",
        snapshots.len(),
        device.log_tail()
    );
    for report in requested.iter().chain([&final_backup]) {
        assert!(
            snapshots.iter().any(|s| s.id == report.snapshot),
            "snapshot {} of a backup is not listed",
            report.snapshot
        );
    }

    let mut previous = 0;
    for snapshot in &snapshots {
        let fresh = new_device(&target, &recovery_key);
        let to = fresh.root().join("restored");
        let report = fresh.restore(&snapshot.id, &to);
        let restored = check_restored(&to)
            .unwrap_or_else(|e| panic!("snapshot {} restored wrong: {e}", snapshot.id));
        assert_eq!(
            report.bytes, snapshot.size,
            "snapshot {}: restored bytes",
            snapshot.id
        );
        assert!(
            restored.messages >= previous,
            "snapshot {} holds {} messages, an older one {previous}",
            snapshot.id,
            restored.messages
        );
        eprintln!("snapshot {}: {restored:?}", &snapshot.id[..8]);
        previous = restored.messages;
        let requested_during_writes = requested.iter().any(|r| r.snapshot == snapshot.id);
        if requested_during_writes {
            assert!(
                restored.messages > 100 && restored.messages < last,
                "snapshot {} was taken while the app wrote, yet holds {} of {last} messages",
                snapshot.id,
                restored.messages
            );
        }
        if snapshot.id == final_backup.snapshot {
            assert_eq!(
                restored.messages, last,
                "the backup after the app stopped holds every message"
            );
        }
    }
    device.stop();
}

/// The file cache knows a file by its size, mtime, ctime and inode. The app (or a sync tool)
/// may rewrite a file with the same size and set its mtime back, or write a copy beside it
/// and rename it over the file: each is read again, never taken for the bytes backed up
/// before. (Only the ctime, which nobody can set back, tells the first; the inode and the
/// ctime the second.)
#[test]
fn a_file_rewritten_to_the_same_size_and_mtime_is_read_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = MessageStore::create(&dir.path().join("store"), 40);
    store.append(40);
    let mtime = std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let write = |rel: &str, bytes: &[u8]| {
        store.put_file(rel, bytes);
        let file = std::fs::File::options()
            .write(true)
            .open(store.dir().join(rel))
            .expect("open");
        file.set_modified(mtime).expect("set the mtime back");
    };
    let in_place = "Media/Documents/notes.txt";
    let renamed = "Media/Documents/photo.jpg";
    write(in_place, b"first version");
    write(renamed, b"first version");
    store.settle();
    let to_disk = Target::local(TARGET, &dir.path().join("target"));
    let device = Device::started(Setup::new(store.dir(), vec![to_disk]));
    device.generate_key();
    let first = device.backup();
    // The files had settled when read: the cache
    // knows them, and a backup with nothing changed reads neither.
    let unchanged = device.backup();
    assert_eq!(
        (unchanged.snapshot.as_str(), unchanged.files_read),
        (first.snapshot.as_str(), 0),
        "the files were not known from the cache: {unchanged:?}"
    );

    write(in_place, b"other version");
    write("Media/Documents/.photo.tmp", b"other version");
    std::fs::rename(
        store.dir().join("Media/Documents/.photo.tmp"),
        store.dir().join(renamed),
    )
    .expect("rename over");
    let second = device.backup();
    assert_ne!(
        second.snapshot, first.snapshot,
        "two changed files made no new snapshot: {second:?}"
    );
    let to = dir.path().join("restored");
    device.restore(&second.snapshot, &to);
    for rel in [in_place, renamed] {
        assert_eq!(
            std::fs::read(to.join(rel)).expect("restored"),
            b"other version",
            "{rel}: the backup kept the bytes of the first version"
        );
    }
}
