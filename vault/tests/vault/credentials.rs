//! The account credential: without a valid one nothing is read or counted.

use sealback_vault_client::{Vault, VaultError};
use serde_json::json;

use crate::raw::{Raw, b64, ke1};
use crate::{RIGHT, WRONG, account, password, vault};

#[test]
fn requests_without_a_valid_credential_are_refused_and_consume_nothing() {
    let vault = vault();
    let (alice, alice_credential) = account(&vault, "alice");
    let (_bob, bob_credential) = account(&vault, "bob");
    alice
        .register(&password(RIGHT), &[1u8; 32])
        .expect("registers");
    let raw = Raw::new(&vault);
    let start = json!({ "account": "alice", "ke1": b64(&ke1()) });
    for credential in [
        None,
        Some(bob_credential.as_str()),
        Some("sbv1_forged"),
        Some(""),
    ] {
        for _ in 0..12 {
            let answer = raw.post("/v1/login/start", credential, &start);
            assert_eq!(answer.status, 401, "{answer:?}");
            assert_eq!(answer.body["error"], "unauthorized");
        }
        assert_eq!(raw.status("alice", credential).status, 401);
        assert_eq!(
            raw.post(
                "/v1/register/start",
                credential,
                &json!({"account": "alice", "request": ""})
            )
            .status,
            401
        );
        assert_eq!(
            raw.delete(
                "/v1/record",
                credential,
                &json!({"account": "alice", "login_id": "x"})
            )
            .status,
            401
        );
    }
    // An account that does not exist is refused the same way.
    assert_eq!(
        raw.login_start("nobody", Some(&alice_credential)).status,
        401
    );

    // Bob's credential with Alice's account name, through the client.
    let mut config = vault.client_config("alice", &bob_credential);
    config.account = "alice".into();
    let stranger = Vault::new(config).expect("client");
    assert!(matches!(
        stranger.recover(&password(WRONG)),
        Err(VaultError::Unauthorized)
    ));
    assert!(matches!(stranger.status(), Err(VaultError::Unauthorized)));

    let status = alice.status().expect("status");
    assert!(status.registered);
    assert_eq!(status.attempts_left, 10, "no guess was consumed");
    assert_eq!(
        *alice.recover(&password(RIGHT)).expect("recovers"),
        [1u8; 32]
    );
}

#[test]
fn reissue_replaces_the_credential_and_keeps_the_guess_count() {
    let vault = vault();
    let (alice, _) = account(&vault, "alice");
    alice
        .register(&password(RIGHT), &[1u8; 32])
        .expect("registers");
    for _ in 0..2 {
        assert!(matches!(
            alice.recover(&password(WRONG)),
            Err(VaultError::WrongPassword { .. })
        ));
    }
    let new_credential = vault.reissue("alice").expect("reissues");
    assert!(
        matches!(alice.status(), Err(VaultError::Unauthorized)),
        "the old one is gone"
    );
    let again = Vault::new(vault.client_config("alice", &new_credential)).expect("client");
    assert_eq!(
        again.status().expect("status").attempts_left,
        8,
        "the count is kept"
    );
    assert_eq!(
        *again.recover(&password(RIGHT)).expect("recovers"),
        [1u8; 32]
    );
    assert!(
        vault.add_account("alice").is_err(),
        "an account is added once"
    );
}
