//! The `webdav` provider against two real servers on loopback, `rclone serve webdav` and
//! Apache httpd with mod_dav: each passes the conformance kit, and a store backed up through
//! each restores on a new device from the recovery key alone. A wrong password and a server
//! that is down fail the backup with an error naming the target and the cause.

use std::path::Path;

use serde_json::json;

use sealback_conformance::{Report, Settings, run_with};
use sealback_plugin_api::ErrorKind;
use sealback_plugin_api::host::Plugin;
use sealback_tests::store::{check_restored, walk};
use sealback_tests::webdav_servers::{Kind, WebDavServer};
use sealback_tests::{Device, MessageStore, Setup, Target, binaries};

/// The name the tests give the WebDAV target.
const TARGET: &str = "dav";
const KINDS: [Kind; 2] = [Kind::Rclone, Kind::Apache];

fn target(options: serde_json::Value) -> Target {
    Target::new(TARGET, "webdav", options)
}

/// Files under the server's directory whose names say they are temporary objects the
/// provider should have moved or removed.
fn leftover_temporaries(data: &Path) -> Vec<String> {
    walk(data)
        .expect("walk the served directory")
        .into_iter()
        .filter(|file| {
            let base = file.rsplit('/').next().unwrap_or(file);
            base.starts_with('.') && base.contains(".tmp-")
        })
        .collect()
}

fn show(report: &Report) -> String {
    let lines: Vec<String> = report.cases.iter().map(ToString::to_string).collect();
    format!("{}\n{report}", lines.join("\n"))
}

fn passes_the_conformance_kit(kind: Kind) {
    let server = WebDavServer::start(kind);
    let plugin = binaries::built("libsealback_webdav.so");
    // A wrong password makes every put fail, which is what the failed-put cases need.
    let settings = Settings::new(server.options().to_string())
        .failing_options(server.options_with_wrong_password().to_string());
    let report = run_with(&plugin, &settings, |case| {
        eprintln!("{}: {case}", kind.name())
    })
    .unwrap_or_else(|err| panic!("the kit cannot load {}: {err}", plugin.display()));
    assert_eq!(report.plugin.name, "webdav");
    assert!(
        report.is_success(),
        "{} fails the kit:\n{}{}",
        kind.name(),
        show(&report),
        server.log_tail()
    );
    let skipped = report.skipped_names();
    assert!(
        skipped.is_empty(),
        "skipped: {skipped:?}\n{}",
        show(&report)
    );
    // The kit removed its objects; no temporary object of a put was left behind either.
    let files = walk(&server.data_dir()).expect("walk the served directory");
    assert!(files.is_empty(), "left on the server: {files:?}");
}

#[test]
fn rclone_passes_the_conformance_kit() {
    passes_the_conformance_kit(Kind::Rclone);
}

#[test]
fn apache_passes_the_conformance_kit() {
    passes_the_conformance_kit(Kind::Apache);
}

