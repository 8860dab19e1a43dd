//! Requests made by hand, for tests where the client misbehaves: no credential, another
//! account's, a connection dropped after the first message, a probe of the protocol.

use std::io::Write as _;
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use opaque_ke::ClientLogin;
use rand::rngs::OsRng;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use sealback_vault::testing::TestVault;
use sealback_vault_client::protocol::suite::Suite;
use serde_json::{Value, json};

/// HTTPS requests to a test vault.
pub struct Raw {
    client: reqwest::blocking::Client,
    url: String,
}

/// A status and its JSON body.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
    pub elapsed: Duration,
}

fn install_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

impl Raw {
    pub fn new(vault: &TestVault) -> Raw {
        install_provider();
        let pem = std::fs::read(vault.ca_cert()).expect("CA certificate");
        let ca = reqwest::Certificate::from_pem_bundle(&pem).expect("PEM");
        Raw {
            client: reqwest::blocking::Client::builder()
                .tls_certs_only(ca)
                .build()
                .expect("client"),
            url: vault.url.clone(),
        }
    }

    pub fn get(&self, path: &str, credential: Option<&str>) -> Answer {
        self.send(self.client.get(format!("{}{path}", self.url)), credential)
    }

    pub fn post(&self, path: &str, credential: Option<&str>, body: &Value) -> Answer {
        self.send(
            self.client
                .post(format!("{}{path}", self.url))
                .header("content-type", "application/json")
                .body(body.to_string()),
            credential,
        )
    }

    pub fn delete(&self, path: &str, credential: Option<&str>, body: &Value) -> Answer {
        self.send(
            self.client
                .delete(format!("{}{path}", self.url))
                .header("content-type", "application/json")
                .body(body.to_string()),
            credential,
        )
    }

    fn send(
        &self,
        mut request: reqwest::blocking::RequestBuilder,
        credential: Option<&str>,
    ) -> Answer {
        if let Some(credential) = credential {
            request = request.bearer_auth(credential);
        }
        let started = Instant::now();
        let response = request.send().expect("the vault answers");
        let status = response.status().as_u16();
        let text = response.text().expect("a body");
        Answer {
            status,
            body: serde_json::from_str(&text).unwrap_or(Value::String(text)),
            elapsed: started.elapsed(),
        }
    }

    /// `login/start` for `account` with a fresh KE1 (of any password).
    pub fn login_start(&self, account: &str, credential: Option<&str>) -> Answer {
        self.post(
            "/v1/login/start",
            credential,
            &json!({ "account": account, "ke1": b64(&ke1()) }),
        )
    }

    /// `GET /v1/record/status`.
    pub fn status(&self, account: &str, credential: Option<&str>) -> Answer {
        self.get(&format!("/v1/record/status?account={account}"), credential)
    }
}

/// A KE1 for some password.
pub fn ke1() -> Vec<u8> {
    ClientLogin::<Suite>::start(&mut OsRng, b"any password at all")
        .expect("KE1")
        .message
        .serialize()
        .to_vec()
}

pub fn b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A TLS connection to `vault`, handshake not yet made.
pub fn tls_connection(
    vault: &TestVault,
) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    install_provider();
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(vault.ca_cert()).expect("CA") {
        roots.add(cert.expect("certificate")).expect("root");
    }
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let address = vault.url.trim_start_matches("https://");
    let connection = rustls::ClientConnection::new(
        Arc::new(config),
        ServerName::try_from("localhost").expect("name"),
    )
    .expect("TLS");
    let socket = TcpStream::connect(address).expect("connects");
    rustls::StreamOwned::new(connection, socket)
}

/// Opens a TLS connection, sends one HTTP request, and closes the connection without
/// reading a byte of the answer.
pub fn send_and_hang_up(vault: &TestVault, path: &str, credential: &str, body: &Value) {
    let mut tls = tls_connection(vault);
    let body = body.to_string();
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {credential}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    tls.write_all(request.as_bytes()).expect("sends");
    tls.flush().expect("flushes");
    tls.conn.send_close_notify();
    let _ = tls.flush();
    let _ = tls.sock.shutdown(std::net::Shutdown::Both);
}

/// Polls `check` until it holds, for at most 10 s.
pub fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if check() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{what} did not happen within 10 s");
}
