//! The retention policy as a pure function: which snapshots to keep, and why.
//!
//! restic's semantics: snapshots are taken newest first, per host; `keep_last` keeps the
//! first N; `keep_hourly` (daily, weekly, monthly) keeps the newest snapshot of each of the
//! last N hours (days, ISO weeks starting Monday, calendar months), UTC, that have one; a
//! snapshot is kept if any rule keeps it; the newest snapshot of each host is always kept
//! (it is the parent of that device's next backup).

use std::collections::BTreeMap;

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

const HOUR_MS: i64 = 3600 * 1000;
const DAY_MS: i64 = 24 * HOUR_MS;

/// The calendar month (year * 12 + month - 1) of a day since the epoch (Howard Hinnant's
/// civil-from-days).
fn month(days: i64) -> i64 {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    y * 12 + m - 1
}

/// Decisions for every snapshot, in the order given.
pub fn apply<'a>(rules: &Rules, snapshots: &[Candidate<'a>]) -> Vec<Decision<'a>> {
    let mut by_host: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, s) in snapshots.iter().enumerate() {
        by_host.entry(s.host).or_default().push(i);
    }
    let mut reasons: Vec<Vec<&'static str>> = vec![Vec::new(); snapshots.len()];
    type Bucket = fn(i64) -> i64;
    let buckets: [(&'static str, u32, Bucket); 4] = [
        ("hourly", rules.keep_hourly, |t| t.div_euclid(HOUR_MS)),
        ("daily", rules.keep_daily, |t| t.div_euclid(DAY_MS)),
        // 1970-01-01 was a Thursday: weeks start on Monday, three days before.
        ("weekly", rules.keep_weekly, |t| {
            (t.div_euclid(DAY_MS) + 3).div_euclid(7)
        }),
        ("monthly", rules.keep_monthly, |t| {
            month(t.div_euclid(DAY_MS))
        }),
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
        for (reason, count, bucket) in buckets {
            let mut left = count;
            let mut last = None;
            for &i in &order {
                if left == 0 {
                    break;
                }
                let b = bucket(snapshots[i].time_unix_ms);
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
        apply(&rules, &candidates)
            .iter()
            .enumerate()
            .filter(|(_, d)| d.keep())
            .map(|(i, _)| i)
            .collect()
    }

    /// 2026-12-07 00:00 UTC, a Monday.
    const MONDAY: i64 = 1_796_601_600_000;

    #[test]
    fn the_calendar_is_right() {
        assert_eq!(month(0), 1970 * 12);
        assert_eq!(month(31), 1970 * 12 + 1, "1970-02-01");
        assert_eq!(month(MONDAY / DAY_MS), 2026 * 12 + 11, "December 2026");
        assert_eq!(month(MONDAY / DAY_MS + 25), 2027 * 12, "January 2027");
        let week = |t: i64| (t.div_euclid(DAY_MS) + 3).div_euclid(7);
        assert_eq!(week(MONDAY), week(MONDAY + 6 * DAY_MS + DAY_MS - 1));
        assert_ne!(week(MONDAY - 1), week(MONDAY), "Sunday ends the week");
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
        let d = apply(&rules, &c);
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
