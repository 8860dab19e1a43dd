//! The password for basic authentication: read from a file or from sealbackd's environment,
//! never from the options themselves, and kept in a type that does not print and is wiped
//! when dropped.

use std::ffi::OsString;
use std::fmt;
use std::fs;
use std::path::PathBuf;

use sealback_plugin_api::ProviderError;
use zeroize::Zeroizing;

use crate::options::invalid;

/// Where the password comes from; named in error messages so that a person knows what to fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PasswordSource {
    /// A file whose content is the password (one trailing newline is not part of it).
    File(PathBuf),
    /// An environment variable of sealbackd's process.
    Env(String),
}

impl fmt::Display for PasswordSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::File(path) => write!(f, "the password in {}", path.display()),
            Self::Env(name) => write!(f, "the password in sealbackd's environment variable {name}"),
        }
    }
}

/// A password. No `Debug`, `Display` or `Clone`; read with [`Password::expose`].
pub(crate) struct Password(Zeroizing<String>);

impl Password {
    /// Reads the password from `source`; `env` looks up an environment variable.
    pub(crate) fn read(
        source: &PasswordSource,
        env: impl Fn(&str) -> Option<OsString>,
    ) -> Result<Self, ProviderError> {
        let text = match source {
            PasswordSource::File(path) => {
                let bytes = Zeroizing::new(fs::read(path).map_err(|err| {
                    invalid(format!(
                        "`password_file` {}: cannot read it: {err}",
                        path.display()
                    ))
                })?);
                let text = std::str::from_utf8(&bytes).map_err(|_| {
                    invalid(format!(
                        "`password_file` {}: the password is not UTF-8 text",
                        path.display()
                    ))
                })?;
                let line = text
                    .strip_suffix('\n')
                    .map(|t| t.strip_suffix('\r').unwrap_or(t))
                    .unwrap_or(text);
                Zeroizing::new(line.to_owned())
            }
            PasswordSource::Env(name) => {
                let value = env(name).ok_or_else(|| {
                    invalid(format!(
                        "`password_env` names {name}, which is not set in sealbackd's \
                         environment (with systemd: Environment= or EnvironmentFile= in the \
                         unit; or keep it in a file named by `password_file`)"
                    ))
                })?;
                // On Unix this moves the bytes into the String without a copy.
                Zeroizing::new(value.into_string().map_err(|_| {
                    invalid(format!(
                        "`password_env`: the variable {name} is not UTF-8 text"
                    ))
                })?)
            }
        };
        if text.is_empty() {
            return Err(invalid(format!("{source} is empty")));
        }
        Ok(Password(text))
    }

    /// The password itself, to put into a request.
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

/// A user name and password, and where the password came from.
pub(crate) struct Credentials {
    pub(crate) username: String,
    pub(crate) password: Password,
    pub(crate) source: PasswordSource,
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;

    fn no_env(_: &str) -> Option<OsString> {
        None
    }

    #[test]
    fn a_password_file_loses_one_trailing_newline_only() {
        for (content, expected) in [
            ("s3cret\n", "s3cret"),
            ("s3cret\r\n", "s3cret"),
            ("s3cret", "s3cret"),
            (" two words \n\n", " two words \n"),
        ] {
            let mut file = tempfile::NamedTempFile::new().expect("temp file");
            file.write_all(content.as_bytes()).expect("write");
            let source = PasswordSource::File(file.path().to_owned());
            let password = Password::read(&source, no_env).expect("read");
            assert_eq!(password.expose(), expected, "{content:?}");
        }
    }

    #[test]
    fn a_missing_or_empty_password_file_names_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("missing");
        let Err(err) = Password::read(&PasswordSource::File(missing.clone()), no_env) else {
            panic!("a missing file was read");
        };
        assert!(
            err.message().contains(&missing.display().to_string()),
            "{err}"
        );
        assert!(err.message().contains("password_file"), "{err}");

        let empty = dir.path().join("empty");
        fs::write(&empty, "\n").expect("write");
        let Err(err) = Password::read(&PasswordSource::File(empty.clone()), no_env) else {
            panic!("an empty password was accepted");
        };
        assert!(err.message().contains("is empty"), "{err}");
    }

    #[test]
    fn a_password_comes_from_the_named_environment_variable() {
        let env = |name: &str| (name == "DAV_PASSWORD").then(|| OsString::from("from-env"));
        let source = PasswordSource::Env("DAV_PASSWORD".into());
        assert_eq!(
            Password::read(&source, env).expect("read").expose(),
            "from-env"
        );
        let unset = PasswordSource::Env("OTHER".into());
        let Err(err) = Password::read(&unset, env) else {
            panic!("an unset variable gave a password");
        };
        assert!(err.message().contains("OTHER"), "{err}");
        assert!(err.message().contains("not set"), "{err}");
    }
}
