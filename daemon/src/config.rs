//! The daemon's configuration: a TOML file plus `SEALBACK_SECTION__KEY` environment
//! overrides, read with the `config` crate. Anything unknown, missing or malformed stops
//! start-up with an error that names the key. `config/sealback.toml` documents every key.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

mod bandwidth;
mod env;
mod selection;
mod validate;
mod vault_urls;

pub use selection::Selection;

/// Environment variables starting with this and holding a `__` override the file:
/// `SEALBACK_SCHEDULE__MODE=manual` sets `[schedule] mode`.
pub const ENV_PREFIX: &str = "SEALBACK_";

/// What is wrong with the configuration. `origin` says where the wrong value came from:
/// `configuration PATH`, or `environment variable SEALBACK_...` for an override.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{origin}: {message}")]
    Invalid { origin: String, message: String },
    #[error("{origin}: key `{key}`: {message}")]
    BadValue {
        origin: String,
        key: String,
        message: String,
    },
}

impl ConfigError {
    /// The same error, blamed on another origin.
    fn blamed_on(self, origin: String) -> ConfigError {
        match self {
            ConfigError::Invalid { message, .. } => ConfigError::Invalid { origin, message },
            ConfigError::BadValue { key, message, .. } => ConfigError::BadValue {
                origin,
                key,
                message,
            },
        }
    }

