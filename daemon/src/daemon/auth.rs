//! `sealbackctl target auth NAME`: the daemon runs the target's authorization step (it holds the
//! configuration, and the credentials it writes are the daemon's), streaming the plugin's
//! prompts back to the client. The target's own instance picks the new credentials up at its
//! next call: no restart. Once authorized, the target's error is cleared and a target waiting
//! to retry after failures is due at once.
//!
//! At start-up each target with an authorization step is checked once, so that `status` names
//! one not authorized yet (or whose access was revoked) before anything has failed on it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::mpsc;

use sealback_repo::{ObjectStore, StoreErrorKind};

use super::{Daemon, internal, lock};
use crate::control::ApiError;
use crate::control::api::{TargetAuthRequest, TargetAuthorized};
use crate::providers::{self, AuthorizeError};

impl Daemon {
    pub(super) async fn target_auth(
        self: Arc<Self>,
        request: TargetAuthRequest,
        prompts: mpsc::UnboundedSender<String>,
        cancelled: Arc<AtomicBool>,
    ) -> Result<TargetAuthorized, ApiError> {
        let stopping = self.stop.clone();
        tokio::task::spawn_blocking(move || {
            let target = self.target(Some(&request.target))?;
            let mut prompt = |text: &str| {
                let _ = prompts.send(text.to_owned());
            };
            let cancelled = || cancelled.load(Ordering::SeqCst) || stopping.is_stopped();
            providers::authorize_target(
                &self.config.plugins_dir,
                &target.config,
                &mut prompt,
                &cancelled,
            )
            .map_err(|e| match e {
                AuthorizeError::NotNeeded(message) => ApiError::new(400, "bad-request", message),
                AuthorizeError::Failed(message) => ApiError::new(502, "target-failed", message),
            })?;
            *lock(&target.last_error) = None;
            if let Some(index) = self.targets.iter().position(|t| std::ptr::eq(t, target)) {
                // The scheduler may be gone when the daemon stops: nothing left to plan then.
                let _ = self.authorized.send(index);
            }
            Ok(TargetAuthorized {
                target: target.config.name.clone(),
            })
        })
        .await
        .map_err(internal)?
    }
}

/// A prefix no repository object has: listing it is the cheapest call that needs credentials.
const AUTHORIZATION_CHECK: &str = "sealback-authorization-check/";

impl Daemon {
    /// Checks, each on a thread of its own, that every target with an authorization step is
    /// authorized: one listing that finds nothing. A refusal of its credentials becomes the
    /// target's error in `status`, which names `sealbackctl target auth NAME`; anything else
    /// (the network down, say) is left for the next backup to report.
    pub fn check_authorizations(self: &Arc<Self>) {
        for index in 0..self.targets.len() {
            let target = &self.targets[index];
            let Some(store) = lock(&target.store).clone().filter(|s| s.authorizes()) else {
                continue;
            };
            let daemon = self.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("auth-check-{}", target.config.name))
                .spawn(move || {
                    let Err(e) = store.list(AUTHORIZATION_CHECK) else {
                        return;
                    };
                    if e.kind == StoreErrorKind::Auth {
                        let target = &daemon.targets[index];
                        tracing::warn!(target = %target.config.name, error = %e, "target not authorized");
                        // An error a backup has recorded meanwhile stays.
                        lock(&target.last_error).get_or_insert_with(|| e.to_string());
                    }
                });
            if let Err(e) = spawned {
                tracing::warn!(error = %e, "cannot check the targets' authorization");
            }
        }
    }

    /// The receiver of the targets just authorized, for the scheduler (once).
    pub fn take_authorized(&self) -> Option<mpsc::UnboundedReceiver<usize>> {
        lock(&self.authorized_rx).take()
    }
}
