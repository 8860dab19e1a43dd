//! The provider's options, checked: everything `open` needs before it talks to Google.

use std::fs;
use std::path::PathBuf;
use std::time::Duration;

use sealback_plugin_api::ProviderError;
use serde::Deserialize;
use zeroize::Zeroizing;

/// Google's endpoints, the defaults of `api_root`, `token_uri` and `device_auth_uri`.
const GOOGLE_API_ROOT: &str = "https://www.googleapis.com/";
const GOOGLE_TOKEN_URI: &str = "https://oauth2.googleapis.com/token";
const GOOGLE_DEVICE_AUTH_URI: &str = "https://oauth2.googleapis.com/device/code";

/// Resumable uploads send their chunks in multiples of this (Drive refuses other sizes).
pub(crate) const CHUNK_UNIT: u64 = 256 << 10;
const DEFAULT_CHUNK_SIZE: u64 = 32 * CHUNK_UNIT; // 8 MiB
/// Objects larger than this go up in resumable uploads; smaller ones in one multipart request.
/// Below the repository's 4 MiB packs, so that every full pack can resume after a cut
/// connection instead of starting over, as Google advises for uploads from mobile devices; it
/// costs one request more per pack (the session's start). Indexes, manifests and other small
/// objects stay multipart.
const DEFAULT_RESUMABLE_THRESHOLD: u64 = 2 << 20;
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

/// The options as written in the configuration.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    client_id: String,
    #[serde(default)]
    client_secret: Option<String>,
    #[serde(default)]
    client_secret_file: Option<PathBuf>,
    refresh_token_file: PathBuf,
    #[serde(default)]
    api_root: Option<String>,
    #[serde(default)]
    token_uri: Option<String>,
    #[serde(default)]
    device_auth_uri: Option<String>,
    #[serde(default)]
    resumable_threshold: Option<u64>,
    #[serde(default)]
    chunk_size: Option<u64>,
    #[serde(default)]
    timeout: Option<String>,
}

/// Checked options.
pub(crate) struct Options {
    pub(crate) client_id: String,
    pub(crate) client_secret: Zeroizing<String>,
    /// Where `sealbackctl target auth` writes the refresh token, and every refresh reads it.
    pub(crate) refresh_token_file: PathBuf,
    /// Ends with `/`: files at `{api_root}drive/v3/`, uploads at `{api_root}upload/drive/v3/`.
    pub(crate) api_root: String,
    pub(crate) token_uri: String,
    pub(crate) device_auth_uri: String,
    pub(crate) resumable_threshold: u64,
    pub(crate) chunk_size: u64,
    /// How long one request (or one chunk of an upload) may take.
    pub(crate) timeout: Duration,
}

impl Options {
    /// Parses and checks the options and reads `client_secret_file`.
    pub(crate) fn parse(json: &str) -> Result<Self, ProviderError> {
        let raw: Raw = serde_json::from_str(json).map_err(|err| invalid(err.to_string()))?;
        if raw.client_id.trim().is_empty() {
            return Err(invalid("`client_id` is empty: give the OAuth client's id"));
        }
        let client_secret = match (raw.client_secret, raw.client_secret_file) {
            (Some(secret), None) => Zeroizing::new(secret),
            (None, Some(path)) => read_secret_file(&path)?,
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "`client_secret` and `client_secret_file` are both given: keep one",
                ));
            }
            (None, None) => {
                return Err(invalid(
                    "`client_secret` (or `client_secret_file`) is missing: give the OAuth \
                     client's secret (docs/gdrive.md says where to find it)",
                ));
            }
        };
        if !raw.refresh_token_file.is_absolute() {
            return Err(invalid(format!(
                "`refresh_token_file` {}: give an absolute path",
                raw.refresh_token_file.display()
            )));
        }
        let chunk_size = raw.chunk_size.unwrap_or(DEFAULT_CHUNK_SIZE);
        if chunk_size == 0 || !chunk_size.is_multiple_of(CHUNK_UNIT) {
            return Err(invalid(format!(
                "`chunk_size` {chunk_size}: give a positive multiple of {CHUNK_UNIT} (256 KiB)"
            )));
        }
        let timeout = match raw.timeout {
            None => DEFAULT_TIMEOUT,
            Some(text) => humantime::parse_duration(&text)
                .ok()
                .filter(|t| !t.is_zero())
                .ok_or_else(|| {
                    invalid(format!(
                        "`timeout` {text:?}: give a duration such as \"2m\""
                    ))
                })?,
        };
        Ok(Self {
            client_id: raw.client_id,
            client_secret,
            refresh_token_file: raw.refresh_token_file,
            api_root: url_option("api_root", raw.api_root, GOOGLE_API_ROOT, true)?,
            token_uri: url_option("token_uri", raw.token_uri, GOOGLE_TOKEN_URI, false)?,
            device_auth_uri: url_option(
                "device_auth_uri",
                raw.device_auth_uri,
                GOOGLE_DEVICE_AUTH_URI,
                false,
            )?,
            resumable_threshold: raw
                .resumable_threshold
                .unwrap_or(DEFAULT_RESUMABLE_THRESHOLD),
            chunk_size,
            timeout,
        })
    }
}

