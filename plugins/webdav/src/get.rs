//! `get`: a GET whose answer is checked to be one whole version of the object.
//!
//! Neither server under test makes a GET atomic against a concurrent replacement of the same
//! name. Apache takes the length from a `stat` of the file and then opens it, so a file renamed
//! into place in between is sent cut to the old length; rclone takes the length from its
//! cached directory entry. A short answer is caught by the HTTP client (`Content-Length` not
//! reached); a new version cut to an old, shorter length is not. So when the answer carries an
//! `ETag` (both servers derive theirs from size and modification time), a HEAD after the GET
//! must show the same `ETag`: then nothing replaced the object between the GET's `stat` and
//! the HEAD, which encloses the GET's read. Otherwise the GET is made again, up to
//! [`REPLACED_ATTEMPTS`] times: a reader racing writers of the same name wins once they
//! pause, and under load they were seen to win three races in a row from it for over a
//! second (the conformance kit's four writers). This costs one HEAD per get, and only
//! matters when an object is replaced while it is read, which sealbackd does not do but the
//! contract allows.
//!
//! A MOVE over an object deletes it first (rclone, Apache), so a GET can also find nothing for
//! an instant while puts may use MOVE: a 404 is asked again after [`NOT_FOUND_RECHECKS`]
//! before it is reported.

use std::thread;
use std::time::Duration;

use reqwest::header::{ETAG, HeaderValue, LOCATION};
use reqwest::{Method as HttpMethod, StatusCode, Url};
use sealback_plugin_api::ProviderError;
// The most a GET reads, so that a server that sends more, or streams without end, is refused
// instead of filling the daemon's memory.
use sealback_plugin_api::limits::MAX_OBJECT_BYTES;

use crate::answer::{self, Request};
use crate::propfind::{self, Kind};
use crate::replace::Replace;
use crate::server::{Answer, Server};

/// The waits before asking again about an object the server said was missing, while puts
/// may be replacing objects with MOVE. rclone's gap between delete and rename was seen to
/// last up to about 80 ms under concurrent MOVEs.
const NOT_FOUND_RECHECKS: [Duration; 2] = [Duration::from_millis(50), Duration::from_millis(200)];
/// Tries of a GET that keeps finding the object replaced while it was read, the first
/// included; the waits between them double from 50 ms up to 800 ms (about 6 s in all).
const REPLACED_ATTEMPTS: u32 = 12;

fn replaced_backoff(attempt: u32) -> Duration {
    Duration::from_millis(50 << attempt.saturating_sub(1).min(4))
}

/// Reads the whole object `name`, whose last segment is `basename`.
pub(crate) fn get(
    server: &Server,
    replace: &Replace,
    name: &str,
    basename: &str,
) -> Result<Vec<u8>, ProviderError> {
    let url = server.url(name)?;
    let request = Request {
        method: &HttpMethod::GET,
        url: &url,
    };
    let mut attempt = 1;
    loop {
        let answer = fetch(server, replace, &url)?;
        let status = answer.response.status();
        if status == StatusCode::NOT_FOUND {
            return Err(ProviderError::not_found(format!(
                "{request}: no such object (404)"
            )));
        }
        if status != StatusCode::OK {
            return Err(not_ok(server, &request, name, basename, &answer));
        }
        let etag = answer.response.headers().get(ETAG).cloned();
        let (problem, limit, wait) = match read_body(answer) {
            Err(Body::TooLarge) => {
                return Err(ProviderError::permanent(format!(
                    "{request}: the server sent more than {MAX_OBJECT_BYTES} bytes, more than \
                     any object sealback writes; is `url` the collection sealback writes to?"
                )));
            }
            Ok(data) => match etag {
                None => return Ok(data),
                Some(etag) if unchanged(server, &url, &etag)? => return Ok(data),
                Some(_) => replaced(&request, attempt),
            },
            // A body cut short while the object was replaced (Apache sends a file renamed in
            // after its `stat` cut to that length, and a shorter one ends early) is a read
            // of no whole version, like the case above. Otherwise it is the connection's
            // fault: transient, and sealbackd retries it.
            Err(Body::Http(err)) => match etag {
                Some(etag) if !unchanged(server, &url, &etag)? => replaced(&request, attempt),
                _ => return Err(answer::failure(&request, &err)),
            },
        };
        if attempt >= limit {
            return Err(problem);
        }
        thread::sleep(wait);
        attempt += 1;
    }
}

