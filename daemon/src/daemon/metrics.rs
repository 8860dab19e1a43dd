//! Observability: `GET /metrics` in Prometheus' text format (version 0.0.4), and
//! `GET /v1/stats`.
//!
//! The metrics, each labelled `target="NAME"` but the key's:
//!
//! | metric | type | what |
//! |---|---|---|
//! | `sealback_backups_total` | counter | backups that reached the target, since the daemon started |
//! | `sealback_backup_failures_total` | counter | backups that failed on the target |
//! | `sealback_backup_read_bytes_total` | counter | bytes read from the store by those backups |
//! | `sealback_backup_written_bytes_total` | counter | bytes handed to the target by them |
//! | `sealback_backup_duration_seconds_total` | counter | time those backups took |
//! | `sealback_backup_last_duration_seconds` | gauge | the last successful backup's |
//! | `sealback_last_success_timestamp_seconds` | gauge | when the newest snapshot was made (this run's last success, else the catalog's newest) |
//! | `sealback_snapshots` | gauge | snapshots the target holds, as of the last sync |
//! | `sealback_stored_bytes` | gauge | bytes of every object stored there |
//! | `sealback_provider_requests_total`, `_retries_total`, `_failures_total` | counter | calls into the provider |
//! | `sealback_provider_sent_bytes_total`, `_received_bytes_total` | counter | bytes through the provider |
//! | `sealback_key_mode{mode}` | gauge | 1 for how the key is kept (`none`, `recovery-key`, `password`, `device-only`), 0 for the others |
//! | `sealback_vault_attempts_left` | gauge | password attempts the vault still allows, once one failed |
//!
//! Target names are letters, digits, `-` and `_` (the configuration checks), so labels need
//! no escaping.

use std::fmt::Write as _;

use super::{Daemon, Target, lock};
use crate::catalog::Catalog;
use crate::control::ApiError;
use crate::control::api::{
    BackupReport, KeyMode, ObjectCount, RepositoryStats, TargetStats, TargetStatus,
};

/// One target's backups since the daemon started.
#[derive(Debug, Default, Clone)]
pub(super) struct BackupTally {
    backups: u64,
    failures: u64,
    read_bytes: u64,
    written_bytes: u64,
    duration_ms: u64,
    last_duration_ms: u64,
    last_success_unix_ms: Option<i64>,
}

impl BackupTally {
    pub(super) fn record(&mut self, result: &Result<BackupReport, ApiError>) {
        match result {
            Ok(report) => {
                self.backups += 1;
                self.read_bytes += report.bytes_read;
                self.written_bytes += report.bytes_written;
                self.duration_ms += report.duration_ms;
                self.last_duration_ms = report.duration_ms;
                self.last_success_unix_ms = Some(report.time_unix_ms);
            }
            Err(_) => self.failures += 1,
        }
    }
}

/// How a per-target metric is read from the target's status and backup tally.
type Reading<'a> = &'a dyn Fn(&TargetStatus, &BackupTally) -> f64;

/// A per-target metric: its name, type, help and reading.
type Metric<'a> = (&'static str, &'static str, &'static str, Reading<'a>);

/// Appends one metric family: its HELP and TYPE lines, then a sample per `(labels, value)`.
fn family(out: &mut String, name: &str, kind: &str, help: &str, samples: &[(String, f64)]) {
    // Writing to a String cannot fail.
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    for (labels, value) in samples {
        let _ = writeln!(out, "{name}{{{labels}}} {value}");
    }
}

