//! The programs under test, found where cargo builds them: the test binary runs as
//! `target/<profile>/deps/<name>-<hash>`, so its grandparent directory holds `sealbackd`,
//! `sealbackctl`, `store_writer` and the plugins' `.so` files.
//!
//! `cargo test` builds only this package's own binaries, so the daemon's may be missing or
//! older than their sources; both stop the tests with what to run, rather than testing an
//! old build.

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

/// `target/<profile>`, the directory of the workspace's build outputs.
pub fn build_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary knows its own path");
    let deps = exe.parent().expect("the test binary is in a directory");
    let dir = if deps.file_name().is_some_and(|n| n == "deps") {
        deps.parent().expect("deps/ has a parent")
    } else {
        deps
    };
    dir.to_path_buf()
}

/// The path of a file cargo builds into [`build_dir`]; panics if it is missing or older
/// than a source it is built from.
pub fn built(file: &str) -> PathBuf {
    let path = build_dir().join(file);
    assert!(
        path.is_file(),
        "{} is missing: run `cargo build --workspace` first (the end-to-end tests drive the \
         built programs and plugins)",
        path.display()
    );
    static CHECKED: Mutex<Option<HashSet<PathBuf>>> = Mutex::new(None);
    let mut checked = CHECKED.lock().unwrap_or_else(|p| p.into_inner());
    if checked.get_or_insert_default().insert(path.clone())
        && let Some(source) = newer_source(&path)
    {
        panic!(
            "{} is older than {}, which it is built from: run `cargo build --workspace` \
             (`cargo test` does not rebuild the programs these tests drive)",
            path.display(),
            source.display()
        );
    }
    path
}

/// A source file of the output's own package newer than `output`, from the list cargo
/// writes beside it (`<output without extension>.d`, a makefile rule: `output: source ...`,
/// the crate root first). Sources of other packages are not compared: cargo does not relink
/// an output whose dependencies changed in ways that do not reach it, so their times would
/// raise false alarms.
fn newer_source(output: &Path) -> Option<PathBuf> {
    let modified = |p: &Path| fs::metadata(p).and_then(|m| m.modified()).ok();
    let built: SystemTime = modified(output)?;
    let rule = fs::read_to_string(output.with_extension("d")).ok()?;
    let (_, sources) = rule.lines().next()?.split_once(": ")?;
    // Spaces inside a path are escaped with a backslash.
    let sources = sources.replace("\\ ", "\0");
    let mut sources = sources
        .split_whitespace()
        .map(|s| PathBuf::from(s.replace('\0', " ")));
    let root = sources.next()?;
    let package = root
        .ancestors()
        .find(|dir| dir.join("Cargo.toml").is_file())?
        .to_path_buf();
    std::iter::once(root)
        .chain(sources)
        .filter(|source| source.starts_with(&package))
        .find(|source| modified(source).is_some_and(|m| m > built))
}

pub fn sealbackd() -> PathBuf {
    built("sealbackd")
}

pub fn sealbackctl() -> PathBuf {
    built("sealbackctl")
}

pub fn store_writer() -> PathBuf {
    built("store_writer")
}

/// The directory holding `libsealback_local.so` and `libsealback_faulty.so`.
pub fn plugins_dir() -> PathBuf {
    built("libsealback_local.so");
    built("libsealback_faulty.so");
    build_dir()
}

/// The workspace's root, for fixtures and the plugin header.
pub fn workspace_root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}
