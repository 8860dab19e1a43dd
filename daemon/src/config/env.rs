//! Environment overrides (`SEALBACK_SECTION__KEY`), and whom to blame when the configuration
//! they make is wrong: a value that came from a variable is the variable's fault, and the
//! error says so, instead of sending the user to a file that is right.

use std::path::Path;

use super::{ConfigError, ENV_PREFIX, load_from};

/// The variables that override the file, without the prefix (`SCHEDULE__MODE`), by name.
/// Plain `SEALBACK_` variables (no `__`: `SEALBACK_SOCKET`, `SEALBACK_LOG`) are not ours.
pub(super) fn overrides(env: impl IntoIterator<Item = (String, String)>) -> Vec<(String, String)> {
    let mut overrides: Vec<(String, String)> = env
        .into_iter()
        .filter_map(|(k, v)| {
            let rest = k.strip_prefix(ENV_PREFIX)?;
            rest.contains("__").then(|| (rest.to_owned(), v))
        })
        .collect();
    overrides.sort();
    overrides
}

/// Who made the configuration wrong. The file alone failing: the file (its error). Else the
/// first variable that fails on top of the file alone, named; else (only a combination
/// fails) the file with every variable named.
pub(super) fn blame(
    error: ConfigError,
    path: &Path,
    overrides: &[(String, String)],
) -> ConfigError {
    if overrides.is_empty() {
        return error;
    }
    if let Err(file_error) = load_from(path, &[]) {
        return file_error;
    }
    for one in overrides {
        if let Err(e) = load_from(path, std::slice::from_ref(one)) {
            return e.blamed_on(format!("environment variable {ENV_PREFIX}{}", one.0));
        }
    }
    let names: Vec<String> = overrides
        .iter()
        .map(|(name, _)| format!("{ENV_PREFIX}{name}"))
        .collect();
    error.blamed_on(format!(
        "{} with the environment variables {}",
        super::origin(path),
        names.join(", ")
    ))
}
