//! The guess limit: counted before any answer, exact under concurrency, and final.

use std::sync::{Arc, Barrier};

use sealback_vault::testing::Options;
use sealback_vault_client::VaultError;
use serde_json::json;

use crate::raw::{Raw, b64, eventually, ke1, send_and_hang_up};
use crate::{RIGHT, WRONG, account, audit_events, password, stored_entry, vault, vault_with};

#[test]
fn ten_wrong_passwords_destroy_the_key_even_for_the_right_password() {
    let vault = vault();
    let (client, _) = account(&vault, "alice");
    client
        .register(&password(RIGHT), &[9u8; 32])
        .expect("registers");
    let sealed = stored_entry(&vault, "alice")
        .record
        .expect("a record")
        .sealed;

    for left in (1..10).rev() {
        match client.recover(&password(WRONG)) {
            Err(VaultError::WrongPassword { attempts_left }) => assert_eq!(attempts_left, left),
            other => panic!("expected a wrong password, got {:?}", other.map(|_| ())),
        }
    }
    // The tenth wrong password erases the key at once, and the user is told so.
    match client.recover(&password(WRONG)) {
        Err(VaultError::KeyDestroyed) => {}
        other => panic!("expected the key erased, got {:?}", other.map(|_| ())),
    }
    let status = client.status().expect("status");
    assert!(status.key_destroyed && !status.registered, "{status:?}");
    // The audit log is written by its own thread, after the answer.
    eventually("the erase is logged", || {
        audit_events(&vault, "alice", "erase") == 1
    });
    assert!(matches!(
        client.recover(&password(RIGHT)),
        Err(VaultError::KeyDestroyed)
    ));
    assert!(matches!(
        client.recover(&password(RIGHT)),
        Err(VaultError::KeyDestroyed)
    ));
    let status = client.status().expect("status");
    assert!(status.key_destroyed && !status.registered);
    assert_eq!(status.attempts_left, 0);

    // The record is gone from the store, and its sealed bytes from the store's files.
    let entry = stored_entry(&vault, "alice");
    assert!(entry.record.is_none() && entry.destroyed);
    for file in ["records.db", "records.db-wal"] {
        let bytes = std::fs::read(vault.dir().join(file)).unwrap_or_default();
        let text = String::from_utf8_lossy(&bytes);
        assert!(
            !text.contains(&crate::raw::b64(&sealed)[..40])
                && !bytes.windows(40).any(|w| w == &sealed[..40]),
            "{file} still holds the erased record"
        );
    }
    assert_eq!(audit_events(&vault, "alice", "erase"), 1);

    // A new registration starts over with a new key.
    client
        .register(&password(RIGHT), &[10u8; 32])
        .expect("registers anew");
    assert_eq!(
        *client.recover(&password(RIGHT)).expect("recovers"),
        [10u8; 32]
    );
}

