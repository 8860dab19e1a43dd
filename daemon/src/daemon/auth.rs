//! `sealbackctl target auth NAME`: the daemon runs the target's authorization step (it holds the
//! configuration, and the credentials it writes are the daemon's), streaming the plugin's
//! prompts back to the client. The target's own instance picks the new credentials up at its
//! next call: no restart.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::mpsc;

use super::{Daemon, internal};
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
            Ok(TargetAuthorized {
                target: target.config.name.clone(),
            })
        })
        .await
        .map_err(internal)?
    }
}
