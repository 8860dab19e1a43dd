//! What the daemon tells about itself: `GET /metrics` in Prometheus' text format and
//! `sealbackctl stats`, both per target.

use sealback_daemon::control::api::RepositoryStats;

use sealback_tests::raw_http;
use sealback_tests::{Device, MessageStore, Setup, Target};

use crate::fixtures::one_target_failing;

/// The value of the sample `name{labels}` in a metrics text.
#[track_caller]
fn sample(text: &str, name_and_labels: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name_and_labels)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no sample {name_and_labels} in:\n{text}"))
        .parse()
        .expect("a number")
}

#[test]
fn metrics_count_backups_bytes_and_failures_per_target() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, mut device) = one_target_failing(dir.path(), 30);
    let partial = device.ctl(&["--json", "backup", "--wait"]);
    assert_eq!(partial.code, Some(4), "{partial}");
    store.append(5);
    device.ctl(&["backup", "--wait"]);

    let response = raw_http::get(&device.socket(), "/metrics");
    assert_eq!(response.status, 200, "{}", response.body);
    let text = &response.body;
    assert_eq!(sample(text, "sealback_backups_total{target=\"disk\"}"), 2.0);
    assert_eq!(
        sample(text, "sealback_backup_failures_total{target=\"disk\"}"),
        0.0
    );
    assert_eq!(
        sample(text, "sealback_backups_total{target=\"flaky\"}"),
        0.0
    );
    assert_eq!(
        sample(text, "sealback_backup_failures_total{target=\"flaky\"}"),
        2.0
    );
    assert!(sample(text, "sealback_backup_written_bytes_total{target=\"disk\"}") > 0.0);
    assert!(sample(text, "sealback_backup_read_bytes_total{target=\"disk\"}") > 0.0);
    assert!(
        sample(
            text,
            "sealback_last_success_timestamp_seconds{target=\"disk\"}"
        ) > 1.6e9
    );
    assert_eq!(
        sample(
            text,
            "sealback_last_success_timestamp_seconds{target=\"flaky\"}"
        ),
        0.0
    );
    assert_eq!(sample(text, "sealback_snapshots{target=\"disk\"}"), 2.0);
    assert_eq!(
        sample(text, "sealback_key_mode{mode=\"recovery-key\"}"),
        1.0
    );
    assert_eq!(sample(text, "sealback_key_mode{mode=\"password\"}"), 0.0);
    assert!(
        text.contains("# TYPE sealback_backups_total counter"),
        "{text}"
    );

    // After a restart the counters start again, but the last success is the catalog's.
    device.stop();
    device.start();
    let text = raw_http::get(&device.socket(), "/metrics").body;
    assert_eq!(
        sample(&text, "sealback_backups_total{target=\"disk\"}"),
        0.0
    );
    assert!(
        sample(
            &text,
            "sealback_last_success_timestamp_seconds{target=\"disk\"}"
        ) > 1.6e9
    );
    device.stop();
}

#[test]
fn stats_show_size_deduplication_snapshots_and_objects_per_target() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = MessageStore::create(&dir.path().join("store"), 5);
    store.append(40);
    let device = Device::started(Setup::new(
        store.dir(),
        vec![Target::local("disk", &dir.path().join("disk"))],
    ));
    device.generate_key();
    device.backup();
    store.append(2);
    device.backup();

    let stats: RepositoryStats = device.ctl_json(&["stats"]);
    let disk = &stats.targets[0];
    assert_eq!(
        (disk.target.as_str(), disk.snapshots),
        ("disk", 2),
        "{stats:?}"
    );
    // Packs, indexes and snapshots: all but the repository's small config object.
    let target = dir.path().join("disk");
    let on_disk: u64 = ["data", "index", "snapshots"]
        .iter()
        .map(|kind| walk_bytes(&target.join(kind)))
        .sum();
    assert_eq!(
        disk.stored_bytes, on_disk,
        "the objects' bytes are the target's: {stats:?}"
    );
    assert!(
        disk.deduplication_ratio > 1.5,
        "two nearly equal snapshots share their chunks: {stats:?}"
    );
    let kinds: Vec<&str> = disk.objects.iter().map(|o| o.kind.as_str()).collect();
    for kind in ["data", "index", "snapshots"] {
        assert!(kinds.contains(&kind), "{stats:?}");
    }
    let snapshots = disk
        .objects
        .iter()
        .find(|o| o.kind == "snapshots")
        .expect("snapshots");
    assert_eq!(snapshots.count, 2);
    let text = device.ctl_ok(&["stats"]);
    assert!(
        text.stdout.contains("DEDUP") && text.stdout.contains("disk"),
        "{text}"
    );
}

/// Bytes of the files under `dir`.
fn walk_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .expect("list")
        .map(|e| {
            let e = e.expect("entry");
            let meta = e.metadata().expect("stat");
            if meta.is_dir() {
                walk_bytes(&e.path())
            } else {
                meta.len()
            }
        })
        .sum()
}