/// Two backups (the second incremental) through the server, then a restore of each on a new
/// device that has nothing but the recovery key.
fn backs_up_and_restores_through(kind: Kind) {
    let server = WebDavServer::start(kind);
    let dir = tempfile::tempdir().expect("tempdir");
    let store = MessageStore::create(&dir.path().join("store"), 7);
    store.append(120);
    let mut device = Device::started(Setup::new(store.dir(), vec![target(server.options())]));
    let recovery_key = device.generate_key();
    let first = device.backup();
    store.append(45);
    let second = device.backup();
    device.stop();
    assert!(
        second.bytes_written < first.bytes_written,
        "the second backup wrote {} bytes, the first {}: it should only add the new messages",
        second.bytes_written,
        first.bytes_written
    );
    let stored = walk(&server.data_dir()).expect("walk the served directory");
    assert!(
        stored
            .iter()
            .all(|file| file.starts_with("sealback backups/")),
        "objects outside the base collection: {stored:?}"
    );
    assert!(stored.len() > 3, "the server holds only {stored:?}");
    assert_eq!(
        leftover_temporaries(&server.data_dir()),
        Vec::<String>::new()
    );

    let fresh = Device::started(Setup::restoring_from(vec![target(server.options())]));
    fresh.import_key(&recovery_key);
    for (snapshot, messages) in [(&first.snapshot, 120), (&second.snapshot, 165)] {
        let to = fresh.root().join(format!("restored-{}", &snapshot[..8]));
        fresh.restore(snapshot, &to);
        let restored = check_restored(&to).unwrap_or_else(|e| {
            panic!(
                "snapshot {snapshot} restored from {} wrong: {e}{}",
                kind.name(),
                fresh.log_tail()
            )
        });
        assert_eq!(restored.messages, messages, "snapshot {snapshot}");
        assert_eq!(restored.complete_media, (messages / 7) as usize);
    }
    // The restored store is the original, file for file: the images byte for byte (checked
    // above against what the app wrote), and the same set of files.
    let latest = fresh
        .root()
        .join(format!("restored-{}", &second.snapshot[..8]));
    let restored_files = walk(&latest).expect("walk the restored store");
    let original_files: Vec<String> = walk(store.dir())
        .expect("walk the store")
        .into_iter()
        .filter(|file| !file.ends_with("-wal") && !file.ends_with("-shm"))
        .collect();
    assert_eq!(restored_files, original_files);
    for file in original_files.iter().filter(|f| f.starts_with("Media/")) {
        let original = std::fs::read(store.dir().join(file)).expect("read the original");
        let restored = std::fs::read(latest.join(file)).expect("read the restored file");
        assert!(original == restored, "{file} differs after the restore");
    }
}

#[test]
fn a_store_backed_up_through_rclone_restores_on_a_new_device() {
    backs_up_and_restores_through(Kind::Rclone);
}

#[test]
fn a_store_backed_up_through_apache_restores_on_a_new_device() {
    backs_up_and_restores_through(Kind::Apache);
}

/// What the kit does not ask: names below an object, a collection's name, and a base
/// collection that does not exist yet (the provider creates it).
#[test]
fn names_below_objects_and_collections_are_no_objects() {
    for kind in KINDS {
        let server = WebDavServer::start(kind);
        let plugin = Plugin::load(&binaries::built("libsealback_webdav.so"))
            .unwrap_or_else(|err| panic!("{err}"));
        let dav = plugin
            .open(&server.options().to_string())
            .unwrap_or_else(|err| panic!("{err}"));
        let name = kind.name();
        dav.put("a/b", b"object")
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(
            server.data_dir().join("sealback backups/a/b").is_file(),
            "{name}"
        );
        for prefix in ["a/b/", "a/b/c", "a/b/c/"] {
            assert_eq!(
                dav.list(prefix).expect("list"),
                vec![],
                "{name}: list {prefix:?}"
            );
        }
        for missing in ["a", "a/b/c", "a/b/c/d"] {
            let err = dav.get(missing).expect_err(missing);
            assert_eq!(
                err.kind(),
                ErrorKind::NotFound,
                "{name}: get {missing:?}: {err}"
            );
            dav.remove(missing)
                .unwrap_or_else(|e| panic!("{name}: remove {missing:?}: {e}"));
        }
        assert_eq!(dav.get("a/b").expect("get"), &b"object"[..], "{name}");
        let err = dav.put("a/b/c", b"x").expect_err("put below an object");
        assert_eq!(err.kind(), ErrorKind::Permanent, "{name}: {err}");
        assert!(err.message().contains("/a/b/"), "{name}: {err}");
    }
}

