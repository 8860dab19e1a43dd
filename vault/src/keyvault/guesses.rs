//! The guess limit: the rules of each step are the guess check's ([`super::GuessCheck`]);
//! this module writes what they decide with compare-and-swap, audits and erases.
//!
//! An account's entry holds `guesses`, the guesses consumed since the last successful login
//! or registration. With limit L:
//!
//! 1. **Consume** (at `login/start`, before the password is evaluated or anything is
//!    answered): read the entry; if it is *destroyed*, refuse; if `guesses >= L`, erase
//!    (step 4) and refuse; otherwise write `guesses + 1` with compare-and-swap on the
//!    entry's revision, and start over if another write came first. The write is durable
//!    before the vault goes on, so a client that hangs up has still spent the guess.
//! 2. **Reset** (at `login/finish`, when KE3 proves the password): compare-and-swap
//!    `guesses = 0`, if the record is still the one the login opened.
//! 3. **Fail** (`login/finish` without proof): if that login took the last guess, erase.
//! 4. **Erase**: compare-and-swap the entry to no record, *destroyed*; then purge the store's
//!    history so the sealed record leaves its files. Also done when a last-chance login
//!    expires unfinished, and at start for entries at the limit (their logins died with the
//!    previous process).
//!
//! Each consumed guess is one successful compare-and-swap from `n` to `n + 1 <= L`, and a
//! swap succeeds only on the revision it read, so however many logins race, at most L
//! guesses are granted between two resets: exactly L evaluations, the rest refused. An
//! account without a record counts its guesses the same way and, at the limit, becomes
//! *destroyed* too: a probe sees the same answers for "no record" and "wrong password".

use sealback_vault_client::protocol::wire::ErrorCode;

use super::check::Spend;
use super::{KeyVault, Refusal};
use crate::account::{self, Attempt, StoredRecord};
use crate::audit::{Event, EventKind};

/// A guess granted by [`KeyVault::consume_guess`].
pub(super) struct Guess {
    /// The record to evaluate the password against.
    pub record: Option<StoredRecord>,
    /// Guesses left if this one is wrong.
    pub attempts_left: u32,
    /// This guess is the last one.
    pub last_chance: bool,
    /// The account's lifetime count of spent guesses, this one included.
    pub spent: u64,
    /// The store revision of the write that spent it.
    pub revision: u64,
    /// The login repeats an attempt that spent its guess before: nothing was spent now.
    pub repeated: bool,
}

impl KeyVault {
    /// Step 1: consumes one guess of `account`, durably, or refuses with `key-destroyed`.
    pub(super) fn consume_guess(
        &self,
        account: &str,
        attempt: Option<&Attempt>,
    ) -> Result<Guess, Refusal> {
        let consumed = self.update(account, |entry| {
            let spend = self.check.spend(entry, attempt)?;
            Ok((spend, entry.spent))
        });
        match consumed {
            Ok((
                (
                    Spend::Granted {
                        record,
                        attempts_left,
                        repeated,
                    },
                    spent,
                ),
                revision,
            )) => Ok(Guess {
                record,
                attempts_left,
                last_chance: attempts_left == 0,
                spent,
                revision,
                repeated,
            }),
            Ok(((Spend::Exhausted(version), _), revision)) => {
                self.erased(account, version, revision);
                self.audit
                    .append(Event::new(EventKind::LoginRefused, account));
                Err(Refusal::key_destroyed())
            }
            Err(refusal) => {
                if refusal.code == ErrorCode::KeyDestroyed {
                    self.audit
                        .append(Event::new(EventKind::LoginRefused, account));
                }
                Err(refusal)
            }
        }
    }

    /// Step 2: the login on record `version` proved the password. The store revision of
    /// the reset.
    pub(super) fn reset_guesses(&self, account: &str, version: u64) -> Result<u64, Refusal> {
        let ((), revision) = self.update(account, |entry| self.check.reset(entry, version))?;
        Ok(revision)
    }

    /// Steps 3 and 4: erases the account's record if its guesses are used up. Whether it
    /// erased.
    pub(super) fn erase_if_exhausted(&self, account: &str) -> Result<bool, Refusal> {
        let (erased, revision) =
            self.update(account, |entry| Ok(self.check.erase_if_exhausted(entry)))?;
        match erased {
            Some(version) => {
                self.erased(account, version, revision);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// At start: erases every record at the limit. An entry that fails its integrity check
    /// is left as it is (and refused when used), not allowed to stop the whole vault.
    pub(super) fn erase_all_exhausted(&self) -> Result<(), Refusal> {
        for key in self.store.keys("account/")? {
            let Some(account) = account::account_of(&key) else {
                continue;
            };
            match self.erase_if_exhausted(account) {
                Ok(true) => tracing::warn!("erased the record of {account}: its guesses ran out"),
                Ok(false) => {}
                Err(refusal) if refusal.code == ErrorCode::RecordRefused => {}
                Err(refusal) => return Err(refusal),
            }
        }
        Ok(())
    }

    /// After an erase was written: purges the store's history and logs it.
    fn erased(&self, account: &str, version: Option<u64>, revision: u64) {
        if let Err(err) = self.store.purge_history() {
            tracing::error!("erased the record of {account}, but the store kept old pages: {err}");
        }
        let mut event = Event::new(EventKind::Erase, account).written(revision);
        event.record_version = version;
        self.audit.append(event);
    }
}
