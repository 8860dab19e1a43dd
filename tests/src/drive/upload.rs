//! files.create with content: `uploadType=multipart` (RFC 2387 multipart/related: the
//! metadata's JSON part, then the media part), `uploadType=media`, and `uploadType=resumable`
//! (a session URL in `Location`; content sent with `Content-Range: bytes a-b/N`, answered
//! `308` with `Range: bytes=0-b` until the last byte, then `200` with the file; `bytes */N`
//! with no content asks how much the session holds). Bodies are parsed as bytes.

use bytes::Bytes;

use super::errors::DriveError;
use super::files::{file_answer, new_file};
use super::server::{Answer, Request};
use super::state::{NewFile, Session, State, new_id};

/// Chunks of a resumable upload other than the last are multiples of this, and the server
/// persists what it receives in units of it.
pub const CHUNK_GRANULE: u64 = 256 * 1024;

/// `POST upload/drive/v3/files?uploadType=multipart` (or `media`).
pub(crate) fn create_multipart(state: &mut State, request: &Request) -> Answer {
    let (file, media) = match request.param("uploadType") {
        Some("media") => (
            NewFile {
                name: "Untitled".to_string(),
                ..NewFile::default()
            },
            request.body.clone(),
        ),
        _ => match parse_multipart(request) {
            Ok(parts) => parts,
            Err(e) => return e.into(),
        },
    };
    state.counters.bytes_uploaded += media.len() as u64;
    if !state.fits(media.len() as u64) {
        return DriveError::storage_quota_exceeded().into();
    }
    let stored = state.insert(file, media);
    file_answer(request, 200, &stored)
}

fn parse_multipart(request: &Request) -> Result<(NewFile, Bytes), DriveError> {
    let content_type = request.header("content-type").unwrap_or_default();
    let boundary = multipart_boundary(content_type).ok_or_else(|| {
        DriveError::bad_request(format!("uploadType=multipart needs Content-Type multipart/related with a boundary, not {content_type:?}"))
    })?;
    let parts = split_multipart(&request.body, &boundary).ok_or_else(|| {
        DriveError::bad_request("the multipart body is malformed (no closing boundary)")
    })?;
    let [metadata, media] = parts.as_slice() else {
        return Err(DriveError::bad_request(format!(
            "a multipart upload has 2 parts (metadata, media), not {}",
            parts.len()
        )));
    };
    let mut file = new_file(&metadata.1)?;
    if file.mime_type.is_none() {
        file.mime_type = media.0.clone();
    }
    Ok((file, media.1.clone()))
}

fn multipart_boundary(content_type: &str) -> Option<String> {
    let mut params = content_type.split(';').map(str::trim);
    if !params.next()?.eq_ignore_ascii_case("multipart/related") {
        return None;
    }
    params.find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("boundary")
            .then(|| v.trim().trim_matches('"').to_string())
    })
}

/// The parts between the delimiters `CRLF--boundary` (the first may open the body without the
/// CRLF), up to the closing `--boundary--`: each part's Content-Type and content.
fn split_multipart(body: &Bytes, boundary: &str) -> Option<Vec<(Option<String>, Bytes)>> {
    let delimiter = format!("\r\n--{boundary}").into_bytes();
    let opening = &delimiter[2..];
    let mut at = if body.starts_with(opening) {
        opening.len()
    } else {
        find(body, &delimiter, 0)? + delimiter.len()
    };
    let mut parts = Vec::new();
    loop {
        if body[at..].starts_with(b"--") {
            return Some(parts);
        }
        // The rest of the delimiter line (transport padding), then the part.
        let line_end = find(body, b"\r\n", at)? + 2;
        let next = find(body, &delimiter, line_end)?;
        let part = body.slice(line_end..next);
        let header_end = find(&part, b"\r\n\r\n", 0)
            .map(|i| (i, i + 4))
            .or_else(|| part.starts_with(b"\r\n").then_some((0, 2)))?;
        let headers = std::str::from_utf8(&part[..header_end.0]).ok()?;
        let content_type = headers.lines().find_map(|line| {
            let (k, v) = line.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case("content-type")
                .then(|| v.trim().to_string())
        });
        parts.push((content_type, part.slice(header_end.1..)));
        at = next + delimiter.len();
    }
}

fn find(haystack: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    haystack
        .get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|i| i + from)
}

