//! The control API's implementation: each route's handler runs the daemon's blocking work
//! on tokio's blocking pool.

use std::sync::Arc;

use sealback_repo::BackupKey;
use tokio::sync::oneshot;

use super::{BackupTicket, Daemon, internal, lock};
use crate::catalog::Catalog;
use crate::control::api::{
    AcknowledgeMissingRequest, AcknowledgedMissing, Activity, BackupReport, BackupRequest,
    DiffRequest, KeyChangePasswordRequest, KeyChanged, KeyDisableRequest, KeyGenerateRequest,
    KeyGenerated, KeyImportRequest, KeyImported, KeyMode, KeyRecoverRequest, KeyRotateRequest,
    KeyRotated, KeySetPasswordRequest, Listing, LsRequest, PROTOCOL_VERSION, PruneReports,
    PruneRequest, RepairReport, RepairRequest, RestoreReport, RestoreRequest, SnapshotDiff,
    SnapshotInfo, SnapshotList, Status, VerifyReport, VerifyRequest,
};
use crate::control::{ApiError, Handler, ProgressSink};

/// The control API: a cheap handle on the daemon.
#[derive(Clone)]
pub struct DaemonHandle(pub Arc<Daemon>);

impl Handler for DaemonHandle {
    async fn target_auth(
        &self,
        request: crate::control::api::TargetAuthRequest,
        prompts: tokio::sync::mpsc::UnboundedSender<String>,
        cancelled: Arc<std::sync::atomic::AtomicBool>,
    ) -> Result<crate::control::api::TargetAuthorized, ApiError> {
        self.0
            .clone()
            .target_auth(request, prompts, cancelled)
            .await
    }

    async fn status(&self) -> Result<Status, ApiError> {
        let d = self.0.clone();
        tokio::task::spawn_blocking(move || {
            let rt = lock(&d.runtime);
            let activity = if rt.activity_backup {
                Activity::BackingUp
            } else if rt.restores > 0 {
                Activity::Restoring
            } else {
                Activity::Idle
            };
            let (pending_change, last_backup, last_error, vault_attempts_left) = (
                rt.pending_change,
                rt.last_backup.clone(),
                rt.last_error.clone(),
                rt.vault_attempts_left,
            );
            drop(rt);
            let key_mode = d.key_mode();
            Status {
                protocol: PROTOCOL_VERSION,
                daemon_version: env!("CARGO_PKG_VERSION").to_owned(),
                activity,
                key_mode,
                schedule: d.config.schedule.to_string(),
                store: d.config.store.display().to_string(),
                pending_change,
                last_backup,
                last_error,
                targets: d.targets.iter().map(|t| d.target_status(t)).collect(),
                vault_attempts_left,
                vault_configured: d.config.vault.is_some(),
            }
        })
        .await
        .map_err(internal)
    }

