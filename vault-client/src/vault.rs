//! [`Vault`]: the operations the daemon calls, each one OPAQUE exchange or two.

use opaque_ke::errors::ProtocolError;
use opaque_ke::{
    ClientLogin, ClientLoginFinishParameters, ClientRegistration,
    ClientRegistrationFinishParameters, CredentialResponse, RegistrationResponse,
};
use rand::RngCore as _;
use rand::rngs::OsRng;
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, Zeroizing};

use crate::config::{SERVER_KEY_LEN, format_server_key, parse_server_key};
use crate::failover::Instances;
use crate::protocol::suite::{CONTEXT, Suite, identifiers, key_stretching};
use crate::protocol::wire::{
    DeleteRecord, Done, ErrorAnswer, ErrorCode, LoginFinish, LoginFinishAnswer, LoginStart,
    LoginStartAnswer, RegisterFinish, RegisterStart, RegisterStartAnswer, ServerKeyAnswer,
    StatusAnswer, path,
};
use crate::protocol::{check_account_name, sealed_key, transfer};
use crate::transport::{Transport, error_of};
use crate::{Password, VaultConfig, VaultError};

/// What the vault says about the account's record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordStatus {
    /// The account has a backup key in the vault.
    pub registered: bool,
    /// Wrong passwords the vault still accepts before it erases the key.
    pub attempts_left: u32,
    /// The vault erased the account's key after too many wrong passwords (a new
    /// registration starts over).
    pub key_destroyed: bool,
}

/// A client of one vault account. `Send + Sync`; every method blocks (call it from a
/// blocking thread, e.g. tokio's `spawn_blocking`).
pub struct Vault {
    instances: Instances,
    account: String,
    server_key: [u8; SERVER_KEY_LEN],
}

/// A login that proved the password: the keys it produced, zeroized on drop.
struct Login {
    login_id: String,
    key: Zeroizing<[u8; 32]>,
}

impl Vault {
    /// Checks the configuration and reads the CA file; nothing is sent yet.
    pub fn new(config: VaultConfig) -> Result<Vault, VaultError> {
        let server_key = parse_server_key(&config.server_key)?;
        check_account_name(&config.account).map_err(VaultError::Config)?;
        if config.urls.is_empty() {
            return Err(VaultError::Config(
                "no vault URL: give `url` or `urls`".into(),
            ));
        }
        if let Some(url) = config.urls.iter().find(|url| !url.starts_with("https://")) {
            return Err(VaultError::Config(format!(
                "the vault URL {url:?} must start with https://"
            )));
        }
        let ca = match &config.ca_cert {
            None => None,
            Some(path) => {
                let pem = std::fs::read(path).map_err(|err| {
                    VaultError::Config(format!("cannot read ca_cert {}: {err}", path.display()))
                })?;
                let certificates = reqwest::Certificate::from_pem_bundle(&pem)
                    .ok()
                    .filter(|certificates| !certificates.is_empty())
                    .ok_or_else(|| {
                        VaultError::Config(format!(
                            "ca_cert {}: no PEM certificate in it (it should hold the CA \
                             certificate, -----BEGIN CERTIFICATE-----)",
                            path.display()
                        ))
                    })?;
                Some(certificates)
            }
        };
        let transports = config
            .urls
            .iter()
            .map(|url| Transport::new(url, config.credential.clone(), server_key, ca.clone()))
            .collect();
        Ok(Vault {
            instances: Instances::new(transports),
            account: config.account,
            server_key,
        })
    }

    /// Registers `key` under `password`, replacing any key the account had (that one is then
    /// gone from the vault). The guess count starts over. The upload and the sealed key are
    /// sent only after the vault proved it holds the pinned key by answering this
    /// registration's first message ([`crate::protocol::vault_proof`]); any other server is
    /// refused with [`VaultError::VaultNotProven`].
    pub fn register(&self, password: &Password, key: &[u8; 32]) -> Result<(), VaultError> {
        self.check_server_key()?;
        let mut rng = OsRng;
        let secret = password.expose_secret().as_bytes();
        let start = ClientRegistration::<Suite>::start(&mut rng, secret).map_err(protocol)?;
        let request = RegisterStart {
            account: self.account.clone(),
            request: start.message.serialize().to_vec(),
        };
        let answer: RegisterStartAnswer = self
            .instances
            .run(|vault| vault.post(path::REGISTER_START, &request))?;
        let response = RegistrationResponse::<Suite>::deserialize(&answer.response)
            .map_err(|err| VaultError::Protocol(format!("registration response: {err}")))?;
        let ksf = key_stretching();
        let mut finish = start
            .state
            .finish(
                &mut rng,
                secret,
                response,
                ClientRegistrationFinishParameters::new(identifiers(&self.account), Some(&ksf)),
            )
            .map_err(protocol)?;
        self.check_pinned(&finish.server_s_pk.serialize())?;
        let sealed = sealed_key::seal(
            &finish.export_key,
            &self.account,
            answer.record_version,
            key,
        );
        finish.export_key.as_mut_slice().zeroize();
        let request = RegisterFinish {
            account: self.account.clone(),
            record_version: answer.record_version,
            upload: finish.message.serialize().to_vec(),
            sealed_key: sealed,
        };
        // Any instance: they share the records, and the version reserved is the latest.
        let _: Done = self
            .instances
            .run(|vault| vault.post(path::REGISTER_FINISH, &request))?;
        Ok(())
    }

