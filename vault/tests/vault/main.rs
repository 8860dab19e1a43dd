//! The vault's integration tests: a real `sealback-vault` process on a fresh SoftHSM2 token
//! per test ([`sealback_vault::testing`]), driven through the client library, and through raw
//! HTTPS where a test must misbehave.

mod audit;
mod ceremony;
mod check;
mod credentials;
mod etcd_access;
mod failover;
mod guess_limit;
mod hsm;
mod hygiene;
mod instances;
mod instances_kill;
mod login;
mod persistence;
mod probing;
mod raw;
mod relay;
mod rollback;
mod tampering;

use std::path::Path;

use sealback_vault::testing::{Options, TestVault};
use sealback_vault_client::{Password, Vault};

pub fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_sealback-vault"))
}

/// A vault with the default options.
pub fn vault() -> TestVault {
    TestVault::start(binary()).unwrap_or_else(|err| panic!("{err}"))
}

pub fn vault_with(options: Options) -> TestVault {
    TestVault::start_with(binary(), options).unwrap_or_else(|err| panic!("{err}"))
}

/// An account on `vault` and a client for it.
pub fn account(vault: &TestVault, name: &str) -> (Vault, String) {
    let credential = vault
        .add_account(name)
        .unwrap_or_else(|err| panic!("{err}"));
    let client = Vault::new(vault.client_config(name, &credential)).expect("client");
    (client, credential.to_string())
}

/// An account on `vault` whose key `key` is registered under [`RIGHT`], and a client for it.
pub fn registered(vault: &TestVault, name: &str, key: [u8; 32]) -> (Vault, String) {
    let (client, credential) = account(vault, name);
    client.register(&password(RIGHT), &key).expect("registers");
    (client, credential)
}

pub fn password(text: &str) -> Password {
    Password::new(text.to_string())
}

pub const RIGHT: &str = "correct horse 42";
pub const WRONG: &str = "wrong horse 42";

/// The account's entry as the store holds it, read from the SQLite file.
pub fn stored_entry(vault: &TestVault, account: &str) -> sealback_vault::account::AccountEntry {
    let db = rusqlite::Connection::open(vault.store_path()).expect("opens the store");
    let value: Vec<u8> = db
        .query_row(
            "SELECT value FROM entries WHERE key = ?1",
            [format!("account/{account}")],
            |row| row.get(0),
        )
        .expect("the account is stored");
    sealback_vault::account::AccountEntry::from_bytes(&value).expect("an entry")
}

/// Overwrites the account's entry in the SQLite file behind the vault's back.
pub fn overwrite_entry(
    vault: &TestVault,
    account: &str,
    entry: &sealback_vault::account::AccountEntry,
) {
    let db = rusqlite::Connection::open(vault.store_path()).expect("opens the store");
    db.busy_timeout(std::time::Duration::from_secs(10))
        .expect("busy timeout");
    let changed = db
        .execute(
            "UPDATE entries SET value = ?1 WHERE key = ?2",
            rusqlite::params![entry.to_bytes(), format!("account/{account}")],
        )
        .expect("writes");
    assert_eq!(changed, 1);
}

/// The audit log's lines about `account` with event `kind`.
pub fn audit_events(vault: &TestVault, account: &str, kind: &str) -> usize {
    std::fs::read_to_string(vault.audit_path())
        .unwrap_or_default()
        .lines()
        .filter(|line| {
            line.contains(&format!("\"event\":\"{kind}\""))
                && line.contains(&format!("\"account\":\"{account}\""))
        })
        .count()
}
