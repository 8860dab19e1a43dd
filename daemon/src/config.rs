//! The daemon's configuration: a TOML file plus `SEALBACK_SECTION__KEY` environment
//! overrides, read with the `config` crate. Anything unknown, missing or malformed stops
//! start-up with an error that names the key. `config/sealback.toml` documents every key.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

mod bandwidth;
mod selection;
mod vault_urls;

pub use selection::Selection;

/// Environment variables starting with this and holding a `__` override the file:
/// `SEALBACK_SCHEDULE__MODE=manual` sets `[schedule] mode`.
pub const ENV_PREFIX: &str = "SEALBACK_";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration {path}: {message}")]
    Invalid { path: String, message: String },
    #[error("configuration {path}: key `{key}`: {message}")]
    BadValue {
        path: String,
        key: String,
        message: String,
    },
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

    /// Reads `path` with the given environment (tests pass their own).
    pub fn load_with_env(
        path: &Path,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let shown = path.display().to_string();
        let invalid = |message: String| ConfigError::Invalid {
            path: shown.clone(),
            message,
        };
        if !path.is_file() {
            return Err(invalid(
                "no such file: pass the configuration with --config (config/sealback.toml documents every key)".into(),
            ));
        }
        let overrides: HashMap<String, String> = env
            .into_iter()
            .filter_map(|(k, v)| {
                let rest = k.strip_prefix(ENV_PREFIX)?;
                rest.contains("__").then(|| (rest.to_owned(), v))
            })
            .collect();
        let raw: RawConfig = config::Config::builder()
            .add_source(config::File::from(path).format(config::FileFormat::Toml))
            .add_source(
                config::Environment::default()
                    .separator("__")
                    .source(Some(overrides.into_iter().collect())),
            )
            .build()
            .and_then(|c| c.try_deserialize())
            .map_err(|e| invalid(describe(e)))?;
        validate(raw, &shown)
    }
}

/// The `config` crate's messages, made to name the key the way the file spells it.
fn describe(e: config::ConfigError) -> String {
    let text = e.to_string();
    if text.contains("unknown field") {
        format!("{text}; remove it or fix its spelling (config/sealback.toml lists every key)")
    } else if text.contains("missing field") {
        format!("{text}; it is required (see config/sealback.toml)")
    } else {
        text
    }
}

