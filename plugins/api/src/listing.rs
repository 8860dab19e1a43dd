//! The wire format of `list`: one UTF-8 line `<name>\t<size in bytes, decimal>\n` per object.
//!
//! Names cannot contain a tab or a newline (see [`crate::name`]), so the format needs no
//! escaping. The host parses it strictly: anything else is a bug in the plugin, not something to
//! guess around.

use std::fmt::Write as _;

use crate::name::validate_object_name;

/// One stored object, as `list` reports it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectInfo {
    /// The object's name.
    pub name: String,
    /// The object's size in bytes.
    pub size: u64,
}

/// Encodes entries, whose names the caller has validated, as list lines.
pub(crate) fn encode(entries: &[ObjectInfo]) -> Vec<u8> {
    let mut out = String::with_capacity(entries.iter().map(|e| e.name.len() + 8).sum());
    for entry in entries {
        // Writing to a String cannot fail.
        let _ = writeln!(out, "{}\t{}", entry.name, entry.size);
    }
    out.into_bytes()
}

/// A list line that does not follow the format; names the line and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line} {text:?}: {problem}; each entry must be \"<name>\\t<size>\\n\"")]
#[cfg_attr(not(any(feature = "host", test)), allow(dead_code))]
pub(crate) struct MalformedEntry {
    line: usize,
    text: String,
    problem: String,
}

/// Parses list output, checking that every name is valid and starts with `prefix`.
#[cfg_attr(not(any(feature = "host", test)), allow(dead_code))]
pub(crate) fn parse(bytes: &[u8], prefix: &str) -> Result<Vec<ObjectInfo>, MalformedEntry> {
    let mut entries = Vec::new();
    let mut rest = bytes;
    let mut line_no = 0;
    while !rest.is_empty() {
        line_no += 1;
        let (line, after) = match rest.iter().position(|&b| b == b'\n') {
            Some(end) => (&rest[..end], &rest[end + 1..]),
            None => (rest, &[][..]),
        };
        let malformed = |problem: String| MalformedEntry {
            line: line_no,
            text: preview(line),
            problem,
        };
        if after.is_empty() && !rest.ends_with(b"\n") {
            return Err(malformed(
                "the last line does not end with a newline".into(),
            ));
        }
        entries.push(parse_line(line, prefix).map_err(malformed)?);
        rest = after;
    }
    Ok(entries)
}

fn parse_line(line: &[u8], prefix: &str) -> Result<ObjectInfo, String> {
    let line = std::str::from_utf8(line).map_err(|_| "it is not UTF-8".to_owned())?;
    let (name, size) = line.split_once('\t').ok_or("it has no tab")?;
    validate_object_name(name).map_err(|err| err.to_string())?;
    if !name.starts_with(prefix) {
        return Err(format!(
            "the name does not start with the prefix {prefix:?}"
        ));
    }
    if size.is_empty() || !size.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("the size {size:?} is not a decimal number"));
    }
    let size = size
        .parse()
        .map_err(|_| format!("the size {size} does not fit in 64 bits"))?;
    Ok(ObjectInfo {
        name: name.to_owned(),
        size,
    })
}

/// The start of a bad line, readable in an error message.
fn preview(line: &[u8]) -> String {
    const MAX: usize = 80;
    let text = String::from_utf8_lossy(&line[..line.len().min(MAX)]).into_owned();
    if line.len() > MAX { text + "..." } else { text }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(name: &str, size: u64) -> ObjectInfo {
        ObjectInfo {
            name: name.into(),
            size,
        }
    }

    #[test]
    fn entries_round_trip() {
        let entries = vec![info("a", 0), info("snapshots/1", 42), info("p/x", u64::MAX)];
        let bytes = encode(&entries);
        assert_eq!(bytes, b"a\t0\nsnapshots/1\t42\np/x\t18446744073709551615\n");
        assert_eq!(parse(&bytes, ""), Ok(entries));
    }

    #[test]
    fn an_empty_listing_is_empty() {
        assert_eq!(encode(&[]), b"");
        assert_eq!(parse(b"", "x/"), Ok(vec![]));
    }

    #[test]
    fn malformed_lines_are_rejected_with_their_line_number() {
        for (bytes, problem) in [
            (
                &b"a\t1"[..],
                "line 1 \"a\\t1\": the last line does not end with a newline",
            ),
            (b"a\t1\nb 2\n", "line 2 \"b 2\": it has no tab"),
            (b"a\t\n", "the size \"\" is not a decimal number"),
            (b"a\t+1\n", "the size \"+1\" is not a decimal number"),
            (b"a\t 1\n", "is not a decimal number"),
            (b"a\t1\t2\n", "the size \"1\\t2\" is not a decimal number"),
            (b"a\t18446744073709551616\n", "does not fit in 64 bits"),
            (b"\t1\n", "invalid object name \"\""),
            (b"../x\t1\n", "invalid object name"),
            (b"a\xff\t1\n", "it is not UTF-8"),
            (b"\n", "it has no tab"),
        ] {
            let err = parse(bytes, "").expect_err(problem);
            assert!(err.to_string().contains(problem), "{err}");
        }
    }

    #[test]
    fn entries_outside_the_prefix_are_rejected() {
        let err = parse(b"snapshots/1\t3\nkeys/1\t4\n", "snapshots/").expect_err("outside");
        assert!(err.to_string().contains("line 2"), "{err}");
    }
}
