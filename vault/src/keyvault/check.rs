//! The guess check: the one interface through which the vault evaluates a password, counts
//! guesses and releases a record's sealed key.
//!
//! Everything else in the vault (accounts and their credentials, the store and its
//! compare-and-swap, the audit log, HTTP, logins in progress) handles only what the check
//! hands back: tagged entries, KE2, opaque login states, a key sealed under a session key.
//! [`HostCheck`] runs the check beside the HSM: the HSM holds the keys (it opens records,
//! tags entries), while the count's rules and OPAQUE run in the vault's memory, so an
//! operator with the PIN can unseal records and guess offline (docs/vault.md §1). An HSM
//! that runs code of its own (a CodeSafe or SEE module, as the model's vault uses) would
//! implement this trait by forwarding each call into the module, which would then keep the
//! OPRF seed, the counting rules and the entry key inside. Every rule that changes a count,
//! a record version or a record (spend, reset, erase, reserve a version, install, delete)
//! is the check's; the vault only writes what the check returned, tagged by the check.
//!
//! What such a module would also take over, outside this trait: today
//! [`super::KeyVault::with_check`] unseals the OPAQUE server setup with the HSM and hands it
//! to the check, keeping only the setup's long-term key pair for the vault proof (the proof
//! that answers come from the pinned vault, docs/vault.md §5.1); the OPRF seed, which
//! evaluates passwords, stays with the check. A module would unseal the setup inside and
//! sign the vault proof itself. [`contract`] is what any implementation must pass.
//!
//! The order of calls the vault keeps (keyvault/login.rs, keyvault/guesses.rs):
//! `open` (a refused record costs no guess) → `spend` on the entry read, written with
//! compare-and-swap, durably → `evaluate` (only now is the password touched) → `prove` →
//! on proof `reset` written before the sealed key is answered; without proof, at the last
//! guess, `erase_if_exhausted`. Registration: `reserve_version`, written, → `register` →
//! `seal_record` → `install`. Every entry the vault writes passes `seal_entry` last, and
//! every entry it acts on passed `verify_entry` first.

use std::any::Any;
use std::sync::Arc;

use opaque_ke::{CredentialFinalization, CredentialRequest, ServerLogin, ServerLoginParameters};
use opaque_ke::{RegistrationRequest, RegistrationUpload, ServerRegistration, ServerSetup};
use rand::rngs::OsRng;
use sealback_vault_client::protocol::sealed_key::SEALED_KEY_LEN;
use sealback_vault_client::protocol::suite::{CONTEXT, Suite, identifiers};
use sealback_vault_client::protocol::transfer;
use sealback_vault_client::protocol::wire::ErrorCode;
use zeroize::{Zeroize, Zeroizing};

use super::{Refusal, internal};
use crate::account::{AccountEntry, Attempt, MAX_COUNTED_ATTEMPTS, StoredRecord};
use crate::hsm::{Hsm, HsmError};
use crate::record::{self, RecordError};

#[cfg(any(test, feature = "testing"))]
pub mod contract;

/// The length of a serialized OPAQUE `ServerRegistration` of our suite: the dummy record
/// sealed at start has a real record's size.
const REGISTRATION_LEN: usize = 192;

/// The check the vault runs its guesses through. See the module documentation for the order
/// of calls and what each guarantees.
pub trait GuessCheck: Send + Sync {
    /// The most guesses between two successful logins (or registrations).
    fn limit(&self) -> u32;

    /// Step 1 on the entry as read and verified: spends one guess, or at the limit takes the
    /// record away and marks the entry destroyed, or refuses a destroyed entry
    /// (`key-destroyed`). The vault writes the changed entry with compare-and-swap. A login
    /// that names its `attempt` spends once: the entry remembers the attempt with the guess,
    /// and the same attempt (id, KE1 and record version) again is granted as `repeated`.
    fn spend(&self, entry: &mut AccountEntry, attempt: Option<&Attempt>) -> Result<Spend, Refusal>;

    /// Step 2: the login on record `version` proved the password; refuses (`key-destroyed`)
    /// if the entry holds another record or none.
    fn reset(&self, entry: &mut AccountEntry, version: u64) -> Result<(), Refusal>;

    /// Step 4: if the guesses are used up, takes the record away and marks the entry
    /// destroyed. `Some` with the version erased (if there was a record) when it did.
    fn erase_if_exhausted(&self, entry: &mut AccountEntry) -> Option<Option<u64>>;

