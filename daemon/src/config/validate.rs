//! The checks that turn the file's raw values into a [`Config`], each failure naming its
//! key.

use std::time::Duration;

use super::{
    Config, ConfigError, RawConfig, Schedule, TargetConfig, VaultSettings, bandwidth, selection,
    vault_urls,
};

pub(super) fn validate(raw: RawConfig, origin: &str) -> Result<Config, ConfigError> {
    let bad = |key: &str, message: String| ConfigError::BadValue {
        origin: origin.to_owned(),
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
            selection,
            bandwidth,
            schedule,
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
        origin: origin.to_owned(),
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
pub(super) fn parse_interval(text: &str) -> Option<Duration> {
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