/// https with a private CA: trusted through `ca_file`, refused without it as a problem a
/// person fixes (not one to retry), saying which option fixes it.
#[test]
fn https_with_a_private_ca_works_through_ca_file_and_fails_clearly_without() {
    let server = WebDavServer::apache_https();
    let plugin = Plugin::load(&binaries::built("libsealback_webdav.so"))
        .unwrap_or_else(|err| panic!("{err}"));
    let options = server.options();
    assert!(
        options["url"]
            .as_str()
            .is_some_and(|u| u.starts_with("https://"))
    );
    let dav = plugin
        .open(&options.to_string())
        .unwrap_or_else(|err| panic!("{err}"));
    dav.put("snapshots/1", b"over tls")
        .unwrap_or_else(|e| panic!("{e}{}", server.log_tail()));
    assert_eq!(dav.get("snapshots/1").expect("get"), &b"over tls"[..]);
    assert_eq!(dav.list("snapshots/").expect("list").len(), 1);
    dav.remove("snapshots/1").expect("remove");

    let mut untrusting = options.clone();
    untrusting
        .as_object_mut()
        .expect("an object")
        .remove("ca_file");
    let dav = plugin
        .open(&untrusting.to_string())
        .unwrap_or_else(|err| panic!("{err}"));
    let err = dav
        .get("snapshots/1")
        .expect_err("an untrusted certificate");
    assert_eq!(err.kind(), ErrorKind::Permanent, "{err}");
    for part in [
        "TLS connection to 127.0.0.1 failed",
        "certificate",
        "`ca_file`",
    ] {
        assert!(err.message().contains(part), "{err}");
    }
}

#[test]
fn a_wrong_password_fails_the_backup_as_refused_credentials_naming_the_target() {
    for kind in KINDS {
        let server = WebDavServer::start(kind);
        let dir = tempfile::tempdir().expect("tempdir");
        let store = MessageStore::create(&dir.path().join("store"), 0);
        store.append(10);
        let mut device = Device::started(Setup::new(
            store.dir(),
            vec![target(server.options_with_wrong_password())],
        ));
        device.generate_key();
        let failed = device.ctl_fails(&["backup", "--wait"], 1);
        for part in [
            &format!("target {TARGET:?}"),
            "401 Unauthorized",
            "the server refused user \"sealback\"",
            "wrong-password",
        ] {
            assert!(
                failed.stderr.contains(part),
                "{}: the error does not say {part:?}: {failed}",
                kind.name()
            );
        }
        // Credentials are for a person to fix: the daemon does not retry them.
        let status = device.status();
        assert_eq!(status.targets[0].requests.retries, 0, "{status:?}");
        assert!(device.is_running(), "{}", device.log_tail());
        device.stop();
    }
}

#[test]
fn a_server_that_is_down_fails_the_backup_as_transient_naming_the_target() {
    for kind in KINDS {
        let mut server = WebDavServer::start(kind);
        let options = server.options();
        let url = server.url();
        server.stop();
        let dir = tempfile::tempdir().expect("tempdir");
        let store = MessageStore::create(&dir.path().join("store"), 0);
        store.append(10);
        let mut device = Device::started(Setup::new(
            store.dir(),
            vec![target(options).with("retries", json!(1))],
        ));
        device.generate_key();
        let failed = device.ctl_fails(&["backup", "--wait"], 1);
        // One retry policy, the daemon's: its count, once (not also the plugin's own).
        for part in [
            &format!("target {TARGET:?}"),
            url.as_str(),
            "Connection refused",
            "(gave up after 2 attempts)",
        ] {
            assert!(
                failed.stderr.contains(part),
                "{}: the error does not say {part:?}: {failed}",
                kind.name()
            );
        }
        assert!(
            !failed.stderr.contains("tried"),
            "{}: a second retry count: {failed}",
            kind.name()
        );
        // Transient: the daemon retried it.
        let status = device.status();
        assert!(status.targets[0].requests.retries >= 1, "{status:?}");
        assert!(device.is_running(), "{}", device.log_tail());
        device.stop();
    }
}
