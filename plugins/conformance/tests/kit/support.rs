//! Finding and building the plugins under test, and asserting on reports.

use std::path::{Path, PathBuf};
use std::process::Command;

use sealback_conformance::{Outcome, Report};

/// A cdylib cargo built for this test run: the dev-dependencies put theirs beside this test
/// binary, in `target/<profile>/deps/`.
pub fn built_plugin(crate_name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let deps = exe.parent().expect("target/<profile>/deps");
    let file = format!(
        "{}{crate_name}{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    );
    let path = deps.join(file);
    assert!(path.is_file(), "{} was not built", path.display());
    path
}

/// Compiles `plugins/example-c` into `dir` as a C developer would, with `$CC` (else `cc`) and
/// the flags docs/plugins.md gives.
pub fn build_example_c(dir: &Path) -> PathBuf {
    let plugins = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let output = dir.join("libsealback_example_c.so");
    let cc = std::env::var("CC").unwrap_or_default();
    let mut words = cc.split_whitespace();
    let program = words.next().unwrap_or("cc");
    let compiled = Command::new(program)
        .args(words)
        .args([
            "-std=c99",
            "-pedantic",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-O2",
        ])
        .args(["-fPIC", "-shared", "-fvisibility=hidden", "-I"])
        .arg(plugins.join("api/include"))
        .arg("-o")
        .arg(&output)
        .arg(plugins.join("example-c/provider.c"))
        .arg(plugins.join("example-c/options.c"))
        .output()
        .unwrap_or_else(|err| {
            panic!("cannot run the C compiler {program:?}: {err}; install gcc or set CC")
        });
    assert!(
        compiled.status.success(),
        "the C example does not compile:\n{}",
        String::from_utf8_lossy(&compiled.stderr)
    );
    output
}

/// `{"path": dir}`, plus `extra`'s keys.
pub fn options(dir: &Path, extra: serde_json::Value) -> String {
    let mut options = serde_json::json!({ "path": dir });
    if let (Some(options), Some(extra)) = (options.as_object_mut(), extra.as_object()) {
        options.extend(extra.clone());
    }
    options.to_string()
}

/// The report, one case per line, for assertion messages.
pub fn show(report: &Report) -> String {
    let lines: Vec<String> = report.cases.iter().map(ToString::to_string).collect();
    format!("{}\n{report}", lines.join("\n"))
}

/// Asserts that no case failed and that exactly `skipped` were skipped.
pub fn assert_passes(report: &Report, skipped: &[&str]) {
    assert!(report.is_success(), "{}", show(report));
    let were_skipped = report.skipped_names();
    assert_eq!(were_skipped, skipped, "{}", show(report));
}

/// The reason the case `name` failed; panics if it did not.
pub fn failure<'r>(report: &'r Report, name: &str) -> &'r str {
    match report.case(name).map(|case| &case.outcome) {
        Some(Outcome::Failed(reason)) => reason,
        _ => panic!("{name} did not fail:\n{}", show(report)),
    }
}

/// Every file under `dir`, relative to it: what a run left behind.
pub fn files_under(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(current) = pending.pop() {
        for entry in std::fs::read_dir(&current).expect("read_dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                pending.push(path);
            } else {
                let relative = path.strip_prefix(dir).expect("under dir");
                found.push(relative.to_string_lossy().into_owned());
            }
        }
    }
    found
}
