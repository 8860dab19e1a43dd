//! Names of temporary files: the SDK's convention (`sealback_plugin_api::sdk::temp`),
//! `.<basename>.tmp-<16 hex digits>` beside the object they become.

pub(crate) use sealback_plugin_api::sdk::temp::is_temp_name;

/// A fresh temporary file name for the object whose last segment is `basename`.
pub(crate) fn temp_name(basename: &str) -> String {
    sealback_plugin_api::sdk::temp::temp_name(basename, rand::random())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_names_are_recognised() {
        for basename in ["c", "0001.pack", ".hidden", &"x".repeat(255)] {
            let name = temp_name(basename);
            assert!(is_temp_name(&name), "{name}");
            assert!(name.len() <= 255, "{name}");
        }
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
            ".c.tmp-0123456789abcdeg",
        ] {
            assert!(!is_temp_name(name), "{name}");
        }
    }
}
