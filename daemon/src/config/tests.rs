//! The configuration's tests: the shipped example loads, and every mistake is named.

use super::validate::parse_interval;
use super::*;

/// The configuration file we ship, every key with its default: what a user starts from.
pub(super) const GOOD: &str = include_str!("../../../config/sealback.toml");

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

#[test]
fn a_key_in_a_list_is_named_with_its_dot() {
    let err = load(
        &GOOD.replace("concurrency = 4", "concurrency = \"four\""),
        &[],
    )
    .expect_err("invalid")
    .to_string();
    assert!(err.contains("`targets[0].concurrency`"), "{err}");
}

#[test]
fn an_override_that_is_wrong_is_blamed_on_its_variable() {
    let err = load(GOOD, &[("SEALBACK_SCHEDULE__DEBOUNCE", "soon")])
        .expect_err("invalid")
        .to_string();
    assert!(
        err.starts_with(
            "environment variable SEALBACK_SCHEDULE__DEBOUNCE: key `schedule.debounce`"
        ),
        "{err}"
    );
    // A good override beside it is not blamed.
    let err = load(
        GOOD,
        &[
            ("SEALBACK_SCHEDULE__MODE", "manual"),
            ("SEALBACK_CONTROL__MODE", "0400"),
        ],
    )
    .expect_err("invalid")
    .to_string();
    assert!(
        err.starts_with("environment variable SEALBACK_CONTROL__MODE"),
        "{err}"
    );
    // The file's own mistake is the file's, even with overrides set.
    let err = load(
        &GOOD.replace("\"2s\"", "\"soon\""),
        &[("SEALBACK_SCHEDULE__MODE", "manual")],
    )
    .expect_err("invalid")
    .to_string();
    assert!(err.starts_with("configuration "), "{err}");
}
