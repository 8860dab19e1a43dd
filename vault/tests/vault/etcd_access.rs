//! TLS and authentication to etcd (docs/vault.md §11.1): `[etcd] ca_cert`, `cert`, `key`,
//! `username` and `password_file`, against a real cluster that requires them.

use std::time::Duration;

use sealback_vault::store::EtcdStore;
use sealback_vault::testing::Options;
use sealback_vault::testing::cluster::{EtcdCluster, Fleet, PREFIX, Security};
use sealback_vault_client::Vault;

use crate::instances::register_on_one_recover_through_another;
use crate::{RIGHT, binary, password};

fn fleet_on(security: Security) -> Fleet {
    let cluster = EtcdCluster::start_with(3, security).unwrap_or_else(|err| panic!("{err}"));
    Fleet::start_on(cluster, binary(), 3, Options::default()).unwrap_or_else(|err| panic!("{err}"))
}

#[test]
fn register_on_one_instance_recover_through_another_over_tls_with_a_client_certificate() {
    let fleet = fleet_on(Security {
        tls: true,
        ..Security::default()
    });
    assert!(
        fleet
            .cluster
            .endpoints()
            .iter()
            .all(|url| url.starts_with("https://"))
    );
    register_on_one_recover_through_another(&fleet);

    // etcd asks for the client certificate: without it the vault is not let in.
    let mut without = fleet.cluster.config(PREFIX);
    (without.cert, without.key) = (None, None);
    assert!(EtcdStore::open(&without).is_err());
}

/// etcd's auth tokens live this long when unused (`--auth-token-ttl`; etcd's default is 300).
const TOKEN_TTL_SECS: u64 = 2;

/// A fleet on a cluster with authentication on and tokens living `ttl` seconds, Alice
/// registered through instance 0, and her credential.
fn fleet_with_auth(ttl: u64) -> (Fleet, String) {
    let fleet = fleet_on(Security {
        auth_token_ttl: Some(ttl),
        ..Security::default()
    });
    // The vault's etcd user may touch its prefix only: authentication is really on.
    let err = EtcdStore::open(&fleet.cluster.config("/elsewhere/"))
        .err()
        .expect("outside the vault's prefix");
    assert!(err.to_string().contains("permission denied"), "{err}");
    let credential = fleet.vaults[0].add_account("alice").expect("adds");
    alice(&fleet, 0, &credential)
        .register(&password(RIGHT), &[5u8; 32])
        .expect("registers");
    (fleet, credential.to_string())
}

fn alice(fleet: &Fleet, i: usize, credential: &str) -> Vault {
    Vault::new(fleet.vaults[i].client_config("alice", credential)).expect("client")
}

fn recover_through_each(fleet: &Fleet, credential: &str, when: &str) {
    for i in 0..fleet.vaults.len() {
        match alice(fleet, i, credential).recover(&password(RIGHT)) {
            Ok(key) => assert_eq!(*key, [5u8; 32]),
            Err(err) => panic!("{when}: instance {i}: {err}"),
        }
    }
}

#[test]
fn the_vault_stays_logged_in_to_etcd_past_its_token_lifetime() {
    let (fleet, credential) = fleet_with_auth(TOKEN_TTL_SECS);
    // An instance talks to one member at a time and moves on when one fails: after four
    // pauses past the token lifetime, every member's token of every instance has expired
    // at least once while the instance held it.
    for round in 0..4 {
        std::thread::sleep(Duration::from_millis(TOKEN_TTL_SECS * 1000 + 1500));
        recover_through_each(&fleet, &credential, &format!("after idle pause {round}"));
    }
}

#[test]
fn the_vault_stays_logged_in_to_etcd_when_members_restart() {
    // Tokens that do not expire during the test: only the restarts invalidate them.
    let (mut fleet, credential) = fleet_with_auth(300);
    recover_through_each(&fleet, &credential, "before any restart");
    // A restarted member has forgotten every token it gave out.
    for member in 0..3 {
        fleet.cluster.restart(member).expect("restarts");
        recover_through_each(
            &fleet,
            &credential,
            &format!("after member m{member} restarted"),
        );
    }
}
