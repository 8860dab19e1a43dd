//! sealbackctl's text output: the daemon's answers as fields and tables (`--json` prints
//! them as they came instead).

use std::time::{Duration, UNIX_EPOCH};

use indicatif::{ProgressBar, ProgressStyle};

use indicatif::HumanBytes;
use sealback_daemon::control::api::{
    AcknowledgedMissing, Activity, BackupReport, KeyMode, MissingSnapshot, Progress, RepairReport,
    RepositoryStats, SnapshotList, Status, VerifyReport,
};

/// A progress bar on the terminal, or nothing.
pub(crate) struct ProgressView(Option<ProgressBar>);

impl ProgressView {
    pub(crate) fn new(show: bool, what: &'static str) -> Self {
        ProgressView(show.then(|| {
            let style = ProgressStyle::with_template(
                "{msg} [{bar:30}] {bytes}/{total_bytes} ({bytes_per_sec}, {eta} left)",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
            ProgressBar::new(0).with_style(style).with_message(what)
        }))
    }

    pub(crate) fn update(&self, progress: Progress) {
        if let Some(bar) = &self.0 {
            bar.set_length(progress.total_bytes.max(progress.done_bytes));
            bar.set_position(progress.done_bytes);
        }
    }

    pub(crate) fn clear(&self) {
        if let Some(bar) = &self.0 {
            bar.finish_and_clear();
        }
    }

    /// A line of progress above the bar, or on its own without one (none with `--quiet`,
    /// which shows no bar either).
    pub(crate) fn println(&self, line: &str) {
        match &self.0 {
            Some(bar) => bar.println(line),
            None => progressln!("{line}"),
        }
    }
}

pub(crate) fn print_status(status: &Status) {
    let activity = match status.activity {
        Activity::Idle => "idle",
        Activity::BackingUp => "backing up",
        Activity::Restoring => "restoring",
    };
    let key = match status.key_mode {
        KeyMode::RecoveryKey => "recovery key".to_owned(),
        KeyMode::Password => match status.vault_attempts_left {
            Some(left) => format!("password, in the vault ({left} password attempt(s) left)"),
            None => "password, in the vault".to_owned(),
        },
        KeyMode::DeviceOnly => "on this device only (no recovery key or vault record)".to_owned(),
        KeyMode::None => {
            "none (sealbackctl key generate, or key import an existing one)".to_owned()
        }
    };
    let last_backup = match &status.last_backup {
        Some(r) => format!(
            "{}, snapshot {} on {}, {} files, {} read, {} written",
            utc(r.time_unix_ms),
            short_id(&r.snapshot),
            r.target,
            r.files,
            HumanBytes(r.bytes_read),
            HumanBytes(r.bytes_written)
        ),
        None => "never".to_owned(),
    };
    print_fields(&[
        (
            "daemon",
            sealback_daemon::control::api::daemon_name(&status.daemon_version, status.protocol),
        ),
        ("activity", activity.to_owned()),
        ("key", key.to_owned()),
        ("schedule", status.schedule.clone()),
        ("store", status.store.clone()),
        (
            "pending change",
            if status.pending_change { "yes" } else { "no" }.to_owned(),
        ),
        ("last backup", last_backup),
        (
            "last error",
            status
                .last_error
                .clone()
                .unwrap_or_else(|| "none".to_owned()),
        ),
    ]);
    outln!();
    if status.targets.is_empty() {
        outln!("no storage targets configured");
        return;
    }
    let rows = status
        .targets
        .iter()
        .map(|t| {
            let last = match (&t.last_snapshot, t.last_snapshot_unix_ms) {
                (Some(id), Some(ms)) => format!("{} {}", short_id(id), utc(ms)),
                (Some(id), None) => short_id(id),
                (None, _) => "-".to_owned(),
            };
            let schedule = match t.next_backup_unix_ms {
                Some(ms) => format!("{} (next {})", t.schedule, utc(ms)),
                None => t.schedule.clone(),
            };
            vec![
                t.name.clone(),
                t.plugin.clone(),
                schedule,
                t.snapshots.to_string(),
                HumanBytes(t.bytes_stored).to_string(),
                last,
                format!(
                    "{} ({} retried, {} failed)",
                    t.requests.requests, t.requests.retries, t.requests.failures
                ),
                t.last_error.clone().unwrap_or_else(|| "-".to_owned()),
            ]
        })
        .collect::<Vec<_>>();
    print_table(
        &[
            ("TARGET", false),
            ("PLUGIN", false),
            ("SCHEDULE", false),
            ("SNAPSHOTS", true),
            ("STORED", true),
            ("LAST SNAPSHOT", false),
            ("REQUESTS", false),
            ("LAST ERROR", false),
        ],
        &rows,
    );
    let missing: Vec<MissingSnapshot> = status
        .targets
        .iter()
        .flat_map(|t| t.missing_snapshots.iter().cloned())
        .collect();
    if !missing.is_empty() {
        outln!();
        print_missing(&missing);
    }
}

pub(crate) fn print_backup(r: &BackupReport) {
    let snapshot = if r.unchanged {
        format!(
            "nothing changed: no new snapshot; the last one, {} on {}, holds it all",
            r.snapshot, r.target
        )
    } else {
        format!("{} on {}", r.snapshot, r.target)
    };
    let mut fields = vec![("snapshot", snapshot)];
    for failed in &r.failed {
        fields.push((
            "failed",
            format!("{}: {}", failed.target, failed.error.message),
        ));
    }
    fields.extend([
        ("files", files_line(r)),
        ("read", HumanBytes(r.bytes_read).to_string()),
        ("database", database_line(r)),
        (
            "written",
            format!(
                "{} ({} packs; {} new chunks, {} reused)",
                HumanBytes(r.bytes_written),
                r.packs_written,
                r.chunks_new,
                r.chunks_reused
            ),
        ),
        ("took", took(r.duration_ms)),
    ]);
    print_fields(&fields);
}

pub(crate) fn print_stats(stats: &RepositoryStats) {
    let rows = stats
        .targets
        .iter()
        .map(|t| {
            let objects: Vec<String> = t
                .objects
                .iter()
                .map(|o| format!("{} {}", o.count, o.kind))
                .collect();
            vec![
                t.target.clone(),
                t.snapshots.to_string(),
                HumanBytes(t.stored_bytes).to_string(),
                HumanBytes(t.restored_bytes).to_string(),
                format!("{:.1}x", t.deduplication_ratio),
                if objects.is_empty() {
                    "-".to_owned()
                } else {
                    objects.join(", ")
                },
            ]
        })
        .collect::<Vec<_>>();
    print_table(
        &[
            ("TARGET", false),
            ("SNAPSHOTS", true),
            ("STORED", true),
            ("RESTORED", true),
            ("DEDUP", true),
            ("OBJECTS", false),
        ],
        &rows,
    );
    outln!();
    outln!(
        "RESTORED: what restoring every snapshot would write; DEDUP: RESTORED / STORED \
         (deduplication, delta capture and compression together)."
    );
}

/// What a snapshot or a restore holds: its files, and the database beside them.
pub(crate) fn contents(files: u64, database: bool) -> String {
    let files = if files == 1 {
        "1 file".to_owned()
    } else {
        format!("{files} files")
    };
    if database {
        format!("the database and {files}")
    } else {
        files
    }
}

pub(crate) fn database_line(r: &BackupReport) -> String {
    match &r.db_read {
        None => "none in the store".to_owned(),
        Some(read) if read.delta => format!(
            "{} pages, {} read: only what changed since the last snapshot{}",
            r.db_pages,
            HumanBytes(read.bytes),
            if read.patch {
                ", stored as a patch"
            } else {
                ""
            }
        ),
        Some(read) => format!(
            "{} pages, {} read: all of it ({})",
            r.db_pages,
            HumanBytes(read.bytes),
            read.why_full.as_deref().unwrap_or("no reason given")
        ),
    }
}

pub(crate) fn files_line(r: &BackupReport) -> String {
    let mut line = format!("{} ({} read, the rest unchanged", r.files, r.files_read);
    if r.files_unstable > 0 {
        line += &format!(
            "; {} kept changing while read, their previous version was kept",
            r.files_unstable
        );
    }
    line + ")"
}

pub(crate) fn print_verify(report: &VerifyReport) {
    outln!(
        "target {}: {} snapshots, {} indexes, {} packs, {} blobs, {} read",
        report.target,
        report.snapshots,
        report.indexes,
        report.packs,
        report.blobs,
        HumanBytes(report.bytes_read)
    );
    if report.problems.is_empty() {
        outln!("no problems: every object authenticated and every snapshot is complete");
    }
    for problem in &report.problems {
        outln!("problem: {problem}");
    }
}

pub(crate) fn print_repair(report: &RepairReport) {
    outln!(
        "target {}: {} index and snapshot objects checked, {} removed",
        report.target,
        report.checked,
        report.removed.len()
    );
    for removed in &report.removed {
        outln!("removed: {removed}");
    }
    for kept in &report.kept {
        outln!("kept: {kept}");
    }
}

pub(crate) fn print_snapshots(list: &SnapshotList) {
    print_missing(&list.missing);
    if list.snapshots.is_empty() {
        outln!("no snapshots yet");
        return;
    }
    let rows = list
        .snapshots
        .iter()
        .map(|s| {
            vec![
                short_id(&s.id),
                utc(s.time_unix_ms),
                s.files.to_string(),
                HumanBytes(s.size).to_string(),
                s.target.clone(),
                if s.keep.is_empty() {
                    "forget".to_owned()
                } else {
                    s.keep.join(",")
                },
            ]
        })
        .collect::<Vec<_>>();
    print_table(
        &[
            ("ID", false),
            ("TIME", false),
            ("FILES", true),
            ("SIZE", true),
            ("TARGET", false),
            ("POLICY", false),
        ],
        &rows,
    );
}

/// `key: value` lines, the values aligned.
pub(crate) fn print_fields(fields: &[(&str, String)]) {
    let width = fields
        .iter()
        .map(|(key, _)| key.len() + 1)
        .max()
        .unwrap_or(0);
    for (key, value) in fields {
        outln!("{:width$}  {value}", format!("{key}:"));
    }
}

/// A table with a header; columns marked `true` are right-aligned (numbers).
pub(crate) fn print_table(columns: &[(&str, bool)], rows: &[Vec<String>]) {
    let header: Vec<String> = columns.iter().map(|(name, _)| (*name).to_owned()).collect();
    let mut widths = vec![0; columns.len()];
    for row in std::iter::once(&header).chain(rows) {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    for row in std::iter::once(&header).chain(rows) {
        let cells: Vec<String> = row
            .iter()
            .zip(columns.iter().zip(&widths))
            .map(|(cell, ((_, right), &width))| {
                if *right {
                    format!("{cell:>width$}")
                } else {
                    format!("{cell:<width$}")
                }
            })
            .collect();
        outln!("{}", cells.join("  ").trim_end());
    }
}

pub(crate) fn short_id(id: &str) -> String {
    id.chars().take(8).collect()
}

/// RFC 3339 in UTC, to the second.
pub(crate) fn utc(unix_ms: i64) -> String {
    // humantime formats from 1970 up to the end of year 9999 only.
    const END_OF_9999_MS: i64 = 253_402_300_800_000;
    match u64::try_from(unix_ms) {
        Ok(ms) if unix_ms < END_OF_9999_MS => {
            humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
        }
        _ => format!("{unix_ms} ms after 1970"),
    }
}

pub(crate) fn took(ms: u64) -> String {
    match ms {
        0..1_000 => format!("{ms} ms"),
        1_000..60_000 => format!("{:.1} s", ms as f64 / 1000.0),
        _ => format!("{} min {} s", ms / 60_000, ms % 60_000 / 1000),
    }
}

/// The alarm of snapshots missing from their target, if any, ahead of a listing.
pub(crate) fn print_missing(missing: &[MissingSnapshot]) {
    if missing.is_empty() {
        return;
    }
    outln!(
        "MISSING: {} snapshot(s) this device made or saw are no longer on their target \
         (removed, hidden or rolled back there):",
        missing.len()
    );
    for m in missing {
        outln!("  {}", missing_line(m));
    }
    outln!(
        "`restore latest` will not restore an older snapshot in place of a missing newer one: \
         name the snapshot to restore, or run `sealbackctl snapshots --acknowledge-missing` \
         if they were removed on purpose."
    );
    outln!();
}

/// One missing snapshot: its id, when it was made, how the device knows it.
pub(crate) fn missing_line(m: &MissingSnapshot) -> String {
    let made = m.time_unix_ms.map_or("time unknown".to_owned(), utc);
    let how = match m.known.as_str() {
        "made" => "made by this device",
        "parent" => "the parent of the newest snapshot",
        _ => "seen by this device",
    };
    let gone = if m.damaged {
        "no longer genuine"
    } else {
        "missing"
    };
    format!(
        "{} made {made} on {} ({how}; {gone} since {})",
        m.id,
        m.target,
        utc(m.noticed_unix_ms)
    )
}

pub(crate) fn print_acknowledged(done: &AcknowledgedMissing) {
    if done.acknowledged.is_empty() {
        outln!("no snapshot is missing");
        return;
    }
    outln!("forgot {} missing snapshot(s):", done.acknowledged.len());
    for m in &done.acknowledged {
        outln!("  {}", missing_line(m));
    }
}
