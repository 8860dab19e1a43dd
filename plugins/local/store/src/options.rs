//! The provider's options.

use std::path::PathBuf;

use sealback_plugin_api::ProviderError;
use serde::Deserialize;

/// `{"path": "/mnt/backup/sealback"}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Options {
    /// The directory that holds the objects; absolute.
    pub(crate) path: PathBuf,
}

impl Options {
    pub(crate) fn parse(json: &str) -> Result<Self, ProviderError> {
        let options: Self = serde_json::from_str(json).map_err(|err| {
            ProviderError::invalid_config(format!("invalid options for the local provider: {err}"))
        })?;
        if !options.path.is_absolute() {
            return Err(ProviderError::invalid_config(format!(
                "invalid options for the local provider: path {:?} is not absolute; give the \
                 full path of the backup directory",
                options.path
            )));
        }
        Ok(options)
    }
}
