//! Issue 20, "choose what is backed up": `[backup] include`/`exclude` and a target's own
//! rules, deduplication across a change of the rules, and a target's `bandwidth`.

use std::path::Path;

use sealback_daemon::control::api::{BackupReport, Listing};
use sealback_tests::store::{check_restored, media_bytes, walk};
use sealback_tests::{Device, MessageStore, Setup, Target};
use serde_json::json;

use crate::fixtures::TARGET;

const VIDEOS: [&str; 3] = [
    "Media/Video/VID-1.mp4",
    "Media/Video/2026/VID-2.mp4",
    "Media/Video/2026/VID-3.mp4",
];

/// A store with messages, images every 5th, and three videos (each 50-400 KB, random).
fn store_with_videos(dir: &Path) -> (MessageStore, u64) {
    let store = MessageStore::create(&dir.join("store"), 5);
    store.append(60);
    let mut video_bytes = 0;
    for video in VIDEOS {
        let bytes = media_bytes(video);
        video_bytes += bytes.len() as u64;
        store.put_file(video, &bytes);
    }
    (store, video_bytes)
}

/// Checks a restore of the whole store: the videos exactly, then (without them) the
/// messages and their images.
fn check_with_videos(to: &Path) {
    for video in VIDEOS {
        assert_eq!(
            std::fs::read(to.join(video)).expect(video),
            media_bytes(video),
            "{video}"
        );
        std::fs::remove_file(to.join(video)).expect("remove");
    }
    std::fs::remove_dir_all(to.join("Media/Video")).expect("remove");
    check_restored(to).expect("the messages and their images restore");
}

fn paths(listing: &Listing) -> Vec<&str> {
    listing.files.iter().map(|f| f.path.as_str()).collect()
}

fn excluding_videos(store: &Path, target: &Path) -> Setup {
    let target = Target::local(TARGET, target).with("exclude", json!(["Media/Video/**"]));
    Setup::new(store, vec![target])
}

#[test]
fn excluded_videos_are_left_out_and_changing_the_rules_stores_nothing_twice() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, video_bytes) = store_with_videos(dir.path());
    let target = dir.path().join("target");
    let mut device = Device::started(excluding_videos(store.dir(), &target));
    device.generate_key();
    let without = device.backup();
    let listing: Listing = device.ctl_json(&["ls", "latest"]);
    assert!(
        !paths(&listing).iter().any(|p| p.starts_with("Media/Video")),
        "videos were backed up: {:?}",
        paths(&listing)
    );
    assert!(
        paths(&listing).contains(&"msgstore.db"),
        "the database is always backed up"
    );
    let to = dir.path().join("restored-without");
    device.restore("latest", &to);
    check_restored(&to).expect("the messages and their images restore");

    // The videos included: only they are new; the images are not stored again.
    let backup_with = |device: &mut Device, setup: Setup| -> BackupReport {
        device.stop();
        device.reconfigure(setup);
        device.start();
        device.backup()
    };
    let everything = Setup::new(store.dir(), vec![Target::local(TARGET, &target)]);
    let with = backup_with(&mut device, everything.clone());
    assert_eq!(with.files, without.files + VIDEOS.len() as u64, "{with:?}");
    assert!(
        with.bytes_written >= video_bytes && with.bytes_written < video_bytes + 64 * 1024,
        "{} bytes written for {video_bytes} bytes of new videos: what stayed was stored again",
        with.bytes_written
    );
    // Left out again, then back in: their chunks are still stored, nothing is sent twice.
    let again_without = backup_with(&mut device, excluding_videos(store.dir(), &target));
    assert_eq!(again_without.files, without.files);
    let back = backup_with(&mut device, everything);
    for report in [&again_without, &back] {
        assert!(
            report.bytes_written < 64 * 1024,
            "{} bytes written after a change of the rules alone",
            report.bytes_written
        );
    }
    let to = dir.path().join("restored-with");
    device.restore("latest", &to);
    check_with_videos(&to);
}

/// `[backup]` for every target, and a target's own `exclude` in place of it: the videos go
/// to the local disk, not to the "cloud".
#[test]
fn a_targets_own_rules_replace_the_backup_section_for_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, _) = store_with_videos(dir.path());
    store.put_file("cache/thumb.tmp", b"scratch");
    let (disk, cloud) = (dir.path().join("disk"), dir.path().join("cloud"));
    let setup = Setup::new(
        store.dir(),
        vec![
            Target::local(TARGET, &disk).with("exclude", json!(["**/*.tmp"])),
            Target::local("cloud", &cloud),
        ],
    )
    .backup("exclude = [\"Media/Video/**\", \"**/*.tmp\"]");
    let device = Device::started(setup);
    device.generate_key();
    device.backup();
    let on = |target: &str| -> Vec<String> {
        let listing: Listing = device.ctl_json(&["ls", "latest", "--target", target]);
        paths(&listing).into_iter().map(str::to_owned).collect()
    };
    let (on_disk, on_cloud) = (on(TARGET), on("cloud"));
    for video in VIDEOS {
        assert!(
            on_disk.iter().any(|p| p == video),
            "{video} not on disk: {on_disk:?}"
        );
        assert!(
            !on_cloud.iter().any(|p| p == video),
            "{video} on cloud: {on_cloud:?}"
        );
    }
    for listed in [&on_disk, &on_cloud] {
        assert!(!listed.iter().any(|p| p.ends_with(".tmp")), "{listed:?}");
        assert!(listed.iter().any(|p| p == "msgstore.db"), "{listed:?}");
    }
}

/// Through the host's limiter, on the real clock: only lower bounds (a loaded machine is
/// slower, never faster). At 1 MiB/s, with one second's worth free, a transfer of B bytes
/// takes at least (B - 1 MiB) / 1 MiB seconds; the bounds below keep 10% of slack.
#[test]
fn a_target_with_a_bandwidth_limit_backs_up_and_restores_at_that_rate() {
    const MIB: f64 = 1024.0 * 1024.0;
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, _) = store_with_videos(dir.path());
    let target = dir.path().join("target");
    let limited = |target: &Path| Target::local(TARGET, target).with("bandwidth", json!("1MiB/s"));
    let device = Device::started(Setup::new(store.dir(), vec![limited(&target)]));
    let recovery_key = device.generate_key();
    let report = device.backup();
    let least = |bytes: u64| ((bytes as f64 - MIB) / MIB * 0.9 * 1000.0).max(0.0) as u64;
    assert!(
        report.bytes_written as f64 > 2.0 * MIB,
        "the test needs more than the free second's worth: {report:?}"
    );
    assert!(
        report.duration_ms >= least(report.bytes_written),
        "{} bytes sent in {} ms: faster than 1 MiB/s",
        report.bytes_written,
        report.duration_ms
    );

    let fresh = Device::started(Setup::restoring_from(vec![limited(&target)]));
    fresh.import_key(&recovery_key);
    let to = fresh.root().join("restored");
    let started = std::time::Instant::now();
    let restored = fresh.restore("latest", &to);
    let took = started.elapsed().as_millis() as u64;
    check_with_videos(&to);
    let stored: u64 = walk(&target)
        .expect("walk the target")
        .iter()
        .filter(|p| p.starts_with("data/"))
        .map(|p| std::fs::metadata(target.join(p)).map_or(0, |m| m.len()))
        .sum();
    assert!(
        took >= least(stored),
        "{stored} bytes of packs received in {took} ms: faster than 1 MiB/s ({restored:?})"
    );
}
