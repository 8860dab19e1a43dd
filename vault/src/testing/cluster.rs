//! A real etcd cluster on loopback (`etcd` from Debian's `etcd-server`), and vault instances
//! that share it, for the tests and the benchmark of docs/vault.md §11.
//!
//! Each member gets its own ports and data directory under one temporary directory; all are
//! killed on drop. The vault instances share one vault: the first makes its keys with `key
//! ceremony generate` and runs `init`; each other one has a token of its own into which the
//! key ceremony installs the same record key and entry key (wrapped for transport, unwrapped
//! as non-extractable), and its `init` joins the store.

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use etcd_client::{Client, ConnectOptions, Permission};

use super::{Options, TestVault};
use crate::config::EtcdConfig;
use crate::store::EtcdStore;

const HEALTHY_TIMEOUT: Duration = Duration::from_secs(30);
/// The prefix the test vaults use.
pub const PREFIX: &str = "/sealback-vault/";
/// With [`Security::auth_token_ttl`]: the vault's etcd user, whose role may read and write
/// only under [`PREFIX`], and its password.
pub const VAULT_USER: &str = "sealback-vault";
const VAULT_PASSWORD: &str = "vault-user-password";
const ROOT_PASSWORD: &str = "root-password";

/// How the cluster is protected; the default is plain http without users.
#[derive(Debug, Clone, Copy, Default)]
pub struct Security {
    /// https client URLs with a certificate from the cluster's own CA, and a client
    /// certificate from that CA required of every client (`--client-cert-auth`).
    pub tls: bool,
    /// etcd's authentication on, with this lifetime of its (simple) tokens
    /// (`--auth-token-ttl`, seconds): a `root` user, and [`VAULT_USER`] limited to [`PREFIX`].
    pub auth_token_ttl: Option<u64>,
}

struct Member {
    client_url: String,
    /// Plain http, `/health` whatever the client URLs need.
    health_url: String,
    /// etcd's arguments, to start the member again on its data directory.
    args: Vec<String>,
    child: Option<Child>,
}

/// An etcd cluster of loopback members. Killed on drop.
pub struct EtcdCluster {
    dir: tempfile::TempDir,
    members: Vec<Member>,
    security: Security,
}

impl EtcdCluster {
    /// Starts `size` members, plain http without users, and waits until each reports a
    /// healthy cluster.
    pub fn start(size: usize) -> Result<EtcdCluster, String> {
        EtcdCluster::start_with(size, Security::default())
    }

    /// [`EtcdCluster::start`] with TLS or authentication as `security` says.
    pub fn start_with(size: usize, security: Security) -> Result<EtcdCluster, String> {
        // A port found free can be taken by another process before etcd binds it: then the
        // cluster does not come up, and a second one, on other ports, is started.
        let mut last = String::new();
        for _ in 0..3 {
            match EtcdCluster::try_start(size, security) {
                Ok(cluster) => return Ok(cluster),
                Err(err) => last = err,
            }
        }
        Err(last)
    }

    fn try_start(size: usize, security: Security) -> Result<EtcdCluster, String> {
        let dir = tempfile::Builder::new()
            .prefix("sealback-etcd-test")
            .tempdir()
            .map_err(|err| format!("temporary directory: {err}"))?;
        let ports = free_ports(3 * size)?;
        let peer = |i: usize| format!("http://127.0.0.1:{}", ports[3 * i + 1]);
        let initial: Vec<String> = (0..size).map(|i| format!("m{i}={}", peer(i))).collect();
        let token = format!(
            "sealback-{}-{}",
            std::process::id(),
            dir.path().display().to_string().replace('/', "")
        );
        let mut cluster = EtcdCluster {
            dir,
            members: Vec::new(),
            security,
        };
        let tls_args = match security.tls {
            true => cluster.make_certificates()?,
            false => Vec::new(),
        };
        let scheme = if security.tls { "https" } else { "http" };
        for i in 0..size {
            let client_url = format!("{scheme}://127.0.0.1:{}", ports[3 * i]);
            let health_url = format!("http://127.0.0.1:{}", ports[3 * i + 2]);
            let data = cluster.dir.path().join(format!("m{i}"));
            let mut args: Vec<String> = [
                "--name",
                &format!("m{i}"),
                "--data-dir",
                &data.display().to_string(),
                "--listen-client-urls",
                &client_url,
                "--advertise-client-urls",
                &client_url,
                "--listen-metrics-urls",
                &health_url,
                "--listen-peer-urls",
                &peer(i),
                "--initial-advertise-peer-urls",
                &peer(i),
                "--initial-cluster",
                &initial.join(","),
                "--initial-cluster-token",
                &token,
                "--initial-cluster-state",
                "new",
                // Loopback: a lost leader is noticed and replaced within a second.
                "--heartbeat-interval",
                "50",
                "--election-timeout",
                "500",
                "--logger",
                "zap",
                "--log-level",
                "warn",
            ]
            .map(str::to_string)
            .to_vec();
            args.extend(tls_args.iter().cloned());
            if let Some(ttl) = security.auth_token_ttl {
                args.extend(["--auth-token-ttl".to_string(), ttl.to_string()]);
            }
            cluster.members.push(Member {
                client_url,
                health_url,
                args,
                child: None,
            });
            cluster.run(i)?;
        }
        cluster.wait_healthy()?;
        if security.auth_token_ttl.is_some() {
            cluster.enable_auth()?;
        }
        Ok(cluster)
    }