    /// The backup key registered under `password`. A wrong password spends one of the
    /// account's guesses ([`VaultError::WrongPassword`] says how many are left); the right
    /// one resets the count.
    pub fn recover(&self, password: &Password) -> Result<Zeroizing<[u8; 32]>, VaultError> {
        self.login_then(password, |_, login| Ok(login.key.clone()))
    }

    /// Registers the same key under a new password: recovers it with `old`, registers it
    /// with `new`.
    pub fn change_password(&self, old: &Password, new: &Password) -> Result<(), VaultError> {
        let key = self.recover(old)?;
        self.register(new, &key)
    }

    /// Erases the account's key from the vault. Needs the password: the vault deletes only
    /// after a login that proved it.
    pub fn delete(&self, password: &Password) -> Result<(), VaultError> {
        // On the instance that knows the login.
        self.login_then(password, |vault, login| {
            let _: Done = vault.delete(
                path::RECORD,
                &DeleteRecord {
                    account: self.account.clone(),
                    login_id: login.login_id.clone(),
                },
            )?;
            Ok(())
        })
    }

    /// Whether the account has a key in the vault and how many guesses are left. Spends
    /// nothing.
    pub fn status(&self) -> Result<RecordStatus, VaultError> {
        let query = format!("{}?account={}", path::STATUS, self.account);
        let answer: StatusAnswer = self.instances.run(|vault| vault.get(&query))?;
        Ok(RecordStatus {
            registered: answer.registered,
            attempts_left: answer.attempts_left,
            key_destroyed: answer.key_destroyed,
        })
    }

    /// One OPAQUE login, the sealed key opened, then `then` on the instance that answered.
    /// One attempt: a try that fails transiently starts the login over on the next
    /// instance with the same attempt id and KE1, which the vault counts as one guess.
    fn login_then<T>(
        &self,
        password: &Password,
        then: impl Fn(&Transport, &Login) -> Result<T, VaultError>,
    ) -> Result<T, VaultError> {
        self.check_server_key()?;
        // A login on an account without a key would spend a guess and answer "wrong
        // password"; ask first, which spends nothing.
        let status = self.status()?;
        if status.key_destroyed {
            return Err(VaultError::KeyDestroyed);
        }
        if !status.registered {
            return Err(VaultError::NotRegistered);
        }
        let mut rng = OsRng;
        let secret = password.expose_secret().as_bytes();
        let start = ClientLogin::<Suite>::start(&mut rng, secret).map_err(protocol)?;
        let mut attempt = [0u8; 16];
        rng.fill_bytes(&mut attempt);
        let request = LoginStart {
            account: self.account.clone(),
            ke1: start.message.serialize().to_vec(),
            attempt_id: Some(attempt.iter().map(|b| format!("{b:02x}")).collect()),
        };
        self.instances.run(|vault| {
            // An instance that lost the login between its start and its finish (it restarted,
            // or the login expired) is asked once more: the same attempt spends no second
            // guess (docs/vault.md §7.2), where giving up would cost the user one.
            let login = match self.login_on(vault, &request, start.state.clone(), secret)? {
                Some(login) => login,
                None => self
                    .login_on(vault, &request, start.state.clone(), secret)?
                    .ok_or_else(|| {
                        VaultError::Server(format!(
                            "{} lost this login twice between its start and its finish",
                            vault.base()
                        ))
                    })?,
            };
            then(vault, &login)
        })
    }

