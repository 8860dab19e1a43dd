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
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{Options, TestVault};
use crate::config::EtcdConfig;
use crate::store::EtcdStore;

const HEALTHY_TIMEOUT: Duration = Duration::from_secs(30);
/// The prefix the test vaults use.
pub const PREFIX: &str = "/sealback-vault/";

struct Member {
    client_url: String,
    child: Option<Child>,
}

/// An etcd cluster of loopback members. Killed on drop.
pub struct EtcdCluster {
    dir: tempfile::TempDir,
    members: Vec<Member>,
}

impl EtcdCluster {
    /// Starts `size` members and waits until each reports a healthy cluster.
    pub fn start(size: usize) -> Result<EtcdCluster, String> {
        // A port found free can be taken by another process before etcd binds it: then the
        // cluster does not come up, and a second one, on other ports, is started.
        let mut last = String::new();
        for _ in 0..3 {
            match EtcdCluster::try_start(size) {
                Ok(cluster) => return Ok(cluster),
                Err(err) => last = err,
            }
        }
        Err(last)
    }

    fn try_start(size: usize) -> Result<EtcdCluster, String> {
        let dir = tempfile::Builder::new()
            .prefix("sealback-etcd-test")
            .tempdir()
            .map_err(|err| format!("temporary directory: {err}"))?;
        let ports = free_ports(2 * size)?;
        let peer = |i: usize| format!("http://127.0.0.1:{}", ports[2 * i + 1]);
        let initial: Vec<String> = (0..size).map(|i| format!("m{i}={}", peer(i))).collect();
        let token = format!(
            "sealback-{}-{}",
            std::process::id(),
            dir.path().display().to_string().replace('/', "")
        );
        let mut cluster = EtcdCluster {
            dir,
            members: Vec::new(),
        };
        for i in 0..size {
            let client_url = format!("http://127.0.0.1:{}", ports[2 * i]);
            let log = fs::File::create(cluster.dir.path().join(format!("m{i}.log")))
                .map_err(|err| format!("m{i}.log: {err}"))?;
            let child = Command::new("etcd")
                .args(["--name", &format!("m{i}")])
                .arg("--data-dir")
                .arg(cluster.dir.path().join(format!("m{i}")))
                .args(["--listen-client-urls", &client_url])
                .args(["--advertise-client-urls", &client_url])
                .args(["--listen-peer-urls", &peer(i)])
                .args(["--initial-advertise-peer-urls", &peer(i)])
                .args(["--initial-cluster", &initial.join(",")])
                .args(["--initial-cluster-token", &token])
                .args(["--initial-cluster-state", "new"])
                // Loopback: a lost leader is noticed and replaced within a second.
                .args(["--heartbeat-interval", "50", "--election-timeout", "500"])
                .args(["--logger", "zap", "--log-level", "warn"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .map_err(|err| format!("cannot run etcd (install etcd-server): {err}"))?;
            cluster.members.push(Member {
                client_url,
                child: Some(child),
            });
        }
        cluster.wait_healthy()?;
        Ok(cluster)
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
                    .get(format!("{}/health", member.client_url))
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

    /// A store on this cluster under `prefix`: the view of an operator with etcd access.
    pub fn store(&self, prefix: &str) -> Result<EtcdStore, String> {
        EtcdStore::open(&EtcdConfig {
            endpoints: self.endpoints(),
            prefix: prefix.to_string(),
            ca_cert: None,
            cert: None,
            key: None,
            username: None,
            password_file: None,
        })
        .map_err(|err| err.to_string())
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
        let cluster = EtcdCluster::start(3)?;
        let options = Options {
            etcd: Some((cluster.endpoints(), PREFIX.to_string())),
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
