//! Which targets are due for a backup, and when the next one is: each target follows its own
//! schedule (its `schedule` key, or `[schedule]`), so a local disk can follow every change
//! while a cloud target backs up daily. Pure decisions on instants the caller passes; the
//! scheduler loop (`scheduler::run`) sleeps until [`Plan::next_deadline`] and backs up
//! [`Plan::due`].

use std::time::Duration;

use tokio::time::Instant;

use crate::config::Schedule;

/// The first wait after a failed backup; it doubles up to [`RETRY_MAX`].
pub(crate) const RETRY_FIRST: Duration = Duration::from_secs(30);
pub(crate) const RETRY_MAX: Duration = Duration::from_secs(30 * 60);

/// How one target's backup went, for the plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Succeeded,
    /// Failed in a way another try may fix (a target unreachable): tried again after a wait.
    Failed,
    /// Failed in a way a retry cannot fix (no key yet, shutting down): not tried again.
    Refused,
}

#[derive(Debug, Clone)]
struct TargetPlan {
    schedule: Schedule,
    /// On-change: the debounce after the first change not yet backed up.
    change_due: Option<Instant>,
    /// Interval: the next periodic backup.
    interval_due: Option<Instant>,
    /// After a failure: the next try.
    retry_due: Option<Instant>,
    retry_wait: Duration,
}

impl TargetPlan {
    fn next(&self) -> Option<Instant> {
        [self.change_due, self.interval_due, self.retry_due]
            .into_iter()
            .flatten()
            .min()
    }
}

/// Every target's schedule and deadlines, by the targets' configuration order.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    targets: Vec<TargetPlan>,
    debounce: Duration,
}

impl Plan {
    /// `schedules[i]` is target i's schedule; `first_interval(i, every)` when an interval
    /// target's first backup is due.
    pub(crate) fn new(
        schedules: Vec<Schedule>,
        debounce: Duration,
        first_interval: impl Fn(usize, Duration) -> Instant,
    ) -> Plan {
        let targets = schedules
            .into_iter()
            .enumerate()
            .map(|(i, schedule)| TargetPlan {
                interval_due: match &schedule {
                    Schedule::Interval(every) => Some(first_interval(i, *every)),
                    _ => None,
                },
                schedule,
                change_due: None,
                retry_due: None,
                retry_wait: RETRY_FIRST,
            })
            .collect();
        Plan { targets, debounce }
    }

    /// The store changed at `now`: each on-change target not in `covered` (a backup about to
    /// capture the change for them) gets a backup a debounce after its first pending change.
    pub(crate) fn changed(&mut self, now: Instant, covered: &[usize]) {
        for (i, t) in self.targets.iter_mut().enumerate() {
            if t.schedule == Schedule::OnChange && t.change_due.is_none() && !covered.contains(&i) {
                t.change_due = Some(now + self.debounce);
            }
        }
    }

