//! The account entry is trusted only as far as the HSM vouches for it.
//!
//! Every write of an entry carries the HSM's tag over its state ([`crate::record::tag_entry`]), and
//! every read the vault acts on checks it ([`KeyVault::load_checked`]) after the credential:
//! an entry whose guess count, lifetime count `spent`, `destroyed` flag, record or versions
//! were edited in the store fails, and is refused (`record-refused`, audited; no password is
//! evaluated, no guess spent, nothing erased). A tagged entry is never read as having more
//! guesses left than the vault wrote.
//!
//! A tag cannot tell a current entry from an older genuine one put back. So the vault keeps,
//! per account, the highest `spent` and `last_version` it has seen ([`Seen`]), seeded at
//! start from the audit log, and refuses an entry below them. At start it also refuses a
//! store whose revision is behind the highest one its audit log records.
//!
//! An untagged entry is accepted only while it is *fresh* (`account add` made it without
//! the HSM: no record, no guess, no version reserved) and the vault has seen nothing of the
//! account. That is safe: a fresh entry holds no record, so a login on it evaluates only the
//! dummy record and can recover nothing, and its first write by the vault tags it. Putting
//! a fresh entry in place of a used one (to start the count over) is refused, because the
//! vault has seen a higher `spent` or version for that account.

use std::collections::HashMap;
use std::sync::Mutex;

use sealback_vault_client::protocol::wire::ErrorCode;
use sha2::{Digest, Sha256};

use super::{KeyVault, Refusal, StartError};
use crate::account::{self, AccountEntry};
use crate::audit::{Event, EventKind, Floor, History};
use crate::config::Config;
use crate::store::{RecordStore, Revision};

/// How often an entry below the floor is read again while the store's bytes keep changing
/// (concurrent writes of the same account), before it is refused.
const MAX_STALE_READS: usize = 64;

/// What the vault has seen of each account: the floor an entry must reach, and the digest of
/// the last entry bytes it wrote or verified (reading those again needs no HSM call).
#[derive(Default)]
pub(super) struct Seen(Mutex<HashMap<String, Known>>);

#[derive(Clone, Copy)]
struct Known {
    floor: Floor,
    verified: Option<[u8; 32]>,
}

impl Seen {
    /// Seeded from the audit log's floors.
    pub(super) fn from_history(history: &History) -> Seen {
        let known = history
            .accounts
            .iter()
            .map(|(account, floor)| {
                (
                    account.clone(),
                    Known {
                        floor: *floor,
                        verified: None,
                    },
                )
            })
            .collect();
        Seen(Mutex::new(known))
    }

    fn get(&self, account: &str) -> Option<Known> {
        let known = self.0.lock().unwrap_or_else(|p| p.into_inner());
        known.get(account).copied()
    }

    /// Raises the account's floor to `entry`'s, and remembers `digest` as verified.
    fn remember(&self, account: &str, entry: &AccountEntry, digest: [u8; 32]) {
        let mut known = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let slot = known.entry(account.to_string()).or_insert(Known {
            floor: Floor::default(),
            verified: None,
        });
        slot.floor.spent = slot.floor.spent.max(entry.spent);
        slot.floor.last_version = slot.floor.last_version.max(entry.last_version);
        slot.verified = Some(digest);
    }
}

fn floor_of(entry: &AccountEntry) -> Floor {
    Floor {
        spent: entry.spent,
        last_version: entry.last_version,
    }
}

fn below(entry: &AccountEntry, floor: Floor) -> bool {
    entry.spent < floor.spent || entry.last_version < floor.last_version
}

impl KeyVault {
    /// The account's entry and its revision, if `credential` (when given) is the account's
    /// and the entry passes [`KeyVault::check_entry`]; `None` if there is no entry.
    ///
    /// A read can be older than a write this vault has already remembered (another request's
    /// write landed between this read and the check): an entry below the floor is read again
    /// while the store's bytes keep changing, and refused only when a read gives the same
    /// bytes twice (the store really holds the older copy) or after [`MAX_STALE_READS`].
    pub(super) fn load_checked(
        &self,
        account: &str,
        credential: Option<&str>,
    ) -> Result<Option<(AccountEntry, Revision)>, Refusal> {
        let mut previous: Option<Vec<u8>> = None;
        for _ in 0..MAX_STALE_READS {
            let Some((mut entry, stored)) = self.load(account)? else {
                return Ok(None);
            };
            let (revision, bytes) = (stored.revision, stored.value);
            if let Some(credential) = credential
                && !entry.accepts(credential)
            {
                return Err(Refusal::unauthorized());
            }
            self.check_position(account, &mut entry, stored.lineage)?;
            let Some(floor) = self.check_entry(account, &entry, &bytes)? else {
                return Ok(Some((entry, revision)));
            };
            if previous.as_deref() == Some(bytes.as_slice()) {
                return Err(self.below_floor(account, &entry, floor));
            }
            previous = Some(bytes);
        }
        let (entry, _) = self.load(account)?.ok_or_else(Refusal::unauthorized)?;
        let floor = self
            .seen
            .get(account)
            .map(|known| known.floor)
            .unwrap_or_default();
        Err(self.below_floor(account, &entry, floor))
    }

