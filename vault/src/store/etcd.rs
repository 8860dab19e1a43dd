//! [`RecordStore`] on etcd: several vault instances share one replicated store.
//!
//! Every key the vault writes is `prefix` + the store key (`/sealback-vault/account/alice`).
//! A value's revision is etcd's `mod_revision` of its key; the store's revision is etcd's
//! cluster revision. Both come from etcd's one global counter, which strictly increases,
//! so a key deleted and written again never gets back a revision it had (no ABA).
//!
//! - `get` is a linearizable range read (etcd's default, served through the leader's
//!   quorum): it reflects every write acknowledged before it.
//! - `compare_and_swap` is one transaction: `if mod_revision(key) == expected (0: absent)
//!   then put (or delete) else nothing`. etcd answers it once a quorum has it in its log,
//!   fsynced: a `Done` survives the loss of any minority of members. Two vault instances
//!   that read the same entry cannot both write their guess from it: one transaction wins,
//!   the other gets `Conflict`, reads again, and sees the guess spent.
//! - The store talks to one member at a time and moves to the next when it fails. A request
//!   that certainly did not reach a member (the connection was refused, or the member has no
//!   leader) is sent to the next one. A transaction whose answer is lost (the member or the
//!   network died after it was sent) may or may not have been applied: it is not retried,
//!   the caller gets an error and the request fails without evaluating anything (a retry
//!   would conflict with its own write and could not tell it from another instance's). Reads
//!   are retried on the next members whatever the failure.
//! - `purge_history` compacts etcd's history up to the current revision (physically), so
//!   the old value of an erased record can no longer be read from the key space. It stays in
//!   each member's write-ahead log and free database pages until those are rotated or
//!   defragmented (docs/vault.md §11).
//!
//! etcd's client is asynchronous; the vault's store calls block (they run on the server's
//! blocking threads). The store runs its own small runtime and waits for each call.

use std::future::Future;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, mpsc};
use std::time::Duration;

use etcd_client::{
    Client, CompactionOptions, Compare, CompareOp, ConnectOptions, GetOptions, Txn, TxnOp,
};

use super::{RecordStore, Revision, StoreError, Swap, Versioned};
use crate::config::EtcdConfig;

/// How long one request to etcd may take, retries of reads included.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// A [`RecordStore`] on an etcd cluster, under a key prefix.
pub struct EtcdStore {
    runtime: Option<tokio::runtime::Runtime>,
    /// A client per member, connected when first needed.
    members: Vec<Member>,
    options: ConnectOptions,
    /// The member that answered last: asked first.
    preferred: AtomicUsize,
    prefix: String,
    name: String,
}

struct Member {
    endpoint: String,
    client: Mutex<Option<Client>>,
}

/// What a request may do when a member fails.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Retry {
    /// A read: on the next member, whatever the failure.
    Always,
    /// A write: on the next member only if it certainly was not applied.
    IfNotSent,
}

/// Whether `err` shows the request never reached a member that could apply it: the
/// connection was refused or could not be made, or the member had no leader (the client
/// requires one, so such a member refuses before proposing anything).
fn never_sent(err: &etcd_client::Error) -> bool {
    let text = format!("{err:?}");
    [
        "ConnectError",
        "tcp connect error",
        "no leader",
        "ConnectionRefused",
    ]
    .iter()
    .any(|sign| text.contains(sign))
}

fn failed(operation: &'static str) -> impl Fn(etcd_client::Error) -> StoreError {
    move |err| StoreError {
        operation,
        message: format!("etcd: {err}"),
    }
}

