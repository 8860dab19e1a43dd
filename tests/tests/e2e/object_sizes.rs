//! What the provider learns from object sizes: every object is padded to a Padmé length
//! (DESIGN.md §3.10), so a stored pack no longer tells a known photo by its exact size.

use std::collections::BTreeSet;
use std::path::Path;

use rand::RngCore;
use sealback_tests::tamper::{objects, tree_size};
use sealback_tests::{Device, MessageStore, Setup, Target};

use crate::fixtures::{TARGET, new_device};

/// Whether `len` is a Padmé length (Nikitin et al., PETS 2019): with E = ⌊log2 len⌋ and
/// S = ⌊log2 E⌋ + 1, its low E − S bits are zero. Written here from the paper, apart from
/// the repository's own function.
fn is_padme_length(len: u64) -> bool {
    let e = len.ilog2();
    let s = e.max(1).ilog2() + 1;
    len.trailing_zeros() >= e.saturating_sub(s)
}

/// Every object on the target, with its size.
fn sizes(target: &Path) -> Vec<(String, u64)> {
    let mut all = vec![("config".to_owned(), tree_size(&target.join("config")))];
    for prefix in ["data", "index", "snapshots"] {
        for name in objects(target, prefix) {
            let size = tree_size(&target.join(&name));
            all.push((name, size));
        }
    }
    all
}

fn photo(len: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; len];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    // A JPEG's start, though only its size and randomness matter here.
    bytes[..4].copy_from_slice(&[0xff, 0xd8, 0xff, 0xe0]);
    bytes
}

/// Backs up `store` after adding the photo `rel`; returns the sizes of the packs it added.
fn back_up_photo(
    device: &Device,
    store: &MessageStore,
    target: &Path,
    rel: &str,
    len: usize,
) -> Vec<u64> {
    let before: BTreeSet<String> = objects(target, "data").into_iter().collect();
    store.put_file(rel, &photo(len));
    let report = device.backup();
    // The photo before is read again if it was written within the file system's timestamp
    // granularity of its scan; its chunk is known, so it adds nothing.
    assert!(report.chunks_new >= 1, "the photo is new: {report:?}");
    objects(target, "data")
        .into_iter()
        .filter(|name| !before.contains(name))
        .map(|name| tree_size(&target.join(name)))
        .collect()
}

#[test]
fn a_photo_of_a_known_size_is_not_told_by_its_pack_size() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = MessageStore::create(&dir.path().join("store"), 10);
    store.append(200);
    let target = dir.path().join("target");
    let device = Device::started(Setup::new(
        store.dir(),
        vec![Target::local(TARGET, &target)],
    ));
    let recovery_key = device.generate_key();
    device.backup();

    // The photo of issue 14 made a pack of 183,536 bytes, 124 more than the photo. Padded,
    // it makes one of 184,320, as does a photo of 181,000 bytes: the provider cannot tell
    // which of the two (or of any photo between 180,100 and 184,195 bytes) was backed up.
    let issue = back_up_photo(
        &device,
        &store,
        &target,
        "Media/Images/IMG-issue14.jpg",
        183_412,
    );
    assert_eq!(issue, [184_320], "the packs the 183,412-byte photo added");
    let other = back_up_photo(
        &device,
        &store,
        &target,
        "Media/Images/IMG-other.jpg",
        181_000,
    );
    assert_eq!(
        other, issue,
        "two photos of different sizes, packs of one size"
    );
    let pack = issue[0];
    assert!(
        pack.abs_diff(183_412) > 500,
        "a pack of {pack} bytes is within a few hundred bytes of the photo"
    );

    let all = sizes(&target);
    let odd: Vec<_> = all.iter().filter(|(_, s)| !is_padme_length(*s)).collect();
    assert!(
        odd.is_empty(),
        "objects of a size that is not a Padmé length: {odd:?}"
    );
    assert!(
        all.len() >= 10,
        "config, packs, indexes, snapshots: {all:?}"
    );

    // And the padded repository restores (the photos are outside the message scheme the
    // harness's store check knows, so they are compared as they are).
    let phone = new_device(&target, &recovery_key);
    let to = dir.path().join("restored");
    phone.restore("latest", &to);
    assert!(to.join("msgstore.db").is_file(), "the database is restored");
    for rel in ["Media/Images/IMG-issue14.jpg", "Media/Images/IMG-other.jpg"] {
        let back = std::fs::read(to.join(rel)).expect("the photo is restored");
        let stored = std::fs::read(store.dir().join(rel)).expect("the photo");
        assert!(back == stored, "{rel} differs after the restore");
    }
}
