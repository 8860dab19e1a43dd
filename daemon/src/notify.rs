//! systemd's service notifications (sd_notify(3)), for `Type=notify` units:
//! `READY=1` once the control socket listens and the catalog is open, `STATUS=` with the last
//! backup's result, `WATCHDOG=1` at half the interval `WATCHDOG_USEC` asks, `STOPPING=1` at
//! SIGTERM. Without `NOTIFY_SOCKET` (not under systemd) every call does nothing.
//!
//! The watchdog pings come from work that moves: the scheduler loop's iterations (it wakes
//! for a ping when idle), a running backup's reads of the store and its packing, and every
//! provider call that answers (the uploads after the last read, the final index and
//! snapshot, a prune's calls). A slow provider thus keeps the daemon alive as long as it
//! answers; a backup whose engine or provider call hangs stops the pings, and systemd
//! restarts the daemon after `WatchdogSec=`.

use std::sync::{Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use sealback_service::notify::{NotifyState, send};
use tokio::time::Instant;

use crate::control::ApiError;
use crate::control::api::BackupReport;

pub use sealback_service::notify::stopping;

/// The daemon is ready: its control socket listens and its catalog is open.
pub fn ready() {
    sealback_service::notify::ready("idle; no backup since start");
}

/// `STATUS=` with the result of the backup that just ended.
pub fn backup_done(result: &Result<BackupReport, ApiError>) {
    sealback_service::notify::status(&backup_status(result, SystemTime::now()));
}

fn backup_status(result: &Result<BackupReport, ApiError>, now: SystemTime) -> String {
    let at = humantime::format_rfc3339_seconds(now);
    match result {
        Ok(r) if r.failed.is_empty() => format!(
            "last backup ok at {at}: snapshot {} on {}, {} files, {} bytes written",
            r.snapshot, r.target, r.files, r.bytes_written
        ),
        // It reached some targets: saying "ok" would hide the ones it did not.
        Ok(r) => {
            let failed: Vec<String> = r
                .failed
                .iter()
                .map(|f| format!("{} ({})", f.target, f.error.message))
                .collect();
            format!(
                "last backup partly failed at {at}: snapshot {} on {}; failed on {}",
                r.snapshot,
                r.target,
                failed.join(", ")
            )
        }
        Err(e) => format!("last backup failed at {at}: {e}"),
    }
}

/// The watchdog: the interval systemd asks for, and when the last ping went.
struct Watchdog {
    every: Duration,
    last: Mutex<Option<Instant>>,
}

fn watchdog() -> Option<&'static Watchdog> {
    static WATCHDOG: OnceLock<Option<Watchdog>> = OnceLock::new();
    WATCHDOG
        .get_or_init(|| {
            let asked = sd_notify::watchdog_enabled()?;
            if asked.is_zero() {
                return None;
            }
            tracing::info!(
                watchdog_ms = asked.as_millis() as u64,
                "systemd watchdog on; pinging at half its interval"
            );
            Some(Watchdog {
                every: asked / 2,
                last: Mutex::new(None),
            })
        })
        .as_ref()
}

/// Work moved on: pings the watchdog if half its interval has passed since the last ping.
/// Cheap when no watchdog is asked for; safe from any thread (backup progress calls it).
pub fn alive() {
    let Some(dog) = watchdog() else { return };
    let now = Instant::now();
    let mut last = dog.last.lock().unwrap_or_else(|e| e.into_inner());
    if last.is_none_or(|at| now.duration_since(at) >= dog.every) {
        *last = Some(now);
        drop(last);
        send(&[NotifyState::Watchdog]);
    }
}

/// Resolves when the next ping is due (never, without a watchdog): the scheduler loop waits
/// on it beside its other events, and calls [`alive`] on each iteration.
pub async fn ping_due() {
    let Some(dog) = watchdog() else {
        return std::future::pending().await;
    };
    let last = *dog.last.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(at) = last {
        tokio::time::sleep_until(at + dog.every).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::api::{ErrorBody, TargetFailure};

    #[test]
    fn the_status_names_the_snapshot_or_the_error() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(86_400);
        let failed = Err(ApiError::new(503, "target-unreachable", "target usb: gone"));
        let text = backup_status(&failed, now);
        assert!(
            text.starts_with("last backup failed at 1970-01-02T00:00:00Z: "),
            "{text}"
        );
        assert!(text.contains("target usb: gone"), "{text}");
    }

    #[test]
    fn a_backup_that_missed_a_target_is_not_called_ok_and_names_it() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(86_400);
        let report = BackupReport {
            snapshot: "5a1e".into(),
            target: "disk".into(),
            failed: vec![TargetFailure {
                target: "cloud".into(),
                error: ErrorBody {
                    code: "target-failed".into(),
                    message: "target cloud: connection refused".into(),
                    hint: None,
                },
            }],
            ..BackupReport::default()
        };
        let text = backup_status(&Ok(report), now);
        assert_eq!(
            text,
            "last backup partly failed at 1970-01-02T00:00:00Z: snapshot 5a1e on disk; \
             failed on cloud (target cloud: connection refused)"
        );
    }
}