fn validate(raw: RawConfig, path: &str) -> Result<Config, ConfigError> {
    let bad = |key: &str, message: String| ConfigError::BadValue {
        path: path.to_owned(),
        key: key.to_owned(),
        message,
    };
    if !raw.store.path.is_absolute() {
        return Err(bad("store.path", "must be an absolute path".into()));
    }
    if raw.store.database.is_empty() || raw.store.database.contains('/') {
        return Err(bad(
            "store.database",
            format!(
                "{:?} must be a file name inside store.path",
                raw.store.database
            ),
        ));
    }
    for (key, p) in [
        ("state.dir", &raw.state.dir),
        ("control.socket", &raw.control.socket),
        ("plugins.dir", &raw.plugins.dir),
    ] {
        if !p.is_absolute() {
            return Err(bad(
                key,
                format!("{} must be an absolute path", p.display()),
            ));
        }
    }
    let socket_mode = u32::from_str_radix(raw.control.mode.trim_start_matches("0o"), 8)
        .ok()
        .filter(|m| *m <= 0o777 && m & 0o600 == 0o600)
        .ok_or_else(|| {
            bad(
                "control.mode",
                format!("{:?} is not an octal file mode that lets the owner read and write, e.g. \"0600\" or \"0660\"", raw.control.mode),
            )
        })?;
    let debounce = humantime::parse_duration(&raw.schedule.debounce).map_err(|e| {
        bad(
            "schedule.debounce",
            format!(
                "{:?}: {e} (write e.g. \"2s\" or \"500ms\")",
                raw.schedule.debounce
            ),
        )
    })?;
    let schedule = match raw.schedule.mode.as_str() {
        "on-change" => Schedule::OnChange,
        "manual" => Schedule::Manual,
        "interval" => {
            let text = raw.schedule.interval.as_deref().ok_or_else(|| {
                bad(
                    "schedule.interval",
                    "is required when schedule.mode = \"interval\" (daily, weekly, monthly, or a duration such as \"6h\")".into(),
                )
            })?;
            Schedule::Interval(parse_interval(text).ok_or_else(|| {
                bad(
                    "schedule.interval",
                    format!("{text:?} is not daily, weekly, monthly or a duration such as \"6h\""),
                )
            })?)
        }
        other => {
            return Err(bad(
                "schedule.mode",
                format!("{other:?} is not one of on-change, interval, manual"),
            ));
        }
    };
    if raw.schedule.interval.is_some() && !matches!(schedule, Schedule::Interval(_)) {
        return Err(bad(
            "schedule.interval",
            "is only meaningful with schedule.mode = \"interval\"".into(),
        ));
    }
    if raw.targets.is_empty() {
        return Err(bad(
            "targets",
            "at least one [[targets]] entry is required".into(),
        ));
    }
    let retention = raw
        .retention
        .over(&crate::retention::DEFAULT, "retention")
        .map_err(|(key, message)| bad(&key, message))?;
    let mut targets: Vec<TargetConfig> = Vec::new();
    for (i, t) in raw.targets.into_iter().enumerate() {
        let retention = match &t.retention {
            None => retention,
            Some(own) => own
                .over(&retention, &format!("targets[{i}].retention"))
                .map_err(|(key, message)| bad(&key, message))?,
        };
        let ok_name = !t.name.is_empty()
            && t.name.len() <= 64
            && t.name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !ok_name {
            return Err(bad(
                &format!("targets[{i}].name"),
                format!("{:?} must be 1-64 letters, digits, '-' or '_'", t.name),
            ));
        }
        if targets.iter().any(|o| o.name == t.name) {
            return Err(bad(
                &format!("targets[{i}].name"),
                format!("{:?} is used by two targets; names must be unique", t.name),
            ));
        }
        let ok_plugin = !t.plugin.is_empty()
            && t.plugin
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !ok_plugin {
            return Err(bad(
                &format!("targets[{i}].plugin"),
                format!("{:?} must be a plugin name such as \"local\"", t.plugin),
            ));
        }
        if !(1..=64).contains(&t.concurrency) {
            return Err(bad(
                &format!("targets[{i}].concurrency"),
                format!("{} must be between 1 and 64", t.concurrency),
            ));
        }
        let timeout = humantime::parse_duration(&t.timeout)
            .ok()
            .filter(|d| !d.is_zero())
            .ok_or_else(|| {
                bad(
                    &format!("targets[{i}].timeout"),
                    format!(
                        "{:?} is not a duration such as \"60s\" or \"5m\"",
                        t.timeout
                    ),
                )
            })?;
        if t.retries > 100 {
            return Err(bad(
                &format!("targets[{i}].retries"),
                format!("{} retries is more than 100", t.retries),
            ));
        }
        let schedule = match t.schedule.as_deref() {
            None => None,
            Some(text) => Some(parse_target_schedule(text).ok_or_else(|| {
                bad(
                    &format!("targets[{i}].schedule"),
                    format!(
                        "{text:?} is not on-change, manual, hourly, daily, weekly, monthly or a duration such as \"6h\""
                    ),
                )
            })?),
        };
        let selection = selection::for_target(
            (&raw.backup.include, &raw.backup.exclude),
            (&t.include, &t.exclude),
            i,
        )
        .map_err(|e| bad(&e.key, e.message))?;
        let bandwidth = t
            .bandwidth
            .as_deref()
            .map(bandwidth::parse)
            .transpose()
            .map_err(|e| bad(&format!("targets[{i}].bandwidth"), e))?;
        targets.push(TargetConfig {
            schedule,
            selection,
            bandwidth,
            name: t.name,
            plugin: t.plugin,
            options: serde_json::Value::Object(t.options),
            concurrency: t.concurrency,
            timeout,
            retry: crate::providers::RetryPolicy {
                attempts: t.retries + 1,
                ..crate::providers::RetryPolicy::default()
            },
            retention,
        });
    }
    let vault = match raw.vault {
        None => None,
        Some(v) => {
            let urls = vault_urls::check(v.url, v.urls).map_err(|e| bad("vault.urls", e))?;
            if v.server_key.trim().is_empty() {
                return Err(bad(
                    "vault.server_key",
                    "must be the key `sealback-vault init` printed".into(),
                ));
            }
            if v.account.trim().is_empty() {
                return Err(bad("vault.account", "must name the account".into()));
            }
            for (key, p) in [
                ("vault.credential_file", Some(&v.credential_file)),
                ("vault.ca_cert", v.ca_cert.as_ref()),
            ] {
                if p.is_some_and(|p| !p.is_absolute()) {
                    return Err(bad(key, "must be an absolute path".into()));
                }
            }
            Some(VaultSettings {
                urls,
                server_key: v.server_key,
                account: v.account,
                credential_file: v.credential_file,
                ca_cert: v.ca_cert,
            })
        }
    };
    let restore_owner = match raw.restore.owner.as_deref() {
        None => Default::default(),
        Some(text) => text.parse().map_err(|e| bad("restore.owner", e))?,
    };
    Ok(Config {
        vault,
        restore_owner,
        store: raw.store.path,
        database: raw.store.database,
        state_dir: raw.state.dir,
        socket: raw.control.socket,
        socket_mode,
        plugins_dir: raw.plugins.dir,
        schedule,
        debounce,
        targets,
    })
}

