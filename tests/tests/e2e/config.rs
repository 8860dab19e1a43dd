//! A configuration sealbackd cannot use stops it at start with exit status 2 and a message
//! naming the key; the documented example configuration is one it can use.

use std::path::Path;

use sealback_tests::binaries;
use sealback_tests::device::sealbackd_exit;
use sealback_tests::{Device, MessageStore, Setup, Target};

use crate::fixtures::TARGET;

/// A valid configuration for a store, state and socket under `dir`.
fn valid(dir: &Path) -> String {
    let store = MessageStore::create(&dir.join("store"), 0);
    format!(
        r#"[store]
path = "{store}"

[state]
dir = "{dir}/state"

[control]
socket = "{dir}/control.sock"

[plugins]
dir = "{plugins}"

[schedule]
mode = "manual"
debounce = "2s"

[[targets]]
name = "disk"
plugin = "local"
[targets.options]
path = "{dir}/target"
"#,
        store = store.dir().display(),
        dir = dir.display(),
        plugins = binaries::plugins_dir().display(),
    )
}

/// Starts sealbackd on `text`, which it must refuse with status 2 naming every one of
/// `named`.
#[track_caller]
fn refused(dir: &Path, case: &str, text: &str, named: &[&str]) {
    let path = dir.join(format!("{case}.toml"));
    std::fs::write(&path, text).expect("write the configuration");
    let (code, stderr) = sealbackd_exit(&path);
    assert_eq!(
        code,
        Some(2),
        "{case}: sealbackd must refuse the configuration with status 2; its stderr:\n{stderr}"
    );
    for part in named {
        assert!(
            stderr.contains(part),
            "{case}: the error does not name {part:?}:\n{stderr}"
        );
    }
}

#[test]
fn a_bad_configuration_stops_sealbackd_with_status_2_naming_the_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let dir = dir.path();
    let good = valid(dir);
    let edit = |from: &str, to: &str| {
        assert!(
            good.contains(from),
            "the valid configuration has no {from:?}"
        );
        good.replacen(from, to, 1)
    };
    refused(
        dir,
        "unknown-key",
        &edit("debounce = \"2s\"", "debounce = \"2s\"\ndebunce = \"1s\""),
        &["debunce"],
    );
    let store_path = good.lines().nth(1).expect("the store path line");
    refused(
        dir,
        "missing-store-path",
        &edit(store_path, ""),
        &["store.path"],
    );
    let targets = &good[good.find("[[targets]]").expect("a target")..];
    refused(dir, "no-targets", &edit(targets, ""), &["targets"]);
    refused(
        dir,
        "bad-mode",
        &edit("mode = \"manual\"", "mode = \"sometimes\""),
        &["schedule.mode", "sometimes"],
    );
    refused(
        dir,
        "bad-debounce",
        &edit("debounce = \"2s\"", "debounce = \"soon\""),
        &["schedule.debounce", "soon"],
    );
    refused(
        dir,
        "relative-state-dir",
        &edit(
            &format!("dir = \"{}/state\"", dir.display()),
            "dir = \"state\"",
        ),
        &["state.dir"],
    );
    refused(
        dir,
        "bad-target-name",
        &edit("name = \"disk\"", "name = \"my disk\""),
        &["targets[0].name"],
    );
    refused(
        dir,
        "unknown-plugin",
        &edit("plugin = \"local\"", "plugin = \"nosuch\""),
        &["targets[0].plugin", "nosuch"],
    );
    refused(
        dir,
        "bad-plugin-option",
        &edit(
            &format!("path = \"{}/target\"", dir.display()),
            &format!("path = \"{}/target\"\nbogus = 1", dir.display()),
        ),
        &["targets[0].options", "bogus"],
    );
    let (code, stderr) = sealbackd_exit(&dir.join("no-such-file.toml"));
    assert_eq!(code, Some(2), "a missing configuration file: {stderr}");
    assert!(stderr.contains("no-such-file.toml"), "{stderr}");
}

/// The example every key is documented in, with its paths moved into `dir`.
fn documented_example(dir: &Path, device: &Device) -> String {
    let example = binaries::workspace_root().join("config/sealback.toml");
    let mut text = std::fs::read_to_string(&example)
        .unwrap_or_else(|e| panic!("read {}: {e}", example.display()));
    let store = MessageStore::create(&dir.join("store"), 0);
    let plugins = binaries::plugins_dir();
    let moves = [
        ("/var/lib/app/store", store.dir().to_path_buf()),
        ("/var/lib/sealback", device.state_dir()),
        ("/run/sealback/control.sock", device.socket()),
        ("/usr/lib/sealback/plugins", plugins),
        ("/mnt/backup/sealback", dir.join("target")),
    ];
    for (from, to) in moves {
        assert!(
            text.contains(&format!("\"{from}\"")),
            "{} no longer sets a key to {from:?}: update this test",
            example.display()
        );
        text = text.replace(
            &format!("\"{from}\""),
            &format!("{:?}", to.display().to_string()),
        );
    }
    text
}

#[test]
fn the_documented_example_configuration_starts_and_backs_up() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut device = Device::new(Setup::restoring_from(vec![Target::local(
        TARGET,
        &dir.path().join("target"),
    )]));
    let text = documented_example(dir.path(), &device);
    device.start_with_config(&text);
    device.generate_key();
    device.backup();
    device.stop();
}

#[test]
fn an_environment_override_that_is_wrong_is_named_not_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("sealback.toml");
    std::fs::write(&path, valid(dir.path())).expect("write the configuration");
    let (code, stderr) = sealback_tests::device::sealbackd_exit_with_env(
        &path,
        &[("SEALBACK_SCHEDULE__DEBOUNCE", "soon")],
    );
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("environment variable SEALBACK_SCHEDULE__DEBOUNCE")
            && stderr.contains("schedule.debounce")
            && !stderr.contains("sealback.toml"),
        "the error must name the variable and the key, not the file:\n{stderr}"
    );
    // A list cannot be reached from the environment: the error says so, naming the variable.
    let (code, stderr) = sealback_tests::device::sealbackd_exit_with_env(
        &path,
        &[("SEALBACK_TARGETS__0__CONCURRENCY", "0")],
    );
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("environment variable SEALBACK_TARGETS__0__CONCURRENCY")
            && stderr.contains("cannot be overridden from the environment"),
        "{stderr}"
    );
}

#[test]
fn a_second_daemon_on_the_same_state_dir_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = MessageStore::create(&dir.path().join("store"), 0);
    let mut device = Device::started(Setup::new(
        store.dir(),
        vec![Target::local(TARGET, &dir.path().join("target"))],
    ));
    // The same state, another socket: only the state is shared.
    let text = std::fs::read_to_string(device.config_path()).expect("the running configuration");
    let socket = device.socket().display().to_string();
    let second = dir.path().join("second.toml");
    std::fs::write(&second, text.replace(&socket, &format!("{socket}.second"))).expect("write");
    let (code, stderr) = sealbackd_exit(&second);
    assert_eq!(
        code,
        Some(1),
        "the second daemon must stop at once: {stderr}"
    );
    assert!(
        stderr.contains("another sealbackd is running on state.dir"),
        "{stderr}"
    );
    device.status();
    device.stop();
}
