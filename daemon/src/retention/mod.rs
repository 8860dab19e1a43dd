//! Retention: which snapshots to keep (`[retention]` and a target's `retention` table), and
//! when the daemon prunes by itself. The policy itself is [`policy::apply`], a pure
//! function; pruning is [`crate::engine::prune`] over `sealback_repo::gc`.

pub mod policy;

use std::time::Duration;

use serde::Deserialize;

pub use policy::Rules;

/// `[retention]` or `targets[i].retention` as written: every key optional (a target's
/// table overrides `[retention]` key by key; `[retention]` overrides the defaults).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRetention {
    keep_last: Option<i64>,
    keep_hourly: Option<i64>,
    keep_daily: Option<i64>,
    keep_weekly: Option<i64>,
    keep_monthly: Option<i64>,
    prune: Option<String>,
}

/// When the daemon prunes a target by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PruneEvery {
    Never,
    Every(Duration),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    pub rules: Rules,
    pub prune: PruneEvery,
}

/// The defaults, for an on-change phone (dozens of snapshots an hour): at most
/// 10 + 24 + 7 + 4 + 12 = 57 snapshots, covering a year, pruned once a day.
pub const DEFAULT: Retention = Retention {
    rules: Rules {
        keep_last: 10,
        keep_hourly: 24,
        keep_daily: 7,
        keep_weekly: 4,
        keep_monthly: 12,
    },
    prune: PruneEvery::Every(Duration::from_secs(24 * 3600)),
};

/// The largest count a rule takes (a century of hours).
const MAX_KEEP: i64 = 1_000_000;

impl RawRetention {
    /// `self` over `base`; errors name the key under `prefix` (`retention` or
    /// `targets[1].retention`) and say what is wrong.
    pub fn over(&self, base: &Retention, prefix: &str) -> Result<Retention, (String, String)> {
        let count =
            |key: &str, value: Option<i64>, default: u32| -> Result<u32, (String, String)> {
                match value {
                    None => Ok(default),
                    Some(n) if (0..=MAX_KEEP).contains(&n) => Ok(n as u32),
                    Some(n) => Err((
                        format!("{prefix}.{key}"),
                        format!("{n} must be a count from 0 to {MAX_KEEP}"),
                    )),
                }
            };
        let rules = Rules {
            keep_last: count("keep_last", self.keep_last, base.rules.keep_last)?,
            keep_hourly: count("keep_hourly", self.keep_hourly, base.rules.keep_hourly)?,
            keep_daily: count("keep_daily", self.keep_daily, base.rules.keep_daily)?,
            keep_weekly: count("keep_weekly", self.keep_weekly, base.rules.keep_weekly)?,
            keep_monthly: count("keep_monthly", self.keep_monthly, base.rules.keep_monthly)?,
        };
        let prune = match &self.prune {
            None => base.prune,
            Some(text) => parse_prune(text).ok_or_else(|| {
                (
                    format!("{prefix}.prune"),
                    format!(
                        "{text:?} must be \"never\", \"daily\", \"weekly\" or a duration of at least a minute such as \"12h\""
                    ),
                )
            })?,
        };
        Ok(Retention { rules, prune })
    }
}

fn parse_prune(text: &str) -> Option<PruneEvery> {
    const DAY: u64 = 24 * 3600;
    Some(match text {
        "never" => PruneEvery::Never,
        "daily" => PruneEvery::Every(Duration::from_secs(DAY)),
        "weekly" => PruneEvery::Every(Duration::from_secs(7 * DAY)),
        other => PruneEvery::Every(
            humantime::parse_duration(other)
                .ok()
                .filter(|d| *d >= Duration::from_secs(60))?,
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(json: &str) -> RawRetention {
        serde_json::from_str(json).expect("parses")
    }

    #[test]
    fn a_table_overrides_key_by_key_and_errors_name_the_key() {
        let global = raw(r#"{"keep_last": 3, "prune": "weekly"}"#)
            .over(&DEFAULT, "retention")
            .expect("valid");
        assert_eq!(global.rules.keep_last, 3);
        assert_eq!(global.rules.keep_daily, 7);
        assert_eq!(
            global.prune,
            PruneEvery::Every(Duration::from_secs(7 * 24 * 3600))
        );
        let target = raw(r#"{"keep_daily": 30, "prune": "never"}"#)
            .over(&global, "targets[1].retention")
            .expect("valid");
        assert_eq!((target.rules.keep_last, target.rules.keep_daily), (3, 30));
        assert_eq!(target.prune, PruneEvery::Never);
        assert_eq!(
            raw(r#"{"prune": "90m"}"#)
                .over(&DEFAULT, "retention")
                .expect("valid")
                .prune,
            PruneEvery::Every(Duration::from_secs(5400))
        );
        let (key, message) = raw(r#"{"keep_daily": -1}"#)
            .over(&DEFAULT, "retention")
            .expect_err("negative");
        assert_eq!(key, "retention.keep_daily");
        assert!(message.contains("-1"), "{message}");
        let (key, _) = raw(r#"{"keep_last": 2000000}"#)
            .over(&DEFAULT, "targets[1].retention")
            .expect_err("too many");
        assert_eq!(key, "targets[1].retention.keep_last");
        let (key, message) = raw(r#"{"prune": "sometimes"}"#)
            .over(&DEFAULT, "retention")
            .expect_err("bad");
        assert_eq!(key, "retention.prune");
        assert!(message.contains("never"), "{message}");
        assert!(
            raw(r#"{"prune": "10s"}"#)
                .over(&DEFAULT, "retention")
                .is_err(),
            "too often"
        );
        assert!(
            serde_json::from_str::<RawRetention>(r#"{"keep_yearly": 1}"#).is_err(),
            "unknown keys are refused"
        );
    }
}