    /// Authenticates the entry's state for `account` before it is written.
    fn seal_entry(&self, account: &str, entry: &mut AccountEntry) -> Result<(), HsmError>;

    /// Checks that the entry's state is one [`GuessCheck::seal_entry`] authenticated for
    /// `account`.
    fn verify_entry(&self, account: &str, entry: &AccountEntry) -> Result<(), HsmError>;

    /// Opens `account`'s record, or without one does the same work on a dummy record (so
    /// both take the same time). Refuses a record sealed for another account or version, or
    /// altered.
    fn open(&self, account: &str, record: Option<&StoredRecord>) -> Result<Opened, RecordError>;

    /// Answers KE1 against an opened record. Called only once the guess is spent durably.
    fn evaluate(&self, account: &str, opened: Opened, ke1: &[u8]) -> Result<Evaluation, Refusal>;

    /// `register/start`, step 1: reserves the entry's next record version, which the vault
    /// writes with compare-and-swap before [`GuessCheck::register`] evaluates anything under
    /// it. The version that was reserved.
    fn reserve_version(&self, entry: &mut AccountEntry) -> u64;

    /// `register/start`, step 2: evaluates the OPRF of a registration `request` under the key
    /// of `account`'s record `version`, just reserved (so it is no existing record's key).
    fn register(&self, account: &str, version: u64, request: &[u8]) -> Result<Vec<u8>, Refusal>;

    /// `register/finish`: seals the client's OPAQUE `upload` and `sealed_key` as `account`'s
    /// record `version`.
    fn seal_record(
        &self,
        account: &str,
        version: u64,
        upload: &[u8],
        sealed_key: &[u8],
    ) -> Result<StoredRecord, Refusal>;

    /// Makes `record` the entry's (if its version is the last one reserved, else
    /// `conflict`): the guess count starts over. Whether it replaced a record.
    fn install(&self, entry: &mut AccountEntry, record: StoredRecord) -> Result<bool, Refusal>;

    /// `DELETE /v1/record`: takes away the entry's record `version`, which a login proved the
    /// password of, and starts the count over; refuses (`conflict`) if the entry holds
    /// another record or none.
    fn delete(&self, entry: &mut AccountEntry, version: u64) -> Result<(), Refusal>;

    /// Checks KE3 (empty: the client's OPAQUE finish failed). `Some` only if it proves the
    /// password of a real record: the record's sealed key, sealed again under the session
    /// key for `login_id`.
    fn prove(&self, account: &str, pending: Pending, login_id: &str, ke3: &[u8]) -> Option<Proof>;
}

/// Parses a login's KE1. Its bytes are public: the vault parses them before the login's
/// guess is spent, so that a malformed KE1 costs no guess.
pub fn parse_ke1(ke1: &[u8]) -> Result<CredentialRequest<Suite>, Refusal> {
    CredentialRequest::deserialize(ke1)
        .map_err(|err| Refusal::bad_request(format!("ke1 is not an OPAQUE KE1: {err}")))
}

/// What [`GuessCheck::spend`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Spend {
    /// A guess was spent: the record to evaluate it against, guesses left if it is wrong.
    Granted {
        record: Option<StoredRecord>,
        attempts_left: u32,
        /// The login's attempt had spent its guess already: nothing was spent now, and the
        /// same KE1 is evaluated again (it tests no other password).
        repeated: bool,
    },
    /// The limit had been reached: the record (this version, if any) was taken away.
    Exhausted(Option<u64>),
}

/// A record opened by [`GuessCheck::open`]: opaque outside the check that made it.
pub struct Opened(Box<dyn Any + Send>);

/// A login between `evaluate` and `prove`: opaque outside the check that made it.
pub struct Pending(Box<dyn Any + Send>);

impl Opened {
    pub fn new<T: Any + Send>(state: T) -> Opened {
        Opened(Box::new(state))
    }

    /// The state, if `T` is what this check put in.
    pub fn into_inner<T: Any>(self) -> Result<T, Refusal> {
        downcast(self.0, "an opened record")
    }
}

impl Pending {
    pub fn new<T: Any + Send>(state: T) -> Pending {
        Pending(Box::new(state))
    }

    /// The state, if `T` is what this check put in.
    pub fn into_inner<T: Any>(self) -> Result<T, Refusal> {
        downcast(self.0, "a login in progress")
    }
}

fn downcast<T: Any>(state: Box<dyn Any + Send>, what: &str) -> Result<T, Refusal> {
    let state: Box<dyn Any> = state;
    state
        .downcast::<T>()
        .map(|state| *state)
        .map_err(|_| internal("the guess check", format!("{what} made by another check")))
}

