//! The provider written in C, compiled here with the system compiler, passes the kit: the ABI
//! does not depend on Rust.

use sealback_conformance::run;

use crate::support::{assert_passes, build_example_c, files_under, options};

#[test]
fn the_c_example_passes_the_kit() {
    let build = tempfile::tempdir().expect("tempdir");
    let plugin = build_example_c(build.path());
    let dir = tempfile::tempdir().expect("tempdir");
    let target = dir.path().join("created/by/open");
    let report = run(&plugin, &options(&target, serde_json::json!({})), |_| {}).expect("loads");
    // Built with the v2 header, it says v2 but fills in only the v1 table (its `size`): the
    // host treats the v2 functions as absent.
    assert_eq!(
        (report.plugin.name.as_str(), report.plugin.abi_version),
        ("example-c", 2)
    );
    assert_passes(
        &report,
        &["failed_put_keeps_old_object", "failed_put_creates_nothing"],
    );
    assert!(
        files_under(&target).is_empty(),
        "{:?}",
        files_under(&target)
    );
}