impl Daemon {
    /// The text `GET /metrics` answers (blocking: it reads the catalogs).
    pub(super) fn metrics_text(&self) -> String {
        let rows: Vec<(&Target, TargetStatus, BackupTally)> = self
            .targets
            .iter()
            .map(|t| (t, self.target_status(t), lock(&t.tally).clone()))
            .collect();
        let per_target =
            |value: &dyn Fn(&TargetStatus, &BackupTally) -> f64| -> Vec<(String, f64)> {
                rows.iter()
                    .map(|(t, status, tally)| {
                        (
                            format!("target=\"{}\"", t.config.name),
                            value(status, tally),
                        )
                    })
                    .collect()
            };
        let mut out = String::new();
        let counters: [Metric; 15] = [
            (
                "sealback_backups_total",
                "counter",
                "Backups that reached the target since the daemon started.",
                &|_, t| t.backups as f64,
            ),
            (
                "sealback_backup_failures_total",
                "counter",
                "Backups that failed on the target since the daemon started.",
                &|_, t| t.failures as f64,
            ),
            (
                "sealback_backup_read_bytes_total",
                "counter",
                "Bytes read from the store by the backups that reached the target.",
                &|_, t| t.read_bytes as f64,
            ),
            (
                "sealback_backup_written_bytes_total",
                "counter",
                "Bytes handed to the target by its backups.",
                &|_, t| t.written_bytes as f64,
            ),
            (
                "sealback_backup_duration_seconds_total",
                "counter",
                "Time the backups that reached the target took.",
                &|_, t| t.duration_ms as f64 / 1000.0,
            ),
            (
                "sealback_backup_last_duration_seconds",
                "gauge",
                "How long the last backup that reached the target took.",
                &|_, t| t.last_duration_ms as f64 / 1000.0,
            ),
            (
                "sealback_last_success_timestamp_seconds",
                "gauge",
                "When the target's newest snapshot was made (Unix time; 0: none).",
                &|s, t| {
                    t.last_success_unix_ms
                        .or(s.last_snapshot_unix_ms)
                        .unwrap_or(0) as f64
                        / 1000.0
                },
            ),
            (
                "sealback_snapshots",
                "gauge",
                "Snapshots the target holds, as of the last sync.",
                &|s, _| s.snapshots as f64,
            ),
            (
                "sealback_stored_bytes",
                "gauge",
                "Bytes of every object stored on the target.",
                &|s, _| s.bytes_stored as f64,
            ),
            (
                "sealback_provider_requests_total",
                "counter",
                "Calls into the target's provider.",
                &|s, _| s.requests.requests as f64,
            ),
            (
                "sealback_provider_retries_total",
                "counter",
                "Transient provider failures that were retried.",
                &|s, _| s.requests.retries as f64,
            ),
            (
                "sealback_provider_failures_total",
                "counter",
                "Provider calls that failed for good.",
                &|s, _| s.requests.failures as f64,
            ),
            (
                "sealback_provider_sent_bytes_total",
                "counter",
                "Bytes sent to the provider.",
                &|s, _| s.requests.bytes_sent as f64,
            ),
            (
                "sealback_provider_received_bytes_total",
                "counter",
                "Bytes received from the provider.",
                &|s, _| s.requests.bytes_received as f64,
            ),
            (
                "sealback_provider_in_flight",
                "gauge",
                "Provider calls made and not yet answered.",
                &|s, _| s.requests.in_flight as f64,
            ),
        ];
        for (name, kind, help, value) in counters {
            family(&mut out, name, kind, help, &per_target(value));
        }
        let mode = self.key_mode();
        let modes = [
            (KeyMode::None, "none"),
            (KeyMode::RecoveryKey, "recovery-key"),
            (KeyMode::Password, "password"),
            (KeyMode::DeviceOnly, "device-only"),
        ]
        .map(|(m, label)| (format!("mode=\"{label}\""), f64::from(u8::from(m == mode))));
        family(
            &mut out,
            "sealback_key_mode",
            "gauge",
            "How the backup key is kept: 1 for the current mode.",
            &modes,
        );
        if let Some(left) = lock(&self.runtime).vault_attempts_left {
            family(
                &mut out,
                "sealback_vault_attempts_left",
                "gauge",
                "Password attempts the vault still allows, as of the last failed one.",
                &[(String::new(), f64::from(left))],
            );
        }
        out
    }

    /// What `GET /v1/stats` answers (blocking: it reads the catalogs).
    pub(super) fn repository_stats(&self) -> Result<RepositoryStats, ApiError> {
        let mut stats = RepositoryStats::default();
        for target in &self.targets {
            let mut row = TargetStats {
                target: target.config.name.clone(),
                ..TargetStats::default()
            };
            let path = self.catalog_path(&target.config.name);
            if path.exists() {
                let catalog = Catalog::open(&path).map_err(super::internal)?;
                let snapshots = catalog.snapshots().map_err(super::internal)?;
                row.snapshots = snapshots.len() as u64;
                row.restored_bytes = snapshots.iter().map(|s| s.size).sum();
                row.objects = catalog
                    .objects_by_kind()
                    .map_err(super::internal)?
                    .into_iter()
                    .map(|(kind, count, bytes)| ObjectCount { kind, count, bytes })
                    .collect();
                row.stored_bytes = row.objects.iter().map(|o| o.bytes).sum();
                if row.stored_bytes > 0 {
                    row.deduplication_ratio = row.restored_bytes as f64 / row.stored_bytes as f64;
                }
            }
            stats.targets.push(row);
        }
        Ok(stats)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_family_reads_as_prometheus_text() {
        let mut out = String::new();
        family(
            &mut out,
            "sealback_backups_total",
            "counter",
            "Backups.",
            &[
                ("target=\"disk\"".into(), 3.0),
                ("target=\"cloud\"".into(), 0.5),
            ],
        );
        assert_eq!(
            out,
            "# HELP sealback_backups_total Backups.\n# TYPE sealback_backups_total counter\n\
             sealback_backups_total{target=\"disk\"} 3\nsealback_backups_total{target=\"cloud\"} 0.5\n"
        );
    }

    #[test]
    fn the_tally_counts_successes_and_failures() {
        let mut tally = BackupTally::default();
        let report = BackupReport {
            bytes_read: 10,
            bytes_written: 4,
            duration_ms: 1500,
            time_unix_ms: 7,
            ..BackupReport::default()
        };
        tally.record(&Ok(report.clone()));
        tally.record(&Ok(report));
        tally.record(&Err(ApiError::new(502, "target-failed", "down")));
        assert_eq!((tally.backups, tally.failures), (2, 1));
        assert_eq!((tally.read_bytes, tally.written_bytes), (20, 8));
        assert_eq!((tally.duration_ms, tally.last_duration_ms), (3000, 1500));
        assert_eq!(tally.last_success_unix_ms, Some(7));
    }
}
