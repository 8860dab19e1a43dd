//! Several vault instances on one 3-member etcd cluster (docs/vault.md §11): the records are
//! shared, `init` joins, and an entry edited, moved or put back in etcd is refused by every
//! instance.

use sealback_vault::store::{RecordStore, Swap, check_contract};
use sealback_vault::testing::cluster::{EtcdCluster, Fleet};
use sealback_vault::testing::{Options, TestVault};
use sealback_vault_client::{Vault, VaultError};

use crate::{RIGHT, WRONG, audit_events, binary, password};

pub fn fleet() -> Fleet {
    Fleet::start(binary(), 3, Options::default()).unwrap_or_else(|err| panic!("{err}"))
}

fn client(vault: &TestVault, account: &str, credential: &str) -> Vault {
    Vault::new(vault.client_config(account, credential)).expect("client")
}

#[test]
fn the_etcd_store_keeps_the_store_contract() {
    let cluster = EtcdCluster::start(3).unwrap_or_else(|err| panic!("{err}"));
    let store = cluster.store("/contract/").expect("connects");
    check_contract(&store);
    // Nothing was written outside the prefix.
    let other = cluster.store("/other/").expect("connects");
    assert!(other.keys("").expect("keys").is_empty());
}

#[test]
fn register_on_one_instance_recover_through_another() {
    register_on_one_recover_through_another(&fleet());
}

/// Registers Alice through instance 0 and recovers through 1 and 2, with a wrong guess
/// through 2 counted for all; each instance audits what it served.
pub fn register_on_one_recover_through_another(fleet: &Fleet) {
    let credential = fleet.vaults[0].add_account("alice").expect("adds");
    let on = |i: usize| client(&fleet.vaults[i], "alice", &credential);
    on(0)
        .register(&password(RIGHT), &[9u8; 32])
        .expect("registers through instance 0");
    assert_eq!(
        *on(1).recover(&password(RIGHT)).expect("recovers"),
        [9u8; 32]
    );
    // A wrong guess through one instance is counted for all.
    assert!(matches!(
        on(2).recover(&password(WRONG)),
        Err(VaultError::WrongPassword { .. })
    ));
    let status = on(0).status().expect("status");
    assert_eq!(status.attempts_left, 9);
    assert_eq!(
        *on(2).recover(&password(RIGHT)).expect("recovers"),
        [9u8; 32]
    );
    // Each instance audits what it served, in a log of its own (written by its own thread).
    crate::raw::eventually("each instance logs what it served", || {
        audit_events(&fleet.vaults[0], "alice", "register") == 1
            && audit_events(&fleet.vaults[1], "alice", "login-success") == 1
            && audit_events(&fleet.vaults[2], "alice", "login-failure") == 1
            && audit_events(&fleet.vaults[2], "alice", "login-success") == 1
    });
    assert_eq!(audit_events(&fleet.vaults[0], "alice", "login-success"), 0);
}

#[test]
fn init_joins_only_with_the_vaults_own_keys() {
    let fleet = fleet();
    // The joined instances print the same server key (checked by `TestVault::join`), and
    // `init` again on a joined instance joins again rather than starting over.
    let again = fleet.vaults[1].run(&["init"]).expect("joins again");
    let printed = String::from_utf8_lossy(&again.stdout).into_owned();
    assert!(printed.contains("joined the vault"), "{printed}");
    assert!(printed.contains(&fleet.vaults[0].server_key), "{printed}");

    // A token without the vault's keys cannot join: a fresh one that holds no keys at all
    // (not even a record key of its own) ...
    let empty = fleet.vaults[0].new_peer().expect("a new token, no keys");
    let err = empty.run(&["init"]).expect_err("a token without keys");
    assert!(err.contains("this token holds no record key"), "{err}");
    assert!(err.contains("key ceremony"), "{err}");
    // ... one holding another vault's record key (its own, made by `init` on another prefix).
    let etcd = Some(fleet.cluster.config("/elsewhere/"));
    let stranger = TestVault::start_with(
        binary(),
        Options {
            etcd,
            ..Options::default()
        },
    )
    .expect("a vault of its own under another prefix");
    let config = stranger.config_path();
    let text = std::fs::read_to_string(&config).expect("config");
    std::fs::write(&config, text.replace("/elsewhere/", "/sealback-vault/")).expect("config");
    let err = stranger.run(&["init"]).expect_err("another vault's token");
    assert!(err.contains("does not open its server setup"), "{err}");
    assert!(err.contains("key ceremony"), "{err}");
    // And the vault's store was not started over.
    let setup = fleet
        .store()
        .expect("store")
        .get("server-setup")
        .expect("get");
    assert!(setup.is_some());
    let credential = fleet.vaults[2].add_account("bob").expect("adds");
    client(&fleet.vaults[0], "bob", &credential)
        .register(&password(RIGHT), &[3u8; 32])
        .expect("the fleet still serves");
}

