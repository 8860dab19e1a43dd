//! A false vault in the middle: a server holding a TLS certificate from the pinned vault's
//! own CA (the misissued-certificate case) relays the client's requests and rewrites only
//! public values. Registration must reach only the vault holding the pinned key: the relay
//! gets nothing it can test passwords against (no `register/finish`), never sees the
//! credential, and the client says why it refused.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use sealback_vault::testing::TestVault;
use sealback_vault_client::protocol::wire::path;
use sealback_vault_client::{Vault, VaultError};
use serde_json::Value;

use crate::{RIGHT, account, password, stored_entry, vault};

/// Where the relay sends a request, and with which credential.
#[derive(Clone)]
pub(crate) struct Upstream {
    url: String,
    client: reqwest::blocking::Client,
    /// `None`: the client's `Authorization` as it came; `Some`: this bearer credential (an
    /// account on a vault the attacker runs).
    bearer: Option<String>,
}

impl Upstream {
    pub(crate) fn new(vault: &TestVault, bearer: Option<String>) -> Upstream {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let pem = std::fs::read(vault.ca_cert()).expect("CA certificate");
        let ca = reqwest::Certificate::from_pem_bundle(&pem).expect("PEM");
        Upstream {
            url: vault.url.clone(),
            client: reqwest::blocking::Client::builder()
                .tls_certs_only(ca)
                .build()
                .expect("client"),
            bearer,
        }
    }

    /// The upstream's answer: status, `vault-proof` header, body.
    pub(crate) fn send(
        &self,
        request: &Request,
        authorization: Option<&str>,
    ) -> (u16, Option<String>, Vec<u8>) {
        let method = reqwest::Method::from_bytes(request.method.as_bytes()).expect("method");
        let mut outgoing = self
            .client
            .request(method, format!("{}{}", self.url, request.target))
            .body(request.body.clone())
            .header("content-type", "application/json");
        let authorization = match &self.bearer {
            Some(bearer) => Some(format!("Bearer {bearer}")),
            None => authorization.map(str::to_string),
        };
        if let Some(authorization) = authorization {
            outgoing = outgoing.header("authorization", authorization);
        }
        let response = outgoing.send().expect("the upstream answers");
        let status = response.status().as_u16();
        let proof = response
            .headers()
            .get("vault-proof")
            .and_then(|value| value.to_str().ok())
            .map(str::to_string);
        (status, proof, response.bytes().expect("body").to_vec())
    }
}

pub(crate) struct Request {
    pub(crate) method: String,
    pub(crate) target: String,
    pub(crate) authorization: Option<String>,
    pub(crate) body: Vec<u8>,
}

/// What the relay received from the client.
#[derive(Default)]
struct Seen {
    /// Method and path of every request.
    requests: Vec<String>,
    /// Every `Authorization` header value.
    authorizations: Vec<String>,
}

/// The false vault: HTTPS on loopback with a certificate the client's CA accepts.
struct Relay {
    url: String,
    seen: Arc<Mutex<Seen>>,
}

impl Relay {
    /// Relays to `upstream`; answers to `register/start` come from `oprf` (the vault whose
    /// OPRF key the attacker holds), with the server key inside rewritten to `pinned`, and
    /// `/v1/server-key` answers `pinned`.
    fn start(genuine: &TestVault, upstream: Upstream, oprf: Option<Upstream>) -> Relay {
        let pinned = STANDARD
            .decode(&genuine.server_key)
            .expect("the pinned key");
        let seen = Arc::new(Mutex::new(Seen::default()));
        let relay_seen = seen.clone();
        let url = serve_https(genuine, move |request| {
            {
                let mut seen = relay_seen.lock().expect("lock");
                let line = format!("{} {}", request.method, request.target);
                seen.requests.push(line);
                seen.authorizations
                    .extend(request.authorization.iter().cloned());
            }
            Some(answer(request, &upstream, oprf.as_ref(), &pinned))
        });
        Relay { url, seen }
    }

    fn client(&self, genuine: &TestVault, name: &str, credential: &str) -> Vault {
        let mut config = genuine.client_config(name, credential);
        config.urls = vec![self.url.clone()];
        Vault::new(config).expect("client")
    }

