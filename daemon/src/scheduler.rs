//! When backups run: one at a time, on request, shortly after the store changes
//! (`on-change`: the debounce after the first change, so a busy app still gets backed up
//! at a bounded delay), or every interval. A change during a backup schedules another after it.
//! Each target follows its own schedule (`[[targets]] schedule`, else `[schedule]`): a
//! backup started by a target's schedule goes to the targets due then ([`plan`]); one asked
//! for through the control socket goes to every target.

mod plan;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use plan::{Outcome, Plan};

use notify::event::ModifyKind;
use notify::{EventKind, RecursiveMode, Watcher};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::control::ApiError;
use crate::control::api::BackupReport;
use crate::daemon::{BackupTicket, Daemon, TargetResult};

/// Watches the store; each relevant change makes `tx` hold a token (coalesced).
pub fn watch_store(
    store: &Path,
    tx: mpsc::Sender<()>,
) -> notify::Result<notify::RecommendedWatcher> {
    let handler = move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else { return };
        if is_relevant(&event) {
            tracing::debug!(kind = ?event.kind, paths = ?event.paths, "store changed");
            // Full means a change is already pending: nothing to add.
            let _ = tx.try_send(());
        }
    };
    // A link the store's owner plants (to `/`, say) is not walked: watches on directories
    // outside the store would spend the system's inotify watches, and backups skip links.
    let config = notify::Config::default().with_follow_symlinks(false);
    let mut watcher = notify::RecommendedWatcher::new(handler, config)?;
    watcher.watch(store, RecursiveMode::Recursive)?;
    Ok(watcher)
}

/// Changes to data, not reads or metadata; and not the shared-memory index our own reads
/// touch. (Opening the database, SQLite re-owns its -wal and -shm when run as root, and
/// closing it is a close-after-write: neither is a change of the store.)
fn is_relevant(event: &notify::Event) -> bool {
    let data_change = matches!(
        event.kind,
        EventKind::Create(_) | EventKind::Remove(_) | EventKind::Modify(_) | EventKind::Any
    ) && !matches!(event.kind, EventKind::Modify(ModifyKind::Metadata(_)));
    data_change
        && event.paths.iter().any(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            !name.ends_with("-shm")
        })
}

/// The scheduler loop; ends when `shutdown` fires.
pub async fn run(
    daemon: Arc<Daemon>,
    mut tickets: mpsc::Receiver<BackupTicket>,
    mut changes: mpsc::Receiver<()>,
    mut shutdown: watch::Receiver<bool>,
) {
    let schedules = (0..daemon.config.targets.len())
        .map(|i| daemon.config.target_schedule(i))
        .collect();
    // After a failed backup (a target unreachable, say), that target is tried again after a
    // wait that doubles up to plan::RETRY_MAX, so a target that comes back catches up.
    let mut plan = Plan::new(schedules, daemon.config.debounce, |i, every| {
        first_interval_run(&daemon, i, every)
    });
    publish(&daemon, &plan);
    // Targets authorized by `sealbackctl target auth`: their wait after failures ends.
    let mut authorized = daemon
        .take_authorized()
        .unwrap_or_else(|| mpsc::unbounded_channel().1);
    loop {
        crate::notify::alive();
        let mut waiting: Vec<BackupTicket> = Vec::new();
        tokio::select! {
            _ = shutdown.changed() => break,
            _ = crate::notify::ping_due() => continue,
            Some(()) = changes.recv() => {
                daemon.note_change();
                plan.changed(Instant::now(), &[]);
                publish(&daemon, &plan);
                continue;
            }
            Some(ticket) = tickets.recv() => waiting.push(ticket),
            Some(i) = authorized.recv() => {
                plan.authorized(i, Instant::now());
                publish(&daemon, &plan);
                continue;
            }
            _ = sleep_until(plan.next_deadline()) => {}
        }
        while let Ok(t) = tickets.try_recv() {
            waiting.push(t);
        }
        let which = if waiting.is_empty() {
            plan.due(Instant::now())
        } else {
            plan.all()
        };
        if which.is_empty() {
            continue;
        }
        plan.started(&which);
        // Changes seen before the capture starts are covered by it for the targets it backs
        // up; the other on-change targets still get theirs. Those that arrive while it runs
        // wait in `changes` and schedule the next backup.
        let mut changed = false;
        while changes.try_recv().is_ok() {
            changed = true;
        }
        if changed {
            plan.changed(Instant::now(), &which);
        }
        publish(&daemon, &plan);
        let (result, each) = backup(&daemon, &which, &waiting).await;
        crate::notify::backup_done(&result);
        let now = Instant::now();
        for (i, outcome) in each {
            let outcome = match outcome {
                Ok(_) => Outcome::Succeeded,
                Err(e) if e.body.code == "no-key" || e.body.code == "shutting-down" => {
                    Outcome::Refused
                }
                Err(_) => Outcome::Failed,
            };
            let retry = plan.finished(i, outcome, now);
            let target = &daemon.config.targets[i].name;
            match (outcome, retry) {
                (Outcome::Failed, Some(wait)) => tracing::warn!(
                    %target,
                    retry_in_s = wait.as_secs(),
                    "backup failed; trying this target again later"
                ),
                (Outcome::Failed, None) => tracing::warn!(
                    %target,
                    "backup failed; a manual target backs up again only when asked"
                ),
                _ => {}
            }
        }
        if plan.has_pending_change() {
            daemon.note_change();
        }
        publish(&daemon, &plan);
        for ticket in waiting {
            if let Some(reply) = ticket.reply {
                let _ = reply.send(result.clone());
            }
        }
    }
}