impl EtcdStore {
    /// Connects to the cluster of `config` (TLS and authentication as it says).
    pub fn open(config: &EtcdConfig) -> Result<EtcdStore, StoreError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("etcd-client")
            .enable_all()
            .build()
            .map_err(|err| StoreError {
                operation: "start the etcd client's runtime",
                message: err.to_string(),
            })?;
        let mut options = ConnectOptions::new()
            .with_connect_timeout(CONNECT_TIMEOUT)
            .with_timeout(REQUEST_TIMEOUT)
            .with_keep_alive(Duration::from_secs(2), Duration::from_secs(2))
            .with_require_leader(true);
        if let Some((user, password)) = credentials(config)? {
            // etcd's auth token expires when unused (`--auth-token-ttl`, 300 s by default)
            // and a restarted member forgets the tokens it gave out; the client of each
            // member lives as long as the vault, so it must log in again when etcd says its
            // token is invalid. Safe for writes too: etcd refuses such a request before it
            // proposes anything, and the client sends it again once.
            options = options
                .with_user(user, password.as_str())
                .with_auto_token_refresh(true);
        }
        if let Some(tls) = tls_options(config)? {
            options = options.with_tls(tls);
        }
        let name = format!(
            "etcd {} under {}",
            config.endpoints.join(","),
            config.prefix
        );
        let store = EtcdStore {
            runtime: Some(runtime),
            members: config
                .endpoints
                .iter()
                .map(|endpoint| Member {
                    endpoint: endpoint.clone(),
                    client: Mutex::new(None),
                })
                .collect(),
            options,
            preferred: AtomicUsize::new(0),
            prefix: config.prefix.clone(),
            name,
        };
        // Fails here, with what etcd said, if no member can be reached.
        store.revision()?;
        Ok(store)
    }

    /// The client of member `i`, connected now if it is not yet.
    fn client(&self, i: usize) -> Result<Client, etcd_client::Error> {
        let member = &self.members[i];
        let mut slot = member.client.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(client) = slot.as_ref() {
            return Ok(client.clone());
        }
        let (endpoint, options) = (member.endpoint.clone(), self.options.clone());
        let client = wait(self.runtime(), CONNECT_TIMEOUT, async move {
            Client::connect([endpoint], Some(options)).await
        })
        .unwrap_or_else(|| {
            Err(etcd_client::Error::EndpointError(format!(
                "{}: no connection within {} s",
                member.endpoint,
                CONNECT_TIMEOUT.as_secs()
            )))
        })?;
        *slot = Some(client.clone());
        Ok(client)
    }

    /// Runs a request on the preferred member, and on the next ones as `retry` allows.
    fn call<T, F, Fut>(
        &self,
        operation: &'static str,
        retry: Retry,
        make: F,
    ) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: Fn(Client) -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>> + Send + 'static,
    {
        let first = self.preferred.load(Ordering::Relaxed);
        let mut failures = Vec::new();
        for k in 0..self.members.len() {
            let i = (first + k) % self.members.len();
            let endpoint = &self.members[i].endpoint;
            let client = match self.client(i) {
                Ok(client) => client,
                Err(err) => {
                    failures.push(format!("{endpoint}: {err}"));
                    continue;
                }
            };
            match wait(self.runtime(), REQUEST_TIMEOUT, make(client)) {
                Some(Ok(value)) => {
                    self.preferred.store(i, Ordering::Relaxed);
                    return Ok(value);
                }
                Some(Err(err)) if retry == Retry::Always || never_sent(&err) => {
                    failures.push(format!("{endpoint}: {err}"));
                }
                Some(Err(err)) => {
                    // Perhaps applied: the caller must not take it as not done.
                    self.preferred
                        .store((i + 1) % self.members.len(), Ordering::Relaxed);
                    return Err(failed(operation)(err));
                }
                None if retry == Retry::Always => failures.push(format!(
                    "{endpoint}: no answer within {} s",
                    REQUEST_TIMEOUT.as_secs()
                )),
                None => {
                    self.preferred
                        .store((i + 1) % self.members.len(), Ordering::Relaxed);
                    return Err(StoreError {
                        operation,
                        message: format!(
                            "etcd member {endpoint} did not answer within {} s (the write may \
                             or may not have been applied)",
                            REQUEST_TIMEOUT.as_secs()
                        ),
                    });
                }
            }
        }
        Err(StoreError {
            operation,
            message: format!(
                "no etcd member answered (is a quorum of them up?): {}",
                failures.join("; ")
            ),
        })
    }

    /// The cluster and prefix, for messages.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn runtime(&self) -> &tokio::runtime::Runtime {
        self.runtime
            .as_ref()
            .expect("the runtime lives as long as the store")
    }

    fn full(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }
}

/// Runs `future` on `runtime` and waits for it, at most `limit`; `None` if it took longer.
fn wait<T: Send + 'static>(
    runtime: &tokio::runtime::Runtime,
    limit: Duration,
    future: impl Future<Output = T> + Send + 'static,
) -> Option<T> {
    let (send, receive) = mpsc::channel();
    runtime.spawn(async move {
        let _ = send.send(tokio::time::timeout(limit, future).await);
    });
    receive
        .recv_timeout(limit + Duration::from_secs(1))
        .ok()
        .and_then(Result::ok)
}

/// The user and password of `[etcd] username` and `password_file`.
fn credentials(
    config: &EtcdConfig,
) -> Result<Option<(String, zeroize::Zeroizing<String>)>, StoreError> {
    let (Some(user), Some(file)) = (&config.username, &config.password_file) else {
        return Ok(None);
    };
    let password =
        crate::config::read_secret_file(file, "etcd password").map_err(|err| StoreError {
            operation: "read [etcd] password_file",
            message: err.to_string(),
        })?;
    Ok(Some((user.clone(), password)))
}