/// An `http://` or `https://` URL option; `api_root` gets a trailing `/`.
fn url_option(
    name: &str,
    value: Option<String>,
    default: &str,
    directory: bool,
) -> Result<String, ProviderError> {
    let mut url = value.unwrap_or_else(|| default.to_owned());
    let parsed: hyper::Uri = url
        .parse()
        .map_err(|err| invalid(format!("`{name}` {url:?}: not a URL: {err}")))?;
    if !matches!(parsed.scheme_str(), Some("http" | "https")) || parsed.host().is_none() {
        return Err(invalid(format!(
            "`{name}` {url:?}: give an http:// or https:// URL with a host"
        )));
    }
    if directory && !url.ends_with('/') {
        url.push('/');
    }
    Ok(url)
}

fn read_secret_file(path: &PathBuf) -> Result<Zeroizing<String>, ProviderError> {
    let bytes = Zeroizing::new(fs::read(path).map_err(|err| {
        invalid(format!(
            "`client_secret_file` {}: cannot read it: {err}",
            path.display()
        ))
    })?);
    let text = std::str::from_utf8(&bytes).map_err(|_| {
        invalid(format!(
            "`client_secret_file` {}: not UTF-8 text",
            path.display()
        ))
    })?;
    let secret = text.trim();
    if secret.is_empty() {
        return Err(invalid(format!(
            "`client_secret_file` {}: it is empty",
            path.display()
        )));
    }
    Ok(Zeroizing::new(secret.to_owned()))
}

/// An [`InvalidConfig`](sealback_plugin_api::ErrorKind::InvalidConfig) error.
pub(crate) fn invalid(message: impl Into<String>) -> ProviderError {
    ProviderError::invalid_config(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<Options, ProviderError> {
        Options::parse(json)
    }

    #[test]
    fn defaults_are_googles() {
        let options = parse(r#"{"client_id":"c","client_secret":"s","refresh_token_file":"/t"}"#)
            .expect("test setup");
        assert_eq!(options.api_root, "https://www.googleapis.com/");
        assert_eq!(options.token_uri, "https://oauth2.googleapis.com/token");
        assert_eq!(
            options.device_auth_uri,
            "https://oauth2.googleapis.com/device/code"
        );
        assert_eq!(options.chunk_size % CHUNK_UNIT, 0);
        // Below the repository's 4 MiB packs: a full pack resumes after a cut connection.
        assert!(options.resumable_threshold < 4 << 20);
    }

    #[test]
    fn errors_name_the_option() {
        let cases = [
            (
                r#"{"client_id":"c","client_secret":"s","refresh_token_file":"/t","colour":1}"#,
                "colour",
            ),
            (
                r#"{"client_id":"c","refresh_token_file":"/t"}"#,
                "client_secret",
            ),
            (
                r#"{"client_secret":"s","refresh_token_file":"/t"}"#,
                "client_id",
            ),
            (
                r#"{"client_id":"c","client_secret":"s"}"#,
                "refresh_token_file",
            ),
            (
                r#"{"client_id":"c","client_secret":"s","refresh_token_file":"t"}"#,
                "refresh_token_file",
            ),
            (
                r#"{"client_id":"c","client_secret":"s","refresh_token_file":"/t","api_root":"ftp://x/"}"#,
                "api_root",
            ),
            (
                r#"{"client_id":"c","client_secret":"s","refresh_token_file":"/t","chunk_size":1000}"#,
                "chunk_size",
            ),
            (
                r#"{"client_id":"c","client_secret_file":"/nonexistent/s","refresh_token_file":"/t"}"#,
                "client_secret_file",
            ),
        ];
        for (json, option) in cases {
            let err = parse(json)
                .err()
                .unwrap_or_else(|| panic!("{json} was accepted"));
            assert_eq!(
                err.kind(),
                sealback_plugin_api::ErrorKind::InvalidConfig,
                "{json}"
            );
            assert!(err.to_string().contains(option), "{json}: {err}");
        }
    }
}
