//! The guess check as an interface (docs/vault.md §1): the host check keeps the contract
//! every implementation must keep, and the vault evaluates passwords only through it.
//!
//! Both run the vault's library in this process on a test vault's token. SoftHSM2 reads its
//! configuration from `SOFTHSM2_CONF` when the module loads, so each test runs again in a
//! child process with it set (`in_child`).

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use opaque_ke::{ClientLogin, ClientLoginFinishParameters, CredentialResponse};
use rand::rngs::OsRng;
use sealback_vault::account::{AccountEntry, Attempt, StoredRecord};
use sealback_vault::config::Config;
use sealback_vault::hsm::{Hsm, HsmError};
use sealback_vault::keyvault::check::{
    Evaluation, GuessCheck, HostCheck, Opened, Pending, Proof, Spend, contract,
};
use sealback_vault::keyvault::{KeyVault, Refusal, accounts};
use sealback_vault::record::RecordError;
use sealback_vault::store::SqliteStore;
use sealback_vault_client::protocol::suite::{CONTEXT, Suite, identifiers};
use sealback_vault_client::protocol::wire::{
    ErrorCode, LoginFinish, LoginStart, RegisterFinish, RegisterStart,
};

use super::vault;

const CONFIG: &str = "SEALBACK_CHECK_TEST_CONFIG";

/// Runs the test `name` of this module again in a child process on a fresh test vault's
/// token and configuration (the vault itself stopped), and fails if the child fails.
/// `Some` with the configuration's path when called in that child.
fn in_child(name: &str) -> Option<PathBuf> {
    in_child_with(&format!("check::{name}"), vault)
}

/// [`in_child`] for the test at `path` (`module::name`), on the vault `make` starts.
pub(crate) fn in_child_with(
    path: &str,
    make: impl FnOnce() -> sealback_vault::testing::TestVault,
) -> Option<PathBuf> {
    if let Some(config) = std::env::var_os(CONFIG) {
        return Some(PathBuf::from(config));
    }
    let mut vault = make();
    vault.stop();
    let output = Command::new(std::env::current_exe().expect("the test binary"))
        .args(["--exact", path, "--nocapture"])
        .env(CONFIG, vault.config_path())
        .env("SOFTHSM2_CONF", vault.dir().join("softhsm2.conf"))
        .output()
        .expect("runs the test binary");
    let text = String::from_utf8_lossy(&output.stdout).to_string()
        + &String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "the child test failed:\n{text}");
    assert!(text.contains("1 passed"), "the child ran no test:\n{text}");
    None
}

/// The vault of `config` with the host check wrapped by `wrap`.
fn open_with(config: &Config, wrap: impl FnOnce(HostCheck) -> Box<dyn GuessCheck>) -> KeyVault {
    let pin = config.hsm.pin().expect("the PIN");
    let hsm = Hsm::open(&config.hsm, &pin).expect("opens the token");
    let store = Arc::new(SqliteStore::open(&config.store).expect("opens the store"));
    KeyVault::with_check(config, hsm, store, |hsm, setup| {
        Ok(wrap(HostCheck::new(hsm, setup, config.guess_limit)?))
    })
    .unwrap_or_else(|err| panic!("{err}"))
}

#[test]
fn the_host_check_keeps_the_contract() {
    let Some(path) = in_child("the_host_check_keeps_the_contract") else {
        return;
    };
    let config = Config::load(&path).expect("the configuration");
    let mut result = None;
    open_with(&config, |check| {
        result = Some(contract::run(&check));
        Box::new(check)
    });
    let result = result.expect("the contract ran");
    result.unwrap_or_else(|broken| panic!("{broken}"));
}

/// Forwards to the host check, counting the passwords it evaluates and the proofs it checks.
struct Counting {
    inner: HostCheck,
    evaluated: Arc<AtomicUsize>,
    proven: Arc<AtomicUsize>,
}

impl GuessCheck for Counting {
    fn limit(&self) -> u32 {
        self.inner.limit()
    }
    fn spend(&self, entry: &mut AccountEntry, attempt: Option<&Attempt>) -> Result<Spend, Refusal> {
        self.inner.spend(entry, attempt)
    }
    fn reset(&self, entry: &mut AccountEntry, version: u64) -> Result<(), Refusal> {
        self.inner.reset(entry, version)
    }
    fn erase_if_exhausted(&self, entry: &mut AccountEntry) -> Option<Option<u64>> {
        self.inner.erase_if_exhausted(entry)
    }
    fn seal_entry(&self, account: &str, entry: &mut AccountEntry) -> Result<(), HsmError> {
        self.inner.seal_entry(account, entry)
    }
    fn verify_entry(&self, account: &str, entry: &AccountEntry) -> Result<(), HsmError> {
        self.inner.verify_entry(account, entry)
    }
    fn open(&self, account: &str, record: Option<&StoredRecord>) -> Result<Opened, RecordError> {
        self.inner.open(account, record)
    }
    fn evaluate(&self, account: &str, opened: Opened, ke1: &[u8]) -> Result<Evaluation, Refusal> {
        self.evaluated.fetch_add(1, Ordering::SeqCst);
        self.inner.evaluate(account, opened, ke1)
    }
    fn reserve_version(&self, entry: &mut AccountEntry) -> u64 {
        self.inner.reserve_version(entry)
    }
    fn register(&self, account: &str, version: u64, request: &[u8]) -> Result<Vec<u8>, Refusal> {
        self.inner.register(account, version, request)
    }
    fn delete(&self, entry: &mut AccountEntry, version: u64) -> Result<(), Refusal> {
        self.inner.delete(entry, version)
    }
    fn seal_record(
        &self,
        account: &str,
        version: u64,
        upload: &[u8],
        sealed_key: &[u8],
    ) -> Result<StoredRecord, Refusal> {
        self.inner.seal_record(account, version, upload, sealed_key)
    }
    fn install(&self, entry: &mut AccountEntry, record: StoredRecord) -> Result<bool, Refusal> {
        self.inner.install(entry, record)
    }
    fn prove(&self, account: &str, pending: Pending, login_id: &str, ke3: &[u8]) -> Option<Proof> {
        self.proven.fetch_add(1, Ordering::SeqCst);
        self.inner.prove(account, pending, login_id, ke3)
    }
}

