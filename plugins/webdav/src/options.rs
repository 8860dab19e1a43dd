//! The provider's options, checked: everything `open` needs before it talks to a server.

use std::fs;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use reqwest::Url;
use sealback_plugin_api::ProviderError;
use serde::Deserialize;
use serde::de::IgnoredAny;

use crate::password::{Credentials, Password, PasswordSource};

/// How long one request may take, from connecting to the last byte of the answer, when the
/// options do not say.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

/// The options as written in the configuration.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    url: String,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password_file: Option<PathBuf>,
    #[serde(default)]
    password_env: Option<String>,
    /// Accepted only to refuse it with a message saying where the password goes instead.
    #[serde(default)]
    password: Option<IgnoredAny>,
    #[serde(default)]
    ca_file: Option<PathBuf>,
    #[serde(default)]
    timeout: Option<String>,
    #[serde(default)]
    atomic_replace: AtomicReplace,
    #[serde(default)]
    allow_http: bool,
}

/// How `put` replaces an object; see the crate documentation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum AtomicReplace {
    /// PUT to a temporary name, then MOVE over the object; a server that refuses MOVE gets
    /// direct PUTs instead.
    #[default]
    Auto,
    /// Always PUT then MOVE; a server that refuses MOVE fails the put.
    Move,
    /// PUT straight to the object's name: atomic only if the server writes a temporary file
    /// and renames it (Apache's mod_dav_fs does).
    Direct,
}

/// Checked options.
pub(crate) struct Options {
    /// The base collection; its path ends with `/`.
    pub(crate) url: Url,
    pub(crate) credentials: Option<Credentials>,
    /// PEM certificates: the only roots trusted for https when given.
    pub(crate) ca_pem: Option<(PathBuf, Vec<u8>)>,
    pub(crate) timeout: Duration,
    pub(crate) atomic_replace: AtomicReplace,
}

impl Options {
    /// Parses and checks the options; reads the password and the CA file.
    ///
    /// `env` looks up an environment variable (the process environment in the plugin).
    pub(crate) fn parse(
        json: &str,
        env: impl Fn(&str) -> Option<std::ffi::OsString>,
    ) -> Result<Self, ProviderError> {
        let raw: Raw = serde_json::from_str(json).map_err(|err| invalid(err.to_string()))?;
        if raw.password.is_some() {
            return Err(invalid(
                "`password` is not an option: the configuration file is no place for a \
                 secret; put the password in a file readable only by sealbackd and name it \
                 in `password_file`, or in an environment variable named by `password_env`",
            ));
        }
        let url = parse_url(&raw.url)?;
        let source = match (raw.password_file, raw.password_env) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "`password_file` and `password_env` are both given: keep one",
                ));
            }
            (Some(path), None) => Some(PasswordSource::File(path)),
            (None, Some(name)) => Some(PasswordSource::Env(name)),
            (None, None) => None,
        };
        let credentials = match (raw.username, source) {
            (Some(username), Some(source)) => {
                let password = Password::read(&source, env)?;
                Some(Credentials {
                    username,
                    password,
                    source,
                })
            }
            (Some(username), None) => {
                return Err(invalid(format!(
                    "`username` {username:?} has no password: name a file holding it in \
                     `password_file`, or an environment variable in `password_env`"
                )));
            }
            (None, Some(_)) => {
                return Err(invalid(
                    "a password is given but no `username`: add the user name",
                ));
            }
            (None, None) => None,
        };
        if credentials.is_some() && url.scheme() == "http" && !raw.allow_http && !loopback(&url) {
            return Err(invalid(format!(
                "`url` {url} is plain http, which would send the password in clear to {}: \
                 use https, or set `allow_http` to true if the network is trusted",
                url.host_str().unwrap_or("the server")
            )));
        }
        let ca_pem = match raw.ca_file {
            Some(path) => {
                let pem = fs::read(&path).map_err(|err| {
                    invalid(format!(
                        "`ca_file` {}: cannot read it: {err}",
                        path.display()
                    ))
                })?;
                Some((path, pem))
            }
            None => None,
        };
        let timeout = match raw.timeout {
            Some(text) => parse_timeout(&text)?,
            None => DEFAULT_TIMEOUT,
        };
        Ok(Options {
            url,
            credentials,
            ca_pem,
            timeout,
            atomic_replace: raw.atomic_replace,
        })
    }
}

/// An [`InvalidConfig`](sealback_plugin_api::ErrorKind::InvalidConfig) error.
pub(crate) fn invalid(problem: impl std::fmt::Display) -> ProviderError {
    ProviderError::invalid_config(format!(
        "invalid options for the webdav provider: {problem}"
    ))
}

/// The base collection's URL, with the `/` a collection's path ends with.
fn parse_url(text: &str) -> Result<Url, ProviderError> {
    let mut url = Url::parse(text).map_err(|err| invalid(format!("`url` {text:?}: {err}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid(format!(
            "`url` {text:?}: the scheme must be https (or http), not {}",
            url.scheme()
        )));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(invalid(format!("`url` {text:?} has no host")));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid(
            "`url` carries credentials: give the user in `username` and the password in \
             `password_file` or `password_env`",
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid(format!(
            "`url` {text:?} has a query or a fragment; give the address of the collection only"
        )));
    }
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    Ok(url)
}

/// Whether the URL names this machine, where plain http does not leave it.
fn loopback(url: &Url) -> bool {
    let host = url.host_str().unwrap_or_default();
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost" || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn parse_timeout(text: &str) -> Result<Duration, ProviderError> {
    let timeout = humantime::parse_duration(text).map_err(|err| {
        invalid(format!(
            "`timeout` {text:?}: {err}; write a duration such as \"60s\" or \"5m\""
        ))
    })?;
    if timeout.is_zero() {
        return Err(invalid("`timeout` must be longer than zero"));
    }
    Ok(timeout)
}

#[cfg(test)]
mod tests;
