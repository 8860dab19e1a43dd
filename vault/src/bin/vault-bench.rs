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
//! - Client side: the time a phone-side login and registration take with the protocol's
//!   Argon2id parameters, on this machine.
//!
//! `cargo run --release -p sealback-vault --features testing --bin vault-bench`

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow};
use base64::Engine as _;
use clap::Parser;
use opaque_ke::{ClientLogin, ClientLoginFinishParameters, CredentialResponse};
use rand::RngCore as _;
use rand::rngs::OsRng;
use sealback_vault::keyvault::check::contract;
use sealback_vault::logins::MAX_LOGINS_PER_ACCOUNT;
use sealback_vault::testing::{Options, TestVault};
use sealback_vault_client::protocol::suite::{
    ARGON2_ITERATIONS, ARGON2_LANES, ARGON2_MEMORY_KIB, CONTEXT, Suite, identifiers,
    key_stretching, key_stretching_with,
};
use sealback_vault_client::protocol::vault_proof::{self, ClientExchange};
use sealback_vault_client::protocol::wire::{
    Done, LoginFinish, LoginFinishAnswer, LoginStart, LoginStartAnswer, RegisterFinish,
    RegisterStart, RegisterStartAnswer, path,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

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
}

/// One account's HTTPS client.
#[derive(Clone)]
struct Client {
    http: reqwest::blocking::Client,
    url: String,
    account: String,
    credential: String,
    /// The vault's key, to which each request's credential is sealed and whose proof each
    /// answer must carry, as the real client does (`protocol::vault_proof`).
    server_key: [u8; 32],
}

impl Client {
    fn post<B: Serialize, T: DeserializeOwned>(&self, path: &str, body: &B) -> Result<T> {
        let json = serde_json::to_vec(body)?;
        let digest = vault_proof::request_digest("POST", path, &json);
        let exchange =
            ClientExchange::new(&self.server_key).ok_or_else(|| anyhow!("not a server key"))?;
        let response = self
            .http
            .post(format!("{}{path}", self.url))
            .header(
                "authorization",
                exchange.authorization(&self.credential, &digest),
            )
            .header("content-type", "application/json")
            .body(json)
            .send()?;
        let status = response.status();
        let proof = response
            .headers()
            .get(vault_proof::PROOF_HEADER)
            .and_then(|value| value.to_str().ok())
            .map(str::to_string)
            .unwrap_or_default();
        let bytes = response.bytes()?;
        if !exchange.verify(&digest, status.as_u16(), &bytes, &proof) {
            return Err(anyhow!("{path}: the answer carries no valid vault proof"));
        }
        if !status.is_success() {
            return Err(anyhow!(
                "{path}: {status} {}",
                String::from_utf8_lossy(&bytes)
            ));
        }
        Ok(serde_json::from_slice(&bytes)?)
    }

