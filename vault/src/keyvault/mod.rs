//! [`KeyVault`]: the vault's operations, one method per protocol request, independent of
//! HTTP. Every method checks the account's credential first and touches nothing else when
//! it is wrong. Methods block (store, HSM, OPAQUE): the server calls them on blocking threads.
//!
//! - `check`: the guess check, the one interface that evaluates passwords, counts guesses and
//!   releases keys ([`GuessCheck`]), and its implementation beside the HSM ([`HostCheck`]).
//! - `guesses`: the guess-limit algorithm, compare-and-swap on the account's entry.
//! - `integrity`: the HSM's tag on each entry, and the checks against older copies.
//! - `login`: `login/start`, `login/finish`.
//! - `register`: `register/start`, `register/finish`, `DELETE /v1/record`, the status.

pub mod check;
mod guesses;
mod init;
mod integrity;
mod login;
mod register;

use std::sync::Arc;
use std::time::Duration;

use opaque_ke::ServerSetup;
use sealback_vault_client::format_server_key;
use sealback_vault_client::protocol::check_account_name;
use sealback_vault_client::protocol::suite::Suite;
use sealback_vault_client::protocol::vault_proof::ServerKey;
use sealback_vault_client::protocol::wire::{ErrorAnswer, ErrorCode, ServerKeyAnswer};

use crate::account::{self, AccountEntry};
use crate::audit::{self as audit_log, AuditError, AuditLog, Event, EventKind};
use crate::config::{Config, ConfigError};
use crate::hsm::{Hsm, HsmError};
use crate::logins::Logins;
use crate::record::{self, RecordError, SERVER_SETUP_KEY};
use crate::store::{RecordStore, Revision, StoreError, Swap, Versioned};
pub use check::{GuessCheck, HostCheck};

/// The vault: its store, HSM, OPAQUE setup, audit log and logins in progress.
pub struct KeyVault {
    store: Arc<dyn RecordStore>,
    /// Everything that evaluates a password, counts a guess or releases a key.
    check: Box<dyn GuessCheck>,
    server_key: String,
    /// The setup's key pair as the vault proof uses it (opens sealed credentials, proves
    /// answers).
    proof_key: ServerKey,
    audit: AuditLog,
    logins: Logins,
    /// What the vault has seen of each account, against entries put back from older copies.
    seen: integrity::Seen,
}

/// A request the vault refuses: the protocol's error code, a message for a person (never a
/// secret), and with `wrong-password` the guesses left.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub code: ErrorCode,
    pub message: String,
    pub attempts_left: Option<u32>,
}

impl Refusal {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Refusal {
        Refusal {
            code,
            message: message.into(),
            attempts_left: None,
        }
    }

    pub fn unauthorized() -> Refusal {
        Refusal::new(
            ErrorCode::Unauthorized,
            "no valid credential for this account (Authorization: Bearer <credential>)",
        )
    }

    pub fn key_destroyed() -> Refusal {
        Refusal::new(
            ErrorCode::KeyDestroyed,
            "the guess limit was reached and this account's key was erased; nobody can recover \
             it",
        )
    }

    pub fn wrong_password(attempts_left: u32) -> Refusal {
        Refusal {
            code: ErrorCode::WrongPassword,
            message: format!("wrong password; {attempts_left} attempt(s) left"),
            attempts_left: Some(attempts_left),
        }
    }

    pub fn bad_request(what: impl std::fmt::Display) -> Refusal {
        Refusal::new(ErrorCode::BadRequest, what.to_string())
    }

    pub fn to_answer(&self) -> ErrorAnswer {
        ErrorAnswer {
            error: self.code,
            message: self.message.clone(),
            attempts_left: self.attempts_left,
        }
    }
}

/// Failures of the store and the HSM: the vault's fault, logged in full.
fn internal(what: &str, err: impl std::fmt::Display) -> Refusal {
    tracing::error!("{what}: {err}");
    Refusal::new(ErrorCode::Internal, format!("{what}: {err}"))
}

impl From<StoreError> for Refusal {
    fn from(err: StoreError) -> Refusal {
        internal("the record store failed", err)
    }
}

impl From<HsmError> for Refusal {
    fn from(err: HsmError) -> Refusal {
        internal("the HSM failed", err)
    }
}

pub use init::{ENTRY_KEY_CHECK, Initialised, init};

/// Why the vault cannot start, or `init` cannot initialise it.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Hsm(#[from] HsmError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Audit(#[from] AuditError),
    #[error("the sealed OPAQUE server setup cannot be used: {0}")]
    Setup(#[from] RecordError),
    #[error("{0}")]
    State(String),
}

impl KeyVault {
    /// Opens the HSM, the store, the ServerSetup and the audit log of `config`, and erases
    /// records whose guesses ran out while the vault was down.
    pub fn open(config: &Config) -> Result<KeyVault, StartError> {
        let pin = config.hsm.pin()?;
        let hsm = Hsm::open(&config.hsm, &pin)?;
        drop(pin);
        let store = crate::store::open(config)?;
        KeyVault::with_store(config, hsm, store)
    }

