//! The guess limit across vault instances while an etcd member and a vault instance die
//! (kill -9) under 64 concurrent clients (docs/vault.md §11.2).
//!
//! Half the accounts are attacked with wrong passwords, half are recovered with the right
//! one. A client whose instance fails moves to the next one with the same attempt (id and
//! KE1), as `sealback_vault_client::Vault` does, and the test checks that some did. Evaluated
//! guesses are counted from the vaults' side, independently of the counter under test: every
//! `login-start` line in the three instances' audit logs (a guess the vault granted and
//! evaluated; a repeat of an attempt is `login-repeated`), and, as a second witness covering
//! what the killed instance had not yet written to its log, every attempt for which a client
//! received a KE2.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use sealback_vault::account::AccountEntry;
use sealback_vault::store::RecordStore;
use sealback_vault::testing::Options;
use sealback_vault::testing::cluster::Fleet;
use sealback_vault::testing::light_client::{Attempt, Failure, LightClient, cheap_key_stretching};
use sealback_vault_client::protocol::wire::ErrorCode;

use crate::{audit_events, binary};

const CLIENTS: usize = 64;
const ACCOUNTS: usize = 16;
const RECOVERIES_EACH: usize = 3;
const LIMIT: usize = 10;
/// After this many attempts in all, an etcd member and a vault instance are killed.
const KILL_AFTER: usize = 96;
const DEADLINE: Duration = Duration::from_secs(240);
const RIGHT: &[u8] = b"the owner's password";
const WRONG: &[u8] = b"an attacker's guess";

fn is_victim(account: usize) -> bool {
    account.is_multiple_of(2)
}

