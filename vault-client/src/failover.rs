//! The vault's instances, and going from one to the next.
//!
//! A vault may run as several instances (one per data centre), each with its own HSM token
//! holding the same keys and all on one records store (docs/vault.md §10). The client knows
//! their URLs ([`crate::VaultConfig::urls`]) and tries them in turn, starting with the one
//! that last answered, when one cannot be reached, times out or fails ([`VaultError::Transport`],
//! [`VaultError::Server`]: 5xx, `busy`). Every other answer (a wrong password, an unknown
//! account, a refused record, a vault that does not hold the pinned key) is the vault's, and
//! is final. Every instance holds the same pinned key, so the vault proof holds on each.
//!
//! An operation that must stay on one instance (a login's start and finish, and the
//! deletion that needs the login) is one unit: a failure anywhere in it starts it over on the
//! next instance. Only steps that spend nothing, or that the vault counts once per attempt
//! (a login's guess, by its attempt id), are started over. For the same reason a login whose
//! instance no longer knows it at `login/finish` (`conflict`: it restarted) is started again
//! on that instance first (`Vault::login_then`).

use std::sync::atomic::{AtomicUsize, Ordering};

use crate::VaultError;
use crate::transport::Transport;

pub(crate) struct Instances {
    transports: Vec<Transport>,
    /// The instance that answered last: the first one tried next time.
    preferred: AtomicUsize,
}

impl Instances {
    pub(crate) fn new(transports: Vec<Transport>) -> Instances {
        Instances {
            transports,
            preferred: AtomicUsize::new(0),
        }
    }

    /// Runs `operation` on the preferred instance, then on each other in turn while it fails
    /// transiently. The first answer that is not transient, or every instance's error.
    pub(crate) fn run<T>(
        &self,
        mut operation: impl FnMut(&Transport) -> Result<T, VaultError>,
    ) -> Result<T, VaultError> {
        let count = self.transports.len();
        let first = self.preferred.load(Ordering::Relaxed) % count;
        let mut failures = Vec::new();
        let mut all_unreachable = true;
        for step in 0..count {
            let index = (first + step) % count;
            match operation(&self.transports[index]) {
                Err(err) if err.is_transient() => {
                    all_unreachable &= matches!(err, VaultError::Transport(_));
                    if step + 1 < count {
                        tracing::warn!(
                            "vault instance {} failed ({err}); trying {}",
                            self.transports[index].base(),
                            self.transports[(index + 1) % count].base()
                        );
                    }
                    failures.push(match err {
                        VaultError::Transport(text) | VaultError::Server(text) => text,
                        other => other.to_string(),
                    });
                }
                answer => {
                    self.preferred.store(index, Ordering::Relaxed);
                    return answer;
                }
            }
        }
        let text = failures.join("; then ");
        Err(if all_unreachable {
            VaultError::Transport(text)
        } else {
            VaultError::Server(text)
        })
    }
}
