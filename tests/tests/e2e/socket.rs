//! The control socket, spoken to raw: malformed, oversized and misrouted requests get the
//! documented errors (`control::api`), and the daemon goes on answering.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use sealback_daemon::control::api::MAX_REQUEST_BYTES;
use sealback_tests::raw_http::{Response, exchange};
use sealback_tests::{Device, MessageStore, Setup, Target};

use crate::fixtures::TARGET;

fn started() -> (tempfile::TempDir, Device) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = MessageStore::create(&dir.path().join("store"), 0);
    let device = Device::started(Setup::new(
        store.dir(),
        vec![Target::local(TARGET, &dir.path().join("target"))],
    ));
    (dir, device)
}

/// The daemon still answers `sealbackctl status` after `what`.
#[track_caller]
fn still_answers(device: &Device, what: &str) {
    let status = device.ctl(&["status"]);
    assert_eq!(
        status.code,
        Some(0),
        "after {what}, status no longer works: {status}{}",
        device.log_tail()
    );
}

#[test]
fn the_socket_and_its_directory_are_the_owners_only() {
    let (_dir, device) = started();
    let socket = device.socket();
    let mode = |p: &Path| std::fs::metadata(p).expect("stat").permissions().mode() & 0o777;
    assert_eq!(mode(&socket), 0o600, "{}", socket.display());
    let parent = socket.parent().expect("a directory");
    assert_eq!(mode(parent), 0o700, "{}", parent.display());
}

/// `POST /v1/restore` with `body`, spoken raw.
fn post_restore(socket: &Path, body: &str) -> Response {
    exchange(
        socket,
        &format!(
            "POST /v1/restore HTTP/1.1\r\nHost: sealbackd\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n",
            body.len()
        ),
        body.as_bytes(),
    )
}

#[test]
fn bad_requests_get_their_documented_errors_and_the_daemon_goes_on() {
    let (_dir, device) = started();
    let socket = device.socket();

    let ok = exchange(
        &socket,
        "GET /v1/status HTTP/1.1\r\nHost: sealbackd\r\n\r\n",
        b"",
    );
    assert_eq!(ok.status, 200, "a well-formed request, spoken raw: {ok:?}");

    let garbage = exchange(&socket, "\x00\x01\x02 not HTTP at all\r\n\r\n", b"");
    assert_eq!(garbage.status, 400, "{garbage:?}");
    still_answers(&device, "garbage bytes");

    let declared = MAX_REQUEST_BYTES + 1;
    let too_large = exchange(
        &socket,
        &format!(
            "POST /v1/backup HTTP/1.1\r\nHost: sealbackd\r\nContent-Length: {declared}\r\n\r\n"
        ),
        b"",
    );
    assert_eq!(too_large.status, 413, "{too_large:?}");
    assert_eq!(too_large.error().error.code, "too-large");
    still_answers(&device, "an oversized Content-Length");

    let chunk = vec![b' '; 8192];
    let mut chunked = Vec::new();
    for _ in 0..=MAX_REQUEST_BYTES / chunk.len() {
        chunked.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        chunked.extend_from_slice(&chunk);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let streamed = exchange(
        &socket,
        "POST /v1/backup HTTP/1.1\r\nHost: sealbackd\r\nTransfer-Encoding: chunked\r\n\r\n",
        &chunked,
    );
    assert_eq!(streamed.status, 413, "{streamed:?}");
    assert_eq!(streamed.error().error.code, "too-large");
    still_answers(&device, "an oversized chunked body");

    let bad_json = post_restore(&socket, "{\"snapshot\": \"latest\", \"to\": ");
    assert_eq!(bad_json.status, 400, "{bad_json:?}");
    let error = bad_json.error().error;
    assert_eq!(error.code, "bad-request");
    assert!(error.message.contains("POST /v1/restore"), "{error:?}");
    still_answers(&device, "a body that is not JSON");

    // A path no file system can hold is the request's fault, not the daemon's.
    let nul = post_restore(
        &socket,
        r#"{"snapshot": "latest", "to": "/tmp/restored\u0000elsewhere"}"#,
    );
    // A restore answers as a stream of events (NDJSON): its error is the last one.
    assert_eq!(nul.status, 200, "{nul:?}");
    assert!(
        nul.body
            .contains(r#""event":"error","error":{"code":"bad-request""#)
            && nul.body.contains("NUL"),
        "{nul:?}"
    );
    still_answers(&device, "a restore target holding a NUL");

    let unknown = exchange(
        &socket,
        "GET /v1/nope HTTP/1.1\r\nHost: sealbackd\r\n\r\n",
        b"",
    );
    assert_eq!(unknown.status, 404, "{unknown:?}");
    let error = unknown.error().error;
    assert_eq!(error.code, "not-found");
    assert!(
        error.message.contains("/v1/nope") && error.message.contains("GET /v1/status"),
        "the error names the path and lists the routes: {error:?}"
    );
    still_answers(&device, "an unknown route");

    let wrong_method = exchange(
        &socket,
        "GET /v1/backup HTTP/1.1\r\nHost: sealbackd\r\n\r\n",
        b"",
    );
    assert_eq!(wrong_method.status, 405, "{wrong_method:?}");
    assert_eq!(
        wrong_method.header("allow"),
        Some("POST"),
        "{wrong_method:?}"
    );
    assert_eq!(wrong_method.error().error.code, "method-not-allowed");
    still_answers(&device, "a wrong method");
}
