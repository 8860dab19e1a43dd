//! A convention for providers that write an object under a temporary name first (a file to
//! rename, a WebDAV resource to MOVE): `.<basename>.tmp-<16 hex digits>`, beside the object
//! it becomes. A put that crashes leaves one behind; since such names are valid object
//! names, a provider using the convention reserves them: `put` refuses them, `get` does not
//! find them, `remove` leaves them alone and `list` skips them.

/// How many bytes of the object's basename go into a temporary name, so that the name stays
/// within the 255 bytes most file systems allow.
const BASENAME_BYTES: usize = 200;
const MARKER: &str = ".tmp-";
const HEX_DIGITS: usize = 16;

/// The temporary name for the object whose last segment is `basename`; `random` makes it
/// unique (pass a fresh random number for each put).
pub fn temp_name(basename: &str, random: u64) -> String {
    // Object names are ASCII, so any byte offset is a character boundary.
    let kept = basename
        .get(..basename.len().min(BASENAME_BYTES))
        .unwrap_or(basename);
    format!(".{kept}{MARKER}{random:0width$x}", width = HEX_DIGITS)
}

/// Whether one segment of a name has the shape of a temporary name.
pub fn is_temp_name(segment: &str) -> bool {
    let Some(rest) = segment.strip_prefix('.') else {
        return false;
    };
    let Some(hex_start) = rest.len().checked_sub(HEX_DIGITS) else {
        return false;
    };
    let (head, hex) = rest.split_at_checked(hex_start).unwrap_or((rest, ""));
    hex.len() == HEX_DIGITS
        && hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        && head.ends_with(MARKER)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_names_are_recognised_and_short_enough() {
        for basename in ["c", "0001.pack", ".hidden", &"x".repeat(255)] {
            let name = temp_name(basename, 0x0123_4567_89ab_cdef);
            assert!(is_temp_name(&name), "{name}");
            assert!(name.len() <= 255, "{name}");
        }
        assert_eq!(temp_name("abc", 1), ".abc.tmp-0000000000000001");
    }

    #[test]
    fn ordinary_names_are_not_temp_names() {
        for name in [
            "c",
            ".c",
            ".c.tmp-",
            ".c.tmp-0123",
            "c.tmp-0123456789abcdef",
            ".c.tmp-0123456789ABCDEF",
        ] {
            assert!(!is_temp_name(name), "{name}");
        }
    }
}
