//! The store and the network are not trusted: an altered record, a record moved to another
//! account, or another vault are refused.

use sealback_vault_client::{Vault, VaultError};

use crate::{RIGHT, account, audit_events, overwrite_entry, password, stored_entry, vault};

#[test]
fn an_edited_record_is_refused() {
    let vault = vault();
    let (client, _) = account(&vault, "alice");
    client
        .register(&password(RIGHT), &[1u8; 32])
        .expect("registers");
    let mut entry = stored_entry(&vault, "alice");
    let record = entry.record.as_mut().expect("a record");
    let middle = record.sealed.len() / 2;
    record.sealed[middle] ^= 0x01;
    overwrite_entry(&vault, "alice", &entry);
    match client.recover(&password(RIGHT)) {
        Err(VaultError::RecordRefused(message)) => {
            assert!(message.contains("integrity"), "{message}")
        }
        other => panic!("expected a refusal, got {:?}", other.map(|_| ())),
    }
    crate::raw::eventually("the refusal is logged", || {
        audit_events(&vault, "alice", "record-refused") == 1
    });
    // However often it is tried, the refused record burns none of the user's guesses.
    for _ in 0..12 {
        assert!(matches!(
            client.recover(&password(RIGHT)),
            Err(VaultError::RecordRefused(_))
        ));
    }
    assert_eq!(stored_entry(&vault, "alice").guesses, 0);
    // The entry's HSM tag binds the record too: its status is refused as well, not read.
    assert!(matches!(client.status(), Err(VaultError::RecordRefused(_))));
}

#[test]
fn a_record_moved_to_another_account_or_version_is_refused() {
    let vault = vault();
    let (alice, _) = account(&vault, "alice");
    let (bob, _) = account(&vault, "bob");
    alice
        .register(&password(RIGHT), &[1u8; 32])
        .expect("registers");
    bob.register(&password("bobs password 9"), &[2u8; 32])
        .expect("registers");
    let original = stored_entry(&vault, "alice");

    // Bob's record (same version number) put in Alice's entry.
    let mut swapped = original.clone();
    swapped.record = stored_entry(&vault, "bob").record;
    overwrite_entry(&vault, "alice", &swapped);
    for attempt in [RIGHT, "bobs password 9"] {
        assert!(
            matches!(
                alice.recover(&password(attempt)),
                Err(VaultError::RecordRefused(_))
            ),
            "{attempt}"
        );
    }

    // Alice's own record under another version number.
    let mut renumbered = original.clone();
    if let Some(record) = renumbered.record.as_mut() {
        record.version += 1;
    }
    renumbered.last_version += 1;
    overwrite_entry(&vault, "alice", &renumbered);
    assert!(matches!(
        alice.recover(&password(RIGHT)),
        Err(VaultError::RecordRefused(_))
    ));

    // Put back, it opens again.
    let mut restored = original;
    restored.guesses = 0;
    overwrite_entry(&vault, "alice", &restored);
    assert_eq!(
        *alice.recover(&password(RIGHT)).expect("recovers"),
        [1u8; 32]
    );
}

#[test]
fn a_client_pinned_to_another_server_key_refuses_the_vault() {
    let vault = vault();
    let other = crate::vault();
    let (genuine, credential) = account(&vault, "alice");
    let mut config = vault.client_config("alice", &credential);
    config.server_key = other.server_key.clone();
    let pinned_elsewhere = Vault::new(config).expect("client");

    // The vault cannot open the credential sealed to the other key, nor prove its answer.
    match pinned_elsewhere.register(&password(RIGHT), &[1u8; 32]) {
        Err(VaultError::VaultNotProven { pinned, .. }) => assert_eq!(pinned, other.server_key),
        other => panic!("expected the vault to be refused as unproven, got {other:?}"),
    }
    assert!(
        !genuine.status().expect("status").registered,
        "nothing was registered"
    );

    genuine
        .register(&password(RIGHT), &[1u8; 32])
        .expect("registers");
    assert!(matches!(
        pinned_elsewhere.recover(&password(RIGHT)),
        Err(VaultError::VaultNotProven { .. })
    ));
    assert_eq!(
        genuine.status().expect("status").attempts_left,
        10,
        "no guess spent"
    );
}
