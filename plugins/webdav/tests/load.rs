//! Loads the built `libsealback_webdav.so` through the host loader, as sealbackd does. What it
//! does against real servers (Apache httpd with mod_dav, `rclone serve webdav`) is tested in
//! tests/tests/e2e/webdav.rs, which starts them.

use std::io::Write as _;
use std::net::TcpListener;
use std::path::PathBuf;

use sealback_plugin_api::ErrorKind;
use sealback_plugin_api::host::Plugin;

/// The cdylib cargo built beside this test binary (or, when the package itself was built, in
/// `target/<profile>/`).
fn plugin_path() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let deps = exe.parent().expect("target/<profile>/deps");
    let file = format!(
        "{}sealback_webdav{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    );
    let candidates: Vec<PathBuf> = [Some(deps), deps.parent()]
        .into_iter()
        .flatten()
        .map(|dir| dir.join(&file))
        .collect();
    let found = candidates.iter().find(|path| path.is_file());
    found
        .cloned()
        .unwrap_or_else(|| panic!("the plugin is in none of {candidates:?}"))
}

fn plugin() -> Plugin {
    Plugin::load(&plugin_path()).unwrap_or_else(|err| panic!("{err}"))
}

#[test]
fn the_built_plugin_loads_under_its_name() {
    let plugin = plugin();
    assert_eq!(plugin.name(), "webdav");
    assert_eq!(plugin.version(), env!("CARGO_PKG_VERSION"));
}

#[test]
fn the_built_plugin_refuses_bad_options_naming_them() {
    let plugin = plugin();
    for (options, says) in [
        (
            r#"{"url": "https://x/", "colour": "red"}"#,
            "unknown field `colour`",
        ),
        (
            r#"{"url": "https://x/", "password": "hunter2"}"#,
            "`password` is not an option",
        ),
        (r#"{"username": "a"}"#, "missing field `url`"),
    ] {
        let Err(err) = plugin.open(options) else {
            panic!("{options} opened");
        };
        assert_eq!(err.kind(), ErrorKind::InvalidConfig, "{err}");
        assert!(err.message().contains(says), "{options}: {err}");
        assert!(!err.message().contains("hunter2"), "{err}");
    }
}

#[test]
fn a_server_that_is_down_is_a_transient_error_not_a_configuration_error() {
    // A port nobody listens on: bound, then closed.
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port();
    let mut password = tempfile::NamedTempFile::new().expect("temp file");
    password.write_all(b"pw\n").expect("write");
    let options = serde_json::json!({
        "url": format!("http://127.0.0.1:{port}/dav/"),
        "username": "alice",
        "password_file": password.path(),
    });
    let instance = plugin()
        .open(&options.to_string())
        .expect("open sends nothing, so it succeeds");
    for err in [
        instance.get("config").expect_err("get"),
        instance.put("config", b"x").expect_err("put"),
        instance.list("").expect_err("list"),
        instance.remove("config").expect_err("remove"),
    ] {
        assert_eq!(err.kind(), ErrorKind::Transient, "{err}");
        assert!(
            err.message().contains(&format!("127.0.0.1:{port}/dav/")),
            "{err}"
        );
        assert!(err.message().contains("tried 3 times"), "{err}");
    }
}
