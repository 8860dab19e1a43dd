//! One vault, two instances (two SoftHSM2 tokens holding the same keys by the key ceremony,
//! one store): a client whose first instance is down goes on to the second, and a login whose
//! answer is lost after the vault evaluated it is tried again on the other instance for one
//! guess, not two (docs/vault.md §7.2, §10).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use sealback_vault::testing::{Options, TestVault};
use sealback_vault_client::protocol::wire::path;
use sealback_vault_client::{Vault, VaultError};

use crate::relay::{Upstream, serve_https};
use crate::{RIGHT, WRONG, audit_events, password, registered, stored_entry};

/// Two instances of one vault.
fn pair() -> (TestVault, TestVault) {
    let options = Options {
        transportable_keys: true,
        ..Options::default()
    };
    let a = TestVault::start_with(crate::binary(), options).unwrap_or_else(|err| panic!("{err}"));
    let b = a.start_peer().unwrap_or_else(|err| panic!("{err}"));
    (a, b)
}

/// A client of `account` on `vault` that tries `urls` in order.
fn client(vault: &TestVault, urls: &[&str], account: &str, credential: &str) -> Vault {
    let mut config = vault.client_config(account, credential);
    config.urls = urls.iter().map(|url| url.to_string()).collect();
    Vault::new(config).expect("client")
}

/// Relays to one instance faithfully, except that the answer to the first request for `lost`
/// is dropped after the instance gave it: the connection is cut, as a network failure would.
struct LossyRelay {
    url: String,
    lost: Arc<AtomicBool>,
}

impl LossyRelay {
    fn start(instance: &TestVault, lost: &'static str) -> LossyRelay {
        let upstream = Upstream::new(instance, None);
        let dropped = Arc::new(AtomicBool::new(false));
        let relay_dropped = dropped.clone();
        let url = serve_https(instance, move |request| {
            let answer = upstream.send(request, request.authorization.as_deref());
            let path = request.target.split('?').next().unwrap_or_default();
            // The instance answered; the first time, the client never hears it.
            let cut = path == lost && !relay_dropped.swap(true, Ordering::SeqCst);
            (!cut).then_some(answer)
        });
        LossyRelay { url, lost: dropped }
    }

    fn lost_an_answer(&self) -> bool {
        self.lost.load(Ordering::SeqCst)
    }
}

#[test]
fn a_client_whose_first_instance_is_down_goes_on_to_the_second() {
    let (mut a, b) = pair();
    let (_, credential) = registered(&a, "alice", [9; 32]);
    let first = a.url.clone();
    a.kill();
    let vault = client(&b, &[&first, &b.url], "alice", &credential);
    let key = vault.recover(&password(RIGHT)).expect("recovers through b");
    assert_eq!(*key, [9; 32]);
    vault
        .register(&password(RIGHT), &[10; 32])
        .expect("registers through b");
    assert_eq!(*vault.recover(&password(RIGHT)).expect("again"), [10; 32]);
    // A wrong password through the second instance is one guess, as on one vault.
    let wrong = vault.recover(&password(WRONG)).expect_err("wrong");
    assert!(
        matches!(wrong, VaultError::WrongPassword { attempts_left: 9 }),
        "{wrong}"
    );

    // No instance up: the error names what was tried.
    let nowhere = client(&b, &[&first], "alice", &credential);
    let err = nowhere.status().expect_err("nothing answers");
    assert!(
        matches!(&err, VaultError::Transport(text) if text.contains(&first)),
        "{err}"
    );
}

#[test]
fn a_login_whose_finish_answer_is_lost_costs_one_guess_on_the_other_instance() {
    let (a, b) = pair();
    let (_, credential) = registered(&a, "alice", [9; 32]);
    let relay = LossyRelay::start(&a, path::LOGIN_FINISH);
    let vault = client(&a, &[&relay.url, &b.url], "alice", &credential);
    let key = vault.recover(&password(RIGHT)).expect("recovers through b");
    assert_eq!(*key, [9; 32]);
    assert!(relay.lost_an_answer(), "the relay cut no answer");
    // a evaluated the login and released the key (its answer was lost); b answered the
    // same attempt again.
    assert_eq!(audit_events(&a, "alice", "login-success"), 1);
    assert_eq!(audit_events(&b, "alice", "login-repeated"), 1);
    assert_eq!(audit_events(&b, "alice", "login-start"), 0);
    assert_eq!(stored_entry(&a, "alice").spent, 1, "one login, one guess");
}

#[test]
fn a_wrong_password_whose_answer_is_lost_costs_one_guess_on_the_other_instance() {
    let (a, b) = pair();
    let (_, credential) = registered(&a, "alice", [9; 32]);
    let relay = LossyRelay::start(&a, path::LOGIN_START);
    let vault = client(&a, &[&relay.url, &b.url], "alice", &credential);
    let wrong = vault.recover(&password(WRONG)).expect_err("wrong");
    assert!(relay.lost_an_answer(), "the relay cut no answer");
    assert!(
        matches!(wrong, VaultError::WrongPassword { attempts_left: 9 }),
        "{wrong}"
    );
    assert_eq!(vault.status().expect("status").attempts_left, 9);
    assert_eq!(stored_entry(&a, "alice").spent, 1, "one login, one guess");
}

#[test]
fn a_login_whose_instance_restarted_before_its_finish_is_started_again_for_no_second_guess() {
    let vault = Arc::new(Mutex::new(crate::vault()));
    let (_, credential) = registered(&vault.lock().expect("vault"), "alice", [9; 32]);
    // A relay that restarts the instance when the first login/finish reaches it: the
    // restarted instance no longer knows the login its start began.
    let restarted = Arc::new(AtomicBool::new(false));
    let (relay_vault, relay_restarted) = (vault.clone(), restarted.clone());
    let url = serve_https(&vault.lock().expect("vault"), move |request| {
        let mut instance = relay_vault.lock().expect("vault");
        let path = request.target.split('?').next().unwrap_or_default();
        if path == path::LOGIN_FINISH && !relay_restarted.swap(true, Ordering::SeqCst) {
            instance.restart().expect("restarts");
        }
        // A new connection: the old one went with the process.
        Some(Upstream::new(&instance, None).send(request, request.authorization.as_deref()))
    });
    // The relay takes the lock: the test holds it only while it reads the vault.
    let client = client(&vault.lock().expect("vault"), &[&url], "alice", &credential);
    let key = client
        .recover(&password(RIGHT))
        .expect("recovers through the restarted instance");
    assert_eq!(*key, [9; 32]);
    let vault = vault.lock().expect("vault");
    assert!(
        restarted.load(Ordering::SeqCst),
        "the relay restarted nothing"
    );
    // The second login/start was the same attempt: granted without a guess.
    assert_eq!(audit_events(&vault, "alice", "login-start"), 1);
    assert_eq!(audit_events(&vault, "alice", "login-repeated"), 1);
    assert_eq!(
        stored_entry(&vault, "alice").spent,
        1,
        "one login, one guess"
    );
}