    /// Checks an entry read from the store (`bytes`, parsed as `entry`) before anything acts
    /// on it: tagged by the HSM (or fresh), and not below what the vault has seen. `Some`
    /// with that floor if it is below it.
    fn check_entry(
        &self,
        account: &str,
        entry: &AccountEntry,
        bytes: &[u8],
    ) -> Result<Option<Floor>, Refusal> {
        let digest: [u8; 32] = Sha256::digest(bytes).into();
        let known = self.seen.get(account);
        if let Some(known) = known {
            if below(entry, known.floor) {
                return Ok(Some(known.floor));
            }
            if known.verified == Some(digest) {
                return Ok(None);
            }
        }
        let unused = known.is_none_or(|known| known.floor == Floor::default());
        if !(entry.is_fresh() && unused) {
            self.check.verify_entry(account, entry).map_err(|err| {
                self.entry_refused(account, &format!("its HSM tag does not verify ({err})"))
            })?;
        }
        self.seen.remember(account, entry, digest);
        Ok(None)
    }

    /// On a store that keeps its keys' history (etcd), an entry the vault wrote is where the
    /// vault wrote it (its tag binds that place): an entry found elsewhere was written there
    /// by someone else (an older copy put back, another account's entry copied, an edit).
    /// A fresh untagged entry (`account add`'s) claims no place; it gets the one it is found
    /// at, so that the vault's first write of it is placed.
    fn check_position(
        &self,
        account: &str,
        entry: &mut AccountEntry,
        lineage: Option<[u64; 2]>,
    ) -> Result<(), Refusal> {
        if entry.tag.is_none() && entry.store_position.is_none() {
            entry.store_position = lineage;
            return Ok(());
        }
        if entry.store_position == lineage {
            return Ok(());
        }
        let place = |position: Option<[u64; 2]>| match position {
            Some([created, version]) => {
                format!("version {version} of the key created at revision {created}")
            }
            None => "no place".to_string(),
        };
        Err(self.entry_refused(
            account,
            &format!(
                "the vault wrote it as {}, but the store holds it as {}: someone else wrote it \
                 there (an older copy put back, or another account's entry copied)",
                place(entry.store_position),
                place(lineage)
            ),
        ))
    }

    fn below_floor(&self, account: &str, entry: &AccountEntry, floor: Floor) -> Refusal {
        self.entry_refused(
            account,
            &format!(
                "it shows {} spent guesses and record version {}, but the vault has seen {} and \
                 {}: an older copy was put back",
                entry.spent, entry.last_version, floor.spent, floor.last_version
            ),
        )
    }

    /// After the vault wrote `entry` as `bytes`.
    pub(super) fn wrote(&self, account: &str, entry: &AccountEntry, bytes: &[u8]) {
        self.seen
            .remember(account, entry, Sha256::digest(bytes).into());
    }

    /// The refusal of an entry that failed [`KeyVault::check_entry`]: logged, audited.
    fn entry_refused(&self, account: &str, why: &str) -> Refusal {
        tracing::error!("the entry of account {account} was refused: {why}");
        self.audit
            .append(Event::new(EventKind::RecordRefused, account));
        Refusal::new(
            ErrorCode::RecordRefused,
            "the account's entry in the vault's store failed its integrity check (its guess \
             count or state was edited, or an older copy was put back) and was not used: no \
             password was evaluated, no guess was spent and nothing was erased; the vault's \
             operator must restore it (audit log: record-refused)",
        )
    }
}

/// At start: refuses a store behind its own audit log, in whole (its revision) or for one
/// account (its `spent` or versions), naming both and what to do.
pub(super) fn check_not_rolled_back(
    config: &Config,
    store: &dyn RecordStore,
    history: &History,
) -> Result<(), StartError> {
    let revision = store.revision()?;
    if revision < history.store_revision {
        return Err(StartError::State(format!(
            "the store {} is at revision {revision}, but its audit log {} records revision {}: \
             the store was put back from an older copy (which would give back spent guesses \
             and erased records); put back its newest copy, the vault will not start on this \
             one",
            config.store_name(),
            config.audit_log.display(),
            history.store_revision
        )));
    }
    for key in store.keys("account/")? {
        let (Some(account), Some(stored)) = (account::account_of(&key), store.get(&key)?) else {
            continue;
        };
        let (Some(floor), Ok(entry)) = (
            history.accounts.get(account),
            AccountEntry::from_bytes(&stored.value),
        ) else {
            continue;
        };
        if below(&entry, *floor) {
            let now = floor_of(&entry);
            return Err(StartError::State(format!(
                "account {account} in the store {} shows {} spent guesses and record version \
                 {}, but the audit log {} records {} and {}: its entry was put back from an \
                 older copy; put back the store's newest copy, the vault will not start on \
                 this one",
                config.store_name(),
                now.spent,
                now.last_version,
                config.audit_log.display(),
                floor.spent,
                floor.last_version
            )));
        }
    }
    Ok(())
}
