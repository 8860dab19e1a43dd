//! The text formats read from outside: the daemon's configuration file (and its environment
//! overrides) and a WebDAV server's multistatus answers.

use std::path::PathBuf;
use std::sync::OnceLock;

use sealback_daemon::config::Config;
use sealback_webdav::fuzzing::Url;

/// Config: `data` up to its first `0` byte is the TOML file; after it, `KEY=VALUE` lines are
/// the environment. True if it loaded.
pub fn config(data: &[u8]) -> bool {
    // In $TMPDIR, which scripts/fuzz points at a directory it removes afterwards.
    static FILE: OnceLock<PathBuf> = OnceLock::new();
    let path = FILE.get_or_init(|| {
        std::env::temp_dir().join(format!("sealback-fuzz-{}.toml", std::process::id()))
    });
    let (toml, env) = crate::split_at_nul(data);
    std::fs::write(path, toml).expect("the fuzzer's temporary directory is writable");
    let env: Vec<(String, String)> = String::from_utf8_lossy(env)
        .lines()
        .filter_map(|line| line.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    Config::load_with_env(path, env).is_ok()
}

/// Multistatus: `data` is the body of a PROPFIND answer for `/my%20backup/packs/` below the
/// collection `/my%20backup/`. The number of names inside it.
pub fn multistatus(data: &[u8]) -> usize {
    static URLS: OnceLock<(Url, Url)> = OnceLock::new();
    let (base, request) = URLS.get_or_init(|| {
        let parse = |s: &str| Url::parse(s).expect("a valid URL");
        (
            parse("https://dav.example/my%20backup/"),
            parse("https://dav.example/my%20backup/packs/"),
        )
    });
    let (body, retry_after) = crate::split_at_nul(data);
    let _ = sealback_webdav::fuzzing::retry_after(retry_after);
    let Ok(xml) = std::str::from_utf8(body) else {
        return 0;
    };
    sealback_webdav::fuzzing::listing(xml, base, request).map_or(0, |names| names.len())
}
