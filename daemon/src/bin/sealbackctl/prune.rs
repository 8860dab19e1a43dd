//! `sealbackctl prune`'s output: what the policy keeps and forgets, and what was deleted.

use indicatif::HumanBytes;
use sealback_daemon::control::api::PruneReports;

pub fn print(reports: &PruneReports) {
    for report in &reports.targets {
        let gc = &report.gc;
        let verb = |done: &'static str, would: &'static str| if gc.dry_run { would } else { done };
        let kept = report
            .snapshots
            .iter()
            .filter(|s| !s.keep.is_empty())
            .count();
        outln!(
            "target {}: keeps {kept} of {} snapshots, {} {}{}",
            report.target,
            report.snapshots.len(),
            verb("forgot", "would forget"),
            gc.snapshots_forgotten.len(),
            if gc.snapshots_kept_as_base.is_empty() {
                String::new()
            } else {
                format!(
                    " ({} kept as the base of a kept snapshot)",
                    gc.snapshots_kept_as_base.len()
                )
            }
        );
        for s in &report.snapshots {
            let why = if s.keep.is_empty() {
                "forget".to_owned()
            } else {
                format!("keep ({})", s.keep.join(", "))
            };
            outln!(
                "  {}  {}  {}  {why}",
                &s.id[..s.id.len().min(12)],
                crate::print::utc(s.time_unix_ms),
                s.host
            );
        }
        outln!(
            "  {} {} packs ({}); {} {} packs ({}) into {} ({}); marked {} packs ({}, {} of them orphans) for deletion after the grace period; {} pending",
            verb("deleted", "would delete"),
            gc.packs_deleted,
            HumanBytes(gc.bytes_deleted),
            verb("rewrote", "would rewrite"),
            gc.packs_rewritten,
            HumanBytes(gc.bytes_rewritten),
            gc.packs_written,
            HumanBytes(gc.bytes_written),
            gc.packs_marked,
            HumanBytes(gc.bytes_marked),
            gc.orphans_marked,
            gc.packs_pending,
        );
        outln!(
            "  objects {} -> {}, bytes {} -> {}; indexes {} merged into {}",
            gc.objects_before,
            gc.objects_after,
            HumanBytes(gc.bytes_before),
            HumanBytes(gc.bytes_after),
            gc.indexes_before,
            gc.indexes_written,
        );
    }
    if let Some(retired) = &reports.retired_generation {
        outln!(
            "retired the previous key's backups (after `key rotate`): {} objects ({}); the old key opens nothing now",
            retired.objects,
            HumanBytes(retired.bytes)
        );
    }
}
