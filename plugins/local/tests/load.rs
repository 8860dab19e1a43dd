//! Loads the built `libsealback_local.so` through the host loader, as sealbackd does, and runs
//! a round trip through the C ABI.
//!
//! Cargo builds the package's library (here also its cdylib) before its integration tests. The
//! cdylib lands beside this test binary (`target/debug/deps/`) and, when the package itself is
//! built, in `target/debug/`; the first is this build's, so it is preferred.

use std::path::PathBuf;

use sealback_plugin_api::host::Plugin;
use sealback_plugin_api::{ErrorKind, ObjectInfo};

fn plugin_path() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let deps = exe.parent().expect("target/<profile>/deps");
    let file = format!(
        "{}sealback_local{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    );
    let candidates = [Some(deps), deps.parent()]
        .into_iter()
        .flatten()
        .map(|dir| dir.join(&file));
    let candidates: Vec<PathBuf> = candidates.collect();
    let found = candidates.iter().find(|path| path.is_file());
    found
        .cloned()
        .unwrap_or_else(|| panic!("the plugin is in none of {candidates:?}"))
}

#[test]
fn the_built_plugin_loads_and_round_trips_objects() {
    let path = plugin_path();
    let plugin = Plugin::load(&path).unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(plugin.name(), "local");
    assert_eq!(plugin.version(), env!("CARGO_PKG_VERSION"));
    assert_eq!(plugin.path(), path);

    let dir = tempfile::tempdir().expect("tempdir");
    let options = serde_json::json!({ "path": dir.path() }).to_string();
    let instance = plugin.open(&options).expect("open");
    drop(plugin);

    instance.put("snapshots/1", b"first").expect("put");
    instance.put("snapshots/2", b"").expect("put empty");
    instance.put("config", b"c").expect("put");
    assert_eq!(instance.get("snapshots/1").expect("get"), &b"first"[..]);
    assert_eq!(instance.get("snapshots/2").expect("get"), &b""[..]);
    assert_eq!(
        instance.list("snapshots/").expect("list"),
        [
            ObjectInfo {
                name: "snapshots/1".into(),
                size: 5
            },
            ObjectInfo {
                name: "snapshots/2".into(),
                size: 0
            },
        ]
    );
    instance.remove("snapshots/1").expect("remove");
    instance.remove("snapshots/1").expect("remove missing");
    let err = instance.get("snapshots/1").expect_err("removed");
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert!(
        err.message()
            .starts_with("plugin \"local\" get \"snapshots/1\": "),
        "{err}"
    );
}

#[test]
fn the_built_plugin_refuses_unknown_options() {
    let plugin = Plugin::load(&plugin_path()).unwrap_or_else(|err| panic!("{err}"));
    let err = plugin
        .open(r#"{"path": "/tmp/x", "colour": "red"}"#)
        .expect_err("unknown key");
    assert_eq!(err.kind(), ErrorKind::InvalidConfig);
    assert!(err.message().contains("unknown field `colour`"), "{err}");
}

#[test]
fn the_bytes_of_a_get_outlive_the_instance_and_its_library() {
    let path = plugin_path();
    let dir = tempfile::tempdir().expect("tempdir");
    let options = serde_json::json!({ "path": dir.path() }).to_string();
    let plugin = Plugin::load(&path).unwrap_or_else(|err| panic!("{err}"));
    let instance = plugin.open(&options).expect("open");
    instance.put("a/b", b"kept past the close").expect("put");
    // The bytes stay in the plugin's buffer, uncopied; they keep the library loaded, so
    // that dropping them after the instance and the plugin, on another thread, still
    // reaches the plugin's free_buf.
    let kept = instance.get("a/b").expect("get");
    let shared = kept.slice(5..);
    drop(kept);
    drop(instance);
    drop(plugin);
    std::thread::spawn(move || {
        assert_eq!(shared, &b"past the close"[..]);
        drop(shared);
    })
    .join()
    .expect("read and freed on another thread");
}