    fn requests(&self) -> Vec<String> {
        self.seen.lock().expect("lock").requests.clone()
    }

    fn authorizations(&self) -> Vec<String> {
        self.seen.lock().expect("lock").authorizations.clone()
    }
}

/// The upstream's answer, with the public values rewritten as the attacker wants.
fn answer(
    request: &Request,
    upstream: &Upstream,
    oprf: Option<&Upstream>,
    pinned: &[u8],
) -> (u16, Option<String>, Vec<u8>) {
    let path = request.target.split('?').next().unwrap_or_default();
    if let Some(oprf) = oprf
        && path == path::REGISTER_FINISH
    {
        // The upload goes where the OPRF key is.
        return oprf.send(request, None);
    }
    let (status, proof, body) = upstream.send(request, request.authorization.as_deref());
    let Some(oprf) = oprf else {
        return (status, proof, body);
    };
    let mut json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if path == path::SERVER_KEY {
        json["server_key"] = Value::String(STANDARD.encode(pinned));
    } else if path == path::REGISTER_START {
        let (_, _, own) = oprf.send(request, None);
        let own: Value = serde_json::from_slice(&own).expect("the false vault's answer");
        let mut response = STANDARD
            .decode(own["response"].as_str().expect("a response"))
            .expect("base64");
        response[32..64].copy_from_slice(pinned);
        json["response"] = Value::String(STANDARD.encode(response));
        json["record_version"] = own["record_version"].clone();
    } else {
        return (status, proof, body);
    }
    (status, proof, serde_json::to_vec(&json).expect("JSON"))
}

/// A server on loopback with a certificate from `genuine`'s CA: one request per connection,
/// answered with what `answer` returns (status, proof, body); `None` cuts the connection
/// without an answer. Its URL.
pub(crate) fn serve_https(
    genuine: &TestVault,
    mut answer: impl FnMut(&Request) -> Option<(u16, Option<String>, Vec<u8>)> + Send + 'static,
) -> String {
    let tls = misissued_certificate(genuine);
    let config = sealback_vault::server::tls_config(&tls.join("cert.pem"), &tls.join("key.pem"))
        .expect("TLS configuration");
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("https://{}", listener.local_addr().expect("address"));
    std::thread::spawn(move || {
        for socket in listener.incoming() {
            let Ok(socket) = socket else { continue };
            let connection = rustls::ServerConnection::new(config.clone()).expect("TLS");
            let mut tls = rustls::StreamOwned::new(connection, socket);
            let Some(request) = read_request(&mut tls) else {
                continue;
            };
            if let Some((status, proof, body)) = answer(&request) {
                write_answer(&mut tls, status, proof.as_deref(), &body);
            }
        }
    });
    url
}

/// One HTTP/1.1 request (headers, then a `Content-Length` body).
fn read_request(stream: &mut impl Read) -> Option<Request> {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let target = parts.next()?.to_string();
    let mut authorization = None;
    let mut length = 0;
    loop {
        let mut header = String::new();
        reader.read_line(&mut header).ok()?;
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        let (name, value) = header.split_once(':')?;
        match name.to_ascii_lowercase().as_str() {
            "authorization" => authorization = Some(value.trim().to_string()),
            "content-length" => length = value.trim().parse().ok()?,
            _ => {}
        }
    }
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body).ok()?;
    Some(Request {
        method,
        target,
        authorization,
        body,
    })
}

fn write_answer(stream: &mut impl Write, status: u16, proof: Option<&str>, body: &[u8]) {
    let mut head = format!(
        "HTTP/1.1 {status} Relayed\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
         connection: close\r\n",
        body.len()
    );
    if let Some(proof) = proof {
        head.push_str(&format!("vault-proof: {proof}\r\n"));
    }
    head.push_str("\r\n");
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(body);
    let _ = stream.flush();
}

