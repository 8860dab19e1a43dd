//! PROPFIND: what is in a collection (Depth 1) and what one resource is (Depth 0).
//!
//! Depth `infinity` is never asked for: Apache refuses it by default (403 with
//! `<DAV:propfind-finite-depth/>`) and it makes servers build one huge answer. Listing walks
//! the tree one collection at a time instead; Depth 0 answers whether a name is an object, a
//! collection or nothing, which `get`, `remove` and `list` need on servers that answer a
//! collection's name as if it were a file (rclone serves an HTML page for a GET on a
//! collection and deletes a whole collection on a DELETE, even with `Depth: 0`).

use reqwest::header::CONTENT_TYPE;
use reqwest::{StatusCode, Url};
use sealback_plugin_api::ProviderError;
use sealback_plugin_api::limits::{self, BoundedReadError};

use crate::answer::{self, Request};
use crate::href::{HrefError, relative_name};
use crate::multistatus::{self, Entry};
use crate::server::{Answer, PROPFIND, Server};

/// The properties asked for: whether a resource is a collection, and its size.
const BODY: &str = concat!(
    r#"<?xml version="1.0" encoding="utf-8"?>"#,
    r#"<D:propfind xmlns:D="DAV:"><D:prop><D:resourcetype/><D:getcontentlength/></D:prop>"#,
    r#"</D:propfind>"#
);

/// The most bytes of one PROPFIND answer read: one page of a listing, as for every plugin. At
/// Apache's 250 bytes an entry that is a collection of about 250,000 objects (a repository of
/// about 1 TB of packs). A server that sends more is not listing one of sealback's
/// collections, and reading on would let it fill the device's memory.
const MAX_ANSWER_BYTES: u64 = limits::MAX_PAGE_BYTES;

#[derive(Debug, Clone, Copy)]
pub(crate) enum Depth {
    Zero,
    One,
}

/// A resource in an answer: its name relative to the base collection (no trailing `/`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Resource {
    pub(crate) name: String,
    pub(crate) collection: bool,
    pub(crate) size: Option<u64>,
}

/// What `path` is, as Depth 0 tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Missing,
    Collection,
    Object,
}

/// What a PROPFIND found.
#[derive(Debug)]
pub(crate) enum Found {
    Resources(Vec<Resource>),
    /// 404: nothing there.
    Missing,
    /// 400 or 409 for a path below an object (Apache), or some other problem with the path;
    /// the error to report if it is not that.
    BadPath(ProviderError),
}

/// PROPFIND on `path` (relative to the base; a collection's path ends with `/`). The answer's
/// resources are those inside the base whose names are UTF-8; an href outside the base is an
/// error, since the listing would not be what was asked for.
pub(crate) fn propfind(server: &Server, path: &str, depth: Depth) -> Result<Found, ProviderError> {
    let url = server.url(path)?;
    let request = Request {
        method: &PROPFIND,
        url: &url,
    };
    let depth_header = match depth {
        Depth::Zero => "0",
        Depth::One => "1",
    };
    let answer = server.send(&PROPFIND, &url, |builder| {
        builder
            .header("Depth", depth_header)
            .header(CONTENT_TYPE, "application/xml; charset=utf-8")
            .body(BODY)
    })?;
    match answer.response.status() {
        StatusCode::MULTI_STATUS => {}
        StatusCode::NOT_FOUND => return Ok(Found::Missing),
        StatusCode::BAD_REQUEST | StatusCode::CONFLICT => {
            let err = answer::unexpected(&request, &answer, server.credentials());
            return Ok(Found::BadPath(err));
        }
        _ => return Err(answer::unexpected(&request, &answer, server.credentials())),
    }
    let text = read_answer(&request, answer)?;
    let entries = multistatus::parse(&text).map_err(|problem| {
        ProviderError::permanent(format!(
            "{request}: the answer is not a WebDAV multistatus ({problem}); is `url` a WebDAV \
             collection?"
        ))
    })?;
    resources(server, &request, &url, entries).map(Found::Resources)
}

/// The body of a multistatus answer, read up to [`MAX_ANSWER_BYTES`].
fn read_answer(request: &Request<'_>, answer: Answer) -> Result<String, ProviderError> {
    let expected = answer.response.content_length();
    let body = limits::read_bounded(answer.response, MAX_ANSWER_BYTES, expected).map_err(
        |err| match err {
            BoundedReadError::TooLarge { .. } => ProviderError::permanent(format!(
                "{request}: the answer is larger than {MAX_ANSWER_BYTES} bytes, more than a \
                 listing of one collection takes; is `url` the collection sealback writes to?"
            )),
            BoundedReadError::Io(err) => {
                ProviderError::transient(format!("{request}: the answer broke off: {err}"))
            }
        },
    )?;
    Ok(String::from_utf8_lossy(&body).into_owned())
}