    /// [`KeyVault::open`] with another store.
    pub fn with_store(
        config: &Config,
        hsm: Hsm,
        store: Arc<dyn RecordStore>,
    ) -> Result<KeyVault, StartError> {
        KeyVault::with_check(config, hsm, store, |hsm, setup| {
            Ok(Box::new(HostCheck::new(hsm, setup, config.guess_limit)?))
        })
    }

    /// [`KeyVault::with_store`] with the guess check `check` makes from the HSM and the
    /// OPAQUE server setup.
    pub fn with_check(
        config: &Config,
        hsm: Hsm,
        store: Arc<dyn RecordStore>,
        check: impl FnOnce(Arc<Hsm>, Arc<ServerSetup<Suite>>) -> Result<Box<dyn GuessCheck>, HsmError>,
    ) -> Result<KeyVault, StartError> {
        let hsm = Arc::new(hsm);
        let setup = open_setup(config, &hsm, store.as_ref())?;
        init::check_entry_key(config, &hsm, store.as_ref())?;
        let server_key = format_server_key(&setup.keypair().public().serialize());
        let (_, history) = audit_log::history(&config.audit_log)?;
        for rollback in &history.rollbacks {
            tracing::warn!("the audit log {}, {rollback}", config.audit_log.display());
        }
        integrity::check_not_rolled_back(config, store.as_ref(), &history)?;
        let proof_key = ServerKey::new(
            &setup.keypair().private().serialize(),
            &setup.keypair().public().serialize(),
        )
        .map_err(|err| StartError::State(format!("the OPAQUE server key: {err}")))?;
        let audit = AuditLog::open(&config.audit_log)?;
        let setup = Arc::new(setup);
        let check = check(hsm, setup)?;
        let vault = KeyVault {
            store,
            check,
            server_key,
            proof_key,
            audit,
            logins: Logins::new(Duration::from_secs(config.login_expiry_secs)),
            seen: integrity::Seen::from_history(&history),
        };
        vault.erase_all_exhausted().map_err(|refusal| {
            StartError::State(format!(
                "cannot erase exhausted records: {}",
                refusal.message
            ))
        })?;
        Ok(vault)
    }

    /// The public key clients pin, read from the store (`sealback-vault server-key`). Writes
    /// nothing, so it may run beside a serving vault: opening a whole [`KeyVault`] would
    /// append to the audit log and erase entries at the limit, whose last-chance login the
    /// serving vault may still be waiting for.
    pub fn read_server_key(config: &Config) -> Result<String, StartError> {
        let pin = config.hsm.pin()?;
        let hsm = Hsm::open(&config.hsm, &pin)?;
        drop(pin);
        let store = crate::store::open(config)?;
        let setup = open_setup(config, &hsm, store.as_ref())?;
        Ok(format_server_key(&setup.keypair().public().serialize()))
    }

    /// The public key clients pin (base64).
    pub fn server_key(&self) -> &str {
        &self.server_key
    }

    /// The vault proof's key ([`sealback_vault_client::protocol::vault_proof`]).
    pub fn proof_key(&self) -> &ServerKey {
        &self.proof_key
    }

    /// `GET /v1/server-key`.
    pub fn server_key_answer(
        &self,
        credential: &str,
        account: &str,
    ) -> Result<ServerKeyAnswer, Refusal> {
        self.authenticate(credential, account)?;
        Ok(ServerKeyAnswer {
            server_key: self.server_key.clone(),
        })
    }

    /// Expires old logins; erases the records whose last-chance login expired.
    pub fn sweep(&self) {
        self.abandoned(self.logins.sweep());
    }

    /// Audits logins that spent a guess and were never finished, and erases the record of
    /// those that were its last chance.
    fn abandoned(&self, logins: Vec<(String, bool)>) {
        for (account, last_chance) in logins {
            self.audit
                .append(Event::new(EventKind::LoginAbandoned, &account));
            if !last_chance {
                continue;
            }
            if let Err(refusal) = self.erase_if_exhausted(&account) {
                tracing::error!(
                    "cannot erase the exhausted record of {account}: {}",
                    refusal.message
                );
            }
        }
    }

    /// At shutdown: the logins in progress are abandoned (their guesses stay spent), and the
    /// audit log's queue is written to disk.
    pub fn close(&self) {
        self.abandoned(self.logins.abandon_all());
        self.audit.close();
    }

    /// The account's entry and its revision, if `credential` is the account's and the
    /// entry passes its checks ([`KeyVault::load_checked`]). Nothing else is read or written
    /// before the credential is checked.
    fn authenticate(
        &self,
        credential: &str,
        account: &str,
    ) -> Result<(AccountEntry, Revision), Refusal> {
        check_account_name(account).map_err(Refusal::bad_request)?;
        self.load_checked(account, Some(credential))?
            .ok_or_else(Refusal::unauthorized)
    }

