//! Logins in progress, in memory, each for a short time.
//!
//! A login lives from `login/start` to `login/finish` (at most the configured expiry,
//! 60 s by default); a login that proved the password stays a little longer as
//! *authenticated*, so that the client can delete its record with it. Nothing here is
//! persisted: the guess a login consumed is already in the store, and a restart only
//! forgets logins, which then have to start again (and consume another guess).
//!
//! The table is bounded, in all and per account: a stranger cannot fill it (every entry
//! needs an account's credential and consumed one of its guesses), one account cannot fill
//! it for the others (a credential holder with the right password would otherwise add an
//! authenticated entry per login), and a full table answers "busy" before a guess is spent.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;

use crate::keyvault::check::Pending;

/// The most logins in progress at once.
pub const MAX_LOGINS: usize = 100_000;
/// The most logins of one account in progress at once (started or authenticated).
pub const MAX_LOGINS_PER_ACCOUNT: usize = 16;

/// A login between its two messages.
pub struct Started {
    pub account: String,
    /// The guess check's state of the login.
    pub pending: Pending,
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

impl Entry {
    fn account(&self) -> &str {
        match &self.state {
            State::Started(started) => &started.account,
            State::Authenticated { account, .. } => account,
        }
    }
}

/// The entries by id, the places reserved for logins about to start, and how many of both
/// each account has.
#[derive(Default)]
struct Table {
    entries: HashMap<String, Entry>,
    reserved: usize,
    per_account: HashMap<String, usize>,
}

impl Table {
    fn add(&mut self, id: String, entry: Entry) {
        self.count(entry.account());
        if let Some(replaced) = self.entries.insert(id, entry) {
            self.release(replaced.account());
        }
    }

    fn remove(&mut self, id: &str) -> Option<Entry> {
        let entry = self.entries.remove(id)?;
        self.release(entry.account());
        Some(entry)
    }

    fn count(&mut self, account: &str) {
        *self.per_account.entry(account.to_string()).or_default() += 1;
    }

    fn release(&mut self, account: &str) {
        if let Some(count) = self.per_account.get_mut(account) {
            *count -= 1;
            if *count == 0 {
                self.per_account.remove(account);
            }
        }
    }

    fn of(&self, account: &str) -> usize {
        self.per_account.get(account).copied().unwrap_or(0)
    }
}

/// Why a login cannot start now.
#[derive(Debug, PartialEq, Eq)]
pub enum Full {
    /// [`MAX_LOGINS`] logins are in progress.
    All,
    /// The account has [`MAX_LOGINS_PER_ACCOUNT`] logins in progress.
    Account,
}

/// The table of logins.
pub struct Logins {
    table: Mutex<Table>,
    expiry: Duration,
}

impl Logins {
    pub fn new(expiry: Duration) -> Logins {
        Logins {
            table: Mutex::new(Table::default()),
            expiry,
        }
    }

    /// Holds a place for a login of `account`, or says why there is none. Taken before the
    /// login's guess is spent, so that a login never spends a guess and then finds no room,
    /// however many start at once.
    pub fn reserve(&self, account: &str) -> Result<Reservation<'_>, Full> {
        let mut table = self.lock();
        room(&table, account)?;
        table.reserved += 1;
        table.count(account);
        Ok(Reservation {
            logins: self,
            account: Some(account.to_string()),
        })
    }

    /// Takes the started login `id` of `account`, if it exists and has not expired.
    pub fn take_started(&self, id: &str, account: &str) -> Option<Started> {
        let mut table = self.lock();
        match table.entries.get(id) {
            Some(Entry {
                state: State::Started(started),
                expires,
            }) if started.account == account && *expires > Instant::now() => {}
            _ => return None,
        }
        match table.remove(id) {
            Some(Entry {
                state: State::Started(started),
                ..
            }) => Some(*started),
            _ => None,
        }
    }