const ACCOUNT: &str = "alice";

fn register(vault: &KeyVault, credential: &str, password: &[u8]) {
    let cheap = contract::cheap().expect("argon2");
    let (upload, sealed_key, record_version) =
        contract::client_registration(ACCOUNT, password, &[9; 32], &cheap, |request| {
            let answer = vault
                .register_start(
                    credential,
                    &RegisterStart {
                        account: ACCOUNT.into(),
                        request: request.to_vec(),
                    },
                )
                .map_err(|refusal| refusal.message)?;
            Ok((answer.response, answer.record_version))
        })
        .expect("registers");
    vault
        .register_finish(
            credential,
            &RegisterFinish {
                account: ACCOUNT.into(),
                record_version,
                upload,
                sealed_key,
            },
        )
        .expect("register/finish");
}

/// One login with `password`: the error code it ends with, if any.
fn login(vault: &KeyVault, credential: &str, password: &[u8]) -> Option<ErrorCode> {
    let ksf = contract::cheap().expect("argon2");
    let start = ClientLogin::<Suite>::start(&mut OsRng, password).expect("starts");
    let request = LoginStart {
        account: ACCOUNT.into(),
        ke1: start.message.serialize().to_vec(),
        attempt_id: None,
    };
    let answer = match vault.login_start(credential, &request) {
        Ok(answer) => answer,
        Err(refusal) => return Some(refusal.code),
    };
    let ke2 = CredentialResponse::<Suite>::deserialize(&answer.ke2).expect("KE2");
    let ke3 = start
        .state
        .finish(
            &mut OsRng,
            password,
            ke2,
            ClientLoginFinishParameters::new(Some(CONTEXT), identifiers(ACCOUNT), Some(&ksf)),
        )
        .map(|finish| finish.message.serialize().to_vec())
        .unwrap_or_default();
    let finish = LoginFinish {
        account: ACCOUNT.into(),
        login_id: answer.login_id,
        ke3,
    };
    vault
        .login_finish(credential, &finish)
        .err()
        .map(|r| r.code)
}

#[test]
fn the_vault_evaluates_passwords_only_through_its_check() {
    let Some(path) = in_child("the_vault_evaluates_passwords_only_through_its_check") else {
        return;
    };
    let config = Config::load(&path).expect("the configuration");
    let limit = config.guess_limit as usize;
    let (evaluated, proven) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let vault = open_with(&config, |inner| {
        Box::new(Counting {
            inner,
            evaluated: evaluated.clone(),
            proven: proven.clone(),
        })
    });
    let store = SqliteStore::open(&config.store).expect("opens the store");
    let credential = accounts::add(&store, ACCOUNT).expect("adds the account");
    register(&vault, &credential, b"right");
    assert_eq!(
        login(&vault, &credential, b"right"),
        None,
        "the right password"
    );
    assert_eq!(evaluated.load(Ordering::SeqCst), 1);

    // 64 wrong guesses at once: the check evaluates exactly the limit's worth.
    evaluated.store(0, Ordering::SeqCst);
    proven.store(0, Ordering::SeqCst);
    let outcomes: Vec<Option<ErrorCode>> = std::thread::scope(|scope| {
        let logins: Vec<_> = (0..64)
            .map(|_| scope.spawn(|| login(&vault, &credential, b"wrong")))
            .collect();
        logins
            .into_iter()
            .map(|l| l.join().expect("joins"))
            .collect()
    });
    assert_eq!(evaluated.load(Ordering::SeqCst), limit, "{outcomes:?}");
    assert_eq!(proven.load(Ordering::SeqCst), limit, "{outcomes:?}");
    let wrong = outcomes
        .iter()
        .filter(|o| **o == Some(ErrorCode::WrongPassword))
        .count();
    // The last guess answers `key-destroyed` if its own failure erased the key, and
    // `wrong-password` (0 left) if a later guess found the limit first and erased it.
    assert!((limit - 1..=limit).contains(&wrong), "{outcomes:?}");
    assert!(outcomes.iter().all(|o| matches!(
        o,
        Some(ErrorCode::WrongPassword | ErrorCode::KeyDestroyed | ErrorCode::Busy)
    )));
    // The key is gone: the right password now evaluates nothing.
    assert_eq!(
        login(&vault, &credential, b"right"),
        Some(ErrorCode::KeyDestroyed)
    );
    assert_eq!(evaluated.load(Ordering::SeqCst), limit);
    vault.close();
}
