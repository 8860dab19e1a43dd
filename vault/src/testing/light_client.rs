//! A vault client for load: the protocol of `sealback_vault_client::Vault` (OPAQUE, the
//! vault proof on every answer) with a trivial Argon2 chosen by the caller, so that many
//! logins cost the machine little client work. The server's work does not depend on it: the
//! server never runs the key stretching. `vault-bench` and the multi-instance tests use it.

use std::path::Path;
use std::time::{Duration, Instant};

use base64::Engine as _;
use opaque_ke::argon2::Argon2;
use opaque_ke::{
    ClientLogin, ClientLoginFinishParameters, ClientLoginStartResult, CredentialResponse,
};
use rand::rngs::OsRng;
use sealback_vault_client::protocol::suite::{CONTEXT, Suite, identifiers};
use sealback_vault_client::protocol::vault_proof::{self, ClientExchange};
use sealback_vault_client::protocol::wire::{
    Done, ErrorAnswer, ErrorCode, LoginFinish, LoginFinishAnswer, LoginStart, LoginStartAnswer,
    RegisterFinish, RegisterStart, RegisterStartAnswer, path,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::keyvault::check::contract;

/// Why a request failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The vault refused it (with a valid proof).
    Refused(ErrorCode, String),
    /// No usable answer: the connection failed, or the answer was not the vault's.
    Transport(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Refused(code, message) => write!(f, "refused ({code:?}): {message}"),
            Failure::Transport(message) => write!(f, "{message}"),
        }
    }
}

impl std::error::Error for Failure {}

impl Failure {
    /// Whether another instance may not fail so (this one, or its etcd member, is down, or
    /// the store failed under it): as `sealback_vault_client` moves on.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Failure::Transport(_) | Failure::Refused(ErrorCode::Internal | ErrorCode::Busy, _)
        )
    }
}

fn transport(err: impl std::fmt::Display) -> Failure {
    Failure::Transport(err.to_string())
}

/// A login's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// The password proved itself and the sealed K came back.
    Recovered,
    /// `login/start` was answered (the vault evaluated the password), then the password
    /// failed; the refusal of `login/finish` (`wrong-password` or `key-destroyed`).
    Wrong(Failure),
    /// `login/start` was refused or failed: nothing was evaluated for this client.
    NotEvaluated(Failure),
    /// `login/start` was answered but `login/finish` failed otherwise.
    Unfinished(Failure),
}

/// A login tried on several instances ([`LightClient::attempt_failing_over`]).
#[derive(Debug)]
pub struct FailedOver {
    /// The outcome on the last instance tried.
    pub attempt: Attempt,
    /// How many times the attempt moved on to another instance.
    pub moves: usize,
    /// Whether some instance answered `login/start` (evaluated the password).
    pub evaluated: bool,
}

/// A new attempt id, as the client draws one per login.
fn new_attempt_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// A trivial Argon2 (8 KiB, one pass) for load.
pub fn cheap_key_stretching() -> Argon2<'static> {
    contract::cheap().expect("valid Argon2 parameters")
}

/// One account's HTTPS client, with a kept-alive connection.
#[derive(Clone)]
pub struct LightClient {
    http: reqwest::blocking::Client,
    pub url: String,
    pub account: String,
    credential: String,
    server_key: [u8; 32],
}

