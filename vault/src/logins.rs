//! Logins in progress, in memory, each for a short time.
//!
//! A login lives from `login/start` to `login/finish` (at most the configured expiry,
//! 60 s by default); a login that proved the password stays a little longer as
//! *authenticated*, so that the client can delete its record with it. Nothing here is
//! persisted: the guess a login consumed is already in the store, and a restart only
//! forgets logins, which then have to start again (and consume another guess).
//!
//! The table is bounded: a stranger cannot fill it (every entry needs an account's
//! credential and consumed one of its guesses), and a full table answers "busy".

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use opaque_ke::ServerLogin;
use rand::RngCore;
use sealback_vault_client::protocol::suite::Suite;
use zeroize::Zeroizing;

/// The most logins in progress at once.
pub const MAX_LOGINS: usize = 100_000;

/// A login between its two messages.
pub struct Started {
    pub account: String,
    pub state: ServerLogin<Suite>,
    /// The record the login opened: its version and its sealed key. `None` for an account
    /// without a record (the login runs on OPAQUE's dummy record and cannot succeed).
    pub record: Option<(u64, Zeroizing<Vec<u8>>)>,
    /// This login consumed the last guess: if it fails or expires, the record is erased.
    pub last_chance: bool,
}

enum State {
    Started(Box<Started>),
    Authenticated {
        account: String,
        record_version: u64,
    },
}

struct Entry {
    state: State,
    expires: Instant,
}

/// The table of logins.
pub struct Logins {
    entries: Mutex<HashMap<String, Entry>>,
    expiry: Duration,
}

impl Logins {
    pub fn new(expiry: Duration) -> Logins {
        Logins {
            entries: Mutex::new(HashMap::new()),
            expiry,
        }
    }

    /// Whether the table is full.
    pub fn is_full(&self) -> bool {
        self.lock().len() >= MAX_LOGINS
    }

    /// Adds a started login; its new id, or `None` if the table is full.
    pub fn insert(&self, started: Started) -> Option<String> {
        let mut entries = self.lock();
        if entries.len() >= MAX_LOGINS {
            return None;
        }
        let id = new_id();
        entries.insert(
            id.clone(),
            Entry {
                state: State::Started(Box::new(started)),
                expires: Instant::now() + self.expiry,
            },
        );
        Some(id)
    }

    /// Takes the started login `id` of `account`, if it exists and has not expired.
    pub fn take_started(&self, id: &str, account: &str) -> Option<Started> {
        let mut entries = self.lock();
        match entries.get(id) {
            Some(Entry {
                state: State::Started(started),
                expires,
            }) if started.account == account && *expires > Instant::now() => {}
            _ => return None,
        }
        match entries.remove(id) {
            Some(Entry {
                state: State::Started(started),
                ..
            }) => Some(*started),
            _ => None,
        }
    }

    /// Records that login `id` proved the password for `record_version`.
    pub fn authenticated(&self, id: String, account: &str, record_version: u64) {
        self.lock().insert(
            id,
            Entry {
                state: State::Authenticated {
                    account: account.to_string(),
                    record_version,
                },
                expires: Instant::now() + self.expiry,
            },
        );
    }

    /// Takes the authenticated login `id` of `account`: the record version it proved the
    /// password for. Usable once.
    pub fn take_authenticated(&self, id: &str, account: &str) -> Option<u64> {
        let mut entries = self.lock();
        let version = match entries.get(id) {
            Some(Entry {
                state:
                    State::Authenticated {
                        account: owner,
                        record_version,
                    },
                expires,
            }) if owner == account && *expires > Instant::now() => *record_version,
            _ => return None,
        };
        entries.remove(id);
        Some(version)
    }

    /// Drops expired logins; the accounts whose last-chance login expired (their record is
    /// to be erased).
    pub fn sweep(&self) -> Vec<String> {
        let now = Instant::now();
        let mut exhausted = Vec::new();
        self.lock().retain(|_, entry| {
            if entry.expires > now {
                return true;
            }
            if let State::Started(started) = &entry.state
                && started.last_chance
            {
                exhausted.push(started.account.clone());
            }
            false
        });
        exhausted
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// 128 random bits, base64url.
fn new_id() -> String {
    let mut bytes = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use opaque_ke::{ClientLogin, ServerLoginParameters, ServerSetup};
    use rand::rngs::OsRng;

    use super::*;

    fn started(account: &str, last_chance: bool) -> Started {
        let setup = ServerSetup::<Suite>::new(&mut OsRng);
        let ke1 = ClientLogin::<Suite>::start(&mut OsRng, b"pw")
            .expect("KE1")
            .message;
        let start = ServerLogin::start(
            &mut OsRng,
            &setup,
            None,
            ke1,
            account.as_bytes(),
            ServerLoginParameters::default(),
        )
        .expect("KE2");
        Started {
            account: account.to_string(),
            state: start.state,
            record: None,
            last_chance,
        }
    }

    #[test]
    fn a_login_is_taken_once_and_only_by_its_account() {
        let logins = Logins::new(Duration::from_secs(60));
        let id = logins.insert(started("alice", false)).expect("room");
        assert!(logins.take_started(&id, "bob").is_none());
        assert!(logins.take_started(&id, "alice").is_some());
        assert!(logins.take_started(&id, "alice").is_none());
        logins.authenticated(id.clone(), "alice", 3);
        assert_eq!(logins.take_authenticated(&id, "bob"), None);
        assert_eq!(logins.take_authenticated(&id, "alice"), Some(3));
        assert_eq!(logins.take_authenticated(&id, "alice"), None);
    }

    #[test]
    fn expired_logins_are_dropped_and_last_chances_reported() {
        let logins = Logins::new(Duration::ZERO);
        let id = logins.insert(started("alice", true)).expect("room");
        logins.insert(started("bob", false)).expect("room");
        assert!(logins.take_started(&id, "alice").is_none(), "expired");
        assert_eq!(logins.sweep(), vec!["alice".to_string()]);
        assert!(logins.sweep().is_empty());
    }
}
