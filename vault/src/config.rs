//! The vault's configuration file (TOML).
//!
//! ```toml
//! listen = "0.0.0.0:8443"
//! tls_cert = "tls/cert.pem"          # PEM chain, leaf first
//! tls_key = "tls/key.pem"            # PEM private key (PKCS#8, SEC1 or PKCS#1)
//! store = "records.db"               # SQLite file of the accounts and their sealed records
//! audit_log = "audit.log"            # the hash-chained audit log
//! guess_limit = 10                   # wrong passwords before a record is erased
//! login_expiry_secs = 60             # how long a started login may wait for its finish
//!
//! [hsm]
//! module = "/usr/lib/softhsm/libsofthsm2.so"   # the PKCS#11 module: a real HSM's goes here
//! token_label = "sealback-vault"     # the token, by label (or `slot = 0`)
//! pin_credential = "sealback-vault-pin"      # the user PIN, from a systemd credential
//!                                              # ($CREDENTIALS_DIRECTORY/NAME: LoadCredentialEncrypted=) ...
//! # pin_file = "/etc/sealback-vault/pin"       # ... or from a file only its owner can read (0600) ...
//! # pin_env = "SEALBACK_VAULT_PIN"             # ... or from an environment variable the service manager sets
//! ```
//!
//! Relative paths are relative to the configuration file's directory. The PIN never comes
//! from the command line. The Argon2 parameters are not here: the key stretching runs on the
//! clients and its parameters are part of the protocol
//! (`sealback_vault_client::protocol::suite`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use cryptoki::types::AuthPin;
use serde::Deserialize;

/// The default guess limit.
pub const DEFAULT_GUESS_LIMIT: u32 = 10;
const DEFAULT_LOGIN_EXPIRY_SECS: u64 = 60;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub listen: SocketAddr,
    pub tls_cert: PathBuf,
    pub tls_key: PathBuf,
    pub store: PathBuf,
    pub audit_log: PathBuf,
    #[serde(default = "default_guess_limit")]
    pub guess_limit: u32,
    #[serde(default = "default_login_expiry")]
    pub login_expiry_secs: u64,
    pub hsm: HsmConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HsmConfig {
    pub module: PathBuf,
    #[serde(default)]
    pub token_label: Option<String>,
    #[serde(default)]
    pub slot: Option<u64>,
    #[serde(default)]
    pub pin_file: Option<PathBuf>,
    #[serde(default)]
    pub pin_env: Option<String>,
    /// The name of a systemd credential holding the PIN (`$CREDENTIALS_DIRECTORY/NAME`).
    #[serde(default)]
    pub pin_credential: Option<String>,
}

/// A configuration that cannot be used, and why.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct ConfigError {
    pub path: PathBuf,
    pub message: String,
}

fn default_guess_limit() -> u32 {
    DEFAULT_GUESS_LIMIT
}

fn default_login_expiry() -> u64 {
    DEFAULT_LOGIN_EXPIRY_SECS
}

impl Config {
    /// Reads and checks `path`; relative paths in it become relative to its directory.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let error = |message: String| ConfigError {
            path: path.to_path_buf(),
            message,
        };
        let text = std::fs::read_to_string(path)
            .map_err(|err| error(format!("cannot read the configuration: {err}")))?;
        let mut config: Config =
            toml::from_str(&text).map_err(|err| error(format!("invalid configuration: {err}")))?;
        let base = path.parent().unwrap_or(Path::new("."));
        for file in [
            &mut config.tls_cert,
            &mut config.tls_key,
            &mut config.store,
            &mut config.audit_log,
        ] {
            *file = base.join(&*file);
        }
        if let Some(pin_file) = &mut config.hsm.pin_file {
            *pin_file = base.join(&*pin_file);
        }
        if config.guess_limit == 0 {
            return Err(error("guess_limit must be at least 1".into()));
        }
        if config.login_expiry_secs == 0 {
            return Err(error("login_expiry_secs must be at least 1".into()));
        }
        match (&config.hsm.token_label, config.hsm.slot) {
            (Some(_), None) | (None, Some(_)) => {}
            _ => {
                return Err(error(
                    "[hsm] names its token by exactly one of `token_label` and `slot`".into(),
                ));
            }
        }
        let sources = [
            config.hsm.pin_file.is_some(),
            config.hsm.pin_env.is_some(),
            config.hsm.pin_credential.is_some(),
        ];
        if sources.iter().filter(|&&given| given).count() != 1 {
            return Err(error(
                "[hsm] takes the PIN from exactly one of `pin_credential`, `pin_file` and \
                 `pin_env`"
                    .into(),
            ));
        }
        if let Some(name) = &config.hsm.pin_credential
            && (name.is_empty() || name.contains('/') || name == "." || name == "..")
        {
            return Err(error(format!(
                "[hsm] pin_credential {name:?} must be a credential's name, as in \
                 LoadCredentialEncrypted=NAME:..., not a path"
            )));
        }
        Ok(config)
    }
}