    /// A target whose plugin cannot be used as configured (found at start, by the daemon).
    pub fn target(origin: &str, index: usize, key: &str, message: String) -> ConfigError {
        ConfigError::BadValue {
            origin: origin.to_owned(),
            key: format!("targets[{index}].{key}"),
            message,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    store: RawStore,
    #[serde(default)]
    state: RawState,
    #[serde(default)]
    control: RawControl,
    #[serde(default)]
    plugins: RawPlugins,
    #[serde(default)]
    schedule: RawSchedule,
    #[serde(default)]
    restore: RawRestore,
    #[serde(default)]
    backup: RawBackup,
    #[serde(default)]
    retention: crate::retention::RawRetention,
    targets: Vec<RawTarget>,
    #[serde(default)]
    vault: Option<RawVault>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVault {
    #[serde(default)]
    url: Option<String>,
    /// The vault's instances, tried in order (docs/vault.md §10); instead of `url`.
    #[serde(default)]
    urls: Option<Vec<String>>,
    server_key: String,
    account: String,
    credential_file: PathBuf,
    #[serde(default)]
    ca_cert: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStore {
    path: PathBuf,
    #[serde(default = "default_database")]
    database: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawState {
    #[serde(default = "default_state_dir")]
    dir: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawControl {
    #[serde(default = "default_socket")]
    socket: PathBuf,
    #[serde(default = "default_socket_mode")]
    mode: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPlugins {
    #[serde(default = "default_plugins_dir")]
    dir: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSchedule {
    #[serde(default = "default_mode")]
    mode: String,
    #[serde(default = "default_debounce")]
    debounce: String,
    #[serde(default)]
    interval: Option<String>,
}

/// `[backup]`: which of the store's files the backups take (config/selection.rs).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBackup {
    #[serde(default)]
    include: Option<Vec<String>>,
    #[serde(default)]
    exclude: Option<Vec<String>>,
}

/// `[restore]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRestore {
    #[serde(default)]
    owner: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTarget {
    name: String,
    plugin: String,
    #[serde(default)]
    options: serde_json::Map<String, serde_json::Value>,
    #[serde(default = "default_concurrency")]
    concurrency: usize,
    #[serde(default = "default_timeout")]
    timeout: String,
    #[serde(default = "default_retries")]
    retries: u32,
    #[serde(default)]
    retention: Option<crate::retention::RawRetention>,
    /// This target's own schedule (`on-change`, `manual`, `daily`, `6h`, ...), else `[schedule]`'s.
    #[serde(default)]
    schedule: Option<String>,
    /// This target's own `[backup]` rules, key by key.
    #[serde(default)]
    include: Option<Vec<String>>,
    #[serde(default)]
    exclude: Option<Vec<String>>,
    /// The most bytes a second sent, and received (`"2MiB/s"`); unset: no limit.
    #[serde(default)]
    bandwidth: Option<String>,
}

fn default_concurrency() -> usize {
    4
}
fn default_timeout() -> String {
    "5m".into()
}
fn default_retries() -> u32 {
    5
}

fn default_database() -> String {
    "msgstore.db".into()
}
fn default_state_dir() -> PathBuf {
    "/var/lib/sealback".into()
}
fn default_socket() -> PathBuf {
    "/run/sealback/control.sock".into()
}
fn default_socket_mode() -> String {
    "0600".into()
}
fn default_plugins_dir() -> PathBuf {
    "/usr/lib/sealback/plugins".into()
}
fn default_mode() -> String {
    "on-change".into()
}
fn default_debounce() -> String {
    "2s".into()
}

impl Default for RawState {
    fn default() -> Self {
        RawState {
            dir: default_state_dir(),
        }
    }
}
impl Default for RawControl {
    fn default() -> Self {
        RawControl {
            socket: default_socket(),
            mode: default_socket_mode(),
        }
    }
}
impl Default for RawPlugins {
    fn default() -> Self {
        RawPlugins {
            dir: default_plugins_dir(),
        }
    }
}
impl Default for RawSchedule {
    fn default() -> Self {
        RawSchedule {
            mode: default_mode(),
            debounce: default_debounce(),
            interval: None,
        }
    }
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// How errors name where the configuration came from: `configuration PATH`.
    pub origin: String,
    /// The message store: holds `database` and `Media/`.
    pub store: PathBuf,
    /// The database file's name inside the store.
    pub database: String,
    pub state_dir: PathBuf,
    pub socket: PathBuf,
    pub socket_mode: u32,
    pub plugins_dir: PathBuf,
    pub schedule: Schedule,
    pub debounce: Duration,
    pub targets: Vec<TargetConfig>,
    /// The Backup Key Vault, for users who protect the key with a password.
    pub vault: Option<VaultSettings>,
    /// `[restore] owner`: who owns what a restore creates.
    pub restore_owner: crate::engine::restore_dir::Owner,
}

/// `[vault]`: where the Backup Key Vault is and how this device proves its account.
#[derive(Debug, Clone)]
pub struct VaultSettings {
    /// `url`, or the instances of `urls` in their order.
    pub urls: Vec<String>,
    /// The vault's OPAQUE server public key, pinned: a vault with another key is refused.
    pub server_key: String,
    pub account: String,
    /// A file holding the account credential (`sealback-vault account add` prints it).
    pub credential_file: PathBuf,
    /// The CA certificate that signed the vault's TLS certificate, if not a public one.
    pub ca_cert: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Schedule {
    /// A backup shortly (the debounce) after the store changes.
    OnChange,
    /// A backup every period, counted from the last one.
    Interval(Duration),
    /// Only when asked through the control socket.
    Manual,
}

impl std::fmt::Display for Schedule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Schedule::OnChange => f.write_str("on-change"),
            Schedule::Manual => f.write_str("manual"),
            Schedule::Interval(d) => write!(f, "interval ({})", humantime::format_duration(*d)),
        }
    }
}

#[derive(Debug, Clone)]
pub struct TargetConfig {
    pub name: String,
    pub plugin: String,
    /// Handed to the plugin as JSON.
    pub options: serde_json::Value,
    /// Calls into the provider at once, at most.
    pub concurrency: usize,
    /// How long one call may take before it counts as a transient failure.
    pub timeout: Duration,
    /// How transient failures are retried.
    pub retry: crate::providers::RetryPolicy,
    /// `[retention]`, overridden by the target's own `retention` table.
    pub retention: crate::retention::Retention,
    /// The target's own `schedule`; `None`: it follows `[schedule]`.
    pub schedule: Option<Schedule>,
    /// Which of the store's files it backs up: `[backup]`'s rules or its own.
    pub selection: Selection,
    /// The most bytes a second it sends, and receives; `None`: no limit.
    pub bandwidth: Option<u64>,
}

impl Config {
    /// The schedule target `i` follows: its own, or `[schedule]`'s.
    pub fn target_schedule(&self, i: usize) -> Schedule {
        self.targets
            .get(i)
            .and_then(|t| t.schedule.clone())
            .unwrap_or_else(|| self.schedule.clone())
    }
}

impl Config {
    /// Reads `path` and the process environment.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Self::load_with_env(path, std::env::vars())
    }

    /// Reads `path` with the given environment (tests pass their own). An error caused by
    /// an environment override names the variable, not the file.
    pub fn load_with_env(
        path: &Path,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        if !path.is_file() {
            return Err(ConfigError::Invalid {
                origin: origin(path),
                message: "no such file: pass the configuration with --config (config/sealback.toml documents every key)".into(),
            });
        }
        let overrides = env::overrides(env);
        load_from(path, &overrides).map_err(|e| env::blame(e, path, &overrides))
    }
}

/// How errors name the configuration file.
pub fn origin(path: &Path) -> String {
    format!("configuration {}", path.display())
}

/// `path` with the `overrides` (`SCHEDULE__MODE` for `SEALBACK_SCHEDULE__MODE`) over it.
fn load_from(path: &Path, overrides: &[(String, String)]) -> Result<Config, ConfigError> {
    let shown = origin(path);
    let raw: RawConfig = config::Config::builder()
        .add_source(config::File::from(path).format(config::FileFormat::Toml))
        .add_source(
            config::Environment::default()
                .separator("__")
                .source(Some(overrides.iter().cloned().collect())),
        )
        .build()
        .and_then(|c| c.try_deserialize())
        .map_err(|e| ConfigError::Invalid {
            origin: shown.clone(),
            message: describe(e),
        })?;
    validate::validate(raw, &shown)
}

/// The `config` crate's messages, made to name the key the way the file spells it.
fn describe(e: config::ConfigError) -> String {
    let text = dotted(&e.to_string());
    if text.contains("unknown field") {
        format!("{text}; remove it or fix its spelling (config/sealback.toml lists every key)")
    } else if text.contains("expected a sequence") {
        format!(
            "{text}; a list such as [[targets]] cannot be overridden from the environment: \
             change it in the file"
        )
    } else if text.contains("missing field") {
        format!("{text}; it is required (see config/sealback.toml)")
    } else {
        text
    }
}

/// The `config` crate writes a key in an array as `targets[0]concurrency`: put the dot back.
fn dotted(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 4);
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        out.push(c);
        if c == ']'
            && chars
                .peek()
                .is_some_and(|n| n.is_alphanumeric() || *n == '_')
        {
            out.push('.');
        }
    }
    out
}

#[cfg(test)]
mod target_schedule_tests;
#[cfg(test)]
mod tests;
