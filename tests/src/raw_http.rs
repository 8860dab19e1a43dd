//! HTTP spoken by hand on the control socket: for requests `sealbackctl` would never send,
//! and for polling the daemon faster than starting a process per request allows.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use sealback_daemon::control::api::ErrorResponse;

/// An HTTP response, as read off the socket.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as the protocol's error document.
    #[track_caller]
    pub fn error(&self) -> ErrorResponse {
        assert_eq!(
            self.header("content-type"),
            Some("application/json"),
            "{self:?}"
        );
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("the body is not an error document ({e}): {self:?}"))
    }
}

/// Sends `head`, then `body` (write errors ignored: the server may answer and close before
/// reading it all), and reads one response.
pub fn exchange(socket: &Path, head: &str, body: &[u8]) -> Response {
    let mut stream = UnixStream::connect(socket).expect("connect to the control socket");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("set a read timeout");
    stream
        .write_all(head.as_bytes())
        .expect("send the request head");
    let _ = stream.write_all(body);
    read_response(&mut stream)
}

/// Reads the status line, the headers and a `Content-Length` body, or up to end of file.
fn read_response(stream: &mut UnixStream) -> Response {
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(response) = parse(&raw) {
            break response;
        }
        match stream.read(&mut buf) {
            Ok(0) => break parse_to_end(&raw),
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(e) => panic!(
                "reading the response failed ({e}) after {:?}",
                String::from_utf8_lossy(&raw)
            ),
        }
    }
}

/// A complete response in `raw`, if there is one yet.
fn parse(raw: &[u8]) -> Option<Response> {
    let text = std::str::from_utf8(raw).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    let mut lines = head.lines();
    let status = lines.next()?.split_whitespace().nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())?;
    (body.len() >= length).then(|| Response {
        status,
        headers,
        body: body[..length].to_owned(),
    })
}

/// A response without `Content-Length`, ended by the server closing the connection.
fn parse_to_end(raw: &[u8]) -> Response {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP response: {text:?}"));
    Response {
        status,
        headers: Vec::new(),
        body: body.to_owned(),
    }
}

/// `GET path`, answered by `socket`.
pub fn get(socket: &Path, path: &str) -> Response {
    exchange(
        socket,
        &format!("GET {path} HTTP/1.1\r\nHost: sealbackd\r\n\r\n"),
        b"",
    )
}
