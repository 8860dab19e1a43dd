use sealback_plugin_api::ErrorKind;
use serde_json::json;

use super::*;

fn open(extra: serde_json::Value) -> (tempfile::TempDir, Result<FaultyProvider, ProviderError>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut options = json!({ "path": dir.path() });
    if let (Some(options), Some(extra)) = (options.as_object_mut(), extra.as_object()) {
        options.extend(extra.clone());
    }
    let provider = FaultyProvider::open(&options.to_string());
    (dir, provider)
}

#[test]
fn without_a_fault_it_is_the_local_provider() {
    let (dir, provider) = open(json!({}));
    let provider = provider.expect("open");
    provider.put("a/b", b"x").expect("put");
    assert_eq!(provider.get("a/b").expect("get"), b"x");
    assert_eq!(provider.list("").expect("list").len(), 1);
    provider.remove("a/b").expect("remove");
    assert!(!dir.path().join("a/b").exists());
}

#[test]
fn the_chosen_operation_fails_after_n_successes() {
    let (_dir, provider) = open(json!({ "fail": "put", "kind": "quota", "after": 2 }));
    let provider = provider.expect("open");
    provider
        .get("missing")
        .expect_err("not found, not injected");
    provider.put("a", b"1").expect("first put");
    provider.put("b", b"2").expect("second put");
    for _ in 0..3 {
        let err = provider.put("c", b"3").expect_err("injected");
        assert_eq!(err.kind(), ErrorKind::Quota);
        assert!(
            err.message()
                .starts_with("injected storage full in put (call "),
            "{err}"
        );
    }
    assert_eq!(
        provider.get("c").expect_err("never stored").kind(),
        ErrorKind::NotFound
    );
    assert_eq!(provider.list("").expect("list").len(), 2);
}

#[test]
fn times_limits_the_failures() {
    let (_dir, provider) = open(json!({ "fail": "get", "times": 1 }));
    let provider = provider.expect("open");
    provider.put("a", b"1").expect("put");
    assert_eq!(
        provider.get("a").expect_err("injected").kind(),
        ErrorKind::Transient
    );
    assert_eq!(provider.get("a").expect("works again"), b"1");
}

#[test]
fn every_kind_can_be_injected() {
    for (kind, expected) in [
        ("transient", ErrorKind::Transient),
        ("permanent", ErrorKind::Permanent),
        ("quota", ErrorKind::Quota),
        ("auth", ErrorKind::Auth),
    ] {
        let (_dir, provider) = open(json!({ "fail": "list", "kind": kind }));
        let err = provider.expect("open").list("").expect_err(kind);
        assert_eq!(err.kind(), expected);
    }
    let (_dir, provider) = open(json!({ "fail": "remove" }));
    assert_eq!(
        provider
            .expect("open")
            .remove("a")
            .expect_err("remove")
            .kind(),
        ErrorKind::Transient
    );
}

#[test]
fn panic_panics_instead() {
    let (_dir, provider) = open(json!({ "fail": "put", "panic": true }));
    let provider = provider.expect("open");
    let outcome = std::panic::catch_unwind(|| provider.put("a", b"x"));
    let payload = outcome.expect_err("panics");
    let message = payload.downcast_ref::<String>().expect("formatted message");
    assert!(
        message.starts_with("injected transient failure in put (call 1"),
        "{message}"
    );
}

#[test]
fn transient_failures_can_advise_a_retry_after() {
    let (_dir, provider) = open(json!({ "fail": "get", "retry_after_ms": 1500 }));
    let err = provider.expect("open").get("a").expect_err("injected");
    assert_eq!(err.kind(), ErrorKind::Transient);
    assert_eq!(
        err.retry_after(),
        Some(std::time::Duration::from_millis(1500))
    );
}

#[test]
fn a_torn_put_leaves_half_the_data_in_place_of_the_object() {
    let (dir, provider) = open(json!({ "fail": "put", "after": 1, "torn": true }));
    let provider = provider.expect("open");
    provider.put("a/b", b"old!").expect("first put");
    provider.put("a/b", b"new data").expect_err("injected");
    assert_eq!(provider.get("a/b").expect("torn object"), b"new ");
    assert_eq!(fs::read(dir.path().join("a/b")).expect("file"), b"new ");
}

#[test]
fn only_counts_and_fails_the_calls_on_names_with_its_prefix() {
    let (_dir, provider) = open(json!({ "fail": "put", "only": "index/", "times": 1 }));
    let provider = provider.expect("open");
    provider
        .put("data/a", b"pack")
        .expect("another kind of object");
    provider
        .put("index/a", b"index")
        .expect_err("the first index fails");
    provider.put("index/b", b"index").expect("only once");
}

#[test]
fn bad_fault_options_are_invalid_config() {
    for (extra, problem) in [
        (json!({ "fail": "open" }), "unknown variant `open`"),
        (
            json!({ "fail": "put", "kind": "flaky" }),
            "unknown variant `flaky`",
        ),
        (json!({ "fail": "put", "after": -1 }), "invalid value"),
        (json!({ "kind": "quota" }), "need `fail`"),
        (json!({ "colour": "red" }), "unknown field `colour`"),
        (
            json!({ "fail": "put", "kind": "quota", "retry_after_ms": 5 }),
            "`retry_after_ms` needs `kind` \"transient\"",
        ),
        (
            json!({ "fail": "get", "torn": true }),
            "`torn` needs `fail` \"put\"",
        ),
        (json!({ "torn": true }), "need `fail`"),
    ] {
        let (_dir, provider) = open(extra);
        let err = provider.err().expect(problem);
        assert_eq!(err.kind(), ErrorKind::InvalidConfig, "{err}");
        assert!(err.message().contains(problem), "{err}");
    }
}
