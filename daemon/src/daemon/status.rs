//! One target's row of `status`: its schedule, what its catalog holds, its provider's
//! counters, and the snapshots it no longer holds.

use super::{Daemon, Target, lock, missing};
use crate::catalog::Catalog;
use crate::control::api::{ProviderCounters, TargetStatus};

impl Daemon {
    pub(super) fn target_status(&self, target: &Target) -> TargetStatus {
        let index = self
            .targets
            .iter()
            .position(|t| std::ptr::eq(t, target))
            .unwrap_or(0);
        let mut status = TargetStatus {
            name: target.config.name.clone(),
            plugin: target.config.plugin.clone(),
            schedule: self.config.target_schedule(index).to_string(),
            next_backup_unix_ms: lock(&self.next_backups).get(index).copied().flatten(),
            last_snapshot: None,
            last_snapshot_unix_ms: None,
            snapshots: 0,
            bytes_stored: 0,
            last_error: lock(&target.last_error).clone(),
            missing_snapshots: Vec::new(),
            requests: {
                let c = target.counters.snapshot();
                ProviderCounters {
                    requests: c.requests,
                    retries: c.retries,
                    failures: c.failures,
                    bytes_sent: c.bytes_sent,
                    bytes_received: c.bytes_received,
                    in_flight: c.in_flight,
                }
            },
        };
        let path = self.catalog_path(&target.config.name);
        if path.exists()
            && let Ok(catalog) = Catalog::open(&path)
        {
            if let Ok(rows) = catalog.snapshots() {
                status.snapshots = rows.len() as u64;
                if let Some(last) = rows.last() {
                    status.last_snapshot = Some(last.id().to_owned());
                    status.last_snapshot_unix_ms = Some(last.time_unix_ms);
                }
            }
            status.bytes_stored = catalog.bytes_stored().unwrap_or(0);
        }
        // From the record beside the catalog, which outlives it.
        match crate::catalog::missing_beside(&path) {
            Ok(gone) => {
                status.missing_snapshots = gone
                    .iter()
                    .map(|m| missing::shown(m, &target.config.name))
                    .collect();
            }
            Err(e) => status.last_error = Some(e.to_string()),
        }
        status
    }
}