    fn register(&self, password: &[u8], ksf: &opaque_ke::argon2::Argon2<'static>) -> Result<()> {
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
                    .map_err(|e| e.to_string())?;
                Ok((answer.response, answer.record_version))
            })
            .map_err(|e| anyhow!("{e}"))?;
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

    /// One login; the time spent waiting for the server.
    fn login(&self, password: &[u8], ksf: &opaque_ke::argon2::Argon2<'static>) -> Result<Duration> {
        let start =
            ClientLogin::<Suite>::start(&mut OsRng, password).map_err(|e| anyhow!("{e}"))?;
        let mut attempt = [0u8; 16];
        OsRng.fill_bytes(&mut attempt);
        let sent = Instant::now();
        let answer: LoginStartAnswer = self.post(
            path::LOGIN_START,
            &LoginStart {
                account: self.account.clone(),
                ke1: start.message.serialize().to_vec(),
                // As the client sends it: one id per login (the vault keeps it in the entry).
                attempt_id: Some(format!("{:032x}", u128::from_le_bytes(attempt))),
            },
        )?;
        let mut waited = sent.elapsed();
        let ke2 =
            CredentialResponse::<Suite>::deserialize(&answer.ke2).map_err(|e| anyhow!("{e}"))?;
        let finish = start
            .state
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
            .map_err(|e| anyhow!("{e}"))?;
        let sent = Instant::now();
        let _: LoginFinishAnswer = self.post(
            path::LOGIN_FINISH,
            &LoginFinish {
                account: self.account.clone(),
                login_id: answer.login_id,
                ke3: finish.message.serialize().to_vec(),
            },
        )?;
        waited += sent.elapsed();
        Ok(waited)
    }
}

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
    let ca = reqwest::Certificate::from_pem_bundle(&std::fs::read(vault.ca_cert())?)?;
    let cheap = key_stretching_with(8, 1, 1).map_err(|e| anyhow!(e))?;
    let password = b"benchmark password 1";

    let server_key: [u8; 32] = base64::engine::general_purpose::STANDARD
        .decode(&vault.server_key)?
        .try_into()
        .map_err(|_| anyhow!("the server key is not 32 bytes"))?;
    let per_client = args.logins.div_ceil(args.clients);
    // Logins (the warm-up's included) per account stay below the vault's per-account bound.
    let accounts_each = (per_client + 1).div_ceil(MAX_LOGINS_PER_ACCOUNT - 2);
    let mut clients = Vec::new();
    for n in 0..args.clients {
        let http = reqwest::blocking::Client::builder()
            .tls_certs_only(ca.clone())
            .pool_max_idle_per_host(1)
            .build()?;
        let mut accounts = Vec::new();
        for m in 0..accounts_each {
            let account = format!("bench-{n}-{m}");
            let credential = vault.add_account(&account).map_err(|e| anyhow!(e))?;
            let client = Client {
                http: http.clone(),
                url: vault.url.clone(),
                account,
                credential: credential.to_string(),
                server_key,
            };
            client.register(password, &cheap)?;
            accounts.push(client);
        }
        clients.push(Arc::new(accounts));
    }
    // Warm up: connections, sessions, caches.
    for accounts in &clients {
        accounts[0].login(password, &cheap)?;
    }

    let pid = server_pid(&vault)?;
    let cpu_before = process_cpu(pid)?;
    let started = Instant::now();
    let threads: Vec<_> = clients
        .iter()
        .map(|accounts| {
            let accounts = accounts.clone();
            let cheap = cheap.clone();
            std::thread::spawn(move || -> Result<Vec<Duration>> {
                (0..per_client)
                    .map(|i| accounts[i % accounts.len()].login(password, &cheap))
                    .collect()
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for thread in threads {
        latencies.extend(thread.join().map_err(|_| anyhow!("a client panicked"))??);
    }
    let wall = started.elapsed();
    let cpu = process_cpu(pid)? - cpu_before;
    latencies.sort();
    let total = latencies.len();
    let percentile = |p: f64| {
        let index = ((total as f64 * p).ceil() as usize).clamp(1, total) - 1;
        latencies[index].as_secs_f64() * 1000.0
    };
    let cpu_per_login = cpu.as_secs_f64() / total as f64;
    println!("server side (SQLite store with group commit, SoftHSM2, HTTPS, keep-alive):");
    println!(
        "  {total} logins in {:.2} s: {:.0} logins/s with the clients on the same {cores} cores",
        wall.as_secs_f64(),
        total as f64 / wall.as_secs_f64()
    );
    println!(
        "  latency of a login's two round trips: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        percentile(0.50),
        percentile(0.99),
        percentile(1.0)
    );
    println!(
        "  server CPU per login {:.3} ms: {:.0} logins/s per core, {:.0} on {cores} cores with \
         the clients elsewhere",
        cpu_per_login * 1000.0,
        1.0 / cpu_per_login,
        cores as f64 / cpu_per_login
    );

    // The phone's side, with the real parameters.
    let real = key_stretching();
    let phone = Client {
        account: "bench-phone".into(),
        credential: vault
            .add_account("bench-phone")
            .map_err(|e| anyhow!(e))?
            .to_string(),
        ..clients[0][0].clone()
    };
    phone.register(password, &real)?;
    let mut times = Vec::new();
    for _ in 0..args.argon2_runs {
        let start = Instant::now();
        let waited = phone.login(password, &real)?;
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