#[test]
fn sixty_four_concurrent_wrong_guesses_get_exactly_ten_evaluations() {
    let mut vault = vault();
    let (client, _) = account(&vault, "alice");
    client
        .register(&password(RIGHT), &[9u8; 32])
        .expect("registers");
    let client = Arc::new(client);
    let barrier = Arc::new(Barrier::new(64));
    let outcomes: Vec<_> = (0..64)
        .map(|_| {
            let client = client.clone();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                client.recover(&password(WRONG)).map(|_| ())
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|thread| thread.join().expect("thread"))
        .collect();
    let wrong = outcomes
        .iter()
        .filter(|o| matches!(o, Err(VaultError::WrongPassword { .. })))
        .count();
    let destroyed = outcomes
        .iter()
        .filter(|o| matches!(o, Err(VaultError::KeyDestroyed)))
        .count();
    // Logins past the account's 16 in progress are answered busy before a guess is spent.
    let busy = outcomes
        .iter()
        .filter(|o| matches!(o, Err(VaultError::Server(message)) if message.contains("logins in progress")))
        .count();
    assert_eq!(wrong, 10, "{outcomes:?}");
    assert_eq!(wrong + destroyed + busy, 64, "{outcomes:?}");
    assert!(matches!(
        client.recover(&password(RIGHT)),
        Err(VaultError::KeyDestroyed)
    ));
    assert!(stored_entry(&vault, "alice").record.is_none());
    vault.stop();
    assert_eq!(
        audit_events(&vault, "alice", "login-start"),
        10,
        "guesses evaluated"
    );
}

#[test]
fn a_guess_whose_connection_is_dropped_after_the_first_message_still_counts() {
    let vault = vault();
    let (client, credential) = account(&vault, "alice");
    client
        .register(&password(RIGHT), &[9u8; 32])
        .expect("registers");
    let raw = Raw::new(&vault);
    for n in 1..=3u32 {
        send_and_hang_up(
            &vault,
            "/v1/login/start",
            &credential,
            &json!({ "account": "alice", "ke1": b64(&ke1()) }),
        );
        eventually("the dropped guess is counted", || {
            raw.status("alice", Some(&credential)).body["attempts_left"] == json!(10 - n)
        });
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(client.status().expect("status").attempts_left, 7);
}

#[test]
fn the_limit_is_configurable_and_an_unfinished_last_guess_erases_when_it_expires() {
    let vault = vault_with(Options {
        guess_limit: 3,
        login_expiry_secs: 1,
        ..Options::default()
    });
    let (client, credential) = account(&vault, "alice");
    client
        .register(&password(RIGHT), &[9u8; 32])
        .expect("registers");
    assert_eq!(client.status().expect("status").attempts_left, 3);
    let raw = Raw::new(&vault);
    for _ in 0..3 {
        assert_eq!(raw.login_start("alice", Some(&credential)).status, 200);
    }
    // The last guess was granted and never finished: when it expires, the key goes.
    eventually("the record is erased", || {
        client.status().is_ok_and(|s| s.key_destroyed)
    });
    // Each spent guess has its outcome in the audit log: these three were abandoned.
    eventually("the abandoned guesses are audited", || {
        audit_events(&vault, "alice", "login-abandoned") == 3
    });
    assert_eq!(audit_events(&vault, "alice", "login-failure"), 0);
    assert!(matches!(
        client.recover(&password(RIGHT)),
        Err(VaultError::KeyDestroyed)
    ));
}

#[test]
fn every_spent_guess_has_its_outcome_in_the_audit_log() {
    let mut vault = vault();
    let (client, credential) = crate::registered(&vault, "alice", [9u8; 32]);
    for _ in 0..2 {
        assert!(matches!(
            client.recover(&password(WRONG)),
            Err(VaultError::WrongPassword { .. })
        ));
    }
    client.recover(&password(RIGHT)).expect("recovers");
    // A login started and left open when the vault stops is abandoned.
    let raw = Raw::new(&vault);
    assert_eq!(raw.login_start("alice", Some(&credential)).status, 200);
    vault.stop();
    for (kind, count) in [
        ("login-start", 4),
        ("login-failure", 2),
        ("login-success", 1),
        ("login-abandoned", 1),
    ] {
        assert_eq!(audit_events(&vault, "alice", kind), count, "{kind}");
    }
}

#[test]
fn a_malformed_ke1_is_refused_before_its_guess_is_spent() {
    let vault = vault();
    let (client, credential) = crate::registered(&vault, "alice", [9u8; 32]);
    let raw = Raw::new(&vault);
    for _ in 0..12 {
        let answer = raw.post(
            "/v1/login/start",
            Some(&credential),
            &json!({ "account": "alice", "ke1": b64(b"not a KE1 at all") }),
        );
        assert_eq!(answer.status, 400, "{:?}", answer.body);
    }
    assert_eq!(client.status().expect("status").attempts_left, 10);
    assert_eq!(audit_events(&vault, "alice", "login-start"), 0);
    client.recover(&password(RIGHT)).expect("recovers");
}

#[test]
fn logins_past_the_accounts_bound_are_busy_before_a_guess_is_spent() {
    let vault = vault_with(Options {
        guess_limit: 40,
        ..Options::default()
    });
    let (client, credential) = crate::registered(&vault, "alice", [9u8; 32]);
    let raw = Arc::new(Raw::new(&vault));
    let starting = Arc::new(Barrier::new(32));
    let statuses: Vec<u16> = (0..32)
        .map(|_| {
            let (raw, starting, credential) = (raw.clone(), starting.clone(), credential.clone());
            std::thread::spawn(move || {
                starting.wait();
                raw.login_start("alice", Some(&credential)).status
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|thread| thread.join().expect("a client"))
        .collect();
    let granted = statuses.iter().filter(|&&status| status == 200).count();
    let busy = statuses.iter().filter(|&&status| status == 503).count();
    assert_eq!(
        (granted, busy),
        (sealback_vault::logins::MAX_LOGINS_PER_ACCOUNT, 32 - granted),
        "{statuses:?}"
    );
    // Only the logins that were answered spent a guess.
    assert_eq!(
        client.status().expect("status").attempts_left,
        40 - granted as u32
    );
    eventually("the starts are audited", || {
        audit_events(&vault, "alice", "login-start") == granted
    });
}

#[test]
fn server_key_beside_a_serving_vault_writes_nothing_and_erases_nothing() {
    let vault = vault();
    let (client, credential) = crate::registered(&vault, "alice", [9u8; 32]);
    let raw = Raw::new(&vault);
    // All ten guesses spent, the last login still in progress: the serving vault erases the
    // record only if that login fails or expires.
    for _ in 0..10 {
        assert_eq!(raw.login_start("alice", Some(&credential)).status, 200);
    }
    eventually("the starts are audited", || {
        audit_events(&vault, "alice", "login-start") == 10
    });
    let log = std::fs::read(vault.audit_path()).expect("audit log");
    let output = vault
        .run(&["server-key"])
        .unwrap_or_else(|err| panic!("{err}"));
    assert!(
        String::from_utf8_lossy(&output.stdout).contains(&vault.server_key),
        "prints the key"
    );
    assert_eq!(
        std::fs::read(vault.audit_path()).expect("audit log"),
        log,
        "server-key wrote to the serving vault's audit log"
    );
    assert!(stored_entry(&vault, "alice").record.is_some(), "erased");
    assert!(!client.status().expect("status").key_destroyed);
}