    /// The login `request` starts, on one instance; `None` if the instance no longer knew
    /// the login at its finish (`conflict`).
    fn login_on(
        &self,
        vault: &Transport,
        request: &LoginStart,
        state: ClientLogin<Suite>,
        secret: &[u8],
    ) -> Result<Option<Login>, VaultError> {
        let mut rng = OsRng;
        let answer: LoginStartAnswer = vault.post(path::LOGIN_START, request)?;
        let ke2 = CredentialResponse::<Suite>::deserialize(&answer.ke2)
            .map_err(|err| VaultError::Protocol(format!("login response: {err}")))?;
        let ksf = key_stretching();
        let finished = state.finish(
            &mut rng,
            secret,
            ke2,
            ClientLoginFinishParameters::new(Some(CONTEXT), identifiers(&self.account), Some(&ksf)),
        );
        let mut finish = match finished {
            Ok(finish) => finish,
            Err(ProtocolError::InvalidLoginError) => {
                return Err(self.report_wrong_password(vault, &answer));
            }
            Err(err) => return Err(protocol(err)),
        };
        self.check_pinned(&finish.server_s_pk.serialize())?;
        let session_key = Zeroizing::new(finish.session_key.to_vec());
        let export_key = Zeroizing::new(finish.export_key.to_vec());
        finish.session_key.as_mut_slice().zeroize();
        finish.export_key.as_mut_slice().zeroize();
        let finished: Result<LoginFinishAnswer, ErrorAnswer> = vault.post_or_refusal(
            path::LOGIN_FINISH,
            &LoginFinish {
                account: self.account.clone(),
                login_id: answer.login_id.clone(),
                ke3: finish.message.serialize().to_vec(),
            },
        )?;
        let done = match finished {
            Ok(done) => done,
            Err(refusal) if refusal.error == ErrorCode::Conflict => return Ok(None),
            Err(refusal) => return Err(error_of(refusal)),
        };
        let sealed =
            transfer::open(&session_key, &answer.login_id, &done.sealed_key).ok_or_else(|| {
                VaultError::Protocol(
                    "the vault's answer does not open with this login's session key".into(),
                )
            })?;
        let key = sealed_key::open(&export_key, &self.account, done.record_version, &sealed)
            .ok_or_else(|| {
                VaultError::Protocol(
                    "the sealed key does not open with this password's export key: the \
                     vault's record was altered"
                        .into(),
                )
            })?;
        Ok(Some(Login {
            login_id: answer.login_id,
            key,
        }))
    }

    /// Tells the vault that login `answer` did not prove the password (an empty KE3), so
    /// that a last guess erases the key at once and the audit log records the failure; the
    /// vault's answer says how many attempts are left, or that the key is now erased. If the
    /// report does not arrive, the login expires and the vault counts it the same.
    fn report_wrong_password(&self, vault: &Transport, answer: &LoginStartAnswer) -> VaultError {
        let reported: Result<LoginFinishAnswer, VaultError> = vault.post(
            path::LOGIN_FINISH,
            &LoginFinish {
                account: self.account.clone(),
                login_id: answer.login_id.clone(),
                ke3: Vec::new(),
            },
        );
        match reported {
            Err(err @ (VaultError::WrongPassword { .. } | VaultError::KeyDestroyed)) => err,
            _ => VaultError::WrongPassword {
                attempts_left: answer.attempts_left,
            },
        }
    }

    /// Asks the vault for its key and compares it with the pinned one, before anything
    /// about the password is sent. The answer is proven by the pinned key's holder
    /// ([`crate::protocol::vault_proof`]), so a false vault is refused here already.
    fn check_server_key(&self) -> Result<(), VaultError> {
        let query = format!("{}?account={}", path::SERVER_KEY, self.account);
        let answer: ServerKeyAnswer = self.instances.run(|vault| vault.get(&query))?;
        let found = parse_server_key(&answer.server_key).map_err(|_| {
            VaultError::Protocol(format!(
                "the vault's key {:?} is malformed",
                answer.server_key
            ))
        })?;
        self.check_pinned(&found)
    }

    /// The key OPAQUE authenticated must be the pinned one.
    fn check_pinned(&self, found: &[u8]) -> Result<(), VaultError> {
        if bool::from(found.ct_eq(&self.server_key)) {
            Ok(())
        } else {
            Err(VaultError::ServerKeyMismatch {
                expected: format_server_key(&self.server_key),
                found: format_server_key(found),
            })
        }
    }
}

fn protocol(err: ProtocolError) -> VaultError {
    VaultError::Protocol(format!("OPAQUE: {err}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_vault_is_send_and_sync() {
        fn shared<T: Send + Sync>() {}
        shared::<Vault>();
    }

    #[test]
    fn new_checks_the_configuration_without_sending_anything() {
        let config = |url: &str, key: &str, account: &str| VaultConfig {
            urls: vec![url.into()],
            server_key: key.into(),
            account: account.into(),
            credential: Zeroizing::new("sbv1_x".into()),
            ca_cert: None,
        };
        let key = format_server_key(&[1u8; 32]);
        assert!(Vault::new(config("https://127.0.0.1:1", &key, "alice")).is_ok());
        for bad in [
            config("http://127.0.0.1:1", &key, "alice"),
            config("https://127.0.0.1:1", "short", "alice"),
            config("https://127.0.0.1:1", &key, "no spaces"),
        ] {
            assert!(matches!(Vault::new(bad), Err(VaultError::Config(_))));
        }
    }
}
