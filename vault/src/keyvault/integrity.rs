//! The account entry is trusted only as far as the HSM vouches for it.
//!
//! Every write of an entry carries the HSM's tag over its state ([`record::tag_entry`]), and
//! every read the vault acts on checks it ([`KeyVault::check_entry`]) after the credential:
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
use crate::record;
use crate::store::RecordStore;

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
    /// Checks an entry read from the store (`bytes`, parsed as `entry`) before anything acts
    /// on it: not below what the vault has seen, and tagged by the HSM (or fresh).
    pub(super) fn check_entry(
        &self,
        account: &str,
        entry: &AccountEntry,
        bytes: &[u8],
    ) -> Result<(), Refusal> {
        let digest: [u8; 32] = Sha256::digest(bytes).into();
        let known = self.seen.get(account);
        if let Some(known) = known {
            if below(entry, known.floor) {
                return Err(self.entry_refused(
                    account,
                    &format!(
                        "it shows {} spent guesses and record version {}, but the vault has \
                         seen {} and {}: an older copy was put back",
                        entry.spent,
                        entry.last_version,
                        known.floor.spent,
                        known.floor.last_version
                    ),
                ));
            }
            if known.verified == Some(digest) {
                return Ok(());
            }
        }
        let unused = known.is_none_or(|known| known.floor == Floor::default());
        if !(entry.is_fresh() && unused) {
            record::check_entry_tag(&self.hsm, account, entry).map_err(|err| {
                self.entry_refused(account, &format!("its HSM tag does not verify ({err})"))
            })?;
        }
        self.seen.remember(account, entry, digest);
        Ok(())
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
            config.store.display(),
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
                config.store.display(),
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
