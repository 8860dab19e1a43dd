//! Names of temporary files: the SDK's convention (`sealback_plugin_api::sdk::temp`),
//! `.<basename>.tmp-<16 hex digits>` beside the object they become.

pub(crate) use sealback_plugin_api::sdk::temp::is_temp_name;

/// A fresh temporary file name for the object whose last segment is `basename`.
pub(crate) fn temp_name(basename: &str) -> String {
    sealback_plugin_api::sdk::temp::temp_name(basename, rand::random())
}
