//! Loads the built `libsealback_faulty.so` through the host loader and checks that injected
//! failures, and injected panics, arrive at the host as the statuses the options asked for.

use std::path::PathBuf;

use sealback_plugin_api::ErrorKind;
use sealback_plugin_api::host::{Instance, Plugin};

/// The cdylib cargo built for this test run: beside this test binary, or in `target/<profile>`.
fn plugin() -> Plugin {
    let exe = std::env::current_exe().expect("test binary path");
    let deps = exe.parent().expect("target/<profile>/deps");
    let file = format!(
        "{}sealback_faulty{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    );
    let candidates: Vec<PathBuf> = [Some(deps), deps.parent()]
        .into_iter()
        .flatten()
        .map(|dir| dir.join(&file))
        .collect();
    let path = candidates.iter().find(|path| path.is_file());
    let path = path.unwrap_or_else(|| panic!("the plugin is in none of {candidates:?}"));
    Plugin::load(path).unwrap_or_else(|err| panic!("{err}"))
}

fn open(plugin: &Plugin, fault: serde_json::Value) -> (tempfile::TempDir, Instance) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut options = serde_json::json!({ "path": dir.path() });
    if let (Some(options), Some(fault)) = (options.as_object_mut(), fault.as_object()) {
        options.extend(fault.clone());
    }
    let instance = plugin.open(&options.to_string()).expect("open");
    (dir, instance)
}

#[test]
fn it_is_a_plugin_named_faulty() {
    let plugin = plugin();
    assert_eq!(plugin.name(), "faulty");
    let (_dir, instance) = open(&plugin, serde_json::json!({}));
    instance.put("a/b", b"x").expect("put");
    assert_eq!(instance.get("a/b").expect("get"), &b"x"[..]);
}

#[test]
fn injected_failures_reach_the_host_with_their_kind() {
    let plugin = plugin();
    let (_dir, instance) = open(
        &plugin,
        serde_json::json!({ "fail": "put", "kind": "quota", "after": 1 }),
    );
    instance.put("a", b"1").expect("first put");
    let err = instance.put("b", b"2").expect_err("injected");
    assert_eq!(err.kind(), ErrorKind::Quota);
    assert!(
        err.message()
            .starts_with("plugin \"faulty\" put \"b\": injected storage full"),
        "{err}"
    );
}

#[test]
fn an_injected_panic_is_caught_at_the_boundary() {
    let plugin = plugin();
    let (_dir, instance) = open(&plugin, serde_json::json!({ "fail": "get", "panic": true }));
    instance.put("a", b"1").expect("put");
    let err = instance.get("a").expect_err("panics");
    assert_eq!(err.kind(), ErrorKind::Permanent);
    assert!(
        err.message()
            .starts_with("plugin \"faulty\" get \"a\": provider panicked in get: injected"),
        "{err}"
    );
    // The instance survives its panic.
    instance.put("b", b"2").expect("put after the panic");
}

#[test]
fn unknown_options_are_refused() {
    let err = plugin()
        .open(r#"{"path": "/tmp/x", "fail": "put", "kind": "flaky"}"#)
        .expect_err("bad kind");
    assert_eq!(err.kind(), ErrorKind::InvalidConfig);
}

#[test]
fn a_retry_after_crosses_the_boundary() {
    let plugin = plugin();
    let (_dir, instance) = open(
        &plugin,
        serde_json::json!({ "fail": "list", "retry_after_ms": 2500 }),
    );
    let err = instance.list("").expect_err("injected");
    assert_eq!(err.kind(), ErrorKind::Transient);
    assert_eq!(
        err.retry_after(),
        Some(std::time::Duration::from_millis(2500))
    );
}