    /// The earliest deadline of any target.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.targets.iter().filter_map(TargetPlan::next).min()
    }

    /// Target `i`'s next backup, if one is planned.
    pub(crate) fn next_run(&self, i: usize) -> Option<Instant> {
        self.targets.get(i).and_then(TargetPlan::next)
    }

    /// Whether an on-change target has a change not yet backed up.
    pub(crate) fn has_pending_change(&self) -> bool {
        self.targets.iter().any(|t| t.change_due.is_some())
    }

    /// The targets with a deadline at or before `now`.
    pub(crate) fn due(&self, now: Instant) -> Vec<usize> {
        (0..self.targets.len())
            .filter(|&i| self.next_run(i).is_some_and(|d| d <= now))
            .collect()
    }

    /// Every target (a backup asked for through the control socket).
    pub(crate) fn all(&self) -> Vec<usize> {
        (0..self.targets.len()).collect()
    }

    /// A backup of `which` starts: their pending change and retry are covered by it.
    pub(crate) fn started(&mut self, which: &[usize]) {
        for &i in which {
            if let Some(t) = self.targets.get_mut(i) {
                t.change_due = None;
                t.retry_due = None;
            }
        }
    }

    /// Target `i` was just authorized (`sealbackctl target auth`): if it is waiting to be
    /// tried again after failures (most likely refused credentials), it is due `now`, and its
    /// next failure waits the first wait again.
    pub(crate) fn authorized(&mut self, i: usize, now: Instant) {
        if let Some(t) = self.targets.get_mut(i) {
            if t.retry_due.is_some() {
                t.retry_due = Some(now);
            }
            t.retry_wait = RETRY_FIRST;
        }
    }

    /// Target `i`'s backup ended at `now`; returns how long until it is tried again, if a
    /// failure is (for the log: a manual target's is not).
    pub(crate) fn finished(
        &mut self,
        i: usize,
        outcome: Outcome,
        now: Instant,
    ) -> Option<Duration> {
        let t = self.targets.get_mut(i)?;
        let mut retry = None;
        match outcome {
            Outcome::Succeeded => t.retry_wait = RETRY_FIRST,
            // A manual target backs up only when asked, failed or not (config/sealback.toml).
            Outcome::Failed if t.schedule == Schedule::Manual => {}
            Outcome::Failed => {
                t.retry_due = Some(now + t.retry_wait);
                retry = Some(t.retry_wait);
                t.retry_wait = (t.retry_wait * 2).min(RETRY_MAX);
            }
            Outcome::Refused => {}
        }
        if let Schedule::Interval(every) = &t.schedule {
            t.interval_due = Some(now + *every);
        }
        retry
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Duration = Duration::from_secs(86_400);
    const DEBOUNCE: Duration = Duration::from_secs(2);

    /// Target 0 on change, target 1 daily (first run in a day), target 2 manual.
    fn plan(now: Instant) -> Plan {
        Plan::new(
            vec![
                Schedule::OnChange,
                Schedule::Interval(DAY),
                Schedule::Manual,
            ],
            DEBOUNCE,
            |_, every| now + every,
        )
    }

    #[test]
    fn a_change_makes_only_the_on_change_targets_due() {
        let now = Instant::now();
        let mut p = plan(now);
        assert_eq!(p.next_deadline(), Some(now + DAY));
        p.changed(now, &[]);
        assert_eq!(p.next_deadline(), Some(now + DEBOUNCE));
        assert!(p.due(now).is_empty(), "the debounce first");
        assert_eq!(p.due(now + DEBOUNCE), vec![0]);
        // A second change does not push the deadline back: a busy app still gets backed up.
        p.changed(now + Duration::from_secs(1), &[]);
        assert_eq!(p.next_run(0), Some(now + DEBOUNCE));
        p.started(&[0]);
        p.finished(0, Outcome::Succeeded, now + DEBOUNCE);
        assert_eq!(p.next_run(0), None);
        assert_eq!(
            p.next_run(2),
            None,
            "a manual target is never due on its own"
        );
    }

    #[test]
    fn the_daily_target_is_due_once_a_day_counted_from_its_last_backup() {
        let now = Instant::now();
        let mut p = plan(now);
        assert_eq!(p.due(now + DAY), vec![1]);
        p.started(&[1]);
        p.finished(1, Outcome::Succeeded, now + DAY + Duration::from_secs(60));
        assert_eq!(p.next_run(1), Some(now + 2 * DAY + Duration::from_secs(60)));
        // A backup asked for by hand also counts as its backup of the day.
        p.started(&p.all());
        p.finished(1, Outcome::Succeeded, now + DAY + DAY / 2);
        assert_eq!(p.next_run(1), Some(now + 2 * DAY + DAY / 2));
    }

    #[test]
    fn a_change_during_a_backup_of_other_targets_is_kept_for_the_on_change_target() {
        let now = Instant::now();
        let mut p = plan(now);
        // The daily backup of target 1 starts; a change arrives before its capture: it covers
        // target 1 only, so target 0 still gets its backup.
        p.started(&[1]);
        p.changed(now, &[1]);
        assert_eq!(p.next_run(0), Some(now + DEBOUNCE));
        p.changed(now, &[0]);
        assert_eq!(p.next_run(0), Some(now + DEBOUNCE), "already pending");
    }

    #[test]
    fn a_failed_target_alone_is_tried_again_with_a_growing_wait() {
        let now = Instant::now();
        let mut p = plan(now);
        p.changed(now, &[]);
        p.started(&[0]);
        p.finished(0, Outcome::Failed, now);
        assert_eq!(p.due(now + RETRY_FIRST), vec![0]);
        p.started(&[0]);
        p.finished(0, Outcome::Failed, now + RETRY_FIRST);
        assert_eq!(p.next_run(0), Some(now + RETRY_FIRST + 2 * RETRY_FIRST));
        p.started(&[0]);
        p.finished(0, Outcome::Refused, now);
        assert_eq!(p.next_run(0), None, "no key: nothing to retry until asked");
        assert_eq!(
            p.next_run(1),
            Some(now + DAY),
            "the daily target is not affected"
        );
    }

    #[test]
    fn an_authorized_target_waiting_after_failures_is_due_at_once() {
        let now = Instant::now();
        let mut p = plan(now);
        p.started(&[1]);
        p.finished(1, Outcome::Failed, now);
        p.started(&[1]);
        p.finished(1, Outcome::Failed, now + RETRY_FIRST);
        let later = now + RETRY_FIRST + Duration::from_secs(1);
        assert!(p.due(later).is_empty(), "waiting {:?}", p.next_run(1));
        p.authorized(1, later);
        assert_eq!(p.due(later), vec![1]);
        p.started(&[1]);
        p.finished(1, Outcome::Failed, later);
        assert_eq!(
            p.next_run(1),
            Some(later + RETRY_FIRST),
            "the back-off starts over"
        );
        // A target that has not failed keeps its plan.
        p.authorized(0, later);
        assert_eq!(p.next_run(0), None);
    }

    #[test]
    fn a_failed_manual_target_is_not_tried_again_by_itself() {
        let now = Instant::now();
        let mut p = plan(now);
        p.started(&p.all());
        assert_eq!(p.finished(2, Outcome::Failed, now), None, "and says so");
        assert_eq!(p.next_run(2), None, "manual: only when asked");
        assert_eq!(p.finished(0, Outcome::Failed, now), Some(RETRY_FIRST));
        assert_eq!(p.next_run(0), Some(now + RETRY_FIRST), "on-change retries");
    }
}