    /// Starts member `i` (again, on its data directory if it has one).
    fn run(&mut self, i: usize) -> Result<(), String> {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join(format!("m{i}.log")))
            .map_err(|err| format!("m{i}.log: {err}"))?;
        let child = Command::new("etcd")
            .args(&self.members[i].args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|err| format!("cannot run etcd (install etcd-server): {err}"))?;
        self.members[i].child = Some(child);
        Ok(())
    }

    /// The cluster's CA, a server certificate for 127.0.0.1 (also a client one: etcd's
    /// gateway dials its own member with it) and the vault's client certificate (CN
    /// [`VAULT_USER`]); etcd's TLS arguments.
    fn make_certificates(&self) -> Result<Vec<String>, String> {
        let tls = self.tls_dir();
        fs::create_dir(&tls).map_err(|err| format!("tls/: {err}"))?;
        super::make_ca(&tls)?;
        for (name, usage) in [
            ("server", "serverAuth, clientAuth"),
            ("client", "clientAuth"),
        ] {
            let ext = tls.join(format!("{name}.ext"));
            fs::write(
                &ext,
                format!(
                    "subjectAltName = IP:127.0.0.1\nbasicConstraints = critical, CA:FALSE\n\
                     keyUsage = critical, digitalSignature\nextendedKeyUsage = {usage}\n"
                ),
            )
            .map_err(|err| format!("{name}.ext: {err}"))?;
            let subject = format!("/CN={}", if name == "server" { "etcd" } else { VAULT_USER });
            super::issue_certificate(&tls, &tls, &ext, &subject, &format!("{name}-"))?;
        }
        let file = |name: &str| tls.join(name).display().to_string();
        Ok(vec![
            "--cert-file".into(),
            file("server-cert.pem"),
            "--key-file".into(),
            file("server-key.pem"),
            "--trusted-ca-file".into(),
            file("ca.pem"),
            "--client-cert-auth".into(),
        ])
    }

    fn tls_dir(&self) -> PathBuf {
        self.dir.path().join("tls")
    }

    /// A `root` user, [`VAULT_USER`] with a role on [`PREFIX`] only, and authentication on;
    /// each password in a private file.
    fn enable_auth(&self) -> Result<(), String> {
        for (user, password) in [("root", ROOT_PASSWORD), (VAULT_USER, VAULT_PASSWORD)] {
            let path = self.password_file(user);
            fs::write(&path, password).map_err(|err| format!("{user} password: {err}"))?;
            fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
                .map_err(|err| format!("{user} password: {err}"))?;
        }
        let mut options = ConnectOptions::new().with_connect_timeout(Duration::from_secs(5));
        if let Some(tls) = self.tls_options() {
            options = options.with_tls(tls);
        }
        let endpoints = self.endpoints();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|err| err.to_string())?;
        runtime
            .block_on(async move {
                let mut client = Client::connect(endpoints, Some(options)).await?;
                client.user_add("root", ROOT_PASSWORD, None).await?;
                client.user_grant_role("root", "root").await?;
                client.role_add(VAULT_USER).await?;
                client
                    .role_grant_permission(VAULT_USER, Permission::read_write(PREFIX).with_prefix())
                    .await?;
                client.user_add(VAULT_USER, VAULT_PASSWORD, None).await?;
                client.user_grant_role(VAULT_USER, VAULT_USER).await?;
                client.auth_enable().await?;
                Ok::<(), etcd_client::Error>(())
            })
            .map_err(|err| format!("enable etcd's authentication: {err}"))
    }

    fn password_file(&self, user: &str) -> PathBuf {
        self.dir.path().join(format!("{user}.password"))
    }

    /// The root user's client options (TLS as the cluster needs), for the harness itself.
    fn tls_options(&self) -> Option<etcd_client::TlsOptions> {
        let tls = self.tls_dir();
        let read = |name: &str| fs::read(tls.join(name)).unwrap_or_default();
        self.security.tls.then(|| {
            etcd_client::TlsOptions::new()
                .ca_certificate(etcd_client::Certificate::from_pem(read("ca.pem")))
                .identity(etcd_client::Identity::from_pem(
                    read("client-cert.pem"),
                    read("client-key.pem"),
                ))
        })
    }

    /// Waits until every running member answers `/health` with a leader.
    pub fn wait_healthy(&mut self) -> Result<(), String> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .map_err(|err| err.to_string())?;
        let deadline = Instant::now() + HEALTHY_TIMEOUT;
        for (i, member) in self.members.iter_mut().enumerate() {
            let Some(child) = member.child.as_mut() else {
                continue;
            };
            loop {
                if let Ok(Some(status)) = child.try_wait() {
                    return Err(format!(
                        "etcd member m{i} exited ({status}): {}",
                        fs::read_to_string(self.dir.path().join(format!("m{i}.log")))
                            .unwrap_or_default()
                    ));
                }
                let healthy = http
                    .get(format!("{}/health", member.health_url))
                    .send()
                    .and_then(|response| response.text())
                    .is_ok_and(|body| body.contains("\"health\":\"true\""));
                if healthy {
                    break;
                }
                if Instant::now() > deadline {
                    return Err(format!(
                        "etcd member m{i} not healthy within {} s",
                        HEALTHY_TIMEOUT.as_secs()
                    ));
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Ok(())
    }

    /// The client URLs of all members, the killed ones included (as a configuration lists
    /// them).
    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(|m| m.client_url.clone()).collect()
    }

    /// Kills member `i` at once (SIGKILL).
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.members[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills member `i` and starts it again on its data directory; waits until the cluster
    /// is healthy. A restarted member has forgotten the auth tokens it gave out.
    pub fn restart(&mut self, i: usize) -> Result<(), String> {
        self.kill(i);
        self.run(i)?;
        self.wait_healthy()
    }

    /// The `[etcd]` table of a vault on this cluster under `prefix`: its client certificate
    /// with TLS, [`VAULT_USER`] with authentication.
    pub fn config(&self, prefix: &str) -> EtcdConfig {
        self.config_as(prefix, VAULT_USER)
    }

    fn config_as(&self, prefix: &str, user: &str) -> EtcdConfig {
        let tls = self.security.tls.then(|| self.tls_dir());
        let auth = self.security.auth_token_ttl.is_some();
        EtcdConfig {
            endpoints: self.endpoints(),
            prefix: prefix.to_string(),
            ca_cert: tls.as_ref().map(|dir| dir.join("ca.pem")),
            cert: tls.as_ref().map(|dir| dir.join("client-cert.pem")),
            key: tls.as_ref().map(|dir| dir.join("client-key.pem")),
            username: auth.then(|| user.to_string()),
            password_file: auth.then(|| self.password_file(user)),
        }
    }

    /// A store on this cluster under `prefix`: the view of an operator with etcd access (the
    /// root user, with authentication).
    pub fn store(&self, prefix: &str) -> Result<EtcdStore, String> {
        EtcdStore::open(&self.config_as(prefix, "root")).map_err(|err| err.to_string())
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
    }
}

/// `count` loopback ports free at the time of the call.
fn free_ports(count: usize) -> Result<Vec<u16>, String> {
    let listeners = (0..count)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| format!("cannot find a free port: {err}"))?;
    listeners
        .iter()
        .map(|l| l.local_addr().map(|a| a.port()))
        .collect::<Result<_, _>>()
        .map_err(|err| err.to_string())
}