/// TLS to etcd: `[etcd] ca_cert` (the CA of etcd's server certificates), and `cert` and
/// `key` (the vault's client certificate, if etcd asks for one).
fn tls_options(config: &EtcdConfig) -> Result<Option<etcd_client::TlsOptions>, StoreError> {
    let Some(ca) = &config.ca_cert else {
        return Ok(None);
    };
    let read = |key: &'static str, path: &Path| {
        std::fs::read(path).map_err(|err| StoreError {
            operation: key,
            message: format!("{}: {err}", path.display()),
        })
    };
    let mut tls = etcd_client::TlsOptions::new().ca_certificate(
        etcd_client::Certificate::from_pem(read("read [etcd] ca_cert", ca)?),
    );
    if let (Some(cert), Some(key)) = (&config.cert, &config.key) {
        tls = tls.identity(etcd_client::Identity::from_pem(
            read("read [etcd] cert", cert)?,
            zeroize::Zeroizing::new(read("read [etcd] key", key)?).as_slice(),
        ));
    }
    Ok(Some(tls))
}

/// etcd revisions are signed; they count up from 1.
fn revision_of(revision: i64) -> Revision {
    Revision::try_from(revision).unwrap_or(0)
}

impl RecordStore for EtcdStore {
    fn get(&self, key: &str) -> Result<Option<Versioned>, StoreError> {
        let full = self.full(key);
        let response = self.call("read", Retry::Always, move |mut client| {
            let full = full.clone();
            async move { client.get(full, None).await }
        })?;
        Ok(response.kvs().first().map(|kv| Versioned {
            value: kv.value().to_vec(),
            revision: revision_of(kv.mod_revision()),
            lineage: Some([revision_of(kv.create_revision()), revision_of(kv.version())]),
        }))
    }

    fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<Revision>,
        value: Option<&[u8]>,
    ) -> Result<Swap, StoreError> {
        let full = self.full(key);
        let expected = i64::try_from(expected.unwrap_or(0)).map_err(|_| StoreError {
            operation: "write",
            message: "a revision beyond etcd's range".into(),
        })?;
        let operation = match value {
            Some(value) => TxnOp::put(full.clone(), value.to_vec(), None),
            None => TxnOp::delete(full.clone(), None),
        };
        let txn = Txn::new()
            .when([Compare::mod_revision(full, CompareOp::Equal, expected)])
            .and_then([operation]);
        let response = self.call("write", Retry::IfNotSent, move |mut client| {
            let txn = txn.clone();
            async move { client.txn(txn).await }
        })?;
        if !response.succeeded() {
            return Ok(Swap::Conflict);
        }
        Ok(Swap::Done(value.map(|_| {
            revision_of(response.header().map_or(0, |header| header.revision()))
        })))
    }

    fn revision(&self) -> Result<Revision, StoreError> {
        let probe = self.full("");
        let response = self.call(
            "read the store's revision",
            Retry::Always,
            move |mut client| {
                let probe = probe.clone();
                async move {
                    client
                        .get(probe, Some(GetOptions::new().with_count_only()))
                        .await
                }
            },
        )?;
        Ok(revision_of(
            response.header().map_or(0, |header| header.revision()),
        ))
    }

    fn keys(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let full = self.full(prefix);
        let response = self.call("list keys", Retry::Always, move |mut client| {
            let full = full.clone();
            async move {
                client
                    .get(full, Some(GetOptions::new().with_prefix().with_keys_only()))
                    .await
            }
        })?;
        let mut keys: Vec<String> = response
            .kvs()
            .iter()
            .filter_map(|kv| kv.key_str().ok())
            .filter_map(|key| key.strip_prefix(&self.prefix))
            .map(str::to_string)
            .collect();
        keys.sort();
        Ok(keys)
    }

    fn purge_history(&self) -> Result<(), StoreError> {
        let revision = i64::try_from(self.revision()?).unwrap_or(i64::MAX);
        // Compacting again is harmless: a retry is safe whatever the failure.
        self.call(
            "compact etcd's history",
            Retry::Always,
            move |mut client| async move {
                match client
                    .compact(revision, Some(CompactionOptions::new().with_physical()))
                    .await
                {
                    // Another instance compacted at or past this revision already.
                    Err(err) if err.to_string().contains("compacted") => Ok(()),
                    other => other.map(|_| ()),
                }
            },
        )
    }
}

impl Drop for EtcdStore {
    fn drop(&mut self) {
        // Dropping a runtime blocks until its tasks end; a store dropped inside another
        // runtime must not block it.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}
