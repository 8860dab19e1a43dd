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

/// What a backup does about its target's automatic prune ([`PruneEvery::due`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Due {
    /// Nothing: `never`, or the interval has not passed.
    No,
    /// Record `now` as the last prune without pruning: the catalog never pruned (the clock
    /// starts at the first backup) or remembers a prune later than `now` (the clock was
    /// set back, and would otherwise hold prunes off until it caught up).
    StartClock,
    /// Prune.
    Yes,
}

impl PruneEvery {
    /// Whether a backup finishing at `now` (Unix ms) prunes, the last prune having been at
    /// `last` (by the catalog).
    pub fn due(self, last: Option<i64>, now: i64) -> Due {
        let PruneEvery::Every(every) = self else {
            return Due::No;
        };
        match last {
            None => Due::StartClock,
            Some(last) if last > now => Due::StartClock,
            Some(last) if now - last >= every.as_millis() as i64 => Due::Yes,
            Some(_) => Due::No,
        }
    }
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

    #[test]
    fn a_prune_is_due_once_its_interval_has_passed_since_the_last_and_never_for_never() {
        const MIN: i64 = 60_000;
        const DAY: i64 = 24 * 60 * MIN;
        let daily = DEFAULT.prune;
        let now = 1_765_000_000_000;
        assert_eq!(PruneEvery::Never.due(None, now), Due::No);
        assert_eq!(PruneEvery::Never.due(Some(now - 365 * DAY), now), Due::No);
        assert_eq!(daily.due(None, now), Due::StartClock, "the first backup");
        assert_eq!(daily.due(Some(now - DAY + 1), now), Due::No);
        assert_eq!(daily.due(Some(now - DAY), now), Due::Yes);
        assert_eq!(daily.due(Some(now - 40 * DAY), now), Due::Yes);
        assert_eq!(
            daily.due(Some(now + 3 * DAY), now),
            Due::StartClock,
            "a clock set back does not hold prunes off for three days"
        );
        let weekly = parse_prune("weekly").expect("weekly");
        assert_eq!(weekly.due(Some(now - 6 * DAY), now), Due::No);
        assert_eq!(weekly.due(Some(now - 7 * DAY), now), Due::Yes);
        let ninety = parse_prune("90m").expect("a duration");
        assert_eq!(ninety.due(Some(now - 89 * MIN), now), Due::No);
        assert_eq!(ninety.due(Some(now - 90 * MIN), now), Due::Yes);
    }

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