    async fn backup(
        &self,
        request: BackupRequest,
        progress: ProgressSink,
    ) -> Result<Option<BackupReport>, ApiError> {
        self.0.key()?;
        let (reply, wait) = if request.wait {
            let (tx, rx) = oneshot::channel();
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        self.0
            .backups
            .send(BackupTicket { reply, progress })
            .await
            .map_err(|_| ApiError::new(503, "shutting-down", "the daemon is shutting down"))?;
        match wait {
            None => Ok(None),
            Some(rx) => rx
                .await
                .map_err(|_| {
                    ApiError::new(
                        503,
                        "shutting-down",
                        "the daemon stopped before the backup finished",
                    )
                })?
                .map(Some),
        }
    }

    async fn stats(&self) -> Result<crate::control::api::RepositoryStats, ApiError> {
        let d = self.0.clone();
        tokio::task::spawn_blocking(move || d.repository_stats())
            .await
            .map_err(internal)?
    }

    async fn metrics(&self) -> Result<String, ApiError> {
        let d = self.0.clone();
        tokio::task::spawn_blocking(move || d.metrics_text())
            .await
            .map_err(internal)
    }

    async fn snapshots(&self) -> Result<SnapshotList, ApiError> {
        let d = self.0.clone();
        tokio::task::spawn_blocking(move || {
            let (mut snapshots, mut missing) = (Vec::new(), Vec::new());
            let key = d.key().ok();
            for t in &d.targets {
                // With a key, list what the target holds now (a new device has an empty
                // catalog); without one, or if the target cannot be reached, what is cached.
                let synced = key.as_ref().map(|key| d.synced(t, key));
                let catalog = match synced {
                    Some(Ok((_, catalog, _))) => catalog,
                    other => {
                        if let Some(Err(e)) = other {
                            tracing::warn!(target = %t.config.name, error = %e, "listing cached snapshots only");
                        }
                        let path = d.catalog_path(&t.config.name);
                        if !path.exists() {
                            continue;
                        }
                        Catalog::open(&path).map_err(internal)?
                    }
                };
                let policy = crate::engine::prune::decide(&catalog, &t.config.retention.rules)
                    .map_err(internal)?;
                // The previous generation's, while it is kept: retired as a whole, never
                // by the policy (empty `keep`).
                let older = d.previous_snapshots(t).into_iter().map(|row| (row, Vec::new()));
                let current = catalog.snapshots().map_err(internal)?.into_iter().zip(policy.into_iter().map(|d| d.keep));
                for (row, keep) in older.chain(current) {
                    snapshots.push(SnapshotInfo {
                        keep,
                        id: row.id().to_owned(),
                        target: t.config.name.clone(),
                        time_unix_ms: row.time_unix_ms,
                        host: row.host.clone(),
                        files: row.files,
                        size: row.size,
                    });
                }
                let gone = catalog.missing().map_err(internal)?;
                missing.extend(gone.iter().map(|m| super::missing::shown(m, &t.config.name)));
            }
            Ok(SnapshotList { snapshots, missing })
        })
        .await
        .map_err(internal)?
    }

    async fn ls(&self, request: LsRequest) -> Result<Listing, ApiError> {
        let d = self.0.clone();
        tokio::task::spawn_blocking(move || d.ls_blocking(request))
            .await
            .map_err(internal)?
    }

    async fn diff(&self, request: DiffRequest) -> Result<SnapshotDiff, ApiError> {
        let d = self.0.clone();
        tokio::task::spawn_blocking(move || d.diff_blocking(request))
            .await
            .map_err(internal)?
    }

    async fn acknowledge_missing(
        &self,
        request: AcknowledgeMissingRequest,
    ) -> Result<AcknowledgedMissing, ApiError> {
        let d = self.0.clone();
        tokio::task::spawn_blocking(move || {
            let targets = match &request.target {
                Some(name) => vec![d.target(Some(name))?],
                None => d.targets.iter().collect(),
            };
            let mut acknowledged = Vec::new();
            for t in targets {
                let mut catalog =
                    Catalog::open(&d.catalog_path(&t.config.name)).map_err(internal)?;
                let gone = catalog.acknowledge_missing().map_err(internal)?;
                acknowledged.extend(
                    gone.iter()
                        .map(|m| super::missing::shown(m, &t.config.name)),
                );
            }
            Ok(AcknowledgedMissing { acknowledged })
        })
        .await
        .map_err(internal)?
    }

    async fn restore(
        &self,
        request: RestoreRequest,
        progress: ProgressSink,
    ) -> Result<RestoreReport, ApiError> {
        let d = self.0.clone();
        lock(&d.runtime).restores += 1;
        let result = tokio::task::spawn_blocking({
            let d = d.clone();
            move || d.restore_blocking(request, progress)
        })
        .await
        .map_err(internal);
        lock(&d.runtime).restores -= 1;
        result?
    }

    async fn verify(
        &self,
        request: VerifyRequest,
        progress: ProgressSink,
    ) -> Result<VerifyReport, ApiError> {
        let d = self.0.clone();
        tokio::task::spawn_blocking(move || d.verify_blocking(request, progress))
            .await
            .map_err(internal)?
    }

    async fn repair(
        &self,
        request: RepairRequest,
        _: ProgressSink,
    ) -> Result<RepairReport, ApiError> {
        let d = self.0.clone();
        tokio::task::spawn_blocking(move || d.repair_blocking(request))
            .await
            .map_err(internal)?
    }

    async fn prune(
        &self,
        request: PruneRequest,
        _: ProgressSink,
    ) -> Result<PruneReports, ApiError> {
        let d = self.0.clone();
        tokio::task::spawn_blocking(move || d.prune_blocking(request))
            .await
            .map_err(internal)?
    }

    async fn key_generate(&self, request: KeyGenerateRequest) -> Result<KeyGenerated, ApiError> {
        let d = self.0.clone();
        tokio::task::spawn_blocking(move || {
            if request.replace {
                d.refuse_replacing_a_used_key()?;
            }
            let key = BackupKey::generate();
            let shown = key.to_recovery_key();
            d.install_key(key, request.replace)?;
            d.keystore.set_mode("recovery-key").map_err(internal)?;
            tracing::info!("a new backup key was generated");
            Ok(KeyGenerated {
                recovery_key: shown,
            })
        })
        .await
        .map_err(internal)?
    }

    async fn key_set_password(
        &self,
        request: KeySetPasswordRequest,
    ) -> Result<KeyChanged, ApiError> {
        let d = self.0.clone();
        tokio::task::spawn_blocking(move || d.set_password(&request.password))
            .await
            .map_err(internal)?
    }

    async fn key_recover(&self, request: KeyRecoverRequest) -> Result<KeyChanged, ApiError> {
        let d = self.0.clone();
        tokio::task::spawn_blocking(move || d.recover(&request.password, request.replace))
            .await
            .map_err(internal)?
    }

    async fn key_change_password(
        &self,
        request: KeyChangePasswordRequest,
    ) -> Result<KeyChanged, ApiError> {
        let d = self.0.clone();
        tokio::task::spawn_blocking(move || {
            d.change_password(&request.old_password, &request.new_password)
        })
        .await
        .map_err(internal)?
    }

    async fn key_disable(&self, request: KeyDisableRequest) -> Result<KeyChanged, ApiError> {
        let d = self.0.clone();
        tokio::task::spawn_blocking(move || d.disable(&request.password))
            .await
            .map_err(internal)?
    }

    async fn key_import(&self, request: KeyImportRequest) -> Result<KeyImported, ApiError> {
        let d = self.0.clone();
        tokio::task::spawn_blocking(move || {
            let key = BackupKey::from_recovery_key(&request.recovery_key)
                .map_err(|e| ApiError::new(400, "bad-recovery-key", e.to_string()))?;
            let verified_targets = d.check_key(&key)?;
            d.install_key(key, request.replace)?;
            d.keystore.set_mode("recovery-key").map_err(internal)?;
            tracing::info!(verified = ?verified_targets, "backup key imported");
            Ok(KeyImported {
                key_mode: KeyMode::RecoveryKey,
                verified_targets,
            })
        })
        .await
        .map_err(internal)?
    }

    async fn key_rotate(&self, request: KeyRotateRequest) -> Result<KeyRotated, ApiError> {
        let d = self.0.clone();
        tokio::task::spawn_blocking(move || d.key_rotate(&request))
            .await
            .map_err(internal)?
    }
}
