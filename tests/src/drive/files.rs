//! files.list, files.get, files.delete and the metadata-only files.create.

use std::cmp::Ordering;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::errors::DriveError;
use super::fields::Mask;
use super::query::Query;
use super::server::{Answer, Request};
use super::state::{APP_DATA_FOLDER, NewFile, State, StoredFile};

/// files.list's largest `pageSize`.
pub const MAX_PAGE_SIZE: u32 = 1000;
const DEFAULT_PAGE_SIZE: u32 = 100;
const DEFAULT_FILE_FIELDS: &str = "kind,id,name,mimeType";
const DEFAULT_LIST_FIELDS: &str =
    "kind,nextPageToken,incompleteSearch,files(kind,id,name,mimeType)";

/// The file resource with every field the emulator knows.
pub(crate) fn resource(file: &StoredFile) -> Value {
    let time = rfc3339(file.created);
    let mut value = json!({
        "kind": "drive#file",
        "id": file.id,
        "name": file.name,
        "mimeType": file.mime_type,
        "parents": file.parents,
        "spaces": [if file.in_app_data() { APP_DATA_FOLDER } else { "drive" }],
        "trashed": false,
        "size": file.content.len().to_string(),
        "quotaBytesUsed": file.content.len().to_string(),
        "sha256Checksum": hex(&Sha256::digest(&file.content)),
        "createdTime": time,
        "modifiedTime": time,
        "version": "1",
    });
    if let Some(props) = &file.app_properties {
        value["appProperties"] = props.clone();
    }
    value
}

/// The answer for one file, shaped by the request's `fields`.
pub(crate) fn file_answer(request: &Request, status: u16, file: &StoredFile) -> Answer {
    match mask(request, DEFAULT_FILE_FIELDS) {
        Ok(mask) => Answer::json(status, &mask.apply(&resource(file))),
        Err(e) => e.into(),
    }
}

fn mask(request: &Request, default: &str) -> Result<Mask, DriveError> {
    let text = request.param("fields").unwrap_or(default);
    Mask::parse(text)
        .map_err(|e| DriveError::invalid_parameter("fields", format!("fields {text:?}: {e}")))
}

/// The metadata of a file being created, from a JSON body.
pub(crate) fn new_file(body: &[u8]) -> Result<NewFile, DriveError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(NewFile {
            name: "Untitled".to_string(),
            ..NewFile::default()
        });
    }
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| DriveError::bad_request(format!("the file's metadata is not JSON: {e}")))?;
    let text = |key: &str| value.get(key).and_then(Value::as_str).map(str::to_string);
    let parents = match value.get("parents") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|p| p.as_str().map(str::to_string))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| DriveError::bad_request("parents must be a list of file ids"))?,
        Some(_) => {
            return Err(DriveError::bad_request(
                "parents must be a list of file ids",
            ));
        }
    };
    if let Some(bad) = parents
        .iter()
        .find(|p| p.as_str() != APP_DATA_FOLDER && p.as_str() != "root")
    {
        return Err(DriveError::file_not_found(bad));
    }
    Ok(NewFile {
        name: text("name").unwrap_or_else(|| "Untitled".to_string()),
        parents,
        mime_type: text("mimeType"),
        app_properties: value.get("appProperties").cloned(),
    })
}

/// `POST drive/v3/files`: a file without content.
pub(crate) fn create_metadata(state: &mut State, request: &Request) -> Answer {
    let file = match new_file(&request.body) {
        Ok(f) => f,
        Err(e) => return e.into(),
    };
    let stored = state.insert(file, bytes::Bytes::new());
    file_answer(request, 200, &stored)
}

/// `GET drive/v3/files/ID`, with or without `alt=media`.
pub(crate) fn get(state: &mut State, request: &Request, id: &str) -> Answer {
    let Some(file) = state.files.get(id) else {
        return DriveError::file_not_found(id).into();
    };
    if request.param("alt") != Some("media") {
        return file_answer(request, 200, file);
    }
    let content = file.content.clone();
    let mime = file.mime_type.clone();
    let (status, body, range) = match request
        .header("range")
        .map(|r| byte_range(r, content.len() as u64))
    {
        None => (200, content, None),
        Some(Some((first, last))) => {
            let part = content.slice(first as usize..=last as usize);
            (
                206,
                part,
                Some(format!("bytes {first}-{last}/{}", content.len())),
            )
        }
        Some(None) => {
            return Answer::empty(416)
                .with_header("content-range", format!("bytes */{}", content.len()));
        }
    };
    state.counters.bytes_downloaded += body.len() as u64;
    let mut answer = Answer::bytes(status, &mime, body);
    if let Some(range) = range {
        answer = answer.with_header("content-range", range);
    }
    answer
}

/// `Range: bytes=a-b` / `bytes=a-` / `bytes=-n` within `len` bytes.
fn byte_range(header: &str, len: u64) -> Option<(u64, u64)> {
    let spec = header.strip_prefix("bytes=")?;
    let (a, b) = spec.split_once('-')?;
    let (first, last) = match (a.trim(), b.trim()) {
        ("", n) => (len.checked_sub(n.parse().ok()?)?, len.checked_sub(1)?),
        (a, "") => (a.parse().ok()?, len.checked_sub(1)?),
        (a, b) => (
            a.parse().ok()?,
            b.parse::<u64>().ok()?.min(len.checked_sub(1)?),
        ),
    };
    (first <= last && last < len).then_some((first, last))
}

