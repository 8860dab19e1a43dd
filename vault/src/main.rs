//! `sealback-vault`: the Backup Key Vault's server and its administration.
#![forbid(unsafe_code)]

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context as _, Result, anyhow};
use clap::{Parser, Subcommand};
use sealback_service::signals::StopSignals;
use sealback_vault::hsm::Hsm;
use sealback_vault::keyvault::{accounts, init};
use sealback_vault::store;
use sealback_vault::{Config, KeyVault, audit, ceremony, server};

#[derive(Parser)]
#[command(
    name = "sealback-vault",
    version,
    about = "The sealback Backup Key Vault",
    after_help = "\
Environment:
  SEALBACK_LOG (or RUST_LOG)  what to log: a level or tracing's filter syntax (default: info)
  JOURNAL_STREAM              set by systemd: when it names stderr, events go to the journal
                              with their fields; otherwise plain text on stderr, coloured only
                              on a terminal"
)]
struct Cli {
    /// The configuration file.
    #[arg(long, global = true, default_value = "/etc/sealback-vault/vault.toml")]
    config: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serves the vault over HTTPS until SIGTERM or Ctrl-C.
    Serve,
    /// Generates the record key in the HSM and the OPAQUE server setup; prints the server
    /// key that clients pin.
    Init,
    /// Prints the server key that clients pin.
    ServerKey,
    /// Accounts and their credentials.
    Account {
        #[command(subcommand)]
        command: AccountCommand,
    },
    /// The audit log.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Shows the record key's PKCS#11 attributes.
    Hsm,
    /// The HSM keys: the key ceremony that installs them in several tokens (docs/vault.md §10).
    Key {
        #[command(subcommand)]
        command: KeyCommand,
    },
}

#[derive(Subcommand)]
enum KeyCommand {
    /// The steps of the key ceremony.
    Ceremony {
        #[command(subcommand)]
        step: CeremonyStep,
    },
}

#[derive(Subcommand)]
enum CeremonyStep {
    /// On the first token, before `init`: generates the record and entry keys, wrappable only
    /// under a key the token's security officer trusts. Prints their check value.
    Generate,
    /// On a receiving token: a new transport key pair; writes its public half to FILE and
    /// prints its fingerprint, to be read out to the first token's operator.
    TransportKey {
        #[arg(long)]
        out: PathBuf,
    },
    /// On a token holding the keys: wraps them for the transport key in FILE, whose
    /// fingerprint the receiver's operator read out; writes them to --out and prints their
    /// check value, to be read out to the receiver's operator.
    Wrap {
        #[arg(long = "for")]
        for_key: PathBuf,
        #[arg(long)]
        fingerprint: String,
        /// A file (mode 0600) holding the token's security officer PIN.
        #[arg(long)]
        so_pin_file: PathBuf,
        #[arg(long)]
        out: PathBuf,
    },
    /// On the receiving token: installs the wrapped keys of FILE if their check value is
    /// --check (as the first token's operator read it out).
    Unwrap {
        file: PathBuf,
        #[arg(long)]
        check: String,
    },
    /// Prints the check value of the token's keys and their security attributes.
    Check,
}

#[derive(Subcommand)]
enum AccountCommand {
    /// Creates an account; prints its credential (shown this once).
    Add { name: String },
    /// Gives an account a new credential (the old one stops working); the guess count and
    /// the record are kept.
    Reissue { name: String },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Verifies the hash chain; prints the entry count and the last hash, and fails on events
    /// that show the store was rolled back (a login-success after an erase of its record).
    Verify,
}