impl LightClient {
    /// A client of the vault at `url` (whose TLS certificate `ca_cert` signed) pinned to
    /// `server_key` (base64, as `init` prints it).
    pub fn new(
        url: &str,
        ca_cert: &Path,
        server_key: &str,
        account: &str,
        credential: &str,
    ) -> Result<LightClient, Failure> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let ca = std::fs::read(ca_cert).map_err(transport)?;
        let ca = reqwest::Certificate::from_pem_bundle(&ca).map_err(transport)?;
        let http = reqwest::blocking::Client::builder()
            .tls_certs_only(ca)
            .pool_max_idle_per_host(1)
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(transport)?;
        let server_key: [u8; 32] = base64::engine::general_purpose::STANDARD
            .decode(server_key)
            .map_err(transport)?
            .try_into()
            .map_err(|_| transport("the server key is not 32 bytes"))?;
        Ok(LightClient {
            http,
            url: url.to_string(),
            account: account.to_string(),
            credential: credential.to_string(),
            server_key,
        })
    }

    /// The same account through the vault at `url` (another instance, same certificate).
    pub fn at(&self, url: &str) -> LightClient {
        LightClient {
            url: url.to_string(),
            ..self.clone()
        }
    }

    fn post<B: Serialize, T: DeserializeOwned>(&self, path: &str, body: &B) -> Result<T, Failure> {
        let json = serde_json::to_vec(body).map_err(transport)?;
        let digest = vault_proof::request_digest("POST", path, &json);
        let exchange =
            ClientExchange::new(&self.server_key).ok_or_else(|| transport("not a server key"))?;
        let response = self
            .http
            .post(format!("{}{path}", self.url))
            .header(
                "authorization",
                exchange.authorization(&self.credential, &digest),
            )
            .header("content-type", "application/json")
            .body(json)
            .send()
            .map_err(|err| transport(format!("{path}: {err}")))?;
        let status = response.status();
        let proof = response
            .headers()
            .get(vault_proof::PROOF_HEADER)
            .and_then(|value| value.to_str().ok())
            .map(str::to_string)
            .unwrap_or_default();
        let bytes = response.bytes().map_err(transport)?;
        if !exchange.verify(&digest, status.as_u16(), &bytes, &proof) {
            return Err(transport(format!(
                "{path}: the answer ({status}) carries no valid vault proof"
            )));
        }
        if !status.is_success() {
            let answer: ErrorAnswer = serde_json::from_slice(&bytes).map_err(transport)?;
            return Err(Failure::Refused(answer.error, answer.message));
        }
        serde_json::from_slice(&bytes).map_err(transport)
    }

    /// Registers `password` (with `ksf`) and a fixed K.
    pub fn register(&self, password: &[u8], ksf: &Argon2<'static>) -> Result<(), Failure> {
        let mut refused = None;
        let (upload, sealed_key, record_version) =
            contract::client_registration(&self.account, password, &[7u8; 32], ksf, |request| {
                let answer: RegisterStartAnswer = self
                    .post(
                        path::REGISTER_START,
                        &RegisterStart {
                            account: self.account.clone(),
                            request: request.to_vec(),
                        },
                    )
                    .map_err(|failure| {
                        let message = failure.to_string();
                        refused = Some(failure);
                        message
                    })?;
                Ok((answer.response, answer.record_version))
            })
            .map_err(|message| refused.take().unwrap_or(Failure::Transport(message)))?;
        let _: Done = self.post(
            path::REGISTER_FINISH,
            &RegisterFinish {
                account: self.account.clone(),
                record_version,
                upload,
                sealed_key,
            },
        )?;
        Ok(())
    }

    /// One login with `password`, with an attempt of its own: its outcome, and the time spent
    /// waiting for the vault.
    pub fn attempt(&self, password: &[u8], ksf: &Argon2<'static>) -> (Attempt, Duration) {
        match ClientLogin::<Suite>::start(&mut OsRng, password) {
            Ok(start) => self.try_attempt(&start, &new_attempt_id(), password, ksf),
            Err(err) => (Attempt::NotEvaluated(transport(err)), Duration::ZERO),
        }
    }

    /// One login with `password` as `sealback_vault_client::Vault` makes it: one attempt id
    /// and one KE1, tried on the instances `urls` in turn from `*instance` while they fail
    /// transiently ([`Failure::is_transient`]); the vault counts it as one guess wherever it
    /// was evaluated. `*instance` becomes the last one tried.
    pub fn attempt_failing_over(
        &self,
        urls: &[String],
        instance: &mut usize,
        password: &[u8],
        ksf: &Argon2<'static>,
    ) -> FailedOver {
        let start = match ClientLogin::<Suite>::start(&mut OsRng, password) {
            Ok(start) => start,
            Err(err) => {
                return FailedOver {
                    attempt: Attempt::NotEvaluated(transport(err)),
                    moves: 0,
                    evaluated: false,
                };
            }
        };
        let id = new_attempt_id();
        let mut tried = FailedOver {
            attempt: Attempt::NotEvaluated(transport("no instance")),
            moves: 0,
            evaluated: false,
        };
        for step in 0..urls.len() {
            if step > 0 {
                *instance = (*instance + 1) % urls.len();
                tried.moves += 1;
            }
            let (attempt, _) = self
                .at(&urls[*instance])
                .try_attempt(&start, &id, password, ksf);
            tried.evaluated |= !matches!(attempt, Attempt::NotEvaluated(_));
            let transient = match &attempt {
                Attempt::NotEvaluated(failure) | Attempt::Unfinished(failure) => {
                    failure.is_transient()
                }
                Attempt::Recovered | Attempt::Wrong(_) => false,
            };
            tried.attempt = attempt;
            if !transient {
                break;
            }
        }
        tried
    }

    /// The login that `start` begins, under the attempt `attempt_id`, on this instance.
    fn try_attempt(
        &self,
        start: &ClientLoginStartResult<Suite>,
        attempt_id: &str,
        password: &[u8],
        ksf: &Argon2<'static>,
    ) -> (Attempt, Duration) {
        let sent = Instant::now();
        let answer: LoginStartAnswer = match self.post(
            path::LOGIN_START,
            &LoginStart {
                account: self.account.clone(),
                ke1: start.message.serialize().to_vec(),
                // As the client sends it: one id per login (the vault keeps it in the entry).
                attempt_id: Some(attempt_id.to_string()),
            },
        ) {
            Ok(answer) => answer,
            Err(failure) => return (Attempt::NotEvaluated(failure), sent.elapsed()),
        };
        let mut waited = sent.elapsed();
        let finished = CredentialResponse::<Suite>::deserialize(&answer.ke2)
            .ok()
            .and_then(|ke2| {
                start
                    .state
                    .clone()
                    .finish(
                        &mut OsRng,
                        password,
                        ke2,
                        ClientLoginFinishParameters::new(
                            Some(CONTEXT),
                            identifiers(&self.account),
                            Some(ksf),
                        ),
                    )
                    .ok()
            });
        // A password that fails is reported at once with an empty KE3, as the real client
        // does.
        let ke3 = finished
            .as_ref()
            .map(|finish| finish.message.serialize().to_vec())
            .unwrap_or_default();
        let sent = Instant::now();
        let outcome: Result<LoginFinishAnswer, Failure> = self.post(
            path::LOGIN_FINISH,
            &LoginFinish {
                account: self.account.clone(),
                login_id: answer.login_id,
                ke3,
            },
        );
        waited += sent.elapsed();
        let attempt = match (finished.is_some(), outcome) {
            (true, Ok(_)) => Attempt::Recovered,
            (false, Err(refusal @ Failure::Refused(..))) => Attempt::Wrong(refusal),
            (false, Ok(_)) => Attempt::Unfinished(transport("a wrong password was accepted")),
            (_, Err(failure)) => Attempt::Unfinished(failure),
        };
        (attempt, waited)
    }

    /// One login that must recover; the time spent waiting for the vault.
    pub fn login(&self, password: &[u8], ksf: &Argon2<'static>) -> Result<Duration, Failure> {
        match self.attempt(password, ksf) {
            (Attempt::Recovered, waited) => Ok(waited),
            (
                Attempt::Wrong(failure)
                | Attempt::NotEvaluated(failure)
                | Attempt::Unfinished(failure),
                _,
            ) => Err(failure),
        }
    }
}