    /// The account's entry, checked ([`KeyVault::load_checked`]), and its revision.
    fn entry(&self, account: &str) -> Result<Option<(AccountEntry, Revision)>, Refusal> {
        self.load_checked(account, None)
    }

    /// The account's entry as stored, unchecked, with its revision, bytes and lineage.
    fn load(&self, account: &str) -> Result<Option<(AccountEntry, Versioned)>, Refusal> {
        match self.store.get(&account::store_key(account))? {
            None => Ok(None),
            Some(stored) => {
                let entry = AccountEntry::from_bytes(&stored.value)
                    .map_err(|err| internal(&format!("the entry of account {account}"), err))?;
                Ok(Some((entry, stored)))
            }
        }
    }

    /// Changes the account's entry with compare-and-swap: reads and checks it, lets `change`
    /// edit it (or refuse), tags it in the HSM, writes it if nobody wrote in between, else
    /// starts again. Returns what `change` returned for the version that was written, and
    /// the store revision of the write.
    fn update<T>(
        &self,
        account: &str,
        mut change: impl FnMut(&mut AccountEntry) -> Result<T, Refusal>,
    ) -> Result<(T, Revision), Refusal> {
        loop {
            let (mut entry, revision) = self.entry(account)?.ok_or_else(Refusal::unauthorized)?;
            let outcome = change(&mut entry)?;
            // The compare-and-swap succeeds only on the version read: the entry lands one
            // place further in its key's history.
            entry.store_position = entry
                .store_position
                .map(|[created, version]| [created, version + 1]);
            self.check.seal_entry(account, &mut entry)?;
            let bytes = entry.to_bytes();
            match self.store.compare_and_swap(
                &account::store_key(account),
                Some(revision),
                Some(&bytes),
            )? {
                Swap::Done(written) => {
                    self.wrote(account, &entry, &bytes);
                    return Ok((outcome, written.unwrap_or(revision)));
                }
                Swap::Conflict => continue,
            }
        }
    }
}

/// The OPAQUE server setup, unsealed with the HSM from the store.
fn open_setup(
    config: &Config,
    hsm: &Hsm,
    store: &dyn RecordStore,
) -> Result<ServerSetup<Suite>, StartError> {
    let sealed = store.get(SERVER_SETUP_KEY)?.ok_or_else(|| {
        StartError::State(format!(
            "{} holds no server setup: run `sealback-vault init` first",
            config.store_name()
        ))
    })?;
    Ok(record::open_setup(hsm, &sealed.value)?)
}

/// Account administration (`sealback-vault account ...`): works on the store alone, so it
/// can run beside a serving vault.
pub mod accounts {
    use zeroize::Zeroizing;

    use super::*;

    /// Creates `account`; its credential (shown once).
    pub fn add(store: &dyn RecordStore, account: &str) -> Result<Zeroizing<String>, String> {
        check_account_name(account)?;
        let (credential, hash) = account::new_credential();
        let entry = AccountEntry::new(hash);
        match store
            .compare_and_swap(&account::store_key(account), None, Some(&entry.to_bytes()))
            .map_err(|err| err.to_string())?
        {
            Swap::Done(_) => Ok(credential),
            Swap::Conflict => Err(format!(
                "account {account} exists; `sealback-vault account reissue {account}` gives it \
                 a new credential"
            )),
        }
    }

    /// Gives `account` a new credential; the old one stops working. The guess count, the
    /// record and everything else are kept. On a store that keeps its keys' history (etcd)
    /// a tagged entry's tag binds its place there, so the new entry is checked and tagged
    /// again in `hsm` (docs/vault.md §11.3); without `hsm` that is refused.
    pub fn reissue(
        store: &dyn RecordStore,
        account: &str,
        hsm: Option<&Hsm>,
    ) -> Result<Zeroizing<String>, String> {
        check_account_name(account)?;
        let key = account::store_key(account);
        loop {
            let stored = store
                .get(&key)
                .map_err(|err| err.to_string())?
                .ok_or_else(|| format!("no account {account}"))?;
            let mut entry = AccountEntry::from_bytes(&stored.value)?;
            let (credential, hash) = account::new_credential();
            entry.credential_sha256 = hash;
            if let (Some([created, version]), Some(_)) = (stored.lineage, &entry.tag) {
                let hsm =
                    hsm.ok_or("this entry's tag binds its place in etcd: reissuing needs the HSM")?;
                if entry.store_position != stored.lineage
                    || record::check_entry_tag(hsm, account, &entry).is_err()
                {
                    return Err(format!(
                        "the entry of account {account} fails its integrity check (edited, or \
                         put back from an older copy); it is not tagged again"
                    ));
                }
                entry.store_position = Some([created, version + 1]);
                record::tag_entry(hsm, account, &mut entry).map_err(|err| err.to_string())?;
            }
            match store
                .compare_and_swap(&key, Some(stored.revision), Some(&entry.to_bytes()))
                .map_err(|err| err.to_string())?
            {
                Swap::Done(_) => return Ok(credential),
                Swap::Conflict => continue,
            }
        }
    }
}