/// A target's `schedule`: `on-change`, `manual`, or an interval as `[schedule] interval`
/// takes it.
fn parse_target_schedule(text: &str) -> Option<Schedule> {
    match text {
        "on-change" => Some(Schedule::OnChange),
        "manual" => Some(Schedule::Manual),
        other => parse_interval(other).map(Schedule::Interval),
    }
}

/// `daily`, `weekly`, `monthly` (30 days), or a humantime duration.
fn parse_interval(text: &str) -> Option<Duration> {
    const DAY: u64 = 24 * 3600;
    match text {
        "hourly" => Some(Duration::from_secs(3600)),
        "daily" => Some(Duration::from_secs(DAY)),
        "weekly" => Some(Duration::from_secs(7 * DAY)),
        "monthly" => Some(Duration::from_secs(30 * DAY)),
        other => humantime::parse_duration(other)
            .ok()
            .filter(|d| !d.is_zero()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The configuration file we ship, every key with its default: what a user starts from.
    pub(super) const GOOD: &str = include_str!("../../config/sealback.toml");

    /// `text` as the configuration file, with `env` as the environment.
    pub(super) fn load(text: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sealback.toml");
        std::fs::write(&path, text).expect("write");
        Config::load_with_env(
            &path,
            env.iter().map(|(k, v)| (k.to_string(), v.to_string())),
        )
    }

    #[test]
    fn the_documented_example_loads() {
        let c = load(GOOD, &[]).expect("valid");
        assert_eq!(c.schedule, Schedule::OnChange);
        assert_eq!(c.debounce, Duration::from_secs(2));
        assert_eq!(c.socket_mode, 0o600);
        assert_eq!(c.targets[0].options["path"], "/mnt/backup/sealback");
        assert_eq!(c.database, "msgstore.db");
        assert_eq!(c.store, Path::new("/var/lib/app/store"));
        assert_eq!(c.state_dir, Path::new("/var/lib/sealback"));
        assert_eq!(c.socket, Path::new("/run/sealback/control.sock"));
        assert_eq!(c.plugins_dir, Path::new("/usr/lib/sealback/plugins"));
        assert_eq!(c.targets.len(), 1, "the second target is commented out");
        assert_eq!(c.targets[0].concurrency, 4);
        assert_eq!(c.targets[0].timeout, Duration::from_secs(300));
        assert_eq!(
            c.targets[0].retry.attempts, 6,
            "5 retries after the first try"
        );
        assert!(c.vault.is_none(), "the vault is commented out");
    }

    #[test]
    fn environment_overrides_the_file_and_plain_variables_are_ignored() {
        let c = load(
            GOOD,
            &[
                ("SEALBACK_SCHEDULE__MODE", "manual"),
                ("SEALBACK_SOCKET", "/tmp/for-sealbackctl"),
            ],
        )
        .expect("valid");
        assert_eq!(c.schedule, Schedule::Manual);
    }

    #[test]
    fn retention_has_its_documented_defaults_and_a_target_overrides_it() {
        let c = load(GOOD, &[]).expect("valid");
        assert_eq!(c.targets[0].retention, crate::retention::DEFAULT);
        let own = GOOD.replace(
            "path = \"/mnt/backup/sealback\"\n",
            "path = \"/mnt/backup/sealback\"\n[targets.retention]\nkeep_daily = 30\n",
        );
        let c = load(&own, &[]).expect("valid");
        assert_eq!(c.targets[0].retention.rules.keep_daily, 30);
        assert_eq!(c.targets[0].retention.rules.keep_last, 10);
        let err = load(&own.replace("keep_daily = 30", "keep_daily = -2"), &[])
            .expect_err("invalid")
            .to_string();
        assert!(err.contains("targets[0].retention.keep_daily"), "{err}");
        let err = load(&GOOD.replace("keep_last = 10", "keep_last = -1"), &[])
            .expect_err("invalid")
            .to_string();
        assert!(err.contains("`retention.keep_last`"), "{err}");
    }

    #[test]
    fn errors_name_the_key() {
        let err = |text: &str| load(text, &[]).expect_err("invalid").to_string();
        let unknown = err(&GOOD.replace("debounce = \"2s\"", "debounce = \"2s\"\ndebunce = 1"));
        assert!(unknown.contains("debunce"), "{unknown}");
        let missing = err(&GOOD.replace("path = \"/var/lib/app/store\"", ""));
        assert!(missing.contains("path"), "{missing}");
        let mode = err(&GOOD.replace("on-change", "sometimes"));
        assert!(
            mode.contains("schedule.mode") && mode.contains("sometimes"),
            "{mode}"
        );
        let debounce = err(&GOOD.replace("\"2s\"", "\"soon\""));
        assert!(debounce.contains("schedule.debounce"), "{debounce}");
        let interval = err(&GOOD.replace("on-change", "interval"));
        assert!(interval.contains("schedule.interval"), "{interval}");
        let relative = err(&GOOD.replace("/var/lib/app/store", "store"));
        assert!(relative.contains("store.path"), "{relative}");
        let env = load(GOOD, &[("SEALBACK_SCHEDULE__MODUS", "manual")])
            .expect_err("unknown override")
            .to_string();
        assert!(env.contains("modus"), "{env}");
    }

    #[test]
    fn intervals_read_like_the_apps_settings() {
        assert_eq!(parse_interval("daily"), Some(Duration::from_secs(86400)));
        assert_eq!(parse_interval("6h"), Some(Duration::from_secs(6 * 3600)));
        assert_eq!(parse_interval("0s"), None);
        let c = load(
            &GOOD.replace(
                "mode = \"on-change\"",
                "mode = \"interval\"\ninterval = \"weekly\"",
            ),
            &[],
        )
        .expect("valid");
        assert_eq!(
            c.schedule,
            Schedule::Interval(Duration::from_secs(7 * 86400))
        );
    }
}

#[cfg(test)]
mod target_schedule_tests;
