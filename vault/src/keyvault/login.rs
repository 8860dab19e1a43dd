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

use super::check::{self, Evaluation, Opened};
use super::guesses::Guess;
use super::{KeyVault, Refusal};
use crate::account::{Attempt, StoredRecord};
use crate::audit::{Event, EventKind};
use crate::logins::{Full, MAX_LOGINS_PER_ACCOUNT};

impl KeyVault {
    /// `POST /v1/login/start`.
    pub fn login_start(
        &self,
        credential: &str,
        request: &LoginStart,
    ) -> Result<LoginStartAnswer, Refusal> {
        let account = request.account.as_str();
        let (entry, _) = self.authenticate(credential, account)?;
        // Everything that can refuse the login without the password is checked before a guess
        // is spent: room in the table of logins (held from now on, so that logins starting
        // together cannot all pass this check and then find the table full), the KE1's form,
        // and the record, which the HSM must open (one altered or moved in the store must not
        // burn the user's guesses).
        let place = self.logins.reserve(account).map_err(busy)?;
        check::parse_ke1(&request.ke1)?;
        let current = entry.record;
        let opened = self.open_record(account, current.as_ref())?;
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
        let evaluated = self.evaluate(account, &guess, current.as_ref(), opened, &request.ke1);
        match evaluated {
            Ok(evaluation) => Ok(LoginStartAnswer {
                login_id: place.fill(evaluation.pending, guess.last_chance),
                ke2: evaluation.ke2,
                attempts_left: guess.attempts_left,
            }),
            Err(refusal) => {
                // The guess is spent and the login ends here: it is abandoned, and if it was
                // the last chance the record goes now.
                self.abandoned(vec![(account.to_string(), guess.last_chance)]);
                Err(refusal)
            }
        }
    }

    /// Evaluates the login's KE1 against the record its guess was spent on: `opened`, read
    /// as `current`, unless the record changed between the two reads.
    fn evaluate(
        &self,
        account: &str,
        guess: &Guess,
        current: Option<&StoredRecord>,
        mut opened: Opened,
        ke1: &[u8],
    ) -> Result<Evaluation, Refusal> {
        let version = |record: Option<&StoredRecord>| record.map(|r| r.version);
        if version(guess.record.as_ref()) != version(current) {
            // Registered or erased between the two reads: open what the guess was spent on.
            opened = self.open_record(account, guess.record.as_ref())?;
        }
        self.check.evaluate(account, opened, ke1)
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
        let Some(proof) = proof else {
            return Err(self.wrong_password(account, started.last_chance));
        };
        // The count is reset on disk before the key leaves the vault.
        let revision = match self.reset_guesses(account, proof.version) {
            Ok(revision) => revision,
            Err(refusal) => {
                // The password was right, but the record it opened was erased or replaced
                // meanwhile: the key is not released, and the guess has its outcome.
                self.audit
                    .append(Event::new(EventKind::LoginAbandoned, account).version(proof.version));
                return Err(refusal);
            }
        };
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

    /// A login whose KE3 did not prove the password, or whose client reports that its OPAQUE
    /// finish failed (an empty KE3, so that a last guess erases the key at once, not when
    /// the login expires): audits the failure and, if it was the last chance, erases.
    fn wrong_password(&self, account: &str, last_chance: bool) -> Refusal {
        let failure = Event::new(EventKind::LoginFailure, account);
        match self.after_wrong_password(account, last_chance) {
            Ok(Some(left)) => {
                self.audit.append(failure.attempts_left(left));
                Refusal::wrong_password(left)
            }
            Ok(None) => {
                self.audit.append(failure.attempts_left(0));
                Refusal::new(
                    ErrorCode::KeyDestroyed,
                    "wrong password, and it was the last attempt: this account's key was \
                     erased just now, and nobody can recover it",
                )
            }
            Err(refusal) => {
                self.audit.append(failure);
                refusal
            }
        }
    }

    /// Erases the record if the wrong password was its last chance (`None`), else the
    /// guesses left.
    fn after_wrong_password(
        &self,
        account: &str,
        last_chance: bool,
    ) -> Result<Option<u32>, Refusal> {
        if last_chance && self.erase_if_exhausted(account)? {
            return Ok(None);
        }
        let (entry, _) = self.entry(account)?.ok_or_else(Refusal::unauthorized)?;
        Ok(Some(self.check.limit().saturating_sub(entry.guesses)))
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