/// A key and a certificate for `localhost`, signed by the genuine vault's own CA, in a
/// directory of the genuine vault's.
fn misissued_certificate(genuine: &TestVault) -> std::path::PathBuf {
    let tls = genuine.dir().join("relay-tls");
    std::fs::create_dir_all(&tls).expect("relay-tls/");
    genuine
        .issue_certificate(&tls)
        .unwrap_or_else(|err| panic!("{err}"));
    tls
}

/// The relay saw no credential in the clear and no registration upload.
fn assert_nothing_to_attack(relay: &Relay, credential: &str) {
    assert!(
        !relay
            .requests()
            .iter()
            .any(|request| request.contains(path::REGISTER_FINISH)),
        "the false vault received a registration upload: {:?}",
        relay.requests()
    );
    for authorization in relay.authorizations() {
        assert!(
            !authorization.starts_with("Bearer") && !authorization.contains(credential),
            "the false vault received the credential: {authorization}"
        );
    }
}

fn assert_refused_naming_the_pinned_key(refused: Result<(), VaultError>, genuine: &TestVault) {
    match refused {
        Err(err @ VaultError::VaultNotProven { .. }) => {
            let message = err.to_string();
            assert!(message.contains(&genuine.server_key), "{message}");
            assert!(message.contains("did not prove"), "{message}");
        }
        other => panic!("registration through the false vault was not refused: {other:?}"),
    }
}

#[test]
fn a_false_vault_relaying_to_its_own_vault_gets_no_registration() {
    let genuine = vault();
    let (_, credential) = account(&genuine, "alice");
    // The attacker's own vault, with an account it holds the credential of.
    let own = vault();
    let (_, own_credential) = account(&own, "alice");
    let relay = Relay::start(
        &genuine,
        Upstream::new(&own, Some(own_credential.clone())),
        Some(Upstream::new(&own, Some(own_credential))),
    );
    let client = relay.client(&genuine, "alice", &credential);

    let refused = client.register(&password(RIGHT), &[7u8; 32]);

    assert_refused_naming_the_pinned_key(refused, &genuine);
    assert_nothing_to_attack(&relay, &credential);
    assert!(stored_entry(&own, "alice").record.is_none());
}

#[test]
fn a_false_vault_relaying_to_the_genuine_vault_cannot_swap_the_registration_response() {
    let genuine = vault();
    let (_, credential) = account(&genuine, "alice");
    let own = vault();
    let (_, own_credential) = account(&own, "alice");
    // Everything goes to the genuine vault, which proves its answers; only the registration
    // response (the OPRF evaluation) comes from the attacker's vault.
    let relay = Relay::start(
        &genuine,
        Upstream::new(&genuine, None),
        Some(Upstream::new(&own, Some(own_credential))),
    );
    let client = relay.client(&genuine, "alice", &credential);

    let refused = client.register(&password(RIGHT), &[7u8; 32]);

    assert_refused_naming_the_pinned_key(refused, &genuine);
    assert_nothing_to_attack(&relay, &credential);
    assert!(stored_entry(&genuine, "alice").record.is_none());
    assert!(stored_entry(&own, "alice").record.is_none());
}

#[test]
fn a_faithful_relay_to_the_genuine_vault_changes_nothing() {
    let genuine = vault();
    let (_, credential) = account(&genuine, "alice");
    let relay = Relay::start(&genuine, Upstream::new(&genuine, None), None);
    let client = relay.client(&genuine, "alice", &credential);

    client
        .register(&password(RIGHT), &[7u8; 32])
        .expect("registers through a relay that changes nothing");
    let key = client.recover(&password(RIGHT)).expect("recovers");

    assert_eq!(*key, [7u8; 32]);
    assert!(
        relay
            .requests()
            .iter()
            .any(|r| r.contains(path::REGISTER_FINISH))
    );
    assert_nothing_to_attack_but_the_upload(&relay, &credential);
}

/// A faithful relay carries the upload to the genuine vault, but never the credential.
fn assert_nothing_to_attack_but_the_upload(relay: &Relay, credential: &str) {
    for authorization in relay.authorizations() {
        assert!(
            authorization.starts_with("Sealed ") && !authorization.contains(credential),
            "{authorization}"
        );
    }
}