/// `POST upload/drive/v3/files?uploadType=resumable` (also google-drive3's
/// `resumable/upload/drive/v3/files`): opens a session and answers its URL in `Location`.
pub(crate) fn start_session(state: &mut State, request: &Request) -> Answer {
    let file = match new_file(&request.body) {
        Ok(f) => f,
        Err(e) => return e.into(),
    };
    let total = match request
        .header("x-upload-content-length")
        .map(str::parse::<u64>)
    {
        None => None,
        Some(Ok(n)) => Some(n),
        Some(Err(_)) => {
            return DriveError::bad_request("X-Upload-Content-Length is not a number").into();
        }
    };
    if total.is_some_and(|n| !state.fits(n)) {
        return DriveError::storage_quota_exceeded().into();
    }
    let upload_id = new_id("ADPycdu");
    state.sessions.insert(
        upload_id.clone(),
        Session {
            file,
            total,
            received: Vec::new(),
            bytes_received_total: 0,
            requests: 0,
            completed: None,
        },
    );
    let location = format!(
        "{}upload/drive/v3/files?uploadType=resumable&upload_id={upload_id}",
        request.base_url
    );
    Answer::empty(200).with_header("location", location)
}

/// A `Content-Range` request header: `bytes a-b/N`, `bytes a-b/*` or `bytes */N`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ContentRange {
    pub range: Option<(u64, u64)>,
    pub total: Option<u64>,
}

pub(crate) fn parse_content_range(value: &str) -> Option<ContentRange> {
    let (range, total) = value.trim().strip_prefix("bytes ")?.split_once('/')?;
    let total = if total == "*" {
        None
    } else {
        Some(total.parse().ok()?)
    };
    let range = if range == "*" {
        None
    } else {
        let (a, b) = range.split_once('-')?;
        let (a, b): (u64, u64) = (a.parse().ok()?, b.parse().ok()?);
        if b < a {
            return None;
        }
        Some((a, b))
    };
    Some(ContentRange { range, total })
}

/// Whether a request on a session URL is a status query (`bytes */N`, no content).
pub(crate) fn is_status_query(request_content_range: Option<&str>) -> bool {
    request_content_range
        .and_then(parse_content_range)
        .is_some_and(|r| r.range.is_none())
}

/// `PUT` (or `POST`, as google-drive3 sends) on a session URL.
pub(crate) fn session_request(state: &mut State, request: &Request, upload_id: &str) -> Answer {
    let Some(session) = state.sessions.get_mut(upload_id) else {
        return DriveError::upload_session_not_found().into();
    };
    session.requests += 1;
    session.bytes_received_total += request.body.len() as u64;
    state.counters.bytes_uploaded += request.body.len() as u64;
    let range = match request.header("content-range") {
        // No Content-Range: the whole content in one request.
        None => ContentRange {
            range: (!request.body.is_empty()).then(|| (0, request.body.len() as u64 - 1)),
            total: Some(request.body.len() as u64),
        },
        Some(v) => match parse_content_range(v) {
            Some(r) => r,
            None => {
                return DriveError::bad_request(format!(
                    "Failed to parse Content-Range header {v:?}"
                ))
                .into();
            }
        },
    };
    if let Some(id) = &session.completed {
        let id = id.clone();
        return match state.files.get(&id) {
            Some(file) => file_answer(request, 200, file),
            None => DriveError::upload_session_not_found().into(),
        };
    }
    if let Some(total) = range.total {
        if session.total.is_some_and(|t| t != total) {
            return DriveError::bad_request(format!(
                "Content-Range total {total} differs from the session's {}",
                session.total.unwrap_or(0)
            ))
            .into();
        }
        session.total = Some(total);
    }
    if let Some((first, last)) = range.range {
        if let Err(e) = accept_chunk(session, first, last, &request.body) {
            return e.into();
        }
    } else if !request.body.is_empty() {
        return DriveError::bad_request("a status query (Content-Range: bytes */N) has no content")
            .into();
    }
    let received = session.received.len() as u64;
    if session.total != Some(received)
        || (received == 0 && range.range.is_none() && range.total != Some(0))
    {
        return incomplete(received);
    }
    if !state.fits(received) {
        return DriveError::storage_quota_exceeded().into();
    }
    let Some(session) = state.sessions.get_mut(upload_id) else {
        return DriveError::upload_session_not_found().into();
    };
    let content = Bytes::from(std::mem::take(&mut session.received));
    let file = session.file.clone();
    let stored = state.insert(file, content.clone());
    if let Some(session) = state.sessions.get_mut(upload_id) {
        session.received = content.to_vec();
        session.completed = Some(stored.id.clone());
    }
    file_answer(request, 200, &stored)
}

