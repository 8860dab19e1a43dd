//! The vault's configuration file (TOML).
//!
//! ```toml
//! listen = "0.0.0.0:8443"
//! tls_cert = "tls/cert.pem"          # PEM chain, leaf first
//! tls_key = "tls/key.pem"            # PEM private key (PKCS#8, SEC1 or PKCS#1)
//! store = "records.db"               # SQLite file of the accounts and their sealed records,
//!                                    # or "etcd": the records on etcd, [etcd] below
//! audit_log = "audit.log"            # the hash-chained audit log
//! guess_limit = 10                   # wrong passwords before a record is erased
//! login_expiry_secs = 60             # how long a started login may wait for its finish
//!
//! [hsm]
//! module = "/usr/lib/softhsm/libsofthsm2.so"   # the PKCS#11 module: a real HSM's goes here
//! token_label = "sealback-vault"     # the token, by label (or `slot = 0`)
//! pin_credential = "sealback-vault-pin"      # the user PIN, from a systemd credential
//!                                              # ($CREDENTIALS_DIRECTORY/NAME: LoadCredentialEncrypted=);
//!                                              # the default when no source is given ...
//! # pin_file = "/etc/sealback-vault/pin"       # ... or from a file only its owner can read (0600) ...
//! # pin_env = "SEALBACK_VAULT_PIN"             # ... or from an environment variable the service manager sets
//!
//! [etcd]                             # with store = "etcd" (several vault instances share it)
//! endpoints = ["http://10.0.1.5:2379", "http://10.0.2.5:2379", "http://10.0.3.5:2379"]
//! prefix = "/sealback-vault/"        # every key the vault writes lives under it
//! # ca_cert = "etcd-ca.pem"          # TLS: the CA of etcd's certificates (https endpoints)
//! # cert = "etcd-client.pem"         # ... and the vault's client certificate and key
//! # key = "etcd-client.key"
//! # username = "sealback-vault"      # etcd authentication; the password from a 0600 file
//! # password_file = "etcd-password"
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
    /// With `store = "etcd"`: the cluster.
    #[serde(default)]
    pub etcd: Option<EtcdConfig>,
}

/// The `store` value that puts the records on etcd.
pub const ETCD_STORE: &str = "etcd";

/// `[etcd]`: the cluster that holds the records when `store = "etcd"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EtcdConfig {
    pub endpoints: Vec<String>,
    #[serde(default = "default_etcd_prefix")]
    pub prefix: String,
    #[serde(default)]
    pub ca_cert: Option<PathBuf>,
    #[serde(default)]
    pub cert: Option<PathBuf>,
    #[serde(default)]
    pub key: Option<PathBuf>,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password_file: Option<PathBuf>,
}

