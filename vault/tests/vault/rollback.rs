//! The guess count is under the HSM's seal, and a store put back from an older copy is
//! caught where it can be: an entry edited or replayed while the vault runs is refused, a
//! store behind its audit log stops the vault at start, and `audit verify` flags a login
//! that succeeded on a record the log says was erased.

use std::path::{Path, PathBuf};

use sealback_vault::audit::{AuditLog, Event, EventKind};
use sealback_vault::testing::TestVault;
use sealback_vault_client::{Vault, VaultError};

use crate::raw::eventually;
use crate::{
    RIGHT, WRONG, audit_events, overwrite_entry, password, registered, stored_entry, vault,
};

fn wrong_guesses(client: &Vault, count: usize) {
    for _ in 0..count {
        match client.recover(&password(WRONG)) {
            Err(VaultError::WrongPassword { .. } | VaultError::KeyDestroyed) => {}
            other => panic!("expected a wrong password, got {:?}", other.map(|_| ())),
        }
    }
}

/// The right password recovers nothing: the login is refused as `record-refused`.
fn assert_refused(client: &Vault) {
    match client.recover(&password(RIGHT)) {
        Err(VaultError::RecordRefused(message)) => {
            assert!(message.contains("integrity"), "{message}");
            assert!(message.contains("no password was evaluated"), "{message}");
        }
        other => panic!("expected record-refused, got {:?}", other.map(|_| ())),
    }
}

#[test]
fn a_guess_count_edited_on_a_running_vault_is_refused() {
    let vault = vault();
    let (client, _) = registered(&vault, "alice", [1u8; 32]);
    wrong_guesses(&client, 4);
    let mut entry = stored_entry(&vault, "alice");
    assert_eq!(entry.guesses, 4);
    // What `UPDATE entries SET value = ... "guesses":4 -> "guesses":0` does.
    entry.guesses = 0;
    overwrite_entry(&vault, "alice", &entry);

    for _ in 0..3 {
        assert_refused(&client);
    }
    assert!(matches!(client.status(), Err(VaultError::RecordRefused(_))));
    eventually("the refusals are logged", || {
        audit_events(&vault, "alice", "record-refused") >= 4
    });
    // Nothing was evaluated, spent or erased: the entry is as the edit left it.
    let after = stored_entry(&vault, "alice");
    assert_eq!(after, entry);
    assert_eq!(audit_events(&vault, "alice", "login-start"), 4);
    assert_eq!(audit_events(&vault, "alice", "erase"), 0);

    // Put back as the vault wrote it, the entry is accepted again, with 6 guesses left.
    entry.guesses = 4;
    overwrite_entry(&vault, "alice", &entry);
    assert_eq!(client.status().expect("status").attempts_left, 6);
    assert_eq!(
        *client.recover(&password(RIGHT)).expect("recovers"),
        [1u8; 32]
    );
}

#[test]
fn an_older_genuine_entry_put_back_is_refused() {
    let vault = vault();
    let (client, _) = registered(&vault, "alice", [1u8; 32]);
    let before = stored_entry(&vault, "alice");
    wrong_guesses(&client, 4);
    // A row the vault itself wrote (its HSM tag is genuine), put back by SQL.
    overwrite_entry(&vault, "alice", &before);
    assert_refused(&client);
    eventually("the refusal is logged", || {
        audit_events(&vault, "alice", "record-refused") == 1
    });
    assert_eq!(stored_entry(&vault, "alice"), before);
}

#[test]
fn a_fresh_entry_in_place_of_a_used_one_is_refused() {
    let vault = vault();
    let (client, _) = registered(&vault, "alice", [1u8; 32]);
    wrong_guesses(&client, 4);
    // As `account add` writes it: untagged, no record, no guess.
    let fresh =
        sealback_vault::account::AccountEntry::new(stored_entry(&vault, "alice").credential_sha256);
    overwrite_entry(&vault, "alice", &fresh);
    assert!(matches!(client.status(), Err(VaultError::RecordRefused(_))));
}

/// A consistent copy of the running vault's store.
fn copy_store(vault: &TestVault, name: &str) -> PathBuf {
    let copy = vault.dir().join(name);
    let db = rusqlite::Connection::open(vault.store_path()).expect("opens the store");
    db.execute("VACUUM INTO ?1", [copy.to_str().expect("a UTF-8 path")])
        .expect("copies the store");
    copy
}

/// With the vault stopped: puts `copy` back as its store.
fn restore_store(vault: &TestVault, copy: &Path) {
    for suffix in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(vault.dir().join(format!("records.db{suffix}")));
    }
    std::fs::copy(copy, vault.store_path()).expect("puts the copy back");
}

fn assert_start_refused(vault: &mut TestVault) {
    let err = vault.restart().expect_err("the vault must not start");
    assert!(
        err.contains("records.db")
            && err.contains("audit.log")
            && err.contains("is at revision")
            && err.contains("older copy"),
        "{err}"
    );
}

#[test]
fn a_store_put_back_from_before_wrong_guesses_stops_the_vault() {
    let mut vault = vault();
    let (client, _) = registered(&vault, "alice", [1u8; 32]);
    let copy = copy_store(&vault, "before-guesses.db");
    wrong_guesses(&client, 4);
    vault.stop();
    restore_store(&vault, &copy);
    assert_start_refused(&mut vault);
}

#[test]
fn a_store_put_back_from_before_an_erase_stops_the_vault() {
    let mut vault = vault();
    let (client, _) = registered(&vault, "alice", [1u8; 32]);
    let copy = copy_store(&vault, "before-erase.db");
    wrong_guesses(&client, 10);
    assert!(client.status().expect("status").key_destroyed);
    vault.stop();
    restore_store(&vault, &copy);
    assert_start_refused(&mut vault);
}

#[test]
fn an_older_entry_put_back_while_stopped_stops_the_vault() {
    let mut vault = vault();
    let (client, _) = registered(&vault, "alice", [1u8; 32]);
    let before = stored_entry(&vault, "alice");
    wrong_guesses(&client, 4);
    vault.stop();
    // One row put back by SQL: the store's revision does not go back, the account does.
    overwrite_entry(&vault, "alice", &before);
    let err = vault.restart().expect_err("the vault must not start");
    assert!(
        err.contains("account alice")
            && err.contains("records.db")
            && err.contains("audit.log")
            && err.contains("older copy"),
        "{err}"
    );
}

#[test]
fn audit_verify_flags_a_login_success_after_an_erase_of_its_record() {
    let mut vault = vault();
    vault.stop();
    // The log a vault writes when its store is put back from before an erase and the old
    // record then opens with the right password.
    let log = AuditLog::open(&vault.audit_path()).expect("opens the log");
    log.append(Event::new(EventKind::Register, "alice").version(1));
    log.append(Event::new(EventKind::Erase, "alice").version(1));
    log.append(Event::new(EventKind::LoginSuccess, "alice").version(1));
    log.close();

    let output = vault.command(&["audit", "verify"]).output().expect("runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stdout}");
    assert!(stdout.contains("the chain holds"), "{stdout}");
    assert!(
        stdout.contains("line 3")
            && stdout.contains("account alice on record version 1")
            && stdout.contains("line 2 erased"),
        "{stdout}"
    );
    assert!(stderr.contains("older copy"), "{stderr}");
}
