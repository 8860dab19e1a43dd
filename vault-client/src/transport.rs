//! HTTPS to the vault: one request, one answer, errors mapped to [`VaultError`].
//!
//! `reqwest`'s blocking client over rustls with the `ring` provider, installed by this crate
//! as the process default if none is (installing twice is harmless). The HTTP client is made
//! on the first request, not in [`crate::Vault::new`]: the blocking client must not be built
//! on an async runtime's thread, and requests run on a blocking thread anyway. Nothing here
//! retries: a login that may have reached the vault has consumed a guess; going on to another
//! instance is [`crate::failover`]'s business.
//!
//! Every request carries the credential sealed to the pinned key, bound to the request, and
//! every answer must carry the vault's proof for that request
//! ([`crate::protocol::vault_proof`]): an answer without a valid proof is refused
//! ([`VaultError::VaultNotProven`]) before its body is read as JSON, so whatever the caller
//! sends next was prompted only by the pinned vault. The credential is never sent in the
//! clear.

use std::io::Read as _;
use std::sync::{Once, OnceLock};
use std::time::Duration;

use reqwest::Method;
use reqwest::blocking::Client;
use serde::Serialize;
use serde::de::DeserializeOwned;
use zeroize::Zeroizing;

use crate::VaultError;
use crate::config::format_server_key;
use crate::protocol::vault_proof::{self, ClientExchange};
use crate::protocol::wire::{ErrorAnswer, ErrorCode};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// The most bytes of a vault's answer read: its largest (a login's OPAQUE message and a sealed
/// key) takes a few hundred; a server that sends more is not a vault, and reading on would let
/// it fill the device's memory.
const MAX_ANSWER_BYTES: u64 = 64 << 10;

pub(crate) struct Transport {
    base: String,
    credential: Zeroizing<String>,
    /// The pinned key: only answers it proves are read.
    server_key: [u8; 32],
    ca: Option<Vec<reqwest::Certificate>>,
    client: OnceLock<Result<Client, String>>,
}

impl Transport {
    pub(crate) fn new(
        base: &str,
        credential: Zeroizing<String>,
        server_key: [u8; 32],
        ca: Option<Vec<reqwest::Certificate>>,
    ) -> Transport {
        Transport {
            base: base.trim_end_matches('/').to_string(),
            credential,
            server_key,
            ca,
            client: OnceLock::new(),
        }
    }

    /// The instance's base URL.
    pub(crate) fn base(&self) -> &str {
        &self.base
    }

    pub(crate) fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, VaultError> {
        self.request::<(), T>(Method::GET, path, None)
    }

    pub(crate) fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, VaultError> {
        self.request(Method::POST, path, Some(body))
    }

    pub(crate) fn delete<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, VaultError> {
        self.request(Method::DELETE, path, Some(body))
    }

    /// [`Transport::post`], with the vault's refusal given as it came (code and message), for
    /// a caller that acts on the code.
    pub(crate) fn post_or_refusal<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<Result<T, ErrorAnswer>, VaultError> {
        self.request_or_refusal(Method::POST, path, Some(body))
    }

    fn request<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<T, VaultError> {
        self.request_or_refusal(method, path, body)?
            .map_err(error_of)
    }