/// The error of a GET that found the object replaced while it read it, the most tries, and
/// the wait before the next.
fn replaced(request: &Request, attempt: u32) -> (ProviderError, u32, Duration) {
    (
        ProviderError::transient(format!(
            "{request}: the object was replaced while it was read ({attempt} times running)"
        )),
        REPLACED_ATTEMPTS,
        replaced_backoff(attempt),
    )
}

/// GET, with a 404 asked again while puts may MOVE.
fn fetch(server: &Server, replace: &Replace, url: &Url) -> Result<Answer, ProviderError> {
    let mut answer = server.send(&HttpMethod::GET, url, |b| b)?;
    for wait in NOT_FOUND_RECHECKS {
        if answer.response.status() != StatusCode::NOT_FOUND || !replace.may_move() {
            break;
        }
        thread::sleep(wait);
        answer = server.send(&HttpMethod::GET, url, |b| b)?;
    }
    Ok(answer)
}

/// Why a body was not read.
enum Body {
    Http(reqwest::Error),
    /// Longer than [`MAX_OBJECT_BYTES`], by its `Content-Length` or as it came.
    TooLarge,
}

/// The body of a 200 answer, up to [`MAX_OBJECT_BYTES`]. hyper checks it against
/// `Content-Length`, so an answer cut short is an error, not a short object.
fn read_body(mut answer: Answer) -> Result<Vec<u8>, Body> {
    let expected = answer.response.content_length().unwrap_or(0);
    if expected > MAX_OBJECT_BYTES {
        return Err(Body::TooLarge);
    }
    let mut body = Bounded {
        // The length only sizes the first allocation; a lying header cannot make it huge.
        data: Vec::with_capacity(usize::try_from(expected).unwrap_or(0).min(1 << 28)),
        over: false,
    };
    match answer.response.copy_to(&mut body) {
        Ok(_) => Ok(body.data),
        Err(_) if body.over => Err(Body::TooLarge),
        Err(err) => Err(Body::Http(err)),
    }
}

/// A body being read, refusing bytes past [`MAX_OBJECT_BYTES`].
struct Bounded {
    data: Vec<u8>,
    over: bool,
}

impl std::io::Write for Bounded {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if (self.data.len() + buf.len()) as u64 > MAX_OBJECT_BYTES {
            self.over = true;
            return Err(std::io::Error::other(
                "the object is larger than any sealback writes",
            ));
        }
        self.data.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Whether a HEAD now shows the `ETag` the GET had. A server that answers HEAD with something
/// other than 200 or 404 cannot tell, and the GET stands.
fn unchanged(server: &Server, url: &Url, etag: &HeaderValue) -> Result<bool, ProviderError> {
    let answer = server.send(&HttpMethod::HEAD, url, |b| b)?;
    Ok(match answer.response.status() {
        StatusCode::OK => answer.response.headers().get(ETAG) == Some(etag),
        StatusCode::NOT_FOUND => false,
        _ => true,
    })
}

/// The error for a GET answered with neither 200 nor 404. A collection of that name is no
/// object, whatever the server makes of a GET on it: rclone answers 405, Apache with mod_dir
/// redirects to `name/`.
fn not_ok(
    server: &Server,
    request: &Request<'_>,
    name: &str,
    basename: &str,
    answer: &Answer,
) -> ProviderError {
    let status = answer.response.status();
    let to_collection = status.is_redirection()
        && answer
            .response
            .headers()
            .get(LOCATION)
            .and_then(|value| value.to_str().ok())
            .is_some_and(|location| location.ends_with(&format!("/{basename}/")));
    if (status == StatusCode::METHOD_NOT_ALLOWED || to_collection)
        && matches!(
            propfind::kind(server, name),
            Ok(Kind::Collection | Kind::Missing)
        )
    {
        return ProviderError::not_found(format!(
            "{request}: no such object ({name} is a collection)"
        ));
    }
    answer::unexpected(request, answer, server.credentials())
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader, Write};
    use std::net::TcpListener;

