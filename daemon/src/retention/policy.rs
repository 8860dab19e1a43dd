//! The retention policy as a pure function: which snapshots to keep, and why.
//!
//! restic's semantics: snapshots are taken newest first, per host; `keep_last` keeps the
//! first N; `keep_hourly` (daily, weekly, monthly) keeps the newest snapshot of each of the
//! last N hours (days, ISO weeks starting Monday, calendar months) that have one, in the
//! given time zone (the daemon's local one, as restic uses the local time: "one a day"
//! means one per day as the user counts days); a snapshot is kept if any rule keeps it; the
//! newest snapshot of each host is always kept (it is the parent of that device's next
//! backup). In the hour a clock is set back, the two hours of the same local time are one
//! bucket, as in restic.

use std::collections::BTreeMap;

use jiff::Timestamp;
use jiff::tz::TimeZone;

/// `[retention]`'s counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Rules {
    pub keep_last: u32,
    pub keep_hourly: u32,
    pub keep_daily: u32,
    pub keep_weekly: u32,
    pub keep_monthly: u32,
}

/// A snapshot as the policy sees it.
#[derive(Debug, Clone)]
pub struct Candidate<'a> {
    pub name: &'a str,
    pub time_unix_ms: i64,
    pub host: &'a str,
}

/// The policy's answer for one snapshot: kept for these reasons, or (none) forgotten.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision<'a> {
    pub name: &'a str,
    pub reasons: Vec<&'static str>,
}

impl Decision<'_> {
    pub fn keep(&self) -> bool {
        !self.reasons.is_empty()
    }
}

/// The hour, day, ISO week and month of a time in `zone`, each as one number.
fn buckets(unix_ms: i64, zone: &TimeZone) -> [i64; 4] {
    // A time beyond what a calendar holds (a damaged manifest) goes to the nearest end.
    let at = Timestamp::from_millisecond(unix_ms).unwrap_or(if unix_ms < 0 {
        Timestamp::MIN
    } else {
        Timestamp::MAX
    });
    let local = at.to_zoned_datetime(zone.clone());
    let day =
        (i64::from(local.year()) * 100 + i64::from(local.month())) * 100 + i64::from(local.day());
    let week = local.iso_week_date();
    [
        day * 100 + i64::from(local.hour()),
        day,
        i64::from(week.year()) * 100 + i64::from(week.week()),
        day / 100,
    ]
}

