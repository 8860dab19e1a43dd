//! The local provider passes every case it can run.

use sealback_conformance::{Settings, run_with};

use crate::support::{assert_passes, built_plugin, files_under, options};

#[test]
fn the_local_provider_passes_the_kit_and_leaves_nothing_behind() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("unrelated"), b"not the kit's").expect("write");
    let settings = Settings::new(options(dir.path(), serde_json::json!({})));
    let mut seen = Vec::new();
    let report = run_with(&built_plugin("sealback_local"), &settings, |case| {
        seen.push(case.name);
    })
    .expect("loads");
    assert_eq!(report.plugin.name, "local");
    assert_eq!(
        seen,
        report.cases.iter().map(|c| c.name).collect::<Vec<_>>()
    );
    assert_eq!(seen.first(), Some(&"open"));
    assert_eq!(seen.last(), Some(&"cleanup"));
    assert_passes(
        &report,
        &["failed_put_keeps_old_object", "failed_put_creates_nothing"],
    );
    assert_eq!(files_under(dir.path()), ["unrelated"]);
}