fn accept_chunk(
    session: &mut Session,
    first: u64,
    last: u64,
    body: &[u8],
) -> Result<(), DriveError> {
    let len = last - first + 1;
    if body.len() as u64 != len {
        return Err(DriveError::bad_request(format!(
            "Content-Range bytes {first}-{last} names {len} bytes but the request has {}",
            body.len()
        )));
    }
    let is_last = session.total.is_some_and(|t| last + 1 == t);
    if session.total.is_some_and(|t| last >= t) {
        return Err(DriveError::bad_request(format!(
            "Content-Range bytes {first}-{last} is past the upload's end"
        )));
    }
    if !is_last && len % CHUNK_GRANULE != 0 {
        return Err(DriveError::bad_request(format!(
            "a chunk other than the last must be a multiple of {CHUNK_GRANULE} bytes; this one has {len}"
        )));
    }
    let received = session.received.len() as u64;
    if first > received {
        return Err(DriveError::bad_request(format!(
            "Content-Range starts at {first} but the session holds only {received} bytes"
        )));
    }
    let skip = (received - first) as usize;
    if skip < body.len() {
        session.received.extend_from_slice(&body[skip..]);
    }
    Ok(())
}

/// 308 Resume Incomplete, with `Range: bytes=0-LAST` once something is held.
fn incomplete(received: u64) -> Answer {
    let answer = Answer::empty(308);
    if received == 0 {
        answer
    } else {
        answer.with_header("range", format!("bytes=0-{}", received - 1))
    }
}

/// A chunk request whose connection was cut after `partial` bytes of its content: the session
/// keeps what arrived, rounded down to whole 256 KiB units as Google's upload servers persist.
pub(crate) fn absorb_cut(state: &mut State, request: &Request, upload_id: &str, partial: &[u8]) {
    let Some(session) = state.sessions.get_mut(upload_id) else {
        return;
    };
    session.requests += 1;
    session.bytes_received_total += partial.len() as u64;
    state.counters.bytes_uploaded += partial.len() as u64;
    let Some(ContentRange {
        range: Some((first, _)),
        ..
    }) = request
        .header("content-range")
        .and_then(parse_content_range)
    else {
        return;
    };
    let received = session.received.len() as u64;
    if first > received || session.completed.is_some() {
        return;
    }
    let end = (first + partial.len() as u64) / CHUNK_GRANULE * CHUNK_GRANULE;
    if end > received {
        let from = (received - first) as usize;
        let to = (end - first) as usize;
        session.received.extend_from_slice(&partial[from..to]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_binary_multipart_bodies() {
        let media: Vec<u8> = (0..=255u8).chain([b'\r', b'\n', b'-', b'-']).collect();
        let mut body = b"\r\n--B\r\nContent-Type: application/json\r\n\r\n{\"name\":\"x\"}\r\n--B\r\nContent-Type: application/octet-stream\r\n\r\n".to_vec();
        body.extend_from_slice(&media);
        body.extend_from_slice(b"\r\n--B--\r\n");
        let parts = split_multipart(&Bytes::from(body), "B").expect("parse");
        assert_eq!(parts.len(), 2);
        assert_eq!(&parts[0].1[..], b"{\"name\":\"x\"}");
        assert_eq!(parts[1].0.as_deref(), Some("application/octet-stream"));
        assert_eq!(&parts[1].1[..], &media[..]);
        assert!(split_multipart(&Bytes::from_static(b"--B\r\n\r\nx\r\n--B"), "B").is_none());
    }

    #[test]
    fn content_ranges() {
        assert_eq!(
            parse_content_range("bytes 0-9/10"),
            Some(ContentRange {
                range: Some((0, 9)),
                total: Some(10)
            })
        );
        assert_eq!(
            parse_content_range("bytes */10"),
            Some(ContentRange {
                range: None,
                total: Some(10)
            })
        );
        assert_eq!(
            parse_content_range("bytes 0-9/*"),
            Some(ContentRange {
                range: Some((0, 9)),
                total: None
            })
        );
        assert_eq!(parse_content_range("bytes 9-0/10"), None);
        assert_eq!(
            multipart_boundary("multipart/related; boundary=\"a b\"").as_deref(),
            Some("a b")
        );
    }
}