/// Decisions for every snapshot, in the order given; calendar buckets in `zone`.
pub fn apply<'a>(rules: &Rules, snapshots: &[Candidate<'a>], zone: &TimeZone) -> Vec<Decision<'a>> {
    let mut by_host: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, s) in snapshots.iter().enumerate() {
        by_host.entry(s.host).or_default().push(i);
    }
    let mut reasons: Vec<Vec<&'static str>> = vec![Vec::new(); snapshots.len()];
    let calendar: Vec<[i64; 4]> = snapshots
        .iter()
        .map(|s| buckets(s.time_unix_ms, zone))
        .collect();
    let rules_by_bucket: [(&'static str, u32); 4] = [
        ("hourly", rules.keep_hourly),
        ("daily", rules.keep_daily),
        ("weekly", rules.keep_weekly),
        ("monthly", rules.keep_monthly),
    ];
    for mut order in by_host.into_values() {
        // Newest first; equal times by name, so the answer does not depend on input order.
        order.sort_by(|&a, &b| {
            let (a, b) = (&snapshots[a], &snapshots[b]);
            b.time_unix_ms.cmp(&a.time_unix_ms).then(b.name.cmp(a.name))
        });
        reasons[order[0]].push("newest");
        for &i in order.iter().take(rules.keep_last as usize) {
            reasons[i].push("last");
        }
        for (which, (reason, count)) in rules_by_bucket.into_iter().enumerate() {
            let mut left = count;
            let mut last = None;
            for &i in &order {
                if left == 0 {
                    break;
                }
                let b = calendar[i][which];
                if last != Some(b) {
                    last = Some(b);
                    left -= 1;
                    reasons[i].push(reason);
                }
            }
        }
    }
    snapshots
        .iter()
        .zip(reasons)
        .map(|(s, reasons)| Decision {
            name: s.name,
            reasons,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const NONE: Rules = Rules {
        keep_last: 0,
        keep_hourly: 0,
        keep_daily: 0,
        keep_weekly: 0,
        keep_monthly: 0,
    };

    fn kept(rules: Rules, times: &[(i64, &str)]) -> Vec<usize> {
        let names: Vec<String> = (0..times.len()).map(|i| format!("s{i:03}")).collect();
        let candidates: Vec<Candidate> = times
            .iter()
            .zip(&names)
            .map(|((t, host), name)| Candidate {
                name,
                time_unix_ms: *t,
                host,
            })
            .collect();
        apply(&rules, &candidates, &TimeZone::UTC)
            .iter()
            .enumerate()
            .filter(|(_, d)| d.keep())
            .map(|(i, _)| i)
            .collect()
    }

    const HOUR_MS: i64 = 3600 * 1000;
    const DAY_MS: i64 = 24 * HOUR_MS;
    /// 2026-12-07 00:00 UTC, a Monday.
    const MONDAY: i64 = 1_796_601_600_000;

    #[test]
    fn the_calendar_is_right() {
        // Each bucket reads as the date: yyyymmddhh, yyyymmdd, ISO yyyyww, yyyymm.
        let utc = |t: i64| buckets(t, &TimeZone::UTC);
        assert_eq!(utc(0), [1970010100, 19700101, 197001, 197001]);
        assert_eq!(utc(MONDAY)[3], 202612, "December 2026");
        assert_eq!(utc(MONDAY + 25 * DAY_MS)[3], 202701, "January 2027");
        assert_eq!(utc(MONDAY)[2], utc(MONDAY + 7 * DAY_MS - 1)[2]);
        assert_ne!(utc(MONDAY - 1)[2], utc(MONDAY)[2], "Sunday ends the week");
        // The ISO week of 2027-01-01 (a Friday) is the 53rd of 2026.
        assert_eq!(utc(MONDAY + 25 * DAY_MS)[2], 202653);
        // Times no calendar holds go to its ends instead of failing.
        assert!(utc(i64::MAX)[1] > utc(MONDAY)[1]);
        assert!(utc(i64::MIN)[1] < utc(0)[1]);
    }

    /// The rules as the daemon applies them, in a fixed zone (TZ=EST5EDT); the same
    /// snapshots in UTC keep other ones.
    #[test]
    fn days_and_weeks_are_the_local_ones() {
        let new_york = TimeZone::posix("EST5EDT,M3.2.0,M11.1.0").expect("a POSIX TZ");
        let names = ["sun-noon", "sun-22h", "sun-23h30", "mon-01h"];
        // Sunday 2026-12-06 12:00, 22:00, 23:30 and Monday 01:00 in New York (UTC-5).
        let times = [
            MONDAY - 7 * HOUR_MS,
            MONDAY + 3 * HOUR_MS,
            MONDAY + 9 * HOUR_MS / 2,
            MONDAY + 6 * HOUR_MS,
        ];
        let candidates: Vec<Candidate> = names
            .iter()
            .zip(times)
            .map(|(name, t)| Candidate {
                name,
                time_unix_ms: t,
                host: "phone",
            })
            .collect();
        let kept = |rules: Rules, zone: &TimeZone| -> Vec<&str> {
            apply(&rules, &candidates, zone)
                .into_iter()
                .filter(|d| d.reasons.iter().any(|r| *r != "newest"))
                .map(|d| d.name)
                .collect()
        };
        let daily = Rules {
            keep_daily: 2,
            ..NONE
        };
        assert_eq!(kept(daily, &new_york), ["sun-23h30", "mon-01h"]);
        assert_eq!(kept(daily, &TimeZone::UTC), ["sun-noon", "mon-01h"]);
        let weekly = Rules {
            keep_weekly: 2,
            ..NONE
        };
        assert_eq!(kept(weekly, &new_york), ["sun-23h30", "mon-01h"]);
        assert_eq!(kept(weekly, &TimeZone::UTC), ["sun-noon", "mon-01h"]);
        // When the clocks go back (2026-11-01 02:00 EDT), the two 01:30s are one hour.
        let fall_back: i64 = 1_793_511_000_000; // 2026-11-01 05:30 UTC, 01:30 EDT
        assert_eq!(
            buckets(fall_back, &new_york)[0],
            buckets(fall_back + HOUR_MS, &new_york)[0]
        );
    }

    #[test]
    fn nothing_to_keep_still_keeps_the_newest_of_each_host() {
        let times = [
            (MONDAY, "a"),
            (MONDAY + 1, "a"),
            (MONDAY - 5, "b"),
            (MONDAY - 9, "b"),
        ];
        assert_eq!(kept(NONE, &times), vec![1, 2]);
    }

    #[test]
    fn keep_last_counts_per_host() {
        let times: Vec<(i64, &str)> = (0..6)
            .map(|i| (MONDAY + i, if i % 2 == 0 { "a" } else { "b" }))
            .collect();
        assert_eq!(
            kept(
                Rules {
                    keep_last: 2,
                    ..NONE
                },
                &times
            ),
            vec![2, 3, 4, 5]
        );
    }

    #[test]
    fn buckets_keep_the_newest_of_each_of_the_last_n_that_have_one() {
        // Every 20 minutes for three days, with hours 10-14 of day 2 silent.
        let mut times = Vec::new();
        for i in 0..(3 * 72) {
            let t = MONDAY + i * 20 * 60 * 1000;
            let hour = (t - MONDAY) / HOUR_MS;
            if !(34..39).contains(&hour) {
                times.push((t, "phone"));
            }
        }
        let hourly = kept(
            Rules {
                keep_hourly: 10,
                ..NONE
            },
            &times,
        );
        assert_eq!(hourly.len(), 10);
        // The last of each hour: each kept snapshot is the newest in its hour.
        for &i in &hourly {
            let h = times[i].0.div_euclid(HOUR_MS);
            assert!(
                times
                    .iter()
                    .all(|(t, _)| t.div_euclid(HOUR_MS) != h || *t <= times[i].0)
            );
        }
        // A silent stretch does not use up the count: hours that have a snapshot do.
        let all_hours = kept(
            Rules {
                keep_hourly: 100,
                ..NONE
            },
            &times,
        );
        assert_eq!(all_hours.len(), 72 - 5);
        let daily = kept(
            Rules {
                keep_daily: 2,
                ..NONE
            },
            &times,
        );
        assert_eq!(
            daily.iter().map(|&i| times[i].0).collect::<Vec<_>>(),
            vec![
                MONDAY + DAY_MS * 2 - 20 * 60 * 1000,
                MONDAY + DAY_MS * 3 - 20 * 60 * 1000,
            ]
        );
        assert_eq!(
            kept(
                Rules {
                    keep_weekly: 5,
                    ..NONE
                },
                &times
            )
            .len(),
            1
        );
        assert_eq!(
            kept(
                Rules {
                    keep_monthly: 5,
                    ..NONE
                },
                &times
            )
            .len(),
            1
        );
    }

    #[test]
    fn rules_are_a_union_and_reasons_are_given() {
        // One snapshot a day for 100 days.
        let times: Vec<(i64, &str)> = (0..100).map(|d| (MONDAY + d * DAY_MS, "phone")).collect();
        let rules = Rules {
            keep_last: 3,
            keep_hourly: 0,
            keep_daily: 7,
            keep_weekly: 4,
            keep_monthly: 12,
        };
        let k = kept(rules, &times);
        // last 3 within daily 7 (days 93-99); weekly: the newest of the last 4 weeks that
        // have one (day 99 is in the week starting day 98, then the Sundays 97, 90, 83);
        // monthly: the last day of December, January, February, and day 99 in March 2027.
        let mut want: std::collections::BTreeSet<usize> = (93..100).collect();
        want.extend([99, 97, 90, 83]);
        want.extend([24, 55, 83, 99]);
        assert_eq!(k, want.into_iter().collect::<Vec<_>>());
        let names: Vec<String> = (0..times.len()).map(|i| format!("s{i:03}")).collect();
        let c: Vec<Candidate> = times
            .iter()
            .zip(&names)
            .map(|((t, h), n)| Candidate {
                name: n,
                time_unix_ms: *t,
                host: h,
            })
            .collect();
        let d = apply(&rules, &c, &TimeZone::UTC);
        assert_eq!(
            d[99].reasons,
            vec!["newest", "last", "daily", "weekly", "monthly"]
        );
        assert_eq!(
            d[24].reasons,
            vec!["monthly"],
            "the last day of December 2026"
        );
        assert!(!d[0].keep());
    }
}
