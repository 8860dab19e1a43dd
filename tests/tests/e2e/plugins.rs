//! Storage plugins that cannot be used, or that fail: the daemon says which and why, keeps
//! running, and what is already on the target stays restorable.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::json;

use sealback_tests::binaries;
use sealback_tests::store::check_restored;
use sealback_tests::{Device, MessageStore, Setup, Target};

use crate::fixtures::{BackedUp, TARGET};

/// Compiles `tests/fixtures/plugins/<name>.c` into `<dir>/libsealback_<name>.so`.
fn compile_plugin(name: &str, dir: &Path) -> PathBuf {
    let root = binaries::workspace_root();
    std::fs::create_dir_all(dir).expect("create the plugin directory");
    let out = dir.join(format!("libsealback_{name}.so"));
    let compiled = Command::new("cc")
        .args(["-shared", "-fPIC", "-Wall", "-Werror", "-I"])
        .arg(root.join("plugins/api/include"))
        .arg("-o")
        .arg(&out)
        .arg(root.join(format!("tests/fixtures/plugins/{name}.c")))
        .output()
        .unwrap_or_else(|e| {
            panic!("the plugin tests build C plugins with `cc`, which cannot run ({e}): install a C compiler")
        });
    assert!(
        compiled.status.success(),
        "cc failed on {name}.c: {}",
        String::from_utf8_lossy(&compiled.stderr)
    );
    out
}

/// The local plugin, copied into `dir` with mode 0666: anyone could replace its code.
fn writable_by_all(name: &str, dir: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::create_dir_all(dir).expect("create the plugin directory");
    let out = dir.join(format!("libsealback_{name}.so"));
    std::fs::copy(binaries::plugins_dir().join("libsealback_local.so"), &out).expect("copy");
    std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o666)).expect("chmod");
    out
}

/// A target whose plugin (put in place by `place`) cannot be loaded: `status` shows why, a
/// backup fails saying so, and the daemon goes on answering.
fn unusable_plugin_is_reported(plugin: &str, place: fn(&str, &Path) -> PathBuf, expected: &[&str]) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = MessageStore::create(&dir.path().join("store"), 0);
    store.append(10);
    let plugins = dir.path().join("plugins");
    let library = place(plugin, &plugins);
    let library = library.to_str().expect("UTF-8");
    let mut device = Device::started(
        Setup::new(
            store.dir(),
            vec![Target::new(
                "odd",
                plugin,
                json!({ "path": dir.path().join("target") }),
            )],
        )
        .plugins_dir(&plugins),
    );

    let status = device.status();
    let error = status.targets[0]
        .last_error
        .clone()
        .unwrap_or_else(|| panic!("status shows no error for the target: {status:?}"));
    for part in [library].iter().chain(expected) {
        assert!(
            error.contains(part),
            "the target's error does not say {part:?}: {error}"
        );
    }

    device.generate_key();
    let backup = device.ctl_fails(&["backup", "--wait"], 1);
    for part in [library].iter().chain(expected) {
        assert!(
            backup.stderr.contains(part),
            "the backup's error does not say {part:?}: {backup}"
        );
    }
    assert!(
        device.is_running(),
        "the daemon stopped{}",
        device.log_tail()
    );
    let after = device.status();
    assert!(after.targets[0].last_error.is_some(), "{after:?}");
    device.stop();
}

#[test]
fn a_plugin_built_for_another_abi_is_refused_naming_the_file_and_both_versions() {
    unusable_plugin_is_reported("badabi", compile_plugin, &["v99", "v2"]);
}

#[test]
fn a_plugin_without_its_provider_function_is_refused_naming_the_file_and_the_symbol() {
    unusable_plugin_is_reported("noprovider", compile_plugin, &["sealback_plugin_provider"]);
}

#[test]
fn a_plugin_others_can_write_is_never_loaded_into_the_daemon_that_holds_the_key() {
    unusable_plugin_is_reported(
        "open",
        writable_by_all,
        &["refusing to load plugin", "mode 666", "chmod go-w"],
    );
}

#[test]
fn a_target_failing_its_puts_fails_the_backup_by_name_and_keeps_the_earlier_snapshot() {
    let mut fixture = BackedUp::new(60, 10);
    let good = fixture.snapshots[0].clone();
    fixture.device.stop();
    let faults = [
        json!({ "fail": "put", "kind": "permanent", "after": 1 }),
        json!({ "fail": "put", "panic": true, "after": 1 }),
    ];
    for fault in faults {
        // New content, so that the backup has packs, an index and a snapshot to put.
        fixture.store.append(20);
        fixture.device.reconfigure(Setup::new(
            fixture.store.dir(),
            vec![Target::faulty(TARGET, &fixture.target, fault.clone())],
        ));
        fixture.device.start();
        let failed = fixture.device.ctl_fails(&["backup", "--wait"], 1);
        for part in [&format!("target {TARGET:?}"), "put", "sealback-faulty"] {
            assert!(
                failed.stderr.contains(part),
                "with fault {fault}, the error does not say {part:?}: {failed}"
            );
        }
        assert!(
            fixture.device.is_running(),
            "with fault {fault}, the daemon stopped{}",
            fixture.device.log_tail()
        );
        let status = fixture.device.status();
        assert!(
            status.targets[0]
                .last_error
                .as_deref()
                .is_some_and(|e| e.contains("put")),
            "status does not show the failure: {status:?}"
        );
        // Whatever the failed backup stored is ignored: the target is as sound as before.
        fixture.device.ctl_ok(&["verify"]);
        let to = fixture.path(&format!("restored-{}", fault["kind"]));
        fixture.device.restore(&good, &to);
        let restored = check_restored(&to).unwrap_or_else(|e| panic!("after {fault}: {e}"));
        assert_eq!(restored.messages, 60);
        fixture.device.stop();
    }

    // Once the target works again, the next backup has everything.
    fixture.device.reconfigure(Setup::new(
        fixture.store.dir(),
        vec![Target::local(TARGET, &fixture.target)],
    ));
    fixture.device.start();
    fixture.device.backup();
    let to = fixture.path("restored-latest");
    fixture.device.restore("latest", &to);
    let restored = check_restored(&to).unwrap_or_else(|e| panic!("latest: {e}"));
    assert_eq!(restored.messages, 100);
}
