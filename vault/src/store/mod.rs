//! Where the vault keeps its accounts: a small key-value store with compare-and-swap.
//!
//! Everything the vault persists is a value under a key: `account/<name>` (an
//! [`crate::account::AccountEntry`]: credential hash, guess count, the HSM-sealed record) and
//! `server-setup` (the HSM-sealed OPAQUE ServerSetup). The guess limit is enforced with
//! compare-and-swap on these values, so any store with the contract below enforces it
//! exactly, however many vault threads or processes share it. SQLite ([`SqliteStore`]) is
//! the embedded default for one machine; [`EtcdStore`] (transactions on etcd's
//! `mod_revision`) is the replicated one that several vault instances share.
//!
//! `check_contract` (with the `testing` feature) is the test every implementation must pass.

mod etcd;
mod sqlite;

use std::sync::Arc;

pub use etcd::EtcdStore;
pub use sqlite::SqliteStore;

use crate::config::Config;

/// The store `config` names: `store = "etcd"` and its `[etcd]` table, or a SQLite file.
pub fn open(config: &Config) -> Result<Arc<dyn RecordStore>, StoreError> {
    Ok(match &config.etcd {
        Some(etcd) => Arc::new(EtcdStore::open(etcd)?),
        None => Arc::new(SqliteStore::open(&config.store)?),
    })
}

/// A value's revision. Every successful write of any key takes the next revision of the
/// whole store, so revisions strictly increase and a key that is deleted and written again
/// never gets back a revision it had (compare-and-swap is free of ABA).
pub type Revision = u64;

/// A value and the revision that wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned {
    pub value: Vec<u8>,
    pub revision: Revision,
    /// Where the value sits in its key's history, if the store keeps that history itself
    /// (etcd: `[create_revision, version]`, the revision that created the key and the writes
    /// since). Nobody can put an older value back at its old place: a key's version only
    /// grows, and a key deleted and created again gets a new creation revision. The vault's
    /// tag on an entry binds the place it writes the entry to (docs/vault.md §11.3). SQLite:
    /// `None`.
    pub lineage: Option<[u64; 2]>,
}

/// The outcome of [`RecordStore::compare_and_swap`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Swap {
    /// Written; the key's new revision (`None` after a delete).
    Done(Option<Revision>),
    /// The key's revision was not the expected one; nothing was written.
    Conflict,
}

/// The store failed (I/O, corruption); not a conflict.
#[derive(Debug, thiserror::Error)]
#[error("record store: cannot {operation}: {message}")]
pub struct StoreError {
    pub operation: &'static str,
    pub message: String,
}

/// The vault's persistent state. The contract, method by method:
pub trait RecordStore: Send + Sync {
    /// The value of `key` and its revision, or `None` if the key is absent. Reflects every
    /// [`compare_and_swap`](RecordStore::compare_and_swap) that returned before the call.
    fn get(&self, key: &str) -> Result<Option<Versioned>, StoreError>;

    /// Atomically: if the revision of `key` is `expected` (`None`: the key is absent), sets
    /// it to `value` (`None`: deletes it) and returns [`Swap::Done`]; otherwise changes
    /// nothing and returns [`Swap::Conflict`]. A `Done` is durable when it is returned: it
    /// survives a crash of the vault or of the machine (the guess counter depends on it).
    /// Deleting an absent key with `expected = None` is a `Done(None)`.
    fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<Revision>,
        value: Option<&[u8]>,
    ) -> Result<Swap, StoreError>;

    /// The store's last revision: the revision of its latest write (0 if none). It never
    /// decreases; the vault compares it with the revisions its audit log recorded, so that a
    /// store put back from an older copy is noticed at start.
    fn revision(&self) -> Result<Revision, StoreError>;

    /// The keys that start with `prefix`, in byte order.
    fn keys(&self, prefix: &str) -> Result<Vec<String>, StoreError>;

    /// Makes values that were overwritten or deleted unrecoverable from the store's own
    /// files (SQLite: secure delete, then a WAL checkpoint that truncates the log). The
    /// vault calls it after it erases a record. Copies of the store made before (backups)
    /// are outside its reach.
    fn purge_history(&self) -> Result<(), StoreError>;
}

