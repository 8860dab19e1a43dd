//! `sealbackctl ls`, `diff` and `restore`'s text output.

use std::cell::Cell;

use indicatif::HumanBytes;
use sealback_daemon::control::api::{ListedFile, Listing, Progress, RestoreReport, SnapshotDiff};

pub fn print_listing(listing: &Listing) {
    // Counted as `snapshots` and `restore` count: the database apart from the files.
    let database = listing.files.iter().any(|file| file.database);
    let files = listing.files.len() - usize::from(database);
    outln!(
        "snapshot {} on {}, {}: {}",
        super::print::short_id(&listing.snapshot),
        listing.target,
        super::print::utc(listing.time_unix_ms),
        super::print::contents(files as u64, database)
    );
    for file in &listing.files {
        let when = match file.mtime_unix_ms {
            Some(ms) => super::print::utc(ms),
            None => "(the database)".to_owned(),
        };
        outln!(
            "{}  {:>10}  {when:<20}  {}",
            mode(file.mode),
            HumanBytes(file.size).to_string(),
            file.path
        );
    }
}

/// `-rw-r--r--`.
fn mode(bits: u32) -> String {
    let mut shown = String::from("-");
    for shift in [6, 3, 0] {
        let part = bits >> shift;
        shown.push(if part & 4 != 0 { 'r' } else { '-' });
        shown.push(if part & 2 != 0 { 'w' } else { '-' });
        shown.push(if part & 1 != 0 { 'x' } else { '-' });
    }
    shown
}

pub fn print_diff(diff: &SnapshotDiff) {
    outln!(
        "from {} to {} on {}:",
        super::print::short_id(&diff.from),
        super::print::short_id(&diff.to),
        diff.target
    );
    let line = |sign: char, file: &ListedFile| {
        outln!("{sign} {}  ({})", file.path, HumanBytes(file.size));
    };
    diff.added.iter().for_each(|f| line('+', f));
    diff.removed.iter().for_each(|f| line('-', f));
    for file in &diff.changed {
        outln!(
            "M {}  ({} -> {})",
            file.path,
            HumanBytes(file.size_before),
            HumanBytes(file.size_after)
        );
    }
    if let Some(db) = &diff.database {
        let size = |s: Option<u64>| s.map_or("absent".to_owned(), |s| HumanBytes(s).to_string());
        let sign = if db.size_change < 0 { "-" } else { "+" };
        outln!(
            "database {}: {} -> {} ({sign}{}), {}",
            db.path,
            size(db.size_before),
            size(db.size_after),
            HumanBytes(db.size_change.unsigned_abs()),
            if db.changed { "changed" } else { "unchanged" }
        );
    }
    outln!(
        "{} added, {} removed, {} changed",
        diff.added.len(),
        diff.removed.len(),
        diff.changed.len()
    );
}

/// The line that says the messages are back, printed once, as soon as the daemon says so.
#[derive(Default)]
pub struct MessagesReady(Cell<bool>);

impl MessagesReady {
    /// The line, the first time `progress` carries the database's readiness.
    pub fn line(&self, progress: &Progress) -> Option<String> {
        let ms = progress.database_ready_ms?;
        if self.0.replace(true) {
            return None;
        }
        Some(format!(
            "messages ready: the database is restored and passes integrity_check (after {}); restoring the media",
            super::print::took(ms)
        ))
    }
}

pub fn print_restore(report: &RestoreReport) {
    outln!(
        "restored snapshot {} from {} into {}: {}, {} in {}",
        super::print::short_id(&report.snapshot),
        report.target,
        report.to,
        super::print::contents(report.files, report.database.is_some()),
        HumanBytes(report.bytes),
        super::print::took(report.duration_ms)
    );
    match &report.database {
        Some(db) => outln!(
            "the database {} ({}) was complete and passed integrity_check after {}",
            db.path,
            HumanBytes(db.bytes),
            super::print::took(db.ready_ms)
        ),
        None => outln!("the database was not restored (not taken by --include)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_read_like_ls() {
        assert_eq!(mode(0o644), "-rw-r--r--");
        assert_eq!(mode(0o750), "-rwxr-x---");
    }

    #[test]
    fn messages_ready_is_said_once() {
        let said = MessagesReady::default();
        let mut p = Progress::default();
        assert!(said.line(&p).is_none());
        p.database_ready_ms = Some(1500);
        assert!(said.line(&p).expect("said").contains("1.5 s"));
        assert!(said.line(&p).is_none());
    }
}