#[test]
fn an_entry_edited_moved_or_put_back_in_etcd_is_refused_by_every_instance() {
    let fleet = fleet();
    let store = fleet.store().expect("store");
    let alice_credential = fleet.vaults[0].add_account("alice").expect("adds");
    let bob_credential = fleet.vaults[0].add_account("bob").expect("adds");
    let alice = |i: usize| client(&fleet.vaults[i], "alice", &alice_credential);
    alice(0)
        .register(&password(RIGHT), &[1u8; 32])
        .expect("registers");
    client(&fleet.vaults[1], "bob", &bob_credential)
        .register(&password(RIGHT), &[2u8; 32])
        .expect("registers");
    let old = store.get("account/alice").expect("get").expect("stored");
    // Three wrong guesses spent, through instance 1 only: instances 0 and 2 never saw them.
    for _ in 0..3 {
        assert!(matches!(
            alice(1).recover(&password(WRONG)),
            Err(VaultError::WrongPassword { .. })
        ));
    }
    let put = |value: &[u8]| {
        let current = store.get("account/alice").expect("get").expect("stored");
        assert!(matches!(
            store
                .compare_and_swap("account/alice", Some(current.revision), Some(value))
                .expect("cas"),
            Swap::Done(_)
        ));
    };
    let refused_everywhere = |what: &str| {
        for i in 0..3 {
            match alice(i).recover(&password(RIGHT)) {
                Err(VaultError::RecordRefused(_)) => {}
                other => panic!("{what}: instance {i} gave {:?}", other.map(|_| ())),
            }
        }
    };
    let current = store.get("account/alice").expect("get").expect("stored");

    // Replayed: the entry from before the three guesses, a genuine one with a valid tag.
    put(&old.value);
    refused_everywhere("the older entry put back");

    // Put back by deleting the key and creating it again with the old value.
    let now = store.get("account/alice").expect("get").expect("stored");
    store
        .compare_and_swap("account/alice", Some(now.revision), None)
        .expect("deletes");
    store
        .compare_and_swap("account/alice", None, Some(&old.value))
        .expect("creates");
    refused_everywhere("the older entry in a re-created key");

    // Moved: Bob's entry (his credential hash replaced by Alice's) under Alice's key.
    let mut bobs = sealback_vault::account::AccountEntry::from_bytes(
        &store
            .get("account/bob")
            .expect("get")
            .expect("stored")
            .value,
    )
    .expect("entry");
    let current_entry =
        sealback_vault::account::AccountEntry::from_bytes(&current.value).expect("entry");
    bobs.credential_sha256 = current_entry.credential_sha256.clone();
    put(&bobs.to_bytes());
    refused_everywhere("Bob's entry moved to Alice");

    // Edited: the guess count set back to 0 (the tag no longer matches).
    let mut edited = current_entry.clone();
    edited.guesses = 0;
    put(&edited.to_bytes());
    refused_everywhere("the guess count edited");

    // None of that spent a guess; no instance evaluated a password on a refused entry.
    crate::raw::eventually("every instance logs its refusals", || {
        fleet
            .vaults
            .iter()
            .all(|vault| audit_events(vault, "alice", "record-refused") >= 4)
    });
    let login_starts: usize = fleet
        .vaults
        .iter()
        .map(|vault| audit_events(vault, "alice", "login-start"))
        .sum();
    assert_eq!(
        login_starts, 3,
        "only the three real guesses were evaluated"
    );
}