fn resources(
    server: &Server,
    request: &Request<'_>,
    url: &Url,
    entries: Vec<Entry>,
) -> Result<Vec<Resource>, ProviderError> {
    let mut found = Vec::with_capacity(entries.len());
    for entry in entries {
        let name = match relative_name(url, server.base_path(), &entry.href) {
            Ok(name) => name,
            // Not UTF-8, so not an object name: not ours.
            Err(HrefError::NotUtf8) => continue,
            Err(HrefError::Outside) => {
                return Err(ProviderError::permanent(format!(
                    "{request}: the answer names {}, which is outside {}; the listing cannot be \
                     trusted (is a proxy rewriting paths? then set `url` to the address the \
                     server sees)",
                    entry.href,
                    server.base()
                )));
            }
            Err(HrefError::Malformed) => {
                return Err(ProviderError::permanent(format!(
                    "{request}: the answer names {:?}, which is not a URL",
                    entry.href
                )));
            }
        };
        if let Some(status) = entry.failed_status {
            return Err(ProviderError::permanent(format!(
                "{request}: the server cannot describe {} ({status})",
                entry.href
            )));
        }
        found.push(Resource {
            name,
            collection: entry.collection,
            size: entry.size,
        });
    }
    Ok(found)
}

/// Whether `name` (an object name, no trailing `/`) is an object, a collection or nothing.
///
/// A name below an object is nothing, though Apache answers 400 for it rather than 404: when
/// the server says the path is bad, the parent is asked about, and so on up.
pub(crate) fn kind(server: &Server, name: &str) -> Result<Kind, ProviderError> {
    let resources = match propfind(server, name, Depth::Zero)? {
        Found::Resources(resources) => resources,
        Found::Missing => return Ok(Kind::Missing),
        Found::BadPath(err) => {
            return match name.rsplit_once('/') {
                Some((parent, _)) => match kind(server, parent)? {
                    Kind::Object | Kind::Missing => Ok(Kind::Missing),
                    Kind::Collection => Err(err),
                },
                None => Err(err),
            };
        }
    };
    let this = resources.iter().find(|resource| resource.name == name);
    Ok(match this {
        None => Kind::Missing,
        Some(resource) if resource.collection => Kind::Collection,
        Some(_) => Kind::Object,
    })
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::TcpListener;

    use super::*;
    use crate::options::Options;

    #[test]
    fn an_answer_larger_than_any_listing_is_not_read_to_its_end() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("address").port();
        // One byte more than a listing may take, then the answer ends.
        let server = std::thread::spawn(move || {
            let (stream, _) = listener.accept().expect("accept");
            let mut reader = BufReader::new(stream);
            let mut line = String::new();
            let mut length = 0;
            while reader.read_line(&mut line).expect("request") > 2 {
                if let Some(n) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = n.trim().parse().expect("length");
                }
                line.clear();
            }
            std::io::copy(&mut (&mut reader).take(length), &mut std::io::sink()).expect("body");
            let mut stream = reader.into_inner();
            let total = MAX_ANSWER_BYTES + 1;
            let open = r#"<D:multistatus xmlns:D="DAV:">"#;
            let head = format!(
                "HTTP/1.1 207 Multi-Status\r\nContent-Type: application/xml\r\n\
                 Content-Length: {total}\r\n\r\n{open}"
            );
            stream.write_all(head.as_bytes()).expect("head");
            let filler = vec![b' '; 1 << 20];
            let mut left = total - open.len() as u64;
            while left > 0 {
                let n = left.min(filler.len() as u64) as usize;
                // The client stops reading at its limit and hangs up.
                if stream.write_all(&filler[..n]).is_err() {
                    return;
                }
                left -= n as u64;
            }
        });
        let options = format!(r#"{{"url": "http://127.0.0.1:{port}/backup/"}}"#);
        let options = Options::parse(&options, |_| None).expect("options");
        let server_client = Server::new(options).expect("client");
        let err = propfind(&server_client, "data/", Depth::One).expect_err("refused");
        assert!(err.message().contains("larger than"), "{err}");
        server.join().expect("server thread");
    }
}
