//! Object names: what a provider may be asked to store, and what a list prefix may look like.
//!
//! A name is 1 to 255 bytes of segments made of `[A-Za-z0-9._-]`, separated by single `/`s, with
//! no empty segment (so no leading, trailing or doubled `/`) and no `.` or `..` segment. A
//! provider can therefore map names onto paths, keys or URLs without escaping and without a
//! name ever climbing out of its root.

use std::fmt;

/// The longest object name, in bytes.
pub const MAX_NAME_LEN: usize = 255;

/// An object name or list prefix that breaks the rules; the message says which rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid object {what} {name:?}: {reason}")]
pub struct InvalidObjectName {
    what: &'static str,
    name: String,
    reason: Reason,
}

impl InvalidObjectName {
    /// The rejected name or prefix.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// Which rule a name breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reason {
    Empty,
    TooLong(usize),
    ForbiddenByte(u8, usize),
    LeadingSlash,
    EmptySegment,
    DotSegment,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("it is empty"),
            Self::TooLong(len) => write!(f, "it is {len} bytes long, the limit is {MAX_NAME_LEN}"),
            Self::ForbiddenByte(byte, at) => write!(
                f,
                "byte {at} is {:?}, but only A-Z, a-z, 0-9, '.', '_', '-' and '/' are allowed",
                char::from(*byte)
            ),
            Self::LeadingSlash => f.write_str("it starts with '/'"),
            Self::EmptySegment => f.write_str("it has an empty segment (\"//\" or a trailing '/')"),
            Self::DotSegment => f.write_str("it has a \".\" or \"..\" segment"),
        }
    }
}

/// Checks that `name` is a valid object name: 1 to 255 bytes of segments made of
/// `[A-Za-z0-9._-]`, separated by single `/`s, with no empty, `.` or `..` segment.
pub fn validate_object_name(name: &str) -> Result<(), InvalidObjectName> {
    let fail = |reason| {
        Err(InvalidObjectName {
            what: "name",
            name: name.to_owned(),
            reason,
        })
    };
    if name.is_empty() {
        return fail(Reason::Empty);
    }
    if let Err(reason) = check_common(name) {
        return fail(reason);
    }
    match check_segments(name.split('/')) {
        Ok(()) => Ok(()),
        Err(reason) => fail(reason),
    }
}

/// Checks that `prefix` is a valid list prefix: empty, or a valid object name optionally
/// followed by one `/`. `""`, `"snap"` and `"snapshots/"` are valid; `"../"`, `"/a"`, `"a//"` and
/// `".."` are not, so a provider may join a prefix onto its root as safely as a name.
pub fn validate_list_prefix(prefix: &str) -> Result<(), InvalidObjectName> {
    if prefix.is_empty() {
        return Ok(());
    }
    let name = prefix.strip_suffix('/').unwrap_or(prefix);
    let reason = match validate_object_name(name) {
        Ok(()) => return Ok(()),
        Err(_) if name.is_empty() => Reason::LeadingSlash,
        Err(err) => err.reason,
    };
    Err(InvalidObjectName {
        what: "prefix",
        name: prefix.to_owned(),
        reason,
    })
}

/// The rules on length and bytes, shared by names and prefixes.
fn check_common(text: &str) -> Result<(), Reason> {
    if text.len() > MAX_NAME_LEN {
        return Err(Reason::TooLong(text.len()));
    }
    if let Some(at) = text.bytes().position(|b| !is_allowed(b)) {
        return Err(Reason::ForbiddenByte(text.as_bytes()[at], at));
    }
    if text.starts_with('/') {
        return Err(Reason::LeadingSlash);
    }
    Ok(())
}

fn check_segments<'a>(segments: impl Iterator<Item = &'a str>) -> Result<(), Reason> {
    for segment in segments {
        match segment {
            "" => return Err(Reason::EmptySegment),
            "." | ".." => return Err(Reason::DotSegment),
            _ => {}
        }
    }
    Ok(())
}

fn is_allowed(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'_' | b'-' | b'/')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_names() {
        for name in [
            "a",
            "config",
            "snapshots/2024-05-01T10.00.00",
            "packs/ab/abcdef0123.pack",
            ".hidden",
            "a/..b/c.",
            "_-.",
            &"x".repeat(MAX_NAME_LEN),
        ] {
            assert_eq!(validate_object_name(name), Ok(()), "{name:?}");
        }
    }

    #[test]
    fn rejects_names_that_break_a_rule() {
        let long = "x".repeat(MAX_NAME_LEN + 1);
        for (name, reason) in [
            ("", "empty"),
            (long.as_str(), "256 bytes long"),
            ("/a", "starts with '/'"),
            ("a/", "empty segment"),
            ("a//b", "empty segment"),
            (".", "\"..\" segment"),
            ("..", "\"..\" segment"),
            ("a/../b", "\"..\" segment"),
            ("a/./b", "\"..\" segment"),
            ("a b", "byte 1 is ' '"),
            ("a\tb", "byte 1"),
            ("a\nb", "byte 1"),
            ("a\\b", "byte 1"),
            ("\u{e9}t\u{e9}", "byte 0"),
            ("a\0", "byte 1"),
        ] {
            let err = validate_object_name(name).expect_err(name);
            assert!(err.to_string().contains(reason), "{name:?}: {err}");
            assert_eq!(err.name(), name);
        }
    }

    #[test]
    fn prefixes_are_names_with_an_optional_trailing_slash() {
        for prefix in ["", "s", "snapshots/", "snapshots/2024", "a/b/", ".hid"] {
            assert_eq!(validate_list_prefix(prefix), Ok(()), "{prefix:?}");
        }
        for prefix in [
            "/", "/a", "../", "..", ".", "a/..", "./x", "a//", "a b", "a\n",
        ] {
            assert!(validate_list_prefix(prefix).is_err(), "{prefix:?}");
        }
    }
}
