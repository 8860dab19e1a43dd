//! Incremental backups: what is already on the target is not uploaded again.

use sealback_tests::store::{check_restored, media_bytes};
use sealback_tests::tamper::tree_size;
use sealback_tests::{Device, MessageStore, Setup, Target};

use crate::fixtures::TARGET;

const MIB: u64 = 1024 * 1024;

#[test]
fn a_small_change_uploads_a_small_fraction_and_no_change_uploads_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    // About 4 MB of database and 1.5 MB of images.
    let store = MessageStore::create(&dir.path().join("store"), 2000);
    store.append(12_000);
    let target = dir.path().join("target");
    let device = Device::started(Setup::new(
        store.dir(),
        vec![Target::local(TARGET, &target)],
    ));
    device.generate_key();

    let first = device.backup();
    assert!(
        first.bytes_written > 2 * MIB,
        "the first backup stores everything: {first:?}"
    );
    let config = tree_size(&target.join("config"));
    assert_eq!(
        tree_size(&target),
        first.bytes_written + config,
        "the target holds what the first backup says it wrote, and the repository's config"
    );

    for _ in 0..5 {
        store.append(1);
    }
    let note = &media_bytes("Media/Documents/note.pdf")[..20_000];
    store.put_file("Media/Documents/note.pdf", note);
    let note_len = note.len() as u64;
    let second = device.backup();
    assert_ne!(second.snapshot, first.snapshot);
    assert!(
        second.bytes_written * 10 < first.bytes_written,
        "a handful of messages and one file cost more than a tenth of the first backup: \
         {second:?} after {first:?}"
    );
    assert!(
        second.bytes_written < MIB + note_len,
        "a handful of messages and one {note_len}-byte file cost {} bytes: {second:?}",
        second.bytes_written
    );
    assert!(second.chunks_reused > 0, "nothing was reused: {second:?}");
    assert_eq!(
        second.files_read, 1,
        "only the new file is read; the images are known by their stat: {second:?}"
    );
    assert_eq!(
        tree_size(&target),
        first.bytes_written + config + second.bytes_written,
        "the target grew by what the second backup says it wrote"
    );

    let third = device.backup();
    assert_eq!(
        (
            third.snapshot.as_str(),
            third.bytes_written,
            third.chunks_new
        ),
        (second.snapshot.as_str(), 0, 0),
        "with nothing changed, a backup stores nothing and names the last snapshot: {third:?}"
    );
    assert_eq!(device.snapshots().len(), 2);
}

#[test]
fn a_backup_after_a_few_commits_reads_only_the_pages_they_wrote() {
    let dir = tempfile::tempdir().expect("tempdir");
    // About 12 MB of database, few images.
    let store = MessageStore::create(&dir.path().join("store"), 5000);
    for _ in 0..6 {
        store.append(10_000);
    }
    // The app is running: its connection keeps the WAL between its commits.
    let app = store.connect();
    let target = dir.path().join("target");
    let device = Device::started(Setup::new(
        store.dir(),
        vec![Target::local(TARGET, &target)],
    ));
    device.generate_key();
    let db_size = std::fs::metadata(store.dir().join("msgstore.db"))
        .expect("db")
        .len();

    let first = device.backup();
    let read = first.db_read.clone().expect("the database was captured");
    assert!(!read.delta, "nothing to start from yet: {first:?}");
    assert!(read.bytes >= db_size, "{first:?}");

    store.append(3);
    device.backup();
    store.append(3);
    let third = device.backup();
    let read = third.db_read.clone().expect("the database was captured");
    assert!(
        read.delta,
        "three messages later, only their pages are read: {third:?}"
    );
    assert!(
        read.bytes * 50 < db_size,
        "three messages cost {} bytes of a {db_size}-byte database: {third:?}",
        read.bytes
    );
    assert_eq!(third.bytes_read, read.bytes, "no image was read: {third:?}");
    assert!(third.bytes_written < 256 * 1024, "{third:?}");
    let status = device.status();
    assert_eq!(
        status.last_backup.as_ref(),
        Some(&third),
        "status --json shows it"
    );

    // A checkpoint that restarts the WAL, unseen by us: the next capture reads everything.
    app.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .expect("checkpoint");
    store.append(2);
    let fourth = device.backup();
    let read = fourth.db_read.clone().expect("the database was captured");
    assert!(!read.delta, "{fourth:?}");
    assert!(read.why_full.is_some(), "{fourth:?}");

    // Each snapshot is the database as committed: the delta one and the full one after it.
    for (report, messages) in [(&third, 60_006), (&fourth, 60_008)] {
        let to = dir.path().join(format!("restored-{}", report.snapshot));
        device.restore(&report.snapshot, &to);
        let restored = check_restored(&to)
            .unwrap_or_else(|e| panic!("snapshot {} restored wrong: {e}", report.snapshot));
        assert_eq!(restored.messages, messages, "snapshot {}", report.snapshot);
    }
    drop(app);
}
