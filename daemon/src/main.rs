//! `sealbackd --config PATH`: the backup daemon, in the foreground (systemd runs it).
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use sealback_daemon::config::Config;
use sealback_daemon::control::server;
use sealback_daemon::daemon::{Daemon, DaemonHandle};
use sealback_daemon::scheduler;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{mpsc, watch};

/// End-to-end encrypted, incremental backups of a messaging app's message store.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// The configuration file (config/sealback.toml documents every key).
    #[arg(long, value_name = "PATH")]
    config: PathBuf,
}

fn main() -> ExitCode {
    let args = Args::parse();
    // The backup key lives in this process: never in a core file, and what it creates is
    // its own.
    if let Err(e) = sealback_daemon::hardening::no_core_dumps() {
        eprintln!("sealbackd: cannot turn core dumps off: {e}");
        return ExitCode::FAILURE;
    }
    sealback_daemon::hardening::private_files();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SEALBACK_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let config = match Config::load(&args.config) {
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
        Err(e) => {
            eprintln!("sealbackd: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(config: Config) -> anyhow::Result<()> {
    if !config.store.is_dir() {
        anyhow::bail!(
            "store.path {} is not a directory: point it at the app's message store (the folder holding {})",
            config.store.display(),
            config.database
        );
    }
    create_private_dir(&config.state_dir)?;
    let (ticket_tx, ticket_rx) = mpsc::channel(16);
    let (change_tx, change_rx) = mpsc::channel(1);
    let daemon = Arc::new(Daemon::new(config.clone(), ticket_tx)?);
    let _watcher = scheduler::watch_store(&config.store, change_tx)
        .with_context(|| format!("cannot watch the store {}", config.store.display()))?;
    let listener = server::bind(&config.socket, config.socket_mode).with_context(|| {
        format!(
            "cannot listen on the control socket {}",
            config.socket.display()
        )
    })?;

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let scheduler = tokio::spawn(scheduler::run(
        daemon.clone(),
        ticket_rx,
        change_rx,
        shutdown_rx.clone(),
    ));
    tracing::info!(
        store = %config.store.display(), socket = %config.socket.display(), schedule = %config.schedule,
        targets = config.targets.len(), "sealbackd started"
    );
    let stop = {
        let daemon = daemon.clone();
        async move {
            wait_for_signal().await;
            tracing::info!("stopping");
            daemon.begin_stop();
            let _ = shutdown_tx.send(true);
        }
    };
    server::serve(listener, Arc::new(DaemonHandle(daemon)), stop).await;
    let _ = scheduler.await;
    let _ = std::fs::remove_file(&config.socket);
    tracing::info!("stopped");
    Ok(())
}

async fn wait_for_signal() {
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers; stop with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
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
