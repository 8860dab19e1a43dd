//! The latency phase (#5): "in on-change mode, the time from an app commit to a durable
//! encrypted copy on the local target is at most the debounce plus 1 s at p99". Run on the
//! store after every other phase, since its commits change it.

use std::time::Duration;

use serde::Serialize;

use crate::report::seconds;

/// The daemon's debounce in the latency phase; the goal is this plus 1 s.
pub(crate) const DEBOUNCE: Duration = Duration::from_secs(1);
/// The first commits start this far apart, so that each gets a backup of its own.
pub(crate) const SPACING: Duration = Duration::from_millis(3500);

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Latency {
    pub debounce_s: f64,
    pub spacing_s: f64,
    /// Commit to the snapshot holding it being visible, per commit, in order.
    pub samples_s: Vec<f64>,
    pub min_s: f64,
    pub p50_s: f64,
    pub p90_s: f64,
    pub p99_s: f64,
    pub max_s: f64,
}

impl Latency {
    pub(crate) fn of(samples: &[Duration]) -> Option<Latency> {
        if samples.is_empty() {
            return None;
        }
        let samples_s: Vec<f64> = samples.iter().map(Duration::as_secs_f64).collect();
        let mut sorted = samples_s.clone();
        sorted.sort_by(f64::total_cmp);
        // Nearest rank: the smallest sample with at least p of them at or below it.
        let rank =
            |p: f64| sorted[((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1];
        Some(Latency {
            debounce_s: DEBOUNCE.as_secs_f64(),
            spacing_s: SPACING.as_secs_f64(),
            min_s: sorted[0],
            p50_s: rank(0.50),
            p90_s: rank(0.90),
            p99_s: rank(0.99),
            max_s: sorted[sorted.len() - 1],
            samples_s,
        })
    }

    /// What the phase prints.
    pub(crate) fn table(&self) -> String {
        format!(
            "\n== commit-to-durable latency (sealback on-change, debounce {}, {} commits) ==\n\
             min {}  p50 {}  p90 {}  p99 {}  max {}\n  \
             each: one message committed in its own transaction, until sealbackctl status \
             shows a finished snapshot captured after the commit (nearest-rank percentiles)\n",
            seconds(self.debounce_s),
            self.samples_s.len(),
            seconds(self.min_s),
            seconds(self.p50_s),
            seconds(self.p90_s),
            seconds(self.p99_s),
            seconds(self.max_s),
        )
    }
}
