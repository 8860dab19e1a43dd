//! `sealbackd --config PATH`: the backup daemon, in the foreground (systemd runs it).
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use sealback_daemon::config::{Config, ConfigError};
use sealback_daemon::control::server;
use sealback_daemon::daemon::{Daemon, DaemonHandle};
use sealback_daemon::state_lock::StateLock;
use sealback_daemon::{notify, scheduler};
use sealback_service::signals::StopSignals;
use tokio::sync::{mpsc, watch};

/// End-to-end encrypted, incremental backups of a messaging app's message store.
#[derive(Parser)]
#[command(name = "sealbackd", after_help = ENVIRONMENT)]
struct Args {
    /// The configuration file (config/sealback.toml documents every key).
    #[arg(long, value_name = "PATH")]
    config: PathBuf,
}

const ENVIRONMENT: &str = "\
Environment:
  SEALBACK_LOG     what to log: a level (error, warn, info, debug, trace) or tracing's
                   filter syntax, e.g. `info,sealback_daemon::engine=debug` (default: info)
  JOURNAL_STREAM   set by systemd: when it names stderr, events go to the journal with
                   their fields; otherwise plain text on stderr, coloured only on a terminal
  NOTIFY_SOCKET    set by systemd (Type=notify): READY, STATUS, WATCHDOG and STOPPING

Signals:
  SIGTERM, SIGINT  stop: a running backup or restore stops at its next step, keeping the
                   repository valid
  SIGHUP           ignored with a log line (the configuration is read at start only:
                   restart the daemon to apply a change)";

fn main() -> ExitCode {
    sealback_service::docs::generate_if_asked(<Args as clap::CommandFactory>::command, "8");
    // `--version` names the program as `sealbackctl status` does (clap puts the name first).
    let name = sealback_daemon::control::api::daemon_name(
        env!("CARGO_PKG_VERSION"),
        sealback_daemon::control::api::PROTOCOL_VERSION,
    );
    let version: &'static str = name.trim_start_matches("sealbackd ").to_owned().leak();
    let command = <Args as clap::CommandFactory>::command().version(version);
    let args = match <Args as clap::FromArgMatches>::from_arg_matches(&command.get_matches()) {
        Ok(args) => args,
        Err(e) => e.exit(),
    };
    // The backup key lives in this process: never in a core file, and what it creates is
    // its own.
    if let Err(e) = sealback_daemon::hardening::no_core_dumps() {
        eprintln!("sealbackd: cannot turn core dumps off: {e}");
        return ExitCode::FAILURE;
    }
    sealback_daemon::hardening::private_files();
    sealback_service::logging::init(&["SEALBACK_LOG"]);
    let config = match Config::load(&args.config).and_then(check_store) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("sealbackd: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("sealbackd: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        // A target's plugin or options, found wrong when the daemon opened them.
        Err(e) if e.downcast_ref::<ConfigError>().is_some() => {
            eprintln!("sealbackd: {e}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("sealbackd: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(config: Config) -> anyhow::Result<()> {
    // Before anything slow, so a SIGHUP during start-up does not kill the daemon either.
    let signals = StopSignals::install().context("cannot install the signal handlers")?;
    create_private_dir(&config.state_dir)?;
    // Held until the process ends: a second daemon on this state would corrupt it.
    let _state_lock = StateLock::acquire(&config.state_dir)?;
    let (ticket_tx, ticket_rx) = mpsc::channel(16);
    let (change_tx, change_rx) = mpsc::channel(1);
    let daemon = Arc::new(Daemon::new(config.clone(), ticket_tx)?);
    // READY=1 promises a daemon that can back up: its catalogs must open.
    daemon.open_catalogs()?;
    daemon.check_authorizations();
    let _watcher = scheduler::watch_store(&config.store, change_tx)
        .with_context(|| format!("cannot watch the store {}", config.store.display()))?;
    // Under socket activation (sealbackd.socket) systemd listens already; else we bind.
    let passed = server::passed_by_systemd(&config.socket)?;
    let activated = passed.is_some();
    let listener = match passed {
        Some(listener) => listener,
        None => server::bind(&config.socket, config.socket_mode).with_context(|| {
            format!(
                "cannot listen on the control socket {}",
                config.socket.display()
            )
        })?,
    };

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let scheduler = tokio::spawn(scheduler::run(
        daemon.clone(),
        ticket_rx,
        change_rx,
        shutdown_rx.clone(),
    ));
    tracing::info!(
        store = %config.store.display(), socket = %config.socket.display(), schedule = %config.schedule,
        targets = config.targets.len(), socket_from_systemd = activated, "sealbackd started"
    );
    // The catalogs opened (Daemon::open_catalogs) and the socket listens.
    notify::ready();
    let stop = {
        let daemon = daemon.clone();
        async move {
            signals.wait("sealbackd").await;
            tracing::info!("stopping");
            notify::stopping();
            daemon.begin_stop();
            let _ = shutdown_tx.send(true);
        }
    };
    let handle = Arc::new(DaemonHandle(daemon));
    if activated {
        // The socket file is systemd's: it listens on for the next start.
        server::serve_passed(listener, handle, stop).await;
    } else {
        server::serve(listener, handle, stop).await;
    }
    let _ = scheduler.await;
    if !activated {
        let _ = std::fs::remove_file(&config.socket);
    }
    tracing::info!("stopped");
    Ok(())
}

/// The store must be a folder (a backup refuses one without the database; a new device
/// restoring into it has none yet).
fn check_store(config: Config) -> Result<Config, ConfigError> {
    let bad = |key: &str, message: String| ConfigError::BadValue {
        origin: config.origin.clone(),
        key: key.to_owned(),
        message,
    };
    if !config.store.is_dir() {
        return Err(bad(
            "store.path",
            format!(
                "{} is not a directory: point it at the app's message store (the folder holding {})",
                config.store.display(),
                config.database
            ),
        ));
    }
    Ok(config)
}

/// Creates state.dir, or closes an existing one to everyone but the daemon: it holds the
/// backup key and the catalog, which names every file of the store.
fn create_private_dir(dir: &std::path::Path) -> anyhow::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create state.dir {}", dir.display()))?;
    let mode = std::fs::metadata(dir)
        .with_context(|| format!("cannot read state.dir {}", dir.display()))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        tracing::warn!(dir = %dir.display(), mode = format!("{:o}", mode & 0o777), "state.dir was open to others; closing it (mode 0700)");
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode & 0o700 | 0o700))
            .with_context(|| {
                format!(
                    "cannot make state.dir {} private (mode 0700)",
                    dir.display()
                )
            })?;
    }
    Ok(())
}