/// `DELETE drive/v3/files/ID`: 204 and no body.
pub(crate) fn delete(state: &mut State, id: &str) -> Answer {
    match state.remove(id) {
        Some(_) => Answer::empty(204),
        None => DriveError::file_not_found(id).into(),
    }
}

/// `GET drive/v3/files`.
pub(crate) fn list(state: &mut State, request: &Request) -> Answer {
    match list_page(state, request) {
        Ok(v) => Answer::json(200, &v),
        Err(e) => e.into(),
    }
}

fn list_page(state: &State, request: &Request) -> Result<Value, DriveError> {
    let spaces = request.param("spaces").unwrap_or("drive");
    let (mut drive, mut app_data) = (false, false);
    for space in spaces.split(',').map(str::trim) {
        match space {
            "drive" => drive = true,
            APP_DATA_FOLDER => app_data = true,
            other => {
                return Err(DriveError::invalid_parameter(
                    "spaces",
                    format!("unknown space {other:?}"),
                ));
            }
        }
    }
    let q = request.param("q").unwrap_or("");
    let query =
        Query::parse(q).map_err(|e| DriveError::invalid_parameter("q", format!("q {q:?}: {e}")))?;
    let page_size = match request.param("pageSize") {
        None => DEFAULT_PAGE_SIZE,
        Some(n) => match n.parse::<u32>() {
            Ok(n @ 1..=MAX_PAGE_SIZE) => n,
            _ => {
                return Err(DriveError::invalid_parameter(
                    "pageSize",
                    format!("pageSize {n}: 1 to {MAX_PAGE_SIZE}"),
                ));
            }
        },
    };
    let page_size = page_size.min(state.max_page_size.max(1)) as usize;
    let order = request.param("orderBy").map(parse_order).transpose()?;

    let mut files: Vec<&StoredFile> = state
        .files
        .values()
        .filter(|f| if f.in_app_data() { app_data } else { drive })
        .filter(|f| query.matches(f))
        .collect();
    files.sort_by(|a, b| compare(order.as_deref().unwrap_or(&[]), a, b));
    // Tokens: the creation order's last sequence number for the default order (stable while
    // files come and go), an offset for the others.
    let start = match request.param("pageToken") {
        None => 0,
        Some(token) => {
            let bad = || {
                DriveError::invalid_parameter(
                    "pageToken",
                    format!("pageToken {token:?} was not issued here"),
                )
            };
            match (token.strip_prefix('s'), token.strip_prefix('o'), &order) {
                (Some(seq), _, None) => {
                    let seq: u64 = seq.parse().map_err(|_| bad())?;
                    files.partition_point(|f| f.seq <= seq)
                }
                (_, Some(offset), Some(_)) => offset.parse().map_err(|_| bad())?,
                _ => return Err(bad()),
            }
        }
    };
    let page: Vec<&StoredFile> = files.iter().skip(start).take(page_size).copied().collect();
    let mut full = json!({
        "kind": "drive#fileList",
        "incompleteSearch": false,
        "files": page.iter().map(|f| resource(f)).collect::<Vec<_>>(),
    });
    if start + page.len() < files.len() {
        full["nextPageToken"] = json!(match (&order, page.last()) {
            (None, Some(last)) => format!("s{}", last.seq),
            _ => format!("o{}", start + page.len()),
        });
    }
    Ok(mask(request, DEFAULT_LIST_FIELDS)?.apply(&full))
}

#[derive(Debug, Clone, Copy)]
enum OrderKey {
    Name,
    Created,
}

fn parse_order(text: &str) -> Result<Vec<(OrderKey, bool)>, DriveError> {
    text.split(',')
        .map(|part| {
            let mut words = part.split_whitespace();
            let key = match words.next() {
                Some("name" | "name_natural") => OrderKey::Name,
                Some("createdTime" | "modifiedTime") => OrderKey::Created,
                other => {
                    return Err(DriveError::invalid_parameter(
                        "orderBy",
                        format!("unsupported sort key {other:?}"),
                    ));
                }
            };
            let desc = match words.next() {
                None => false,
                Some("desc") => true,
                Some(other) => {
                    return Err(DriveError::invalid_parameter(
                        "orderBy",
                        format!("unexpected {other:?}"),
                    ));
                }
            };
            Ok((key, desc))
        })
        .collect()
}

fn compare(order: &[(OrderKey, bool)], a: &StoredFile, b: &StoredFile) -> Ordering {
    for (key, desc) in order {
        let o = match key {
            OrderKey::Name => a.name.cmp(&b.name),
            OrderKey::Created => a.seq.cmp(&b.seq),
        };
        let o = if *desc { o.reverse() } else { o };
        if o != Ordering::Equal {
            return o;
        }
    }
    a.seq.cmp(&b.seq)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// RFC 3339 in UTC with milliseconds, as Drive writes times.
fn rfc3339(time: SystemTime) -> String {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // Howard Hinnant's civil-from-days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        since.subsec_millis()
    )
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn formats_times_like_drive() {
        let t = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        assert_eq!(rfc3339(t), "2023-11-14T22:13:20.123Z");
    }

    #[test]
    fn ranges() {
        assert_eq!(byte_range("bytes=0-9", 100), Some((0, 9)));
        assert_eq!(byte_range("bytes=90-", 100), Some((90, 99)));
        assert_eq!(byte_range("bytes=-10", 100), Some((90, 99)));
        assert_eq!(byte_range("bytes=100-", 100), None);
    }
}