    /// The answer, or the vault's proven refusal; `Err` for every other failure.
    fn request_or_refusal<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<Result<T, ErrorAnswer>, VaultError> {
        let client = self
            .client
            .get_or_init(|| self.build())
            .as_ref()
            .map_err(|err| VaultError::Transport(err.clone()))?;
        let url = format!("{}{path}", self.base);
        let json = match body {
            None => Vec::new(),
            Some(body) => serde_json::to_vec(body)
                .map_err(|err| VaultError::Protocol(format!("cannot encode a request: {err}")))?,
        };
        let digest = vault_proof::request_digest(method.as_str(), path, &json);
        let exchange = ClientExchange::new(&self.server_key).ok_or_else(|| {
            VaultError::Config("the pinned server_key is not a Ristretto255 public key".into())
        })?;
        let mut request = client.request(method, &url).header(
            reqwest::header::AUTHORIZATION,
            exchange.authorization(&self.credential, &digest),
        );
        if body.is_some() {
            request = request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(json);
        }
        let response = request
            .send()
            .map_err(|err| VaultError::Transport(format!("{url}: {}", chain(&err))))?;
        let status = response.status();
        let proof = response
            .headers()
            .get(vault_proof::PROOF_HEADER)
            .and_then(|value| value.to_str().ok())
            .map(str::to_string);
        let mut bytes = Vec::new();
        response
            .take(MAX_ANSWER_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|err| VaultError::Transport(format!("{url}: the answer broke off: {err}")))?;
        if bytes.len() as u64 > MAX_ANSWER_BYTES {
            return Err(VaultError::Protocol(format!(
                "{url} answered {status} with more than {MAX_ANSWER_BYTES} bytes, more than \
                 any answer of a vault; is the URL the vault's?"
            )));
        }
        let proven =
            proof.is_some_and(|proof| exchange.verify(&digest, status.as_u16(), &bytes, &proof));
        if !proven {
            return Err(VaultError::VaultNotProven {
                url,
                pinned: format_server_key(&self.server_key),
            });
        }
        if status.is_success() {
            return serde_json::from_slice(&bytes).map(Ok).map_err(|err| {
                VaultError::Protocol(format!(
                    "{url} answered {status} with an unexpected body: {err}"
                ))
            });
        }
        match serde_json::from_slice::<ErrorAnswer>(&bytes) {
            Ok(answer) => Ok(Err(answer)),
            Err(_) => Err(VaultError::Server(format!(
                "{url} answered {status}: {}",
                String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
            ))),
        }
    }

    fn build(&self) -> Result<Client, String> {
        install_crypto_provider();
        let mut builder = Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("sealback-vault-client/", env!("CARGO_PKG_VERSION")));
        if let Some(ca) = &self.ca {
            builder = builder.tls_certs_only(ca.iter().cloned());
        }
        builder
            .build()
            .map_err(|err| format!("cannot set up the HTTPS client: {}", chain(&err)))
    }
}

/// The error a refusal stands for.
pub(crate) fn error_of(answer: ErrorAnswer) -> VaultError {
    match answer.error {
        ErrorCode::Unauthorized => VaultError::Unauthorized,
        ErrorCode::WrongPassword => VaultError::WrongPassword {
            attempts_left: answer.attempts_left.unwrap_or(0),
        },
        ErrorCode::NotRegistered => VaultError::NotRegistered,
        ErrorCode::KeyDestroyed => VaultError::KeyDestroyed,
        ErrorCode::BadRequest | ErrorCode::Conflict => VaultError::Protocol(answer.message),
        ErrorCode::RecordRefused => VaultError::RecordRefused(answer.message),
        ErrorCode::Busy | ErrorCode::Internal => VaultError::Server(answer.message),
    }
}

/// An error and its causes, `a: b: c`.
fn chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// rustls needs one crypto provider; this crate builds it with `ring` only.
fn install_crypto_provider() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader, Write};
    use std::net::TcpListener;

    use super::*;

    /// A server that answers one request with a body that never ends.
    fn endless_server() -> String {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("address").port();
        std::thread::spawn(move || {
            let (stream, _) = listener.accept().expect("accept");
            let mut reader = BufReader::new(stream);
            let mut line = String::new();
            while reader.read_line(&mut line).expect("request") > 2 {
                line.clear();
            }
            let mut stream = reader.into_inner();
            let head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
                        Transfer-Encoding: chunked\r\n\r\n";
            stream.write_all(head.as_bytes()).expect("head");
            let chunk = format!("{:x}\r\n{}\r\n", 1 << 16, " ".repeat(1 << 16));
            // The client hangs up at its limit; until then, send without end.
            while stream.write_all(chunk.as_bytes()).is_ok() {}
        });
        format!("http://127.0.0.1:{port}")
    }

    #[test]
    fn an_answer_without_end_is_refused_at_the_limit() {
        let key = curve25519_dalek::constants::RISTRETTO_BASEPOINT_POINT
            .compress()
            .to_bytes();
        let transport = Transport::new(&endless_server(), Zeroizing::new("x".into()), key, None);
        let err = transport
            .get::<serde_json::Value>("/v1/server-key")
            .expect_err("endless");
        assert!(
            err.to_string()
                .contains(&format!("with more than {MAX_ANSWER_BYTES} bytes")),
            "{err}"
        );
    }
}