    use super::*;
    use crate::options::{AtomicReplace, Options};

    /// A server that answers one GET with `head` and then streams `chunks` chunks of 1 MiB
    /// in chunked encoding (or as long as the client reads).
    fn serve_once(head: &'static str, chunks: u64) -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("address").port();
        std::thread::spawn(move || {
            let (stream, _) = listener.accept().expect("accept");
            let mut reader = BufReader::new(stream);
            let mut line = String::new();
            while reader.read_line(&mut line).expect("request") > 2 {
                line.clear();
            }
            let mut stream = reader.into_inner();
            if stream.write_all(head.as_bytes()).is_err() {
                return;
            }
            let chunk = vec![b'x'; 1 << 20];
            for _ in 0..chunks {
                let sent = stream
                    .write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
                    .and_then(|()| stream.write_all(&chunk))
                    .and_then(|()| stream.write_all(b"\r\n"));
                // The client stops reading at its limit and hangs up.
                if sent.is_err() {
                    return;
                }
            }
            let _ = stream.write_all(b"0\r\n\r\n");
        });
        port
    }

    fn get_from(port: u16) -> Result<Vec<u8>, ProviderError> {
        let options = format!(r#"{{"url": "http://127.0.0.1:{port}/backup/"}}"#);
        let options = Options::parse(&options, |_| None).expect("options");
        let server = Server::new(options).expect("client");
        get(&server, &Replace::new(AtomicReplace::Direct), "data/x", "x")
    }

    #[test]
    fn an_object_larger_than_any_sealback_writes_is_refused_by_its_length() {
        let port = serve_once("HTTP/1.1 200 OK\r\nContent-Length: 536870913\r\n\r\n", 0);
        let err = get_from(port).expect_err("refused");
        assert!(err.message().contains("more than 536870912 bytes"), "{err}");
    }

    #[test]
    fn a_server_streaming_without_end_is_cut_off_at_the_limit() {
        let port = serve_once(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            (MAX_OBJECT_BYTES >> 20) + 64,
        );
        let err = get_from(port).expect_err("refused");
        assert!(err.message().contains("more than any object"), "{err}");
    }

    /// A server that answers one request per connection with each of `answers` in turn
    /// (bytes sent as they are, the connection closed after each), and the methods it got.
    fn serve_script(answers: Vec<&'static [u8]>) -> (u16, std::sync::mpsc::Receiver<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("address").port();
        let (methods, seen) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for answer in answers {
                let (stream, _) = listener.accept().expect("accept");
                let mut reader = BufReader::new(stream);
                let mut line = String::new();
                reader.read_line(&mut line).expect("request line");
                let _ = methods.send(line.split(' ').next().unwrap_or("").to_string());
                while reader.read_line(&mut line).expect("request") > 2 {
                    line.clear();
                }
                let _ = reader.into_inner().write_all(answer);
            }
        });
        (port, seen)
    }

    #[test]
    fn a_body_cut_short_by_a_replacement_is_read_again() {
        let (port, seen) = serve_script(vec![
            // Apache sending a file renamed in after its stat: cut before its length.
            b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\nETag: \"old\"\r\nConnection: close\r\n\r\n0123",
            b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\nETag: \"new\"\r\nConnection: close\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\nETag: \"new\"\r\nConnection: close\r\n\r\nabcdefghij",
            b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\nETag: \"new\"\r\nConnection: close\r\n\r\n",
        ]);
        assert_eq!(get_from(port).expect("the new version"), b"abcdefghij");
        let methods: Vec<String> = seen.try_iter().collect();
        assert_eq!(methods, ["GET", "HEAD", "GET", "HEAD"]);
    }

    #[test]
    fn a_body_cut_short_of_an_unchanged_object_is_a_transient_error() {
        let (port, _) = serve_script(vec![
            b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\nETag: \"same\"\r\nConnection: close\r\n\r\n0123",
            b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\nETag: \"same\"\r\nConnection: close\r\n\r\n",
        ]);
        let err = get_from(port).expect_err("cut short");
        assert_eq!(
            err.kind(),
            sealback_plugin_api::ErrorKind::Transient,
            "{err}"
        );
    }
}
