//! The goals sealback is measured against, one row each: a new goal is one more entry in
//! `TARGETS` (and, if it needs a new figure, one more `Metric`).

use serde::Serialize;

use crate::phase::Phase;
use crate::report::Results;

const SEALBACK: &str = "sealback";
const BASELINE: &str = "restic";

#[derive(Debug, Clone, Copy)]
pub(crate) enum Metric {
    /// Wall time of a phase, in seconds.
    Wall(Phase),
    /// Bytes added to the repository by a backup phase.
    Added(Phase),
    /// Bytes a backup phase added beyond the media files new that day (all incompressible
    /// and unique): what the database changes cost, plus a little metadata.
    AddedBeyondNewMedia(Phase),
    /// The highest peak RSS over all backup phases, in bytes.
    PeakRssBackups,
    /// The peak RSS of one phase, in bytes (sealback: the daemon's, started fresh for it).
    PeakRss(Phase),
    /// The sealback daemon's RSS once started, before any work: the highest over the
    /// backup phases (later start-ups load more state).
    IdleRss,
    /// sealback's p99 time from an app commit to a finished snapshot holding it, in
    /// on-change mode with `latency::DEBOUNCE`, in seconds.
    CommitLatencyP99,
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum Goal {
    /// sealback's figure ≤ this fraction of restic's; the text is how the issue writes it.
    TimesRestic(f64, &'static str),
    /// sealback's figure ≤ this absolute value.
    AtMost(f64),
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Target {
    pub label: &'static str,
    pub issue: u32,
    pub metric: Metric,
    pub goal: Goal,
}

pub(crate) const TARGETS: &[Target] = &[
    Target {
        label: "full backup time",
        issue: 2,
        metric: Metric::Wall(Phase::Full),
        goal: Goal::TimesRestic(1.0 / 3.0, "1/3"),
    },
    Target {
        label: "day-1 incremental time",
        issue: 2,
        metric: Metric::Wall(Phase::Day1),
        goal: Goal::TimesRestic(1.0 / 5.0, "1/5"),
    },
    Target {
        label: "peak RSS, backups",
        issue: 2,
        metric: Metric::PeakRssBackups,
        goal: Goal::TimesRestic(1.0 / 2.0, "1/2"),
    },
    Target {
        label: "peak RSS, backups (absolute)",
        issue: 5,
        metric: Metric::PeakRssBackups,
        goal: Goal::AtMost(64.0 * 1000.0 * 1000.0),
    },
    Target {
        label: "restore time",
        issue: 5,
        metric: Metric::Wall(Phase::Restore),
        goal: Goal::TimesRestic(1.0 / 2.0, "1/2"),
    },
    Target {
        label: "peak RSS, restore",
        issue: 20,
        metric: Metric::PeakRss(Phase::Restore),
        goal: Goal::AtMost(64.0 * 1024.0 * 1024.0),
    },
    Target {
        label: "day-1 bytes added",
        issue: 5,
        metric: Metric::Added(Phase::Day1),
        goal: Goal::TimesRestic(1.0, "1"),
    },
    Target {
        label: "day-1 bytes beyond new media (≈ database)",
        issue: 5,
        metric: Metric::AddedBeyondNewMedia(Phase::Day1),
        goal: Goal::TimesRestic(1.0 / 10.0, "1/10"),
    },
    Target {
        label: "day-2 bytes beyond new media (≈ database)",
        issue: 5,
        metric: Metric::AddedBeyondNewMedia(Phase::Day2),
        goal: Goal::TimesRestic(1.0 / 10.0, "1/10"),
    },
    Target {
        label: "idle daemon RSS",
        issue: 5,
        metric: Metric::IdleRss,
        goal: Goal::AtMost(20.0 * 1024.0 * 1024.0),
    },
    Target {
        label: "commit-to-durable latency p99",
        issue: 5,
        metric: Metric::CommitLatencyP99,
        // The debounce plus 1 s.
        goal: Goal::AtMost(crate::latency::DEBOUNCE.as_secs_f64() + 1.0),
    },
];

/// How a metric's values are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Unit {
    Seconds,
    Bytes,
    Rss,
}

impl Metric {
    pub(crate) fn unit(self) -> Unit {
        match self {
            Metric::Wall(_) | Metric::CommitLatencyP99 => Unit::Seconds,
            Metric::Added(_) | Metric::AddedBeyondNewMedia(_) => Unit::Bytes,
            Metric::PeakRssBackups | Metric::PeakRss(_) | Metric::IdleRss => Unit::Rss,
        }
    }

    /// The figure for `tool`, if it was measured.
    fn value(self, results: &Results, tool: &str) -> Option<f64> {
        match self {
            Metric::Wall(phase) => results.sample(phase, tool).map(|s| s.wall_s),
            Metric::Added(phase) => results
                .sample(phase, tool)
                .and_then(|s| s.bytes_written)
                .map(|b| b as f64),
            Metric::AddedBeyondNewMedia(phase) => {
                let added = results.sample(phase, tool)?.bytes_written?;
                let media = results.days.get(phase.key())?.get("media_bytes_added")?;
                Some(added.saturating_sub(media.as_u64()?) as f64)
            }
            Metric::PeakRssBackups => Phase::ALL
                .iter()
                .filter(|p| p.is_backup())
                .filter_map(|p| results.sample(*p, tool)?.peak_rss)
                .max()
                .map(|b| b as f64),
            Metric::PeakRss(phase) => results
                .sample(phase, tool)
                .and_then(|s| s.peak_rss)
                .map(|b| b as f64),
            Metric::IdleRss => results.idle_rss(tool).map(|b| b as f64),
            Metric::CommitLatencyP99 => results
                .latency
                .as_ref()
                .filter(|_| tool == SEALBACK)
                .map(|l| l.p99_s),
        }
    }
}

/// One evaluated target.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct TargetResult {
    pub label: &'static str,
    pub issue: u32,
    pub unit: Unit,
    pub sealback: Option<f64>,
    pub restic: Option<f64>,
    /// sealback / restic.
    pub ratio: Option<f64>,
    pub goal: String,
    /// PASS, MISS, or why it could not be judged.
    pub result: String,
}

pub(crate) fn evaluate(results: &Results) -> Vec<TargetResult> {
    TARGETS
        .iter()
        .map(|target| {
            let sealback = target.metric.value(results, SEALBACK);
            let restic = target.metric.value(results, BASELINE);
            let ratio = sealback
                .zip(restic)
                .and_then(|(s, r)| (r > 0.0).then_some(s / r));
            let (goal, met) = match target.goal {
                Goal::TimesRestic(fraction, text) => (
                    format!("≤ {text} × restic"),
                    ratio.map(|ratio| ratio <= fraction),
                ),
                Goal::AtMost(bound) => (
                    format!("≤ {}", crate::report::show(bound, target.metric.unit())),
                    sealback.map(|s| s <= bound),
                ),
            };
            let restore_unverified = matches!(
                target.metric,
                Metric::Wall(Phase::Restore) | Metric::PeakRss(Phase::Restore)
            ) && !results.restore_verified(SEALBACK);
            let result = match met {
                _ if restore_unverified => "INVALID (restore not verified)".to_owned(),
                Some(true) => "PASS".to_owned(),
                Some(false) => "MISS".to_owned(),
                None if restic.is_none() && matches!(target.goal, Goal::TimesRestic(..)) => {
                    "- (restic not measured)".to_owned()
                }
                None => "- (not measured)".to_owned(),
            };
            TargetResult {
                label: target.label,
                issue: target.issue,
                unit: target.metric.unit(),
                sealback,
                restic,
                ratio,
                goal,
                result,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::measure::Sample;
    use crate::report::{PhaseResult, StoreSummary, ToolSample};
    use crate::store::StoreParams;
    use crate::verify::Verdict;

    /// A run whose only figures are sealback's verified restore, at `peak_rss` bytes.
    fn restored_at(peak_rss: u64) -> Results {
        let params = StoreParams {
            seed: 1,
            messages: 1,
            media_mb: 1,
            generator_blake3: String::new(),
        };
        let store = StoreSummary {
            params,
            files: 0,
            bytes: 0,
            database_bytes: 0,
        };
        let mut results = Results::new(store, vec![SEALBACK.into()], vec![], vec![], vec![]);
        let sample = Sample {
            peak_rss: Some(peak_rss),
            ..Sample::default()
        };
        results.phases.push(PhaseResult {
            phase: Phase::Restore,
            title: Phase::Restore.title(),
            samples: vec![ToolSample {
                tool: SEALBACK.into(),
                sample,
            }],
        });
        let verdict = Verdict {
            ok: true,
            detail: String::new(),
        };
        results.restores.insert(SEALBACK.into(), verdict);
        results
    }

    fn restore_rss_result(results: &Results) -> String {
        evaluate(results)
            .into_iter()
            .find(|t| t.label == "peak RSS, restore")
            .map(|t| t.result)
            .expect("the restore's peak RSS is a target")
    }

    #[test]
    fn the_restores_peak_rss_is_judged_against_64_mib() {
        assert_eq!(restore_rss_result(&restored_at(60 << 20)), "PASS");
        assert_eq!(restore_rss_result(&restored_at(64 << 20)), "PASS");
        assert_eq!(restore_rss_result(&restored_at(82 << 20)), "MISS");
        let mut unverified = restored_at(60 << 20);
        unverified.restores.clear();
        assert!(restore_rss_result(&unverified).starts_with("INVALID"));
    }
}