fn default_etcd_prefix() -> String {
    "/sealback-vault/".to_string()
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
        let on_etcd = config.store == Path::new(ETCD_STORE);
        for file in [
            &mut config.tls_cert,
            &mut config.tls_key,
            &mut config.audit_log,
        ] {
            *file = base.join(&*file);
        }
        if !on_etcd {
            config.store = base.join(&config.store);
        }
        match &mut config.etcd {
            Some(etcd) if on_etcd => etcd.check_and_anchor(base).map_err(error)?,
            None if on_etcd => {
                return Err(error(
                    "store = \"etcd\" needs an [etcd] table with `endpoints`".into(),
                ));
            }
            Some(_) => {
                return Err(error(format!(
                    "[etcd] is set but store = {:?} is a SQLite file: set store = \"etcd\" to \
                     use it, or remove [etcd]",
                    config.store
                )));
            }
            None => {}
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
        match sources.iter().filter(|&&given| given).count() {
            // The default: the unit's credential, so that the PIN is in no plain file.
            0 => config.hsm.pin_credential = Some(DEFAULT_PIN_CREDENTIAL.to_string()),
            1 => {}
            _ => {
                return Err(error(format!(
                    "[hsm] takes the PIN from at most one of `pin_credential`, `pin_file` and \
                     `pin_env` (with none, from the systemd credential {DEFAULT_PIN_CREDENTIAL})"
                )));
            }
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

impl Config {
    /// The records store, for messages: the SQLite file, or the etcd cluster and prefix.
    pub fn store_name(&self) -> String {
        match &self.etcd {
            Some(etcd) => format!("etcd {} under {}", etcd.endpoints.join(","), etcd.prefix),
            None => self.store.display().to_string(),
        }
    }
}

impl EtcdConfig {
    /// Checks the table (naming the key at fault) and anchors its files at `base`.
    fn check_and_anchor(&mut self, base: &Path) -> Result<(), String> {
        if self.endpoints.is_empty() {
            return Err("[etcd] endpoints is empty: list the cluster's client URLs".into());
        }
        for endpoint in &self.endpoints {
            let tls = endpoint.starts_with("https://");
            if !tls && !endpoint.starts_with("http://") {
                return Err(format!(
                    "[etcd] endpoints: {endpoint:?} is not an http:// or https:// URL"
                ));
            }
            if tls && self.ca_cert.is_none() {
                return Err(format!(
                    "[etcd] endpoints: {endpoint:?} is https, but ca_cert is not set: name the \
                     CA of etcd's server certificates"
                ));
            }
            // The etcd client cannot use TLS settings on a plain http endpoint: it would fail
            // at every connection, as if no member answered.
            if !tls && self.ca_cert.is_some() {
                return Err(format!(
                    "[etcd] endpoints: {endpoint:?} is plain http, but ca_cert is set: TLS to \
                     etcd needs every endpoint as https://; list them so, or remove ca_cert, \
                     cert and key"
                ));
            }
        }
        if self.prefix.is_empty() {
            return Err(
                "[etcd] prefix is empty: the vault's keys need a prefix of their own, \
                        e.g. \"/sealback-vault/\""
                    .into(),
            );
        }
        if self.cert.is_some() != self.key.is_some() {
            return Err("[etcd] cert and key go together: set both or neither".into());
        }
        if self.cert.is_some() && self.ca_cert.is_none() {
            return Err(
                "[etcd] cert is set but ca_cert is not: client certificates need TLS".into(),
            );
        }
        if self.username.is_some() != self.password_file.is_some() {
            return Err(
                "[etcd] username and password_file go together: set both or neither".into(),
            );
        }
        for file in [
            &mut self.ca_cert,
            &mut self.cert,
            &mut self.key,
            &mut self.password_file,
        ]
        .into_iter()
        .flatten()
        {
            *file = base.join(&*file);
        }
        Ok(())
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
            let pin = read_private(&Path::new(&dir).join(name), "HSM PIN", CREDENTIAL_MODE)?;
            return Ok(AuthPin::new(pin.as_str().into()));
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
    let pin = read_secret_file(file, "HSM PIN")?;
    Ok(AuthPin::new(pin.as_str().into()))
}

/// Reads a secret (`what`: "HSM PIN", "etcd password") from `file`, which nobody but its
/// owner may read or write; a trailing newline is removed.
pub fn read_secret_file(
    file: &Path,
    what: &str,
) -> Result<zeroize::Zeroizing<String>, ConfigError> {
    read_private(file, what, 0)
}

/// The mode bits a systemd credential may show beyond its owner's. systemd writes a
/// credential 0400 into a directory only the service can enter, and grants a service that
/// runs as its own user read access by an ACL, whose mask `stat` shows as the group's read
/// bit (0440). Nothing else is allowed: no write or execute for the group, nothing for others.
const CREDENTIAL_MODE: u32 = 0o040;

/// The systemd credential the PIN comes from when the configuration names no source: the
/// unit's `LoadCredentialEncrypted=sealback-vault-pin`.
pub const DEFAULT_PIN_CREDENTIAL: &str = "sealback-vault-pin";

/// [`read_secret_file`], allowing the mode bits `allowed` beyond the owner's.
fn read_private(
    file: &Path,
    what: &str,
    allowed: u32,
) -> Result<zeroize::Zeroizing<String>, ConfigError> {
    use std::io::Read as _;
    use std::os::unix::fs::MetadataExt as _;
    let error = |message: String| ConfigError {
        path: file.to_path_buf(),
        message,
    };
    let mut opened = std::fs::File::open(file)
        .map_err(|err| error(format!("cannot read the {what} file: {err}")))?;
    let mode = opened
        .metadata()
        .map_err(|err| error(format!("cannot read the {what} file: {err}")))?
        .mode();
    if mode & 0o077 & !allowed != 0 {
        let advice = format!("run `chmod 600 {}`", file.display());
        let advice = if what == "HSM PIN" {
            format!(
                "and with the PIN anyone can open every sealed record; {advice} (or use \
                 pin_credential)"
            )
        } else {
            advice
        };
        return Err(error(format!(
            "the {what} file has mode {:o}, so others than its owner can read or change it, \
             {advice}",
            mode & 0o7777
        )));
    }
    let mut text = zeroize::Zeroizing::new(String::new());
    opened
        .read_to_string(&mut text)
        .map_err(|err| error(format!("cannot read the {what} file: {err}")))?;
    let secret = zeroize::Zeroizing::new(text.trim_end_matches(['\n', '\r']).to_string());
    if secret.is_empty() {
        return Err(error(format!("the {what} file is empty")));
    }
    Ok(secret)
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
                .contains("at most one of `pin_credential`, `pin_file` and `pin_env`"),
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
    fn an_etcd_store_needs_its_table_and_names_the_key_at_fault() {
        let hsm = "[hsm]\nmodule = \"/m.so\"\ntoken_label = \"t\"\npin_env = \"E\"\n";
        let with = |store: &str, etcd: &str| {
            write(&format!(
                "{}{hsm}{etcd}",
                BASE.replace("store = \"records.db\"", store)
            ))
        };
        let (dir, path) = with(
            "store = \"etcd\"",
            "[etcd]\nendpoints = [\"http://127.0.0.1:2379\"]\nusername = \"v\"\npassword_file = \"pw\"\n",
        );
        let config = Config::load(&path).expect("loads");
        let etcd = config.etcd.as_ref().expect("etcd");
        assert_eq!(etcd.prefix, "/sealback-vault/");
        assert_eq!(etcd.password_file, Some(dir.path().join("pw")));
        assert!(config.store_name().contains("http://127.0.0.1:2379"));
        for (store, etcd, expected) in [
            ("store = \"etcd\"", "", "needs an [etcd] table"),
            (
                "store = \"etcd\"",
                "[etcd]\nendpoints = []\n",
                "[etcd] endpoints is empty",
            ),
            (
                "store = \"etcd\"",
                "[etcd]\nendpoints = [\"https://e:2379\"]\n",
                "ca_cert is not set",
            ),
            (
                "store = \"etcd\"",
                "[etcd]\nendpoints = [\"http://e:2379\"]\nusername = \"v\"\n",
                "[etcd] username and password_file go together",
            ),
            (
                "store = \"etcd\"",
                "[etcd]\nendpoints = [\"https://e:2379\"]\nca_cert = \"c\"\ncert = \"c\"\n",
                "[etcd] cert and key go together",
            ),
            (
                "store = \"etcd\"",
                "[etcd]\nendpoints = [\"http://e:2379\"]\nca_cert = \"c\"\n",
                "\"http://e:2379\" is plain http, but ca_cert is set",
            ),
            (
                "store = \"etcd\"",
                "[etcd]\nendpoints = [\"https://e:2379\", \"http://f:2379\"]\nca_cert = \"c\"\n\
                 cert = \"c\"\nkey = \"k\"\n",
                "\"http://f:2379\" is plain http, but ca_cert is set",
            ),
            (
                "store = \"etcd\"",
                "[etcd]\nendpoints = [\"http://e:2379\"]\ncert = \"c\"\nkey = \"k\"\n",
                "[etcd] cert is set but ca_cert is not",
            ),
            (
                "store = \"records.db\"",
                "[etcd]\nendpoints = [\"http://e:2379\"]\n",
                "set store = \"etcd\"",
            ),
        ] {
            let (_dir, path) = with(store, etcd);
            let err = Config::load(&path).expect_err(expected).to_string();
            assert!(err.contains(expected), "{err}");
        }
    }

    #[test]
    fn without_a_pin_source_the_pin_is_the_units_credential() {
        let (_dir, path) = write(&format!(
            "{BASE}[hsm]\nmodule = \"/m.so\"\ntoken_label = \"t\"\n"
        ));
        let config = Config::load(&path).expect("loads");
        assert_eq!(
            config.hsm.pin_credential.as_deref(),
            Some(DEFAULT_PIN_CREDENTIAL)
        );
    }

    #[test]
    fn a_credential_readable_through_its_acl_is_accepted_and_one_others_can_read_is_not() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("pin");
        std::fs::write(&file, "1234\n").expect("write");
        // 0440: systemd's ACL for the service's user shows as the group's read bit.
        for mode in [0o400, 0o440] {
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).expect("chmod");
            read_private(&file, "HSM PIN", CREDENTIAL_MODE).expect("a credential");
        }
        for mode in [0o444, 0o460, 0o404] {
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).expect("chmod");
            let err = read_private(&file, "HSM PIN", CREDENTIAL_MODE).expect_err("open to others");
            assert!(err.to_string().contains(&format!("mode {mode:o}")), "{err}");
        }
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