#[test]
fn kill_an_etcd_member_and_a_vault_instance_under_64_clients() {
    let mut fleet = Fleet::start(binary(), 3, Options::default()).unwrap_or_else(|e| panic!("{e}"));
    let urls: Vec<String> = fleet.vaults.iter().map(|v| v.url.clone()).collect();
    let ksf = cheap_key_stretching();
    let clients: Vec<LightClient> = (0..ACCOUNTS)
        .map(|n| {
            let vault = &fleet.vaults[n % 3];
            let name = format!("user-{n}");
            let credential = vault.add_account(&name).expect("adds");
            let client = LightClient::new(
                &vault.url,
                &vault.ca_cert(),
                &vault.server_key,
                &name,
                &credential,
            )
            .expect("client");
            client.register(RIGHT, &ksf).expect("registers");
            client
        })
        .collect();

    let attempts = Arc::new(AtomicUsize::new(0));
    let moved = Arc::new(AtomicUsize::new(0));
    let evaluated_seen = Arc::new(Mutex::new(vec![0usize; ACCOUNTS]));
    let recovered = Arc::new(Mutex::new(vec![0usize; ACCOUNTS]));
    let (kill_now, kill_signal) = mpsc::channel::<()>();
    let started = Instant::now();
    let threads: Vec<_> = (0..CLIENTS)
        .map(|t| {
            let account = t % ACCOUNTS;
            let client = clients[account].clone();
            let urls = urls.clone();
            let (attempts, moved, evaluated_seen, recovered) = (
                attempts.clone(),
                moved.clone(),
                evaluated_seen.clone(),
                recovered.clone(),
            );
            let kill_now = kill_now.clone();
            let ksf = ksf.clone();
            std::thread::spawn(move || {
                let mut instance = t % 3;
                let mut done = 0;
                let password = if is_victim(account) { WRONG } else { RIGHT };
                while started.elapsed() < DEADLINE {
                    if attempts.fetch_add(1, Ordering::SeqCst) + 1 == KILL_AFTER {
                        let _ = kill_now.send(());
                    }
                    let tried = client.attempt_failing_over(&urls, &mut instance, password, &ksf);
                    if tried.moves > 0 {
                        moved.fetch_add(1, Ordering::SeqCst);
                    }
                    if tried.evaluated {
                        evaluated_seen.lock().expect("counts")[account] += 1;
                    }
                    let failure = match tried.attempt {
                        Attempt::Recovered => {
                            recovered.lock().expect("counts")[account] += 1;
                            done += 1;
                            if done == RECOVERIES_EACH {
                                return;
                            }
                            continue;
                        }
                        Attempt::Wrong(failure)
                        | Attempt::Unfinished(failure)
                        | Attempt::NotEvaluated(failure) => failure,
                    };
                    match failure {
                        Failure::Refused(ErrorCode::KeyDestroyed, _) if is_victim(account) => {
                            return;
                        }
                        Failure::Refused(ErrorCode::WrongPassword, _) if is_victim(account) => {}
                        // Every instance failed it at that moment (a new leader was being
                        // elected): the user tries again, a new attempt.
                        failure if failure.is_transient() => {}
                        failure => panic!("account {account}: {failure}"),
                    }
                }
                panic!(
                    "account {account}: not done within {} s",
                    DEADLINE.as_secs()
                );
            })
        })
        .collect();
    drop(kill_now);
    kill_signal.recv().expect("the clients got under way");
    fleet.cluster.kill(0);
    fleet.vaults[2].kill();
    for thread in threads {
        thread.join().expect("a client failed");
    }
    let elapsed = started.elapsed();

    // Recoveries succeed through the survivors, and no record is lost.
    let store = fleet.store().expect("store");
    let entry = |n: usize| {
        AccountEntry::from_bytes(
            &store
                .get(&format!("account/user-{n}"))
                .expect("get")
                .expect("the entry survives")
                .value,
        )
        .expect("entry")
    };
    for (n, client) in clients.iter().enumerate().filter(|(n, _)| !is_victim(*n)) {
        let entry = entry(n);
        assert!(entry.record.is_some() && !entry.destroyed, "user-{n}: kept");
        assert_eq!(
            recovered.lock().expect("counts")[n],
            RECOVERIES_EACH * CLIENTS / ACCOUNTS
        );
        for vault in &fleet.vaults[..2] {
            client
                .at(&vault.url)
                .login(RIGHT, &ksf)
                .unwrap_or_else(|err| panic!("user-{n} through {}: {err}", vault.url));
        }
    }
    // The survivors stop (writing out their audit logs); the killed one's log has what it
    // wrote before it died.
    for vault in &mut fleet.vaults[..2] {
        vault.stop();
    }
    for n in (0..ACCOUNTS).filter(|n| is_victim(*n)) {
        let entry = entry(n);
        let evaluated_in_logs: usize = fleet
            .vaults
            .iter()
            .map(|vault| audit_events(vault, &format!("user-{n}"), "login-start"))
            .sum();
        let evaluated_by_clients = evaluated_seen.lock().expect("counts")[n];
        assert!(
            entry.destroyed && entry.record.is_none(),
            "user-{n}: erased"
        );
        assert!(
            evaluated_in_logs <= LIMIT && evaluated_by_clients <= LIMIT,
            "user-{n}: {evaluated_in_logs} evaluations in the audit logs, \
             {evaluated_by_clients} answered to clients; the limit is {LIMIT}"
        );
        assert!(
            entry.spent <= LIMIT as u64,
            "user-{n}: spent {}",
            entry.spent
        );
    }
    // The failover was exercised: some attempts went on to another instance.
    let moved = moved.load(Ordering::SeqCst);
    assert!(moved > 0, "no attempt moved to another instance");
    let repeated: usize = (0..ACCOUNTS)
        .flat_map(|n| {
            fleet
                .vaults
                .iter()
                .map(move |vault| audit_events(vault, &format!("user-{n}"), "login-repeated"))
        })
        .sum();
    println!(
        "{} attempts in {:.1} s, etcd member m0 and vault instance 2 killed after \
         {KILL_AFTER}; {moved} attempts moved to another instance, {repeated} repeats \
         granted without a guess",
        attempts.load(Ordering::SeqCst),
        elapsed.as_secs_f64()
    );
}
