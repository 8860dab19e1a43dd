//! `vault-bench`: starts a vault (SoftHSM2 token, SQLite store, HTTPS) and measures it.
//!
//! - Server side: `--clients` threads, each with its own accounts and kept-alive HTTPS
//!   connection, run complete logins (rotating over enough accounts that none has more
//!   than 14 logins a minute: the vault answers `busy` past 16 logins in progress per
//!   account, and a successful login stays in progress for `login_expiry_secs`) (`login/start`, the client's OPAQUE finish,
//!   `login/finish`) until `--logins` are done. The clients use a trivial Argon2 (the server's
//!   work does not depend on it: the server never runs the key stretching), so the figures are
//!   the server's. Printed: logins per second, latency percentiles of a login's two round
//!   trips, and the server process's CPU time per login, from which its capacity on this
//!   machine's cores follows (the clients share those cores here).
//! - The same logins against three vault instances sharing a 3-member etcd cluster on this
//!   machine (docs/vault.md §11), the clients spread over the instances, then again with one
//!   etcd member killed: logins per second and latency next to the SQLite figure, same run.
//!   (`--no-etcd` skips it.)
//! - Client side: the time a phone-side login and registration take with the protocol's
//!   Argon2id parameters, on this machine.
//!
//! `cargo run --release -p sealback-vault --features testing --bin vault-bench`

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow};
use clap::Parser;
use opaque_ke::argon2::Argon2;
use sealback_vault::logins::MAX_LOGINS_PER_ACCOUNT;
use sealback_vault::testing::cluster::Fleet;
use sealback_vault::testing::light_client::{LightClient, cheap_key_stretching};
use sealback_vault::testing::{Options, TestVault};
use sealback_vault_client::protocol::suite::{
    ARGON2_ITERATIONS, ARGON2_LANES, ARGON2_MEMORY_KIB, key_stretching,
};

#[derive(Parser)]
#[command(about = "Starts a sealback vault and measures logins")]
struct Args {
    /// Concurrent clients (each with its own account).
    #[arg(long, default_value_t = 32)]
    clients: usize,
    /// Logins to run in all.
    #[arg(long, default_value_t = 6000)]
    logins: usize,
    /// Client-side logins timed with the real Argon2 parameters.
    #[arg(long, default_value_t = 5)]
    argon2_runs: usize,
    /// The `sealback-vault` binary (default: beside this one).
    #[arg(long)]
    server: Option<PathBuf>,
    /// Skips the three instances on etcd.
    #[arg(long)]
    no_etcd: bool,
}

/// What one run measured.
struct Figures {
    logins: usize,
    /// Logins that failed and were run again.
    failed: usize,
    wall: Duration,
    /// Sorted.
    latencies: Vec<Duration>,
}

impl Figures {
    fn per_second(&self) -> f64 {
        self.logins as f64 / self.wall.as_secs_f64()
    }

    fn percentile(&self, p: f64) -> f64 {
        let total = self.latencies.len();
        let index = ((total as f64 * p).ceil() as usize).clamp(1, total) - 1;
        self.latencies[index].as_secs_f64() * 1000.0
    }

    fn print(&self, what: &str, baseline: Option<&Figures>) {
        let ratio = baseline
            .map(|base| {
                format!(
                    " ({:.2}x the SQLite figure)",
                    self.per_second() / base.per_second()
                )
            })
            .unwrap_or_default();
        println!("{what}:");
        println!(
            "  {} logins ({} failed and run again) in {:.2} s: {:.0} logins/s{ratio}",
            self.logins,
            self.failed,
            self.wall.as_secs_f64(),
            self.per_second()
        );
        println!(
            "  latency of a login's two round trips: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            self.percentile(0.50),
            self.percentile(0.99),
            self.percentile(1.0)
        );
    }
}

/// Accounts for `clients` clients, each registered, spread over `vaults` (client n on vault
/// n mod their number), enough that none passes the vault's bound of logins in progress.
fn make_clients(
    vaults: &[&TestVault],
    clients: usize,
    per_client: usize,
    prefix: &str,
    ksf: &Argon2<'static>,
) -> Result<Vec<Arc<Vec<LightClient>>>> {
    let accounts_each = (per_client + 1).div_ceil(MAX_LOGINS_PER_ACCOUNT - 2);
    let mut all = Vec::new();
    for n in 0..clients {
        let vault = vaults[n % vaults.len()];
        let mut accounts = Vec::new();
        for m in 0..accounts_each {
            let account = format!("{prefix}-{n}-{m}");
            let credential = vault.add_account(&account).map_err(|e| anyhow!(e))?;
            let client = LightClient::new(
                &vault.url,
                &vault.ca_cert(),
                &vault.server_key,
                &account,
                &credential,
            )?;
            client.register(PASSWORD, ksf)?;
            accounts.push(client);
        }
        // Warm up: connections, sessions, caches.
        accounts[0].login(PASSWORD, ksf)?;
        all.push(Arc::new(accounts));
    }
    Ok(all)
}

