//! A restart, or a crash, keeps everything.

use sealback_vault::testing::Options;
use sealback_vault_client::VaultError;

use crate::{RIGHT, WRONG, account, password, vault, vault_with};

#[test]
fn a_restart_keeps_accounts_records_guess_counts_and_the_server_key() {
    let mut vault = vault();
    let (client, _) = account(&vault, "alice");
    client
        .register(&password(RIGHT), &[4u8; 32])
        .expect("registers");
    for _ in 0..2 {
        assert!(matches!(
            client.recover(&password(WRONG)),
            Err(VaultError::WrongPassword { .. })
        ));
    }
    let key_before = vault.server_key.clone();
    vault.restart().expect("restarts");
    assert_eq!(client.status().expect("status").attempts_left, 8);
    let printed = vault.run(&["server-key"]).expect("server-key");
    assert!(String::from_utf8_lossy(&printed.stdout).contains(&key_before));
    assert_eq!(
        *client.recover(&password(RIGHT)).expect("recovers"),
        [4u8; 32]
    );

    // A crash right after a guess keeps it too.
    assert!(matches!(
        client.recover(&password(WRONG)),
        Err(VaultError::WrongPassword { .. })
    ));
    vault.kill();
    vault.restart().expect("restarts");
    assert_eq!(client.status().expect("status").attempts_left, 9);
}

#[test]
fn guesses_used_up_before_a_restart_erase_the_record_at_start() {
    let mut vault = vault_with(Options {
        guess_limit: 2,
        ..Options::default()
    });
    let (client, credential) = account(&vault, "alice");
    client
        .register(&password(RIGHT), &[4u8; 32])
        .expect("registers");
    assert!(matches!(
        client.recover(&password(WRONG)),
        Err(VaultError::WrongPassword { attempts_left: 1 })
    ));
    // The last guess is spent by a login that never finishes (a client that does not
    // report its wrong password), and the vault dies before the login expires.
    let raw = crate::raw::Raw::new(&vault);
    assert_eq!(raw.login_start("alice", Some(&credential)).status, 200);
    assert!(
        client.status().expect("status").registered,
        "the last login is still open"
    );
    vault.kill();
    vault.restart().expect("restarts");
    let status = client.status().expect("status");
    assert!(status.key_destroyed && !status.registered);
}
