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
        // Sent once: retrying is the host's (its retry layer counts the attempts).
        assert!(!err.message().contains("tried"), "{err}");
    }
}

/// A server that answers every request `503 Service Unavailable` with `Retry-After: 1`, and
/// counts the requests.
fn busy_server() -> (u16, std::sync::Arc<std::sync::atomic::AtomicU32>) {
    use std::io::{BufRead, BufReader, Read};
    use std::sync::atomic::{AtomicU32, Ordering};
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let requests = std::sync::Arc::new(AtomicU32::new(0));
    let counted = requests.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let counted = counted.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().expect("clone"));
                let mut writer = stream;
                loop {
                    let mut length = 0usize;
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    loop {
                        let mut header = String::new();
                        if reader.read_line(&mut header).unwrap_or(0) == 0 {
                            return;
                        }
                        if header == "\r\n" {
                            break;
                        }
                        if let Some((name, value)) = header.split_once(':')
                            && name.eq_ignore_ascii_case("content-length")
                        {
                            length = value.trim().parse().unwrap_or(0);
                        }
                    }
                    let mut body = vec![0; length];
                    if reader.read_exact(&mut body).is_err() {
                        return;
                    }
                    counted.fetch_add(1, Ordering::SeqCst);
                    let answer = "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Length: 0\r\n\r\n";
                    if writer.write_all(answer.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    (port, requests)
}

/// Regression: sealbackd retried what the plugin had already retried, and the error read
/// "… (tried 3 times) (after 2 attempts)". The plugin now sends each request once and hands
/// the transient error, with the server's Retry-After, back to the host's one retry policy.
#[test]
fn a_busy_server_is_asked_once_per_call_and_its_retry_after_goes_to_the_host() {
    use std::sync::atomic::Ordering;
    let (port, requests) = busy_server();
    let options = serde_json::json!({ "url": format!("http://127.0.0.1:{port}/dav/") });
    let instance = plugin().open(&options.to_string()).expect("open");
    type Call<'a> = Box<dyn Fn() -> sealback_plugin_api::ProviderError + 'a>;
    let calls: [(&str, Call); 3] = [
        ("list", Box::new(|| instance.list("").expect_err("list"))),
        ("get", Box::new(|| instance.get("config").expect_err("get"))),
        (
            "remove",
            Box::new(|| instance.remove("config").expect_err("remove")),
        ),
    ];
    for (call, make) in calls {
        let err = make();
        assert_eq!(err.kind(), ErrorKind::Transient, "{call}: {err}");
        assert_eq!(
            err.retry_after(),
            Some(std::time::Duration::from_secs(1)),
            "{call}: {err}"
        );
        assert!(!err.message().contains("tried"), "{call}: {err}");
        assert_eq!(
            requests.swap(0, Ordering::SeqCst),
            1,
            "{call}: the plugin retried by itself: {err}"
        );
    }
}
