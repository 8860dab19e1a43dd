//! The signals a service stops on. SIGTERM (systemd's stop) and SIGINT (Ctrl-C) stop it;
//! SIGHUP, which would otherwise kill it (a closed terminal, `systemctl reload`), is logged
//! and ignored: sealback's programs read their configuration at start only.

use tokio::signal::unix::{Signal, SignalKind, signal};

/// The stop signals' handlers, installed at once (so that a SIGHUP while starting does not
/// kill the program either).
pub struct StopSignals {
    term: Signal,
    int: Signal,
    hup: Signal,
}

impl StopSignals {
    /// Installs the handlers; must be called within a tokio runtime.
    pub fn install() -> std::io::Result<StopSignals> {
        Ok(StopSignals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
        })
    }

    /// Returns at SIGTERM or SIGINT; a SIGHUP meanwhile is logged, naming `program` as what
    /// to restart to apply a change.
    pub async fn wait(mut self, program: &str) {
        loop {
            tokio::select! {
                _ = self.term.recv() => return,
                _ = self.int.recv() => return,
                _ = self.hup.recv() => tracing::info!(
                    "SIGHUP ignored: the configuration is read at start only; restart {program} to apply a change"
                ),
            }
        }
    }
}
