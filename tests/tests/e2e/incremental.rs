//! Incremental backups: what is already on the target is not uploaded again.

use sealback_tests::store::media_bytes;
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
