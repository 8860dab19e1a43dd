use std::ffi::OsString;
use std::io::Write as _;

use sealback_plugin_api::ErrorKind;
use serde_json::json;

use super::*;

fn env(name: &str) -> Option<OsString> {
    (name == "DAV_PASSWORD").then(|| OsString::from("from-env"))
}

fn parse(options: serde_json::Value) -> Result<Options, ProviderError> {
    Options::parse(&options.to_string(), env)
}

/// The message of the InvalidConfig error `options` give.
fn refusal(options: serde_json::Value) -> String {
    match parse(options.clone()) {
        Ok(_) => panic!("{options} was accepted"),
        Err(err) => {
            assert_eq!(err.kind(), ErrorKind::InvalidConfig, "{err}");
            assert!(
                err.message()
                    .starts_with("invalid options for the webdav provider: "),
                "{err}"
            );
            err.message().to_owned()
        }
    }
}

#[test]
fn a_url_alone_is_enough_and_gets_its_trailing_slash() {
    let options = parse(json!({ "url": "https://dav.example/sealback" })).expect("parse");
    assert_eq!(options.url.as_str(), "https://dav.example/sealback/");
    assert!(options.credentials.is_none());
    assert_eq!(options.timeout, DEFAULT_TIMEOUT);
    assert_eq!(options.atomic_replace, AtomicReplace::Auto);
    let options = parse(json!({ "url": "https://dav.example" })).expect("parse");
    assert_eq!(options.url.as_str(), "https://dav.example/");
}

#[test]
fn every_option_is_read() {
    let mut password = tempfile::NamedTempFile::new().expect("temp file");
    password.write_all(b"s3cret\n").expect("write");
    let mut ca = tempfile::NamedTempFile::new().expect("temp file");
    ca.write_all(b"-----BEGIN CERTIFICATE-----\n")
        .expect("write");
    let options = parse(json!({
        "url": "https://dav.example/a%20b/",
        "username": "alice",
        "password_file": password.path(),
        "ca_file": ca.path(),
        "timeout": "90s",
        "atomic_replace": "direct",
    }))
    .expect("parse");
    let credentials = options.credentials.expect("credentials");
    assert_eq!(credentials.username, "alice");
    assert_eq!(credentials.password.expose(), "s3cret");
    assert_eq!(
        credentials.source,
        PasswordSource::File(password.path().to_owned())
    );
    assert_eq!(options.timeout, Duration::from_secs(90));
    assert_eq!(options.atomic_replace, AtomicReplace::Direct);
    let (ca_path, pem) = options.ca_pem.expect("ca");
    assert_eq!(ca_path, ca.path());
    assert_eq!(pem, b"-----BEGIN CERTIFICATE-----\n");
}

#[test]
fn the_password_can_come_from_the_environment() {
    let options = parse(json!({
        "url": "https://dav.example/",
        "username": "alice",
        "password_env": "DAV_PASSWORD",
    }))
    .expect("parse");
    let credentials = options.credentials.expect("credentials");
    assert_eq!(credentials.password.expose(), "from-env");
    assert_eq!(
        credentials.source,
        PasswordSource::Env("DAV_PASSWORD".into())
    );
}

#[test]
fn wrong_options_are_refused_naming_the_option() {
    for (options, says) in [
        (json!({}), "missing field `url`"),
        (json!({ "url": 3 }), "invalid type"),
        (
            json!({ "url": "https://x/", "colour": "red" }),
            "unknown field `colour`",
        ),
        (json!({ "url": "not a url" }), "`url` \"not a url\""),
        (json!({ "url": "ftp://x/" }), "scheme must be https"),
        (
            json!({ "url": "https://bob:pw@x/" }),
            "`url` carries credentials",
        ),
        (json!({ "url": "https://x/?a=b" }), "query or a fragment"),
        (
            json!({ "url": "https://x/", "password": "hunter2" }),
            "`password` is not an option",
        ),
        (
            json!({ "url": "https://x/", "username": "alice" }),
            "`username` \"alice\" has no password",
        ),
        (
            json!({ "url": "https://x/", "password_env": "DAV_PASSWORD" }),
            "no `username`",
        ),
        (
            json!({ "url": "https://x/", "username": "a", "password_env": "DAV_PASSWORD",
                    "password_file": "/p" }),
            "both given",
        ),
        (
            json!({ "url": "https://x/", "username": "a", "password_env": "UNSET" }),
            "`password_env` names UNSET, which is not set",
        ),
        (
            json!({ "url": "https://x/", "username": "a", "password_file": "/nonexistent/p" }),
            "`password_file` /nonexistent/p: cannot read it",
        ),
        (
            json!({ "url": "https://x/", "ca_file": "/nonexistent/ca.pem" }),
            "`ca_file` /nonexistent/ca.pem: cannot read it",
        ),
        (
            json!({ "url": "https://x/", "timeout": "soon" }),
            "`timeout` \"soon\"",
        ),
        (
            json!({ "url": "https://x/", "timeout": "0s" }),
            "longer than zero",
        ),
        (
            json!({ "url": "https://x/", "atomic_replace": "copy" }),
            "unknown variant `copy`",
        ),
    ] {
        let message = refusal(options.clone());
        assert!(message.contains(says), "{options}: {message}");
    }
}

#[test]
fn the_password_never_appears_in_an_error() {
    let message = refusal(json!({ "url": "https://x/", "password": "hunter2" }));
    assert!(!message.contains("hunter2"), "{message}");
}

#[test]
fn plain_http_with_a_password_is_only_for_loopback_unless_allowed() {
    let with = |url: &str, allow: bool| json!({ "url": url, "username": "a", "password_env": "DAV_PASSWORD", "allow_http": allow });
    let message = refusal(with("http://nas.lan/dav/", false));
    assert!(message.contains("in clear to nas.lan"), "{message}");
    for url in [
        "http://127.0.0.1:8080/",
        "http://localhost/",
        "http://[::1]:80/",
    ] {
        parse(with(url, false)).unwrap_or_else(|err| panic!("{url}: {err}"));
    }
    parse(with("http://nas.lan/dav/", true)).expect("allowed");
    // Without credentials there is nothing to leak.
    parse(json!({ "url": "http://nas.lan/dav/" })).expect("no credentials");
}
