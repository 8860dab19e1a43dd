//! `sealback-vault init`: a new vault, or, on an etcd store another instance initialised, a
//! new instance joining it.
//!
//! A vault's identity is its OPAQUE ServerSetup (whose public key clients pin), sealed in the
//! store under the record key, and the entry key that tags every account entry. Several
//! instances serve one vault only if their tokens hold the same two keys (installed by the
//! key ceremony). Joining checks both, in the HSM, before anything is served: the record key
//! must open the stored ServerSetup (AES-GCM: no other key does), and the entry key must
//! verify the stored *entry key check*, an HMAC of a fixed label made by the first
//! instance's entry key (docs/vault.md §11.4).

use opaque_ke::ServerSetup;
use rand::rngs::OsRng;
use sealback_vault_client::format_server_key;
use sealback_vault_client::protocol::suite::Suite;

use super::StartError;
use crate::config::Config;
use crate::hsm::{Hsm, HsmError};
use crate::record::{self, SERVER_SETUP_KEY};
use crate::store::{self, RecordStore, Swap};

/// The store key of the entry key check.
pub const ENTRY_KEY_CHECK: &str = "entry-key-check";
/// What the entry key check is an HMAC of.
const ENTRY_KEY_CHECK_LABEL: &[u8] = b"sealback-vault v1 entry key check";

/// What `init` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Initialised {
    /// The server key clients pin.
    pub server_key: String,
    /// Whether this instance joined a vault another instance initialised.
    pub joined: bool,
}

/// Initialises a vault: the record key in the HSM (unless the token has it already), a new
/// OPAQUE ServerSetup sealed under it in the store, the entry key check. On an etcd store
/// that holds a ServerSetup already, joins it instead, if this token holds the same keys.
/// Refuses a SQLite store that has a ServerSetup (that vault is initialised).
pub fn init(config: &Config) -> Result<Initialised, StartError> {
    let store = store::open(config)?;
    let pin = config.hsm.pin()?;
    if let Some(sealed) = store.get(SERVER_SETUP_KEY)? {
        if config.etcd.is_none() {
            return Err(StartError::State(format!(
                "{} already holds a server setup: this vault is initialised (`sealback-vault \
                 server-key` prints its key)",
                config.store_name()
            )));
        }
        let hsm = Hsm::open(&config.hsm, &pin).map_err(|err| match err {
            HsmError::NoRecordKey => StartError::State(format!(
                "{} is initialised by another vault instance, and this token holds no record \
                 key: install that vault's record key and entry key in this token with the key \
                 ceremony (docs/vault.md §10), then run `init` again to join",
                config.store_name()
            )),
            other => StartError::Hsm(other),
        })?;
        let setup = record::open_setup(&hsm, &sealed.value).map_err(|err| {
            StartError::State(format!(
                "{} is initialised by another vault instance, but this token's record key does \
                 not open its server setup ({err}): the token holds another vault's key; \
                 install the record key of this one with the key ceremony (docs/vault.md \
                 §10)",
                config.store_name()
            ))
        })?;
        check_entry_key(config, &hsm, store.as_ref())?;
        return Ok(Initialised {
            server_key: format_server_key(&setup.keypair().public().serialize()),
            joined: true,
        });
    }
    let (hsm, created) = Hsm::open_or_create(&config.hsm, &pin)?;
    if !created {
        tracing::warn!(
            "the token already had a record key; the new server setup is sealed under it"
        );
    }
    let setup = ServerSetup::<Suite>::new(&mut OsRng);
    let sealed = record::seal_setup(&hsm, &setup)?;
    match store.compare_and_swap(SERVER_SETUP_KEY, None, Some(&sealed))? {
        Swap::Done(_) => {}
        Swap::Conflict => {
            return Err(StartError::State(
                "another `init` wrote a server setup at the same time: run `init` again to join \
                 it"
                .into(),
            ));
        }
    }
    check_entry_key(config, &hsm, store.as_ref())?;
    Ok(Initialised {
        server_key: format_server_key(&setup.keypair().public().serialize()),
        joined: false,
    })
}

/// Checks that the token's entry key is the one the store's entries are tagged with (the
/// store's entry key check verifies in the HSM); writes the check if the store has none
/// yet (a new vault, or one initialised before the check existed).
pub(super) fn check_entry_key(
    config: &Config,
    hsm: &Hsm,
    store: &dyn RecordStore,
) -> Result<(), StartError> {
    loop {
        match store.get(ENTRY_KEY_CHECK)? {
            Some(check) => {
                return hsm
                    .check_mac(ENTRY_KEY_CHECK_LABEL, &check.value)
                    .map_err(|err| {
                        StartError::State(format!(
                            "this token's entry key is not the one the entries in {} are tagged \
                             with (its entry key check does not verify: {err}); every entry \
                             would be refused. Install the vault's entry key in this token with \
                             the key ceremony (docs/vault.md §10)",
                            config.store_name()
                        ))
                    });
            }
            None => {
                let check = hsm.mac(ENTRY_KEY_CHECK_LABEL)?;
                if let Swap::Done(_) =
                    store.compare_and_swap(ENTRY_KEY_CHECK, None, Some(&check))?
                {
                    return Ok(());
                }
                // Another instance wrote it meanwhile: check that one.
            }
        }
    }
}