/// The plan's next backups, as wall-clock times, for `status`.
fn publish(daemon: &Daemon, plan: &Plan) {
    let now = Instant::now();
    let wall_ms = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let next = (0..daemon.config.targets.len())
        .map(|i| {
            plan.next_run(i)
                .map(|at| wall_ms + at.saturating_duration_since(now).as_millis() as i64)
        })
        .collect();
    daemon.set_next_backups(next);
}

async fn backup(
    daemon: &Arc<Daemon>,
    which: &[usize],
    waiting: &[BackupTicket],
) -> (Result<BackupReport, ApiError>, Vec<TargetResult>) {
    let sinks: Vec<_> = waiting.iter().map(|t| t.progress.clone()).collect();
    let d = daemon.clone();
    let targets = which.to_vec();
    tokio::task::spawn_blocking(move || {
        d.run_backup(&targets, &|done, total| {
            crate::notify::alive();
            for s in &sinks {
                s.set(done, total);
            }
        })
    })
    .await
    .unwrap_or_else(|e| {
        let error = ApiError::new(500, "internal", format!("backup task failed: {e}"));
        (
            Err(error.clone()),
            which.iter().map(|&i| (i, Err(error.clone()))).collect(),
        )
    })
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// Target `i`'s first interval backup: one interval after its newest snapshot, or soon
/// after start when it has none.
fn first_interval_run(daemon: &Daemon, i: usize, every: Duration) -> Instant {
    let newest = daemon.newest_snapshot_unix_ms_of(i);
    let now_ms = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let due_in_ms = newest.map_or(0, |t| (t + every.as_millis() as i64 - now_ms).max(0));
    Instant::now() + daemon.config.debounce + Duration::from_millis(due_in_ms as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{AccessKind, AccessMode, CreateKind, MetadataKind};
    use std::path::PathBuf;

    fn event(kind: EventKind, path: &str) -> notify::Event {
        notify::Event::new(kind).add_path(PathBuf::from(path))
    }

    /// The inodes this process's inotify instances watch (from `/proc/self/fdinfo`).
    fn watched_inodes() -> Vec<u64> {
        let mut inodes = Vec::new();
        for entry in std::fs::read_dir("/proc/self/fdinfo")
            .expect("list fdinfo")
            .flatten()
        {
            let info = std::fs::read_to_string(entry.path()).unwrap_or_default();
            for line in info.lines().filter(|l| l.starts_with("inotify wd:")) {
                let ino = line.split_whitespace().find_map(|w| w.strip_prefix("ino:"));
                if let Some(ino) = ino.and_then(|hex| u64::from_str_radix(hex, 16).ok()) {
                    inodes.push(ino);
                }
            }
        }
        inodes
    }

    #[test]
    fn a_link_in_the_store_is_not_walked_by_the_watcher() {
        use std::os::unix::fs::MetadataExt as _;
        let dir = tempfile::tempdir().expect("tempdir");
        let store = dir.path().join("store");
        std::fs::create_dir_all(store.join("Media")).expect("mkdir");
        let outside = dir.path().join("outside");
        std::fs::create_dir_all(outside.join("deep")).expect("mkdir");
        std::os::unix::fs::symlink(&outside, store.join("Media/out")).expect("symlink");
        let inode = |p: &std::path::Path| std::fs::metadata(p).expect("stat").ino();
        let (tx, _rx) = mpsc::channel(1);
        let _watcher = watch_store(&store, tx).expect("watch the store");
        let watched = watched_inodes();
        assert!(
            watched.contains(&inode(&store.join("Media"))),
            "{watched:?}"
        );
        for out in [outside.clone(), outside.join("deep")] {
            assert!(
                !watched.contains(&inode(&out)),
                "{} is watched: the watcher followed a link out of the store",
                out.display()
            );
        }
    }

    #[test]
    fn reads_and_our_shm_touches_are_not_changes() {
        assert!(is_relevant(&event(
            EventKind::Modify(ModifyKind::Any),
            "/s/msgstore.db-wal"
        )));
        assert!(is_relevant(&event(
            EventKind::Create(CreateKind::File),
            "/s/Media/a.jpg"
        )));
        assert!(!is_relevant(&event(
            EventKind::Modify(ModifyKind::Any),
            "/s/msgstore.db-shm"
        )));
        assert!(!is_relevant(&event(
            EventKind::Access(AccessKind::Any),
            "/s/msgstore.db"
        )));
        let closed = EventKind::Access(AccessKind::Close(AccessMode::Write));
        assert!(!is_relevant(&event(closed, "/s/msgstore.db")));
        let owner = EventKind::Modify(ModifyKind::Metadata(MetadataKind::Ownership));
        assert!(!is_relevant(&event(owner, "/s/msgstore.db-wal")));
    }
}
