//! The faulty provider: without a fault it passes (and lets the failed-put cases run); with
//! one, the kit reports the cases it breaks, with the reason, and carries on.

use sealback_conformance::{Outcome, Settings, run_with};
use serde_json::json;

use crate::support::{assert_passes, built_plugin, failure, options, show};

fn plugin() -> std::path::PathBuf {
    built_plugin("sealback_faulty")
}

#[test]
fn without_a_fault_it_passes_including_failed_puts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let settings = Settings::new(options(dir.path(), json!({}))).failing_options(options(
        dir.path(),
        json!({ "fail": "put", "kind": "quota" }),
    ));
    let report = run_with(&plugin(), &settings, |_| {}).expect("loads");
    assert_passes(&report, &[]);
}

#[test]
fn failing_gets_fail_the_cases_that_read() {
    let dir = tempfile::tempdir().expect("tempdir");
    let options = options(
        dir.path(),
        json!({ "fail": "get", "after": 3, "retry_after_ms": 1 }),
    );
    let report = run_with(&plugin(), &Settings::new(options), |_| {}).expect("loads");
    assert!(!report.is_success());
    // Every case ran and was reported; the first gets pass, later ones fail with the reason
    // (each tried again as the host would, a millisecond apart).
    assert_eq!(report.cases.len(), 20, "{}", show(&report));
    assert_eq!(
        report.case("round_trip_empty").map(|c| c.passed()),
        Some(true)
    );
    let reason = failure(&report, "round_trip_large");
    assert!(
        reason.starts_with("get \"conformance-")
            && reason.contains("transient failure: plugin \"faulty\" get")
            && reason.contains("injected transient failure in get"),
        "{reason}"
    );
    // Gets of missing objects fail too, and the kit says what a missing object must be.
    let reason = failure(&report, "get_missing_is_not_found");
    assert!(
        reason.contains("a missing object must be NOT_FOUND"),
        "{reason}"
    );
    // Cleanup does not read, so the run still removes what it stored.
    assert_eq!(report.case("cleanup").map(|c| c.passed()), Some(true));
}

#[test]
fn a_panicking_list_fails_its_case_and_the_run_goes_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    // The fifth list panics: round_trip_empty's own (the kit lists twice in its check after
    // each of the two open_refuses cases).
    let options = options(
        dir.path(),
        json!({ "fail": "list", "panic": true, "after": 4, "times": 1 }),
    );
    let report = run_with(&plugin(), &Settings::new(options), |_| {}).expect("loads");
    let reason = failure(&report, "round_trip_empty");
    assert!(
        reason.contains("permanent failure: plugin \"faulty\" list")
            && reason.contains("provider panicked in list: injected"),
        "{reason}"
    );
    assert_eq!(report.failed(), 1, "{}", show(&report));
    assert_eq!(report.case("cleanup").map(|c| c.passed()), Some(true));
}

#[test]
fn a_torn_put_is_caught_as_a_half_written_object() {
    let dir = tempfile::tempdir().expect("tempdir");
    let failing = json!({ "fail": "put", "torn": true });
    let settings =
        Settings::new(options(dir.path(), json!({}))).failing_options(options(dir.path(), failing));
    let report = run_with(&plugin(), &settings, |_| {}).expect("loads");
    assert_eq!(
        failure(&report, "failed_put_keeps_old_object"),
        format!(
            "after a failed put: get \"{}\" returned 524288 bytes, but 100000 were stored",
            object_name(&report, "failed_put_keeps_old_object", "object")
        )
    );
    let reason = failure(&report, "failed_put_creates_nothing");
    assert!(reason.starts_with("after a failed put: get \""), "{reason}");
    assert!(
        reason.contains("returned 524288 bytes; it must fail with NOT_FOUND"),
        "{reason}"
    );
    assert_eq!(report.failed(), 2, "{}", show(&report));
}

#[test]
fn options_that_do_not_open_fail_open_and_skip_the_rest() {
    let report =
        sealback_conformance::run(&plugin(), r#"{"path": "relative"}"#, |_| {}).expect("loads");
    let reason = failure(&report, "open");
    assert!(reason.contains("invalid configuration"), "{reason}");
    assert_eq!(report.failed(), 1);
    assert!(
        report.cases[1..]
            .iter()
            .all(|case| case.outcome == Outcome::Skipped("open failed".into())),
        "{}",
        show(&report)
    );
}

/// The full name of a case's object, as the reason quotes it: `conformance-<hex>/<case>/<name>`.
fn object_name(report: &sealback_conformance::Report, case: &str, relative: &str) -> String {
    let reason = failure(report, case);
    let start = reason
        .find("conformance-")
        .expect("the reason names the object");
    let run_prefix = &reason[start..start + "conformance-".len() + 16];
    format!("{run_prefix}/{case}/{relative}")
}

#[test]
fn a_file_that_is_no_plugin_is_a_load_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("libsealback_nothing.so");
    std::fs::write(&path, b"not a library").expect("write");
    let err = sealback_conformance::run(&path, "{}", |_| {}).expect_err("not a plugin");
    assert!(err.to_string().starts_with("cannot load plugin "), "{err}");
}