impl TestVault {
    /// Another instance of this vault (started with `transportable_keys` on an etcd store):
    /// a token of its own into which the key ceremony installs this vault's keys
    /// ([`TestVault::receive_keys`]), a certificate from this vault's CA, the same options;
    /// then `init`, which joins the store, and `serve` on its own port.
    pub fn join(&self) -> Result<TestVault, String> {
        let mut peer = self.new_peer()?;
        peer.receive_keys(self)?;
        let init = peer.run(&["init"])?;
        let printed = super::stdout(&init);
        if !printed.contains("joined the vault")
            || !printed.contains(&format!("server_key = \"{}\"", self.server_key))
        {
            return Err(format!(
                "`init` did not join with the same server key: {printed}"
            ));
        }
        peer.server_key = self.server_key.clone();
        peer.serve_on_new_port()?;
        Ok(peer)
    }
}

/// A 3-member etcd cluster and `instances` vault instances sharing it.
pub struct Fleet {
    pub vaults: Vec<TestVault>,
    /// Dropped after the vaults (fields drop in order).
    pub cluster: EtcdCluster,
}

impl Fleet {
    pub fn start(binary: &Path, instances: usize, options: Options) -> Result<Fleet, String> {
        Fleet::start_on(EtcdCluster::start(3)?, binary, instances, options)
    }

    /// `instances` vault instances on `cluster` (under [`PREFIX`]).
    pub fn start_on(
        cluster: EtcdCluster,
        binary: &Path,
        instances: usize,
        options: Options,
    ) -> Result<Fleet, String> {
        let options = Options {
            etcd: Some(cluster.config(PREFIX)),
            transportable_keys: true,
            ..options
        };
        let first = TestVault::start_with(binary, options)?;
        let mut vaults = vec![first];
        for _ in 1..instances {
            let next = vaults[0].join()?;
            vaults.push(next);
        }
        Ok(Fleet { vaults, cluster })
    }

    /// The vaults' store, as an operator with etcd access sees it.
    pub fn store(&self) -> Result<EtcdStore, String> {
        self.cluster.store(PREFIX)
    }
}
