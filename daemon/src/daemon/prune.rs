//! Pruning from the daemon: `sealbackctl prune` (every target, or one), and the prune a
//! backup runs after itself once the target's `prune` interval has passed. Every one of
//! them then takes the retirement of a rotated-out key's generation a step further
//! (DESIGN §3.11).
//!
//! Within one daemon a prune and a backup of the same target take turns (`Target::work`),
//! since both write the target's catalog; across devices nothing is locked (DESIGN §12).

use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use sealback_repo::Repository;

use super::{Daemon, Target, internal, lock};
use crate::catalog::Catalog;
use crate::control::ApiError;
use crate::control::api::{PruneReport, PruneReports, PruneRequest};
use crate::engine;
use crate::retention::Due;

/// Tests of the binaries kill the daemon before the Nth object a prune writes or deletes
/// (`SEALBACK_TEST_PRUNE_KILL_AT=N`), or before the Nth of one stage of it
/// (`SEALBACK_TEST_PRUNE_KILL_AT=sweep:N`, see [`stage`]), to prove a prune cut anywhere
/// leaves a repository that verifies and restores. Only debug builds read it.
fn fault_hook() -> impl Fn(&str) + Sync {
    let spec = std::env::var("SEALBACK_TEST_PRUNE_KILL_AT")
        .ok()
        .filter(|_| cfg!(debug_assertions));
    let kill_at: Option<(Option<String>, u64)> = spec.and_then(|v| match v.split_once(':') {
        Some((stage, n)) => Some((Some(stage.to_owned()), n.parse().ok()?)),
        None => Some((None, v.parse().ok()?)),
    });
    let count = std::sync::atomic::AtomicU64::new(0);
    move |what: &str| {
        let Some((only, at)) = &kill_at else { return };
        if only.as_deref().is_some_and(|s| s != stage(what)) {
            return;
        }
        let n = count.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
        if n == *at {
            tracing::warn!(
                change = n,
                object = what,
                "SEALBACK_TEST_PRUNE_KILL_AT: killing the daemon"
            );
            let _ = kill(Pid::this(), Signal::SIGKILL);
            std::thread::sleep(Duration::from_secs(60));
        }
    }
}

/// The stage of a prune (DESIGN §12.1 step 5) an object it writes or deletes belongs to,
/// from the name its fault hook is given.
fn stage(what: &str) -> &'static str {
    match what {
        "forgotten" => "forget",
        "pack" => "rewrite",
        "index" => "index",
        "marker" => "mark",
        _ if what.starts_with("snapshots/") => "forget",
        _ if what.starts_with("index/") => "index",
        _ => "sweep",
    }
}

impl Daemon {
    pub(super) fn prune_blocking(&self, request: PruneRequest) -> Result<PruneReports, ApiError> {
        let key = self.key()?;
        let targets: Vec<&Target> = match request.target.as_deref() {
            Some(name) => vec![self.target(Some(name))?],
            None => self.targets.iter().collect(),
        };
        let mut reports = PruneReports::default();
        for &target in &targets {
            let name = &target.config.name;
            let _turn = lock(&target.work);
            let store = self
                .store(target)
                .map_err(|e| ApiError::new(502, "target-failed", e))?;
            let (repo, layout) = sealback_repo::generation::open(store, &key)
                .map_err(|e| super::repo_error(name, e))?;
            let mut catalog =
                Catalog::open(&self.catalog_path_for(name, &layout)).map_err(internal)?;
            let report = self
                .prune_target(target, &repo, &mut catalog, request.dry_run, request.now)
                .map_err(|e| super::engine_error(name, e))?;
            reports.targets.push(report);
        }
        if !request.dry_run {
            reports.retired_generation = self.retire_after_prune(&targets);
        }
        Ok(reports)
    }

    fn prune_target(
        &self,
        target: &Target,
        repo: &Repository,
        catalog: &mut Catalog,
        dry_run: bool,
        now: bool,
    ) -> Result<PruneReport, engine::EngineError> {
        let hook = fault_hook();
        let input = engine::prune::Input {
            target: &target.config.name,
            rules: &target.config.retention.rules,
            dry_run,
            now,
            host: &self.host,
            before_change: &hook,
        };
        let report = engine::prune::run(repo, catalog, &input)?;
        let gc = &report.gc;
        tracing::info!(
            target = %target.config.name, dry_run, forgotten = gc.snapshots_forgotten.len(),
            kept = gc.snapshots_kept, packs_deleted = gc.packs_deleted, bytes_deleted = gc.bytes_deleted,
            packs_marked = gc.packs_marked, packs_rewritten = gc.packs_rewritten,
            objects_after = gc.objects_after, bytes_after = gc.bytes_after, "prune finished"
        );
        Ok(report)
    }

    /// After a successful backup (holding the target's turn): prunes if the target's
    /// `prune` interval has passed since its last prune. A failure is logged, never the
    /// backup's.
    pub(super) fn prune_if_due(&self, target: &Target, repo: &Repository, catalog: &mut Catalog) {
        let now = engine::backup::now_unix_ms();
        let last = match catalog.last_prune_unix_ms() {
            Ok(last) => last,
            Err(e) => {
                tracing::warn!(target = %target.config.name, error = %e, "cannot read when the target was last pruned");
                return;
            }
        };
        match target.config.retention.prune.due(last, now) {
            Due::No => return,
            Due::StartClock => {
                let _ = catalog.set_last_prune(now);
                return;
            }
            Due::Yes => {}
        }
        tracing::info!(target = %target.config.name, "the target's prune interval has passed: pruning");
        if let Err(e) = self.prune_target(target, repo, catalog, false, false) {
            tracing::warn!(target = %target.config.name, error = %e, "the automatic prune failed; the next backup tries again");
            return;
        }
        self.retire_after_prune(&[target]);
    }
}
