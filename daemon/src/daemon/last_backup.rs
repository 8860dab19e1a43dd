//! The last backup's report, kept in `state.dir` so that `status` after a restart still says
//! when the last backup was and what it did (it lives in memory otherwise, and a restarted
//! daemon said "never" beside targets listing their snapshots).

use std::path::{Path, PathBuf};

use crate::control::api::BackupReport;

/// A report is a few hundred bytes; a larger file is not ours.
const MAX_BYTES: u64 = 64 * 1024;

fn path(state_dir: &Path) -> PathBuf {
    state_dir.join("last-backup.json")
}

/// The report saved by the last backup that reached a target, if any. A file that cannot be
/// read is logged and ignored: it only feeds `status`.
pub(super) fn load(state_dir: &Path) -> Option<BackupReport> {
    let path = path(state_dir);
    let read = || -> Result<Option<BackupReport>, String> {
        let file = match std::fs::File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.to_string()),
        };
        let limited = std::io::Read::take(file, MAX_BYTES);
        serde_json::from_reader(limited)
            .map(Some)
            .map_err(|e| e.to_string())
    };
    read().unwrap_or_else(|e| {
        tracing::warn!(file = %path.display(), error = %e, "cannot read the last backup's report");
        None
    })
}

/// Saves `report` as the last backup's, replacing the previous one atomically.
pub(super) fn save(state_dir: &Path, report: &BackupReport) {
    let path = path(state_dir);
    let write = || -> std::io::Result<()> {
        let text = serde_json::to_vec(report).map_err(std::io::Error::other)?;
        let partial = path.with_extension("json.partial");
        std::fs::write(&partial, text)?;
        std::fs::rename(&partial, &path)
    };
    if let Err(e) = write() {
        tracing::warn!(file = %path.display(), error = %e, "cannot save the last backup's report");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_report_outlives_the_daemon() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(load(dir.path()), None);
        let report = BackupReport {
            snapshot: "ab".repeat(32),
            target: "disk".into(),
            files: 3,
            ..BackupReport::default()
        };
        save(dir.path(), &report);
        assert_eq!(load(dir.path()), Some(report));
        std::fs::write(path(dir.path()), "not json").expect("write");
        assert_eq!(
            load(dir.path()),
            None,
            "a damaged file only loses the report"
        );
    }
}