/// [`GuessCheck::evaluate`]'s answer.
pub struct Evaluation {
    pub ke2: Vec<u8>,
    /// The version of the record evaluated; `None` on the dummy record.
    pub version: Option<u64>,
    pub pending: Pending,
}

/// [`GuessCheck::prove`]'s answer: the password was proven for record `version`.
pub struct Proof {
    pub version: u64,
    /// The record's sealed key under the login's session key ([`transfer::seal`]).
    pub sealed_for_session: Vec<u8>,
}

/// The check run beside the HSM (see the module documentation for what that leaves to an
/// operator with the PIN).
pub struct HostCheck {
    hsm: Arc<Hsm>,
    setup: Arc<ServerSetup<Suite>>,
    limit: u32,
    /// A record sealed for no account: a login on an account without a record opens it.
    dummy_record: Vec<u8>,
}

/// [`HostCheck`]'s state between `open` and `evaluate`.
struct HostOpened(Option<(u64, record::Record)>);

/// [`HostCheck`]'s state between `evaluate` and `prove`.
struct HostPending {
    state: ServerLogin<Suite>,
    record: Option<(u64, Zeroizing<Vec<u8>>)>,
}

impl HostCheck {
    pub fn new(
        hsm: Arc<Hsm>,
        setup: Arc<ServerSetup<Suite>>,
        limit: u32,
    ) -> Result<HostCheck, HsmError> {
        let dummy_record = record::seal(
            &hsm,
            "",
            0,
            &[0u8; REGISTRATION_LEN],
            &[0u8; SEALED_KEY_LEN],
        )?;
        Ok(HostCheck {
            hsm,
            setup,
            limit,
            dummy_record,
        })
    }
}

impl GuessCheck for HostCheck {
    fn limit(&self) -> u32 {
        self.limit
    }

    fn spend(&self, entry: &mut AccountEntry, attempt: Option<&Attempt>) -> Result<Spend, Refusal> {
        if entry.destroyed {
            return Err(Refusal::key_destroyed());
        }
        let attempt = attempt.map(|attempt| Attempt {
            version: entry.record.as_ref().map_or(0, |record| record.version),
            ..attempt.clone()
        });
        if let Some(attempt) = &attempt
            && entry.attempts.contains(attempt)
        {
            return Ok(Spend::Granted {
                record: entry.record.clone(),
                attempts_left: self.limit.saturating_sub(entry.guesses),
                repeated: true,
            });
        }
        if entry.guesses >= self.limit {
            entry.destroyed = true;
            entry.attempts.clear();
            return Ok(Spend::Exhausted(entry.record.take().map(|r| r.version)));
        }
        entry.guesses += 1;
        entry.spent += 1;
        if let Some(attempt) = attempt {
            entry.attempts.push(attempt);
            let excess = entry.attempts.len().saturating_sub(MAX_COUNTED_ATTEMPTS);
            entry.attempts.drain(..excess);
        }
        Ok(Spend::Granted {
            record: entry.record.clone(),
            attempts_left: self.limit - entry.guesses,
            repeated: false,
        })
    }

    fn reset(&self, entry: &mut AccountEntry, version: u64) -> Result<(), Refusal> {
        match &entry.record {
            Some(record) if record.version == version => {
                entry.guesses = 0;
                Ok(())
            }
            // Erased (by the limit or a deletion) or replaced since the login started.
            _ => Err(Refusal::key_destroyed()),
        }
    }

    fn erase_if_exhausted(&self, entry: &mut AccountEntry) -> Option<Option<u64>> {
        if entry.destroyed || entry.guesses < self.limit {
            return None;
        }
        entry.destroyed = true;
        entry.attempts.clear();
        Some(entry.record.take().map(|record| record.version))
    }

    fn seal_entry(&self, account: &str, entry: &mut AccountEntry) -> Result<(), HsmError> {
        record::tag_entry(&self.hsm, account, entry)
    }

    fn verify_entry(&self, account: &str, entry: &AccountEntry) -> Result<(), HsmError> {
        record::check_entry_tag(&self.hsm, account, entry)
    }

    fn reserve_version(&self, entry: &mut AccountEntry) -> u64 {
        entry.last_version += 1;
        entry.last_version
    }