fn main() -> ExitCode {
    if let Err(err) = harden() {
        eprintln!("sealback-vault: cannot turn core dumps off: {err}");
        return ExitCode::FAILURE;
    }
    sealback_service::docs::generate_if_asked(<Cli as clap::CommandFactory>::command, "8");
    let cli = Cli::parse();
    sealback_service::logging::init(&["SEALBACK_LOG", "RUST_LOG"]);
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("sealback-vault: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    let config = Config::load(&cli.config)?;
    match cli.command {
        Command::Serve => serve(&config),
        Command::Init => {
            let done = init(&config)?;
            if done.joined {
                println!(
                    "joined the vault on {}: this token holds its keys; clients pin this key \
                     (vault `server_key`):",
                    config.store_name()
                );
            } else {
                println!("initialised; clients pin this key (vault `server_key`):");
            }
            println!("server_key = \"{}\"", done.server_key);
            Ok(())
        }
        Command::ServerKey => {
            println!("server_key = \"{}\"", KeyVault::read_server_key(&config)?);
            Ok(())
        }
        Command::Account { command } => {
            let store = store::open(&config)?;
            let (name, credential) = match command {
                AccountCommand::Add { name } => {
                    let credential =
                        accounts::add(store.as_ref(), &name).map_err(|e| anyhow!(e))?;
                    (name, credential)
                }
                AccountCommand::Reissue { name } => {
                    // On etcd the entry's tag binds its place, so the new entry is tagged
                    // again in the HSM.
                    let hsm = match &config.etcd {
                        Some(_) => Some(Hsm::open(&config.hsm, &config.hsm.pin()?)?),
                        None => None,
                    };
                    let credential = accounts::reissue(store.as_ref(), &name, hsm.as_ref())
                        .map_err(|e| anyhow!(e))?;
                    (name, credential)
                }
            };
            eprintln!(
                "the credential of account {name} (shown once; the vault keeps only a hash):"
            );
            println!("{}", credential.as_str());
            Ok(())
        }
        Command::Audit {
            command: AuditCommand::Verify,
        } => {
            let (head, history) = audit::history(&config.audit_log)?;
            println!(
                "audit log {}: the chain holds, {} entries, last hash {}",
                config.audit_log.display(),
                head.entries,
                head.hash
            );
            if history.rollbacks.is_empty() {
                return Ok(());
            }
            for rollback in &history.rollbacks {
                println!("{rollback}");
            }
            Err(anyhow!(
                "the audit log shows {} event(s) that only a store put back from an older copy \
                 explains (listed above): a guess limit was reset or an erased record restored",
                history.rollbacks.len()
            ))
        }
        Command::Hsm => {
            let pin = config.hsm.pin()?;
            let hsm = Hsm::open(&config.hsm, &pin)?;
            let report = hsm.record_key_report()?;
            println!("record key {:?}:", sealback_vault::hsm::RECORD_KEY_LABEL);
            println!("  sensitive = {}", report.sensitive);
            println!("  extractable = {}", report.extractable);
            println!("  always_sensitive = {}", report.always_sensitive);
            println!("  never_extractable = {}", report.never_extractable);
            println!("  token = {}", report.token);
            println!("  value_len = {}", report.value_len);
            println!("  value_readable = {}", report.value_readable);
            Ok(())
        }
        Command::Key {
            command: KeyCommand::Ceremony { step },
        } => ceremony_step(&config, step),
    }
}

fn ceremony_step(config: &Config, step: CeremonyStep) -> Result<()> {
    let pin = config.hsm.pin()?;
    let hsm = &config.hsm;
    match step {
        CeremonyStep::Generate => {
            let check = ceremony::generate(hsm, &pin)?;
            println!("generated the record key and the entry key in the token");
            println!("check = \"{check}\"");
        }
        CeremonyStep::TransportKey { out } => {
            let key = ceremony::transport_key(hsm, &pin)?;
            write_json(&out, &key)?;
            println!(
                "wrote the transport key of token {:?} to {}",
                key.token,
                out.display()
            );
            println!("fingerprint = \"{}\"", key.fingerprint());
        }
        CeremonyStep::Wrap {
            for_key,
            fingerprint,
            so_pin_file,
            out,
        } => {
            let transport: ceremony::TransportKey = read_json(&for_key)?;
            let so_pin = sealback_vault::config::read_pin_file(&so_pin_file)?;
            let wrapped = ceremony::wrap(hsm, &pin, &so_pin, &transport, &fingerprint)?;
            write_json(&out, &wrapped)?;
            println!(
                "wrote the keys wrapped for token {:?} to {}",
                transport.token,
                out.display()
            );
            println!("check = \"{}\"", wrapped.check);
        }
        CeremonyStep::Unwrap { file, check } => {
            let wrapped: ceremony::WrappedKeys = read_json(&file)?;
            let check = ceremony::unwrap(hsm, &pin, &wrapped, &check)?;
            println!("installed the record key and the entry key, not extractable");
            println!("check = \"{check}\"");
        }
        CeremonyStep::Check => {
            println!("check = \"{}\"", ceremony::check(hsm, &pin)?);
            for (label, flags) in ceremony::key_flags(hsm, &pin)? {
                println!("{label:?}:");
                println!("  sensitive = {}", flags.sensitive);
                println!("  extractable = {}", flags.extractable);
                println!("  wrap_with_trusted = {}", flags.wrap_with_trusted);
                println!("  value_readable = {}", flags.value_readable);
            }
        }
    }
    Ok(())
}

fn read_json<T: serde::de::DeserializeOwned>(path: &std::path::Path) -> Result<T> {
    let text = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_slice(&text)
        .with_context(|| format!("{} is not a ceremony file", path.display()))
}

fn write_json<T: serde::Serialize>(path: &std::path::Path, value: &T) -> Result<()> {
    let text = serde_json::to_vec_pretty(value)?;
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

fn serve(config: &Config) -> Result<()> {
    let tls = server::tls_config(&config.tls_cert, &config.tls_key).map_err(|e| anyhow!(e))?;
    allow_connections();
    let vault = Arc::new(KeyVault::open(config)?);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        // Before listening, so that a SIGHUP while starting does not kill the vault either.
        let signals = StopSignals::install().context("cannot install the signal handlers")?;
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        let address = listener.local_addr()?;
        tracing::info!("serving with server key {}", vault.server_key());
        // The line a supervisor or a test waits for, and systemd's READY=1 (Type=notify).
        println!("listening on https://{address}");
        std::io::stdout().flush()?;
        sealback_service::notify::ready(&format!("serving on https://{address}"));
        let stop = async {
            signals.wait("sealback-vault").await;
            tracing::info!("stopping");
            sealback_service::notify::stopping();
        };
        server::run(listener, tls, vault.clone(), stop).await;
        Ok::<_, anyhow::Error>(())
    })?;
    vault.close();
    tracing::info!("stopped");
    Ok(())
}