/// The contract of [`RecordStore`], checked on an empty store that nothing else writes to
/// meanwhile. Panics on a violation.
#[cfg(any(test, feature = "testing"))]
pub fn check_contract(store: &dyn RecordStore) {
    // Absent keys, creation, expected revisions. (A store shared with others, such as an
    // etcd cluster, may start above revision 0.)
    assert_eq!(store.get("a").expect("get"), None);
    let r0 = store.revision().expect("revision");
    let Swap::Done(Some(r1)) = store.compare_and_swap("a", None, Some(b"1")).expect("cas") else {
        panic!("creating an absent key succeeds");
    };
    assert!(r1 > r0);
    assert_eq!(
        store.compare_and_swap("a", None, Some(b"x")).expect("cas"),
        Swap::Conflict,
        "creating an existing key conflicts"
    );
    let read = store.get("a").expect("get").expect("written");
    assert_eq!((read.value.as_slice(), read.revision), (&b"1"[..], r1));
    let Swap::Done(Some(r2)) = store
        .compare_and_swap("a", Some(r1), Some(b"2"))
        .expect("cas")
    else {
        panic!("a swap at the current revision succeeds");
    };
    assert!(r2 > r1);
    assert_eq!(store.revision().expect("revision"), r2);
    assert_eq!(
        store
            .compare_and_swap("a", Some(r1), Some(b"3"))
            .expect("cas"),
        Swap::Conflict,
        "a stale revision conflicts"
    );
    // Deletion, and no ABA: a re-created key has a new revision.
    assert_eq!(
        store.compare_and_swap("a", Some(r2), None).expect("cas"),
        Swap::Done(None)
    );
    assert_eq!(store.get("a").expect("get"), None);
    assert_eq!(
        store.compare_and_swap("a", None, None).expect("cas"),
        Swap::Done(None)
    );
    let Swap::Done(Some(r3)) = store.compare_and_swap("a", None, Some(b"4")).expect("cas") else {
        panic!("re-creating succeeds");
    };
    assert!(r3 > r2);
    assert_eq!(
        store
            .compare_and_swap("a", Some(r2), Some(b"5"))
            .expect("cas"),
        Swap::Conflict
    );
    // Prefix listing.
    for key in ["account/b", "account/a", "other"] {
        store.compare_and_swap(key, None, Some(b"v")).expect("cas");
    }
    assert_eq!(
        store.keys("account/").expect("keys"),
        vec!["account/a".to_string(), "account/b".to_string()]
    );
    store.purge_history().expect("purge");
    // Concurrent increments through compare-and-swap lose none and duplicate none.
    const THREADS: u64 = 8;
    const EACH: u64 = 25;
    std::thread::scope(|scope| {
        for _ in 0..THREADS {
            scope.spawn(|| {
                for _ in 0..EACH {
                    loop {
                        let current = store.get("counter").expect("get");
                        let (n, expected) = match &current {
                            None => (0u64, None),
                            Some(v) => (
                                String::from_utf8_lossy(&v.value)
                                    .parse::<u64>()
                                    .expect("number"),
                                Some(v.revision),
                            ),
                        };
                        let next = (n + 1).to_string();
                        match store
                            .compare_and_swap("counter", expected, Some(next.as_bytes()))
                            .expect("cas")
                        {
                            Swap::Done(_) => break,
                            Swap::Conflict => continue,
                        }
                    }
                }
            });
        }
    });
    let total = store.get("counter").expect("get").expect("counter exists");
    assert_eq!(total.value, (THREADS * EACH).to_string().into_bytes());
}
