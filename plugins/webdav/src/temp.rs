//! Names of temporary objects: `.<basename>.tmp-<16 hex digits>`, in the collection of the
//! object they become (so that a MOVE is a rename within one directory on the server).
//!
//! A put that is interrupted between its PUT and its MOVE leaves one behind. They are valid
//! object names, so the provider reserves them: `put` refuses them, `get` does not find them,
//! `remove` leaves them alone and `list` skips them. The same holds for the temporary files
//! Apache's mod_dav_fs writes during a PUT (`.davfs.tmp<random>`), which a listing can catch.

const APACHE_PREFIX: &str = ".davfs.tmp";

/// A fresh temporary name for the object whose last segment is `basename` (the SDK's
/// convention, `sealback_plugin_api::sdk::temp`).
pub(crate) fn temp_name(basename: &str) -> String {
    sealback_plugin_api::sdk::temp::temp_name(basename, rand::random())
}

/// Whether a name's last segment has the shape of a temporary object, ours or the server's.
pub(crate) fn is_temp_name(basename: &str) -> bool {
    basename.starts_with(APACHE_PREFIX) || sealback_plugin_api::sdk::temp::is_temp_name(basename)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The SDK tests the convention itself; here, only what this provider adds.
    #[test]
    fn apaches_temporary_files_count_as_temporary_too() {
        assert!(is_temp_name(&temp_name("0001.pack")));
        assert!(is_temp_name(".davfs.tmpa1B2c3"));
        assert!(!is_temp_name("davfs.tmp1"));
    }
}