/// Raises the soft limit of open files to the hard one, so that the vault reaches its own
/// bound of open connections ([`server::MAX_CONNECTIONS`]) with descriptors to spare for its
/// store, HSM and etcd. systemd starts services with a soft limit of 1,024 (hard 524,288):
/// at that limit, a flood of connections would make `accept` fail instead of being refused
/// one by one, and opening the store or a session with the HSM could fail.
fn allow_connections() {
    let Some(hard) = sealback_service::limits::raise_open_files() else {
        return;
    };
    let wanted = server::MAX_CONNECTIONS as u64 + server::SPARE_FILES;
    if hard < wanted {
        tracing::warn!(
            "the limit of open files is {hard}, under the {wanted} the vault needs to hold \
             {} connections: raise it (LimitNOFILE= in the unit)",
            server::MAX_CONNECTIONS
        );
    }
}

/// The vault holds the OPAQUE server keys (the OPRF key among them) and the HSM PIN in
/// memory: no core file, no `ptrace` by other processes of its user, and what it creates is
/// its own (umask 0077).
fn harden() -> nix::Result<()> {
    use nix::sys::resource::{Resource, setrlimit};
    setrlimit(Resource::RLIMIT_CORE, 0, 0)?;
    nix::sys::prctl::set_dumpable(false)?;
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
    Ok(())
}