/// Runs `per_client` logins on each client at once.
fn measure(
    clients: &[Arc<Vec<LightClient>>],
    per_client: usize,
    ksf: &Argon2<'static>,
) -> Result<Figures> {
    let started = Instant::now();
    let threads: Vec<_> = clients
        .iter()
        .map(|accounts| {
            let accounts = accounts.clone();
            let ksf = ksf.clone();
            std::thread::spawn(move || -> Result<(Vec<Duration>, usize)> {
                let mut failed = 0;
                let mut latencies = Vec::with_capacity(per_client);
                for i in 0..per_client {
                    // A login that fails (a store request caught by a dying member) is
                    // counted and run again; a run with more failures than logins stops.
                    loop {
                        match accounts[i % accounts.len()].login(PASSWORD, &ksf) {
                            Ok(waited) => break latencies.push(waited),
                            Err(err) if failed < per_client => {
                                failed += 1;
                                if failed == 1 {
                                    eprintln!("a login failed and is run again: {err}");
                                }
                            }
                            Err(err) => return Err(err.into()),
                        }
                    }
                }
                Ok((latencies, failed))
            })
        })
        .collect();
    let mut latencies = Vec::new();
    let mut failed = 0;
    for thread in threads {
        let (each, failures) = thread.join().map_err(|_| anyhow!("a client panicked"))??;
        latencies.extend(each);
        failed += failures;
    }
    let wall = started.elapsed();
    latencies.sort();
    Ok(Figures {
        logins: latencies.len(),
        failed,
        wall,
        latencies,
    })
}

const PASSWORD: &[u8] = b"benchmark password 1";

fn main() -> Result<()> {
    let args = Args::parse();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let server = match args.server {
        Some(server) => server,
        None => std::env::current_exe()?
            .parent()
            .context("the benchmark's directory")?
            .join("sealback-vault"),
    };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "vault-bench: {} clients, {} logins, {cores} cores",
        args.clients, args.logins
    );
    let vault = TestVault::start_with(
        &server,
        Options {
            guess_limit: 10,
            ..Options::default()
        },
    )
    .map_err(|e| anyhow!(e))?;
    let cheap = cheap_key_stretching();
    let per_client = args.logins.div_ceil(args.clients);
    let clients = make_clients(&[&vault], args.clients, per_client, "bench", &cheap)?;
    let pid = server_pid(&vault)?;
    let cpu_before = process_cpu(pid)?;
    let sqlite = measure(&clients, per_client, &cheap)?;
    let cpu = process_cpu(pid)? - cpu_before;
    let cpu_per_login = cpu.as_secs_f64() / sqlite.logins as f64;
    sqlite.print(
        "one vault, SQLite store with group commit, SoftHSM2, HTTPS, keep-alive",
        None,
    );
    println!(
        "  server CPU per login {:.3} ms: {:.0} logins/s per core, {:.0} on {cores} cores with \
         the clients elsewhere",
        cpu_per_login * 1000.0,
        1.0 / cpu_per_login,
        cores as f64 / cpu_per_login
    );

    if !args.no_etcd {
        let mut fleet = Fleet::start(&server, 3, Options::default()).map_err(|e| anyhow!(e))?;
        let vaults: Vec<&TestVault> = fleet.vaults.iter().collect();
        let on_etcd = make_clients(&vaults, args.clients, per_client, "etcd", &cheap)?;
        let three = measure(&on_etcd, per_client, &cheap)?;
        three.print(
            "three vault instances, one 3-member etcd cluster (same machine)",
            Some(&sqlite),
        );
        // A member that is not the one every client would lose first: any will do, the
        // cluster keeps its quorum with two.
        fleet.cluster.kill(2);
        // Accounts of their own: those above have a minute's worth of logins in progress.
        let vaults: Vec<&TestVault> = fleet.vaults.iter().collect();
        let down = make_clients(&vaults, args.clients, per_client, "down", &cheap)?;
        let degraded = measure(&down, per_client, &cheap)?;
        degraded.print(
            "three vault instances, one etcd member killed (2 of 3 up)",
            Some(&sqlite),
        );
    }

    // The phone's side, with the real parameters.
    if args.argon2_runs == 0 {
        return Ok(());
    }
    let real = key_stretching();
    let phone = LightClient::new(
        &vault.url,
        &vault.ca_cert(),
        &vault.server_key,
        "bench-phone",
        &vault.add_account("bench-phone").map_err(|e| anyhow!(e))?,
    )?;
    phone.register(PASSWORD, &real)?;
    let mut times = Vec::new();
    for _ in 0..args.argon2_runs {
        let start = Instant::now();
        let waited = phone.login(PASSWORD, &real)?;
        times.push(start.elapsed() - waited);
    }
    times.sort();
    println!(
        "client side, Argon2id m = {} MiB, t = {ARGON2_ITERATIONS}, p = {ARGON2_LANES}: a login \
         costs the client {:.0} ms (median of {}; min {:.0}, max {:.0}) on this machine",
        ARGON2_MEMORY_KIB / 1024,
        times[times.len() / 2].as_secs_f64() * 1000.0,
        times.len(),
        times[0].as_secs_f64() * 1000.0,
        times[times.len() - 1].as_secs_f64() * 1000.0,
    );
    Ok(())
}

/// The vault server's process id, from `/proc`.
fn server_pid(vault: &TestVault) -> Result<u32> {
    let config = vault.config_path();
    let config = config.to_string_lossy();
    for entry in std::fs::read_dir("/proc")? {
        let entry = entry?;
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline);
        if cmdline.contains("serve") && cmdline.contains(config.as_ref()) {
            return Ok(pid);
        }
    }
    Err(anyhow!("the vault process was not found"))
}

/// User plus system CPU time of a process.
fn process_cpu(pid: u32) -> Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let after = stat.rsplit_once(')').context("stat format")?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>()? + fields[12].parse::<u64>()?;
    // Linux reports in clock ticks of 1/100 s (USER_HZ).
    Ok(Duration::from_millis(ticks * 10))
}