    fn delete(&self, entry: &mut AccountEntry, version: u64) -> Result<(), Refusal> {
        match &entry.record {
            Some(record) if record.version == version => {
                entry.record = None;
                entry.guesses = 0;
                entry.attempts.clear();
                Ok(())
            }
            _ => Err(Refusal::new(
                ErrorCode::Conflict,
                "the record changed since the login; nothing was deleted",
            )),
        }
    }

    fn register(&self, account: &str, version: u64, request: &[u8]) -> Result<Vec<u8>, Refusal> {
        let request = RegistrationRequest::deserialize(request).map_err(|err| {
            Refusal::bad_request(format!(
                "request is not an OPAQUE registration request: {err}"
            ))
        })?;
        let identifier = record::credential_identifier(account, version);
        let start = ServerRegistration::start(&self.setup, request, &identifier)
            .map_err(|err| internal("OPAQUE registration start", err))?;
        Ok(start.message.serialize().to_vec())
    }

    fn seal_record(
        &self,
        account: &str,
        version: u64,
        upload: &[u8],
        sealed_key: &[u8],
    ) -> Result<StoredRecord, Refusal> {
        let upload = RegistrationUpload::<Suite>::deserialize(upload).map_err(|err| {
            Refusal::bad_request(format!(
                "upload is not an OPAQUE registration upload: {err}"
            ))
        })?;
        if sealed_key.len() != SEALED_KEY_LEN {
            return Err(Refusal::bad_request(format!(
                "sealed_key has {} bytes, not {SEALED_KEY_LEN}",
                sealed_key.len()
            )));
        }
        let registration = ServerRegistration::finish(upload).serialize();
        let sealed = record::seal(&self.hsm, account, version, &registration, sealed_key)?;
        Ok(StoredRecord { version, sealed })
    }

    fn install(&self, entry: &mut AccountEntry, record: StoredRecord) -> Result<bool, Refusal> {
        if record.version != entry.last_version {
            return Err(Refusal::new(
                ErrorCode::Conflict,
                "another registration of this account started after this one; register again",
            ));
        }
        let replaced = entry.record.replace(record).is_some();
        entry.guesses = 0;
        entry.attempts.clear();
        entry.destroyed = false;
        Ok(replaced)
    }

    fn open(&self, account: &str, stored: Option<&StoredRecord>) -> Result<Opened, RecordError> {
        let Some(stored) = stored else {
            let _ = record::open(&self.hsm, "", 0, &self.dummy_record);
            return Ok(Opened::new(HostOpened(None)));
        };
        let opened = record::open(&self.hsm, account, stored.version, &stored.sealed)?;
        Ok(Opened::new(HostOpened(Some((stored.version, opened)))))
    }

    fn evaluate(&self, account: &str, opened: Opened, ke1: &[u8]) -> Result<Evaluation, Refusal> {
        let HostOpened(opened) = opened.into_inner()?;
        let ke1 = parse_ke1(ke1)?;
        let (password_file, record): (Option<ServerRegistration<Suite>>, _) = match opened {
            Some((version, opened)) => (
                Some(opened.registration),
                Some((version, opened.sealed_key)),
            ),
            None => (None, None),
        };
        let version = record.as_ref().map(|(version, _)| *version);
        let start = ServerLogin::start(
            &mut OsRng,
            &self.setup,
            password_file,
            ke1,
            &record::credential_identifier(account, version.unwrap_or(0)),
            ServerLoginParameters {
                context: Some(CONTEXT),
                identifiers: identifiers(account),
            },
        )
        .map_err(|err| internal("OPAQUE login start", err))?;
        Ok(Evaluation {
            ke2: start.message.serialize().to_vec(),
            version,
            pending: Pending::new(HostPending {
                state: start.state,
                record,
            }),
        })
    }

    fn prove(&self, account: &str, pending: Pending, login_id: &str, ke3: &[u8]) -> Option<Proof> {
        let HostPending { state, record } = pending.into_inner().ok()?;
        // A malformed KE3 is a failed proof like any other: a login on the dummy record must
        // end the same way as one with a wrong password.
        let ke3 = CredentialFinalization::deserialize(ke3).ok()?;
        let mut finish = state
            .finish(
                ke3,
                ServerLoginParameters {
                    context: Some(CONTEXT),
                    identifiers: identifiers(account),
                },
            )
            .ok()?;
        let session_key = Zeroizing::new(finish.session_key.to_vec());
        finish.session_key.as_mut_slice().zeroize();
        let (version, sealed_key) = record?;
        Some(Proof {
            version,
            sealed_for_session: transfer::seal(&session_key, login_id, &sealed_key),
        })
    }
}
