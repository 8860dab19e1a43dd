//! OPAQUE login: `login/start` consumes a guess and answers KE2; `login/finish` checks KE3
//! and, if it proves the password, hands back the sealed key under the session key. The
//! password is evaluated and the key released only by the guess check ([`super::GuessCheck`]).
//!
//! A login on an account without a record runs exactly like one with a record: the guess
//! is consumed, the HSM opens a (dummy) sealed record, and `ServerLogin::start` gets no
//! password file, so `opaque-ke` answers with its dummy record. The client cannot tell the
//! two apart from the answers: same fields, same sizes, same guess counting, the same
//! `wrong-password` at the end.

use sealback_vault_client::protocol::wire::{
    ErrorCode, LoginFinish, LoginFinishAnswer, LoginStart, LoginStartAnswer,
};

use super::check::Opened;
use super::{KeyVault, Refusal};
use crate::account::{Attempt, StoredRecord};
use crate::audit::{Event, EventKind};
use crate::logins::{Full, MAX_LOGINS_PER_ACCOUNT, Started};

impl KeyVault {
    /// `POST /v1/login/start`.
    pub fn login_start(
        &self,
        credential: &str,
        request: &LoginStart,
    ) -> Result<LoginStartAnswer, Refusal> {
        let account = request.account.as_str();
        let (entry, _) = self.authenticate(credential, account)?;
        if let Some(full) = self.logins.is_full(account) {
            return Err(busy(full));
        }
        // The record is opened before a guess is spent on it: one the HSM refuses (altered or
        // moved in the store) must not burn the user's guesses.
        let current = entry.record;
        let mut opened = self.open_record(account, current.as_ref())?;
        let attempt = match &request.attempt_id {
            Some(id) => Some(Attempt::new(id, &request.ke1).map_err(Refusal::bad_request)?),
            None => None,
        };
        let guess = self.consume_guess(account, attempt.as_ref())?;
        // The guess is on disk: only now is the password evaluated.
        let kind = match guess.repeated {
            false => EventKind::LoginStart,
            true => EventKind::LoginRepeated,
        };
        self.audit.append(
            Event::new(kind, account)
                .attempts_left(guess.attempts_left)
                .spent(guess.spent)
                .written(guess.revision),
        );
        let version = |record: Option<&StoredRecord>| record.map(|r| r.version);
        if version(guess.record.as_ref()) != version(current.as_ref()) {
            // Registered or erased between the two reads: open what the guess was spent on.
            opened = self.open_record(account, guess.record.as_ref())?;
        }
        let evaluation = self.check.evaluate(account, opened, &request.ke1)?;
        let login_id = self
            .logins
            .insert(Started {
                account: account.to_string(),
                pending: evaluation.pending,
                last_chance: guess.last_chance,
            })
            .map_err(busy)?;
        Ok(LoginStartAnswer {
            login_id,
            ke2: evaluation.ke2,
            attempts_left: guess.attempts_left,
        })
    }

    /// Opens `stored` through the guess check. A record it refuses is logged and audited,
    /// and refused.
    fn open_record(&self, account: &str, stored: Option<&StoredRecord>) -> Result<Opened, Refusal> {
        self.check.open(account, stored).map_err(|err| {
            let version = stored.map_or(0, |stored| stored.version);
            self.audit
                .append(Event::new(EventKind::RecordRefused, account).version(version));
            tracing::error!("the record of account {account} was refused: {err}");
            Refusal::new(
                ErrorCode::RecordRefused,
                "the record failed its integrity check in the HSM and was not used (it was \
                 altered or moved in the vault's store); no guess was spent on it",
            )
        })
    }

    /// `POST /v1/login/finish`.
    pub fn login_finish(
        &self,
        credential: &str,
        request: &LoginFinish,
    ) -> Result<LoginFinishAnswer, Refusal> {
        let account = request.account.as_str();
        self.authenticate(credential, account)?;
        let started = self
            .logins
            .take_started(&request.login_id, account)
            .ok_or_else(|| {
                Refusal::new(
                    ErrorCode::Conflict,
                    "no such login in progress: it expired, was finished, or belongs to another \
                     account; start a new login",
                )
            })?;
        let proof = self
            .check
            .prove(account, started.pending, &request.login_id, &request.ke3);
        match proof {
            Some(proof) => {
                // The count is reset on disk before the key leaves the vault.
                let revision = self.reset_guesses(account, proof.version)?;
                self.audit.append(
                    Event::new(EventKind::LoginSuccess, account)
                        .version(proof.version)
                        .written(revision),
                );
                self.logins
                    .authenticated(request.login_id.clone(), account, proof.version);
                Ok(LoginFinishAnswer {
                    sealed_key: proof.sealed_for_session,
                    record_version: proof.version,
                })
            }
            // A wrong password: KE3 did not prove it, or the client, whose OPAQUE finish
            // failed, reports the failure with an empty KE3 (so a last guess erases the key
            // at once, not when the login expires).
            None => {
                let erased = started.last_chance && self.erase_if_exhausted(account)?;
                let attempts_left = if erased {
                    0
                } else {
                    let (entry, _) = self.entry(account)?.ok_or_else(Refusal::unauthorized)?;
                    self.check.limit().saturating_sub(entry.guesses)
                };
                self.audit.append(
                    Event::new(EventKind::LoginFailure, account).attempts_left(attempts_left),
                );
                if erased {
                    return Err(Refusal::new(
                        ErrorCode::KeyDestroyed,
                        "wrong password, and it was the last attempt: this account's key was \
                         erased just now, and nobody can recover it",
                    ));
                }
                Err(Refusal::wrong_password(attempts_left))
            }
        }
    }
}

/// The refusal of a login that finds no room, before its guess is spent.
fn busy(full: Full) -> Refusal {
    match full {
        Full::All => Refusal::new(
            ErrorCode::Busy,
            "too many logins in progress; try again in a minute",
        ),
        Full::Account => Refusal::new(
            ErrorCode::Busy,
            format!(
                "this account has {MAX_LOGINS_PER_ACCOUNT} logins in progress; finish them or \
                 wait a minute for them to expire"
            ),
        ),
    }
}
