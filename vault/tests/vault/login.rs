//! Registration and recovery through the client library.

use sealback_vault_client::VaultError;

use crate::{RIGHT, WRONG, account, password, vault};

#[test]
fn register_then_recover_gives_the_same_key() {
    let vault = vault();
    let (client, _) = account(&vault, "alice");
    assert!(matches!(
        client.recover(&password(RIGHT)),
        Err(VaultError::NotRegistered)
    ));
    let key = [0x5au8; 32];
    client.register(&password(RIGHT), &key).expect("registers");
    let status = client.status().expect("status");
    assert!(status.registered && !status.key_destroyed);
    assert_eq!(status.attempts_left, 10);
    assert_eq!(*client.recover(&password(RIGHT)).expect("recovers"), key);
}

#[test]
fn a_wrong_password_says_how_many_attempts_are_left_and_the_right_one_resets_them() {
    let vault = vault();
    let (client, _) = account(&vault, "alice");
    client
        .register(&password(RIGHT), &[1u8; 32])
        .expect("registers");
    for left in [9, 8] {
        match client.recover(&password(WRONG)) {
            Err(VaultError::WrongPassword { attempts_left }) => assert_eq!(attempts_left, left),
            other => panic!("expected a wrong password, got {:?}", other.map(|_| ())),
        }
    }
    assert_eq!(client.status().expect("status").attempts_left, 8);
    client.recover(&password(RIGHT)).expect("recovers");
    assert_eq!(client.status().expect("status").attempts_left, 10);
}

#[test]
fn change_password_keeps_the_key_and_delete_needs_the_password() {
    let vault = vault();
    let (client, _) = account(&vault, "alice");
    let key = [3u8; 32];
    client.register(&password(RIGHT), &key).expect("registers");
    client
        .change_password(&password(RIGHT), &password("a new one 77"))
        .expect("changes");
    assert!(matches!(
        client.recover(&password(RIGHT)),
        Err(VaultError::WrongPassword { .. })
    ));
    assert_eq!(
        *client.recover(&password("a new one 77")).expect("recovers"),
        key
    );
    assert!(matches!(
        client.delete(&password(WRONG)),
        Err(VaultError::WrongPassword { .. })
    ));
    assert!(client.status().expect("status").registered);
    client.delete(&password("a new one 77")).expect("deletes");
    let status = client.status().expect("status");
    assert!(!status.registered && !status.key_destroyed);
    assert!(matches!(
        client.recover(&password("a new one 77")),
        Err(VaultError::NotRegistered)
    ));
}

#[test]
fn registering_again_replaces_the_key() {
    let vault = vault();
    let (client, _) = account(&vault, "alice");
    client
        .register(&password(RIGHT), &[1u8; 32])
        .expect("registers");
    client
        .register(&password(RIGHT), &[2u8; 32])
        .expect("registers again");
    assert_eq!(
        *client.recover(&password(RIGHT)).expect("recovers"),
        [2u8; 32]
    );
}