    /// Records that login `id` proved the password for `record_version`.
    /// It takes the place of the started login it was, so it needs no room of its own.
    pub fn authenticated(&self, id: String, account: &str, record_version: u64) {
        self.lock().add(
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
        let mut table = self.lock();
        let version = match table.entries.get(id) {
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
        table.remove(id);
        Some(version)
    }

    /// Drops expired logins; the started ones among them (each spent a guess that is now
    /// abandoned), by account and whether it was the last chance (the record is to be erased).
    pub fn sweep(&self) -> Vec<(String, bool)> {
        self.expire(Instant::now())
    }

    /// Drops every login, as [`Logins::sweep`] drops expired ones (at shutdown).
    pub fn abandon_all(&self) -> Vec<(String, bool)> {
        self.expire(Instant::now() + self.expiry + Duration::from_secs(1))
    }

    fn expire(&self, now: Instant) -> Vec<(String, bool)> {
        let mut exhausted = Vec::new();
        let mut table = self.lock();
        let expired: Vec<String> = table
            .entries
            .iter()
            .filter(|(_, entry)| entry.expires <= now)
            .map(|(id, _)| id.clone())
            .collect();
        for id in expired {
            if let Some(Entry {
                state: State::Started(started),
                ..
            }) = table.remove(&id)
            {
                exhausted.push((started.account, started.last_chance));
            }
        }
        exhausted
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn room(table: &Table, account: &str) -> Result<(), Full> {
    if table.entries.len() + table.reserved >= MAX_LOGINS {
        Err(Full::All)
    } else if table.of(account) >= MAX_LOGINS_PER_ACCOUNT {
        Err(Full::Account)
    } else {
        Ok(())
    }
}

/// A place in the table for one login ([`Logins::reserve`]), given back if dropped unused.
pub struct Reservation<'a> {
    logins: &'a Logins,
    /// `None` once the place is used.
    account: Option<String>,
}

impl Reservation<'_> {
    /// Puts the started login in the reserved place; its new id.
    pub fn fill(mut self, pending: Pending, last_chance: bool) -> String {
        let account = self.account.take().expect("a reservation is filled once");
        let mut table = self.logins.lock();
        table.reserved -= 1;
        table.release(&account);
        let id = new_id();
        table.add(
            id.clone(),
            Entry {
                state: State::Started(Box::new(Started {
                    account,
                    pending,
                    last_chance,
                })),
                expires: Instant::now() + self.logins.expiry,
            },
        );
        id
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        if let Some(account) = self.account.take() {
            let mut table = self.logins.lock();
            table.reserved -= 1;
            table.release(&account);
        }
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
    use super::*;

    impl Logins {
        fn insert(&self, account: &str, last_chance: bool) -> Result<String, Full> {
            Ok(self.reserve(account)?.fill(Pending::new(()), last_chance))
        }
    }

    #[test]
    fn a_login_is_taken_once_and_only_by_its_account() {
        let logins = Logins::new(Duration::from_secs(60));
        let id = logins.insert("alice", false).expect("room");
        assert!(logins.take_started(&id, "bob").is_none());
        assert!(logins.take_started(&id, "alice").is_some());
        assert!(logins.take_started(&id, "alice").is_none());
        logins.authenticated(id.clone(), "alice", 3);
        assert_eq!(logins.take_authenticated(&id, "bob"), None);
        assert_eq!(logins.take_authenticated(&id, "alice"), Some(3));
        assert_eq!(logins.take_authenticated(&id, "alice"), None);
    }

    #[test]
    fn expired_logins_are_dropped_and_reported_with_their_last_chances() {
        let logins = Logins::new(Duration::ZERO);
        let id = logins.insert("alice", true).expect("room");
        logins.insert("bob", false).expect("room");
        assert!(logins.take_started(&id, "alice").is_none(), "expired");
        let mut swept = logins.sweep();
        swept.sort();
        assert_eq!(
            swept,
            vec![("alice".to_string(), true), ("bob".to_string(), false)]
        );
        assert!(logins.sweep().is_empty());
    }

    #[test]
    fn one_account_cannot_fill_the_table() {
        let logins = Logins::new(Duration::from_secs(60));
        let ids: Vec<String> = (0..MAX_LOGINS_PER_ACCOUNT)
            .map(|_| logins.insert("alice", false).expect("room"))
            .collect();
        assert_eq!(logins.reserve("alice").err(), Some(Full::Account));
        assert!(
            logins.reserve("bob").is_ok(),
            "other accounts still have room"
        );
        // A finished login, authenticated, still counts; taken, it frees its place.
        assert!(logins.take_started(&ids[0], "alice").is_some());
        logins.authenticated(ids[0].clone(), "alice", 1);
        assert_eq!(logins.reserve("alice").err(), Some(Full::Account));
        assert_eq!(logins.take_authenticated(&ids[0], "alice"), Some(1));
        assert!(logins.reserve("alice").is_ok());
    }

    #[test]
    fn a_reserved_place_counts_until_it_is_filled_or_given_back() {
        let logins = Logins::new(Duration::from_secs(60));
        let held: Vec<Reservation> = (0..MAX_LOGINS_PER_ACCOUNT)
            .map(|_| logins.reserve("alice").expect("room"))
            .collect();
        assert_eq!(logins.reserve("alice").err(), Some(Full::Account));
        let mut held = held.into_iter();
        drop(held.next());
        let id = logins
            .reserve("alice")
            .expect("a place given back")
            .fill(Pending::new(()), false);
        assert!(logins.take_started(&id, "alice").is_some());
        drop(held);
        assert_eq!(logins.lock().reserved, 0);
        assert!(logins.lock().per_account.is_empty());
    }
}