impl HsmConfig {
    /// The user PIN, from its systemd credential or file (a trailing newline removed) or
    /// environment variable.
    pub fn pin(&self) -> Result<AuthPin, ConfigError> {
        let error = |path: &Path, message: String| ConfigError {
            path: path.to_path_buf(),
            message,
        };
        if let Some(name) = &self.pin_credential {
            let Some(dir) = std::env::var_os("CREDENTIALS_DIRECTORY") else {
                return Err(error(
                    Path::new(name),
                    "the HSM PIN is a systemd credential, but CREDENTIALS_DIRECTORY is not set: \
                     start the vault from its unit (LoadCredentialEncrypted=) or use pin_file"
                        .into(),
                ));
            };
            return read_pin_file(&Path::new(&dir).join(name));
        }
        if let Some(file) = &self.pin_file {
            return read_pin_file(file);
        }
        let name = self.pin_env.as_deref().unwrap_or_default();
        let value = zeroize::Zeroizing::new(std::env::var(name).map_err(|_| {
            error(
                Path::new(name),
                "the environment variable holding the HSM PIN is not set".into(),
            )
        })?);
        Ok(AuthPin::new(value.as_str().into()))
    }
}

/// Reads a PIN from `file`, which nobody but its owner may read or write: whoever reads the
/// PIN can open every sealed record with the HSM (docs/vault.md §1).
pub fn read_pin_file(file: &Path) -> Result<AuthPin, ConfigError> {
    use std::io::Read as _;
    use std::os::unix::fs::MetadataExt as _;
    let error = |message: String| ConfigError {
        path: file.to_path_buf(),
        message,
    };
    let mut opened = std::fs::File::open(file)
        .map_err(|err| error(format!("cannot read the HSM PIN file: {err}")))?;
    let mode = opened
        .metadata()
        .map_err(|err| error(format!("cannot read the HSM PIN file: {err}")))?
        .mode();
    if mode & 0o077 != 0 {
        return Err(error(format!(
            "the HSM PIN file has mode {:o}, so others than its owner can read or change it, \
             and with the PIN anyone can open every sealed record; run `chmod 600 {}` (or \
             use pin_credential)",
            mode & 0o7777,
            file.display()
        )));
    }
    let mut text = zeroize::Zeroizing::new(String::new());
    opened
        .read_to_string(&mut text)
        .map_err(|err| error(format!("cannot read the HSM PIN file: {err}")))?;
    let pin = text.trim_end_matches(['\n', '\r']);
    if pin.is_empty() {
        return Err(error("the HSM PIN file is empty".into()));
    }
    Ok(AuthPin::new(pin.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("vault.toml");
        std::fs::write(&path, text).expect("write");
        (dir, path)
    }

    const BASE: &str = r#"
listen = "127.0.0.1:0"
tls_cert = "cert.pem"
tls_key = "key.pem"
store = "records.db"
audit_log = "audit.log"
"#;

    #[test]
    fn reads_a_configuration_and_anchors_relative_paths() {
        let (dir, path) = write(&format!(
            "{BASE}[hsm]\nmodule = \"/m.so\"\ntoken_label = \"t\"\npin_file = \"pin\"\n"
        ));
        let config = Config::load(&path).expect("loads");
        assert_eq!(config.guess_limit, DEFAULT_GUESS_LIMIT);
        assert_eq!(config.store, dir.path().join("records.db"));
        assert_eq!(config.hsm.pin_file, Some(dir.path().join("pin")));
    }

    #[test]
    fn refuses_ambiguous_pin_and_token() {
        let (_dir, path) = write(&format!(
            "{BASE}[hsm]\nmodule = \"/m.so\"\ntoken_label = \"t\"\npin_file = \"p\"\npin_env = \"E\"\n"
        ));
        let err = Config::load(&path).expect_err("two PIN sources");
        assert!(
            err.to_string()
                .contains("exactly one of `pin_credential`, `pin_file` and `pin_env`"),
            "{err}"
        );
        let (_dir, path) = write(&format!(
            "{BASE}[hsm]\nmodule = \"/m.so\"\npin_env = \"E\"\n"
        ));
        assert!(Config::load(&path).is_err());
        let (_dir, path) = write(&format!("{BASE}pin = \"1234\"\n"));
        assert!(Config::load(&path).is_err(), "unknown keys are refused");
    }

    fn hsm_with(pin: &str) -> HsmConfig {
        HsmConfig {
            module: "/m.so".into(),
            token_label: Some("t".into()),
            slot: None,
            pin_file: None,
            pin_env: None,
            pin_credential: None,
        }
        .with_pin_file(pin)
    }

    impl HsmConfig {
        fn with_pin_file(mut self, file: &str) -> Self {
            self.pin_file = Some(file.into());
            self
        }
    }

    #[test]
    fn a_pin_file_others_can_read_is_refused() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("pin");
        std::fs::write(&file, "1234\n").expect("write");
        let config = hsm_with(file.to_str().expect("UTF-8"));
        for mode in [0o644, 0o640, 0o604, 0o660] {
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).expect("chmod");
            let err = config.pin().expect_err("readable by others");
            assert!(
                err.to_string().contains(&format!("mode {mode:o}"))
                    && err.to_string().contains("chmod 600"),
                "{err}"
            );
        }
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        config.pin().expect("a private PIN file");
    }

    #[test]
    fn a_pin_credential_is_a_name_not_a_path() {
        let (_dir, path) = write(&format!(
            "{BASE}[hsm]\nmodule = \"/m.so\"\ntoken_label = \"t\"\npin_credential = \"../pin\"\n"
        ));
        let err = Config::load(&path).expect_err("a path");
        assert!(err.to_string().contains("not a path"), "{err}");
    }
}
