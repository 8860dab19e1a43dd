//! OPAQUE login: `login/start` consumes a guess and answers KE2; `login/finish` checks KE3
//! and, if it proves the password, hands back the sealed key under the session key.
//!
//! A login on an account without a record runs exactly like one with a record: the guess
//! is consumed, the HSM opens a (dummy) sealed record, and `ServerLogin::start` gets no
//! password file, so `opaque-ke` answers with its dummy record. The client cannot tell the
//! two apart from the answers: same fields, same sizes, same guess counting, the same
//! `wrong-password` at the end.

use opaque_ke::{CredentialFinalization, CredentialRequest, ServerLogin, ServerLoginParameters};
use rand::rngs::OsRng;
use sealback_vault_client::protocol::suite::{CONTEXT, identifiers};
use sealback_vault_client::protocol::transfer;
use sealback_vault_client::protocol::wire::{
    ErrorCode, LoginFinish, LoginFinishAnswer, LoginStart, LoginStartAnswer,
};
use zeroize::{Zeroize, Zeroizing};

use super::{KeyVault, Refusal, internal};
use crate::audit::{Event, EventKind};
use crate::logins::{Full, MAX_LOGINS_PER_ACCOUNT, Started};
use crate::record;

impl KeyVault {
    /// `POST /v1/login/start`.
    pub fn login_start(
        &self,
        credential: &str,
        request: &LoginStart,
    ) -> Result<LoginStartAnswer, Refusal> {
        let account = request.account.as_str();
        let (entry, _) = self.authenticate(credential, account)?;
        let ke1 = CredentialRequest::deserialize(&request.ke1)
            .map_err(|err| Refusal::bad_request(format!("ke1 is not an OPAQUE KE1: {err}")))?;
        if let Some(full) = self.logins.is_full(account) {
            return Err(busy(full));
        }
        // The record is opened before a guess is spent on it: one the HSM refuses (altered or
        // moved in the store) must not burn the user's guesses.
        let current = entry.record;
        let mut opened = self.open_record(account, current.as_ref())?;
        let guess = self.consume_guess(account)?;
        // The guess is on disk: only now is the password evaluated.
        self.audit.append(
            Event::new(EventKind::LoginStart, account)
                .attempts_left(guess.attempts_left)
                .spent(guess.spent)
                .written(guess.revision),
        );
        let same = |a: Option<&crate::account::StoredRecord>| a.map(|r| r.version);
        if same(guess.record.as_ref()) != same(current.as_ref()) {
            // Registered or erased between the two reads: open what the guess was spent on.
            opened = self.open_record(account, guess.record.as_ref())?;
        }
        let (password_file, record) = match opened {
            Some((version, opened)) => (
                Some(opened.registration),
                Some((version, opened.sealed_key)),
            ),
            None => (None, None),
        };
        let version = record.as_ref().map_or(0, |(version, _)| *version);
        let start = ServerLogin::start(
            &mut OsRng,
            &self.setup,
            password_file,
            ke1,
            &record::credential_identifier(account, version),
            ServerLoginParameters {
                context: Some(CONTEXT),
                identifiers: identifiers(account),
            },
        )
        .map_err(|err| internal("OPAQUE login start", err))?;
        let login_id = self
            .logins
            .insert(Started {
                account: account.to_string(),
                state: start.state,
                record,
                last_chance: guess.last_chance,
            })
            .map_err(busy)?;
        Ok(LoginStartAnswer {
            login_id,
            ke2: start.message.serialize().to_vec(),
            attempts_left: guess.attempts_left,
        })
    }

    /// Opens `stored` in the HSM, or (without a record) makes the same HSM call on the dummy
    /// record, so that both take the same time. A record the HSM refuses is logged and
    /// audited, and refused.
    fn open_record(
        &self,
        account: &str,
        stored: Option<&crate::account::StoredRecord>,
    ) -> Result<Option<(u64, record::Record)>, Refusal> {
        let Some(stored) = stored else {
            let _ = record::open(&self.hsm, "", 0, &self.dummy_record);
            return Ok(None);
        };
        match record::open(&self.hsm, account, stored.version, &stored.sealed) {
            Ok(opened) => Ok(Some((stored.version, opened))),
            Err(err) => {
                self.audit
                    .append(Event::new(EventKind::RecordRefused, account).version(stored.version));
                tracing::error!("the record of account {account} was refused: {err}");
                Err(Refusal::new(
                    ErrorCode::RecordRefused,
                    "the record failed its integrity check in the HSM and was not used (it was \
                     altered or moved in the vault's store); no guess was spent on it",
                ))
            }
        }
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
        // A malformed KE3 is a failed proof like any other: a login on the dummy record must
        // end the same way as one with a wrong password.
        let proof = CredentialFinalization::deserialize(&request.ke3)
            .ok()
            .and_then(|ke3| {
                started
                    .state
                    .finish(
                        ke3,
                        ServerLoginParameters {
                            context: Some(CONTEXT),
                            identifiers: identifiers(account),
                        },
                    )
                    .ok()
            });
        match (proof, started.record) {
            (Some(mut finish), Some((version, sealed_key))) => {
                let session_key = Zeroizing::new(finish.session_key.to_vec());
                finish.session_key.as_mut_slice().zeroize();
                let revision = self.reset_guesses(account, version)?;
                self.audit.append(
                    Event::new(EventKind::LoginSuccess, account)
                        .version(version)
                        .written(revision),
                );
                let sealed = transfer::seal(&session_key, &request.login_id, &sealed_key);
                self.logins
                    .authenticated(request.login_id.clone(), account, version);
                Ok(LoginFinishAnswer {
                    sealed_key: sealed,
                    record_version: version,
                })
            }
            // A wrong password: KE3 did not prove it, or the client, whose OPAQUE finish
            // failed, reports the failure with an empty KE3 (so a last guess erases the key
            // at once, not when the login expires).
            _ => {
                let erased = started.last_chance && self.erase_if_exhausted(account)?;
                let attempts_left = if erased {
                    0
                } else {
                    let (entry, _) = self.entry(account)?.ok_or_else(Refusal::unauthorized)?;
                    self.guess_limit.saturating_sub(entry.guesses)
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
