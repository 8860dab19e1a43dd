//! sealbackctl: the command line of sealbackd. Every command is one request on the daemon's
//! control socket (see `control::api`); this file only parses arguments and prints answers.
//! `plugin check` is the exception: it runs the conformance kit here, without the daemon.

use std::io::{self, BufRead, IsTerminal, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, UNIX_EPOCH};

use anyhow::Context;
use clap::{Parser, Subcommand};
use indicatif::{HumanBytes, ProgressBar, ProgressStyle};
use sealback_daemon::control::api::{
    Accepted, AcknowledgeMissingRequest, AcknowledgedMissing, Activity, BackupReport,
    BackupRequest, DiffRequest, KeyChangePasswordRequest, KeyDisableRequest, KeyGenerateRequest,
    KeyImportRequest, KeyMode, KeyRecoverRequest, KeyRotateRequest, KeySetPasswordRequest,
    LsRequest, MissingSnapshot, Progress, PruneRequest, RepairReport, RepairRequest,
    RestoreRequest, SnapshotList, Status, VerifyReport, VerifyRequest,
};
use sealback_daemon::control::client::{Client, ClientError};
use serde::Serialize;
use zeroize::Zeroizing;

#[path = "sealbackctl/browse.rs"]
mod browse;
#[path = "sealbackctl/prune.rs"]
mod prune;

const DEFAULT_SOCKET: &str = "/run/sealback/control.sock";

/// A recovery key on standard input is far shorter than this.
const MAX_RECOVERY_KEY_INPUT: u64 = 4096;

#[derive(Parser)]
#[command(
    name = "sealbackctl",
    version,
    about = "Control sealbackd, the end-to-end encrypted backup daemon",
    after_help = "\
Examples:
  sealbackctl status
  sealbackctl backup --wait
  sealbackctl restore latest --to ./restored
  sealbackctl ls latest Media/Images
  sealbackctl diff 1a2b3c4d latest
  sealbackctl restore latest --to ./restored --include 'Media/Documents/**'
  sealbackctl key import < recovery-key.txt
  sealbackctl plugin check ./libsealback_mine.so --options '{\"path\": \"/tmp/sb-check\"}'

Exit status: 0 done, 1 the daemon reported an error (or a plugin check
failed), 2 usage error, 3 the daemon cannot be reached."
)]
struct Cli {
    /// The daemon's control socket [default: $SEALBACK_SOCKET, else /run/sealback/control.sock]
    #[arg(long, global = true, value_name = "PATH")]
    socket: Option<PathBuf>,

    /// Print the daemon's answer as one JSON document instead of text
    #[arg(long, global = true)]
    json: bool,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Show what the daemon is doing, its key, schedule and storage targets
    Status,
    /// Back up the message store now
    Backup {
        /// Wait until the backup has finished, showing its progress
        #[arg(long)]
        wait: bool,
    },
    /// List the snapshots on every target, and those this device made or saw that a target
    /// no longer holds (MISSING: removed, hidden or rolled back there)
    #[command(after_help = "\
While a target hides a snapshot newer than the latest it lists, `restore latest` refuses;
restore an older snapshot by naming its id, or, if the missing one was removed on purpose,
run `sealbackctl snapshots --acknowledge-missing` to forget it and end the alarm.")]
    Snapshots {
        /// Forget the snapshots listed as missing, ending their alarm (they were removed
        /// on purpose, or you accept that they are lost)
        #[arg(long)]
        acknowledge_missing: bool,
        /// With --acknowledge-missing: only this target's [default: every target]
        #[arg(long, value_name = "NAME", requires = "acknowledge_missing")]
        target: Option<String>,
    },
    /// List the files of a snapshot (the database among them), or those in one folder
    Ls {
        /// A snapshot id, an unambiguous prefix of one, or "latest"
        snapshot: String,
        /// A folder or file, relative to the store (e.g. Media/Images) [default: everything]
        path: Option<String>,
        /// The target to read [default: the first configured target]
        #[arg(long, value_name = "NAME")]
        target: Option<String>,
    },
    /// Show what changed from one snapshot to another: files added (+), removed (-) and
    /// changed (M), and the database's size before and after
    Diff {
        /// The older snapshot: an id, an unambiguous prefix of one, or "latest"
        from: String,
        /// The newer snapshot
        to: String,
        /// The target holding both [default: the first configured target]
        #[arg(long, value_name = "NAME")]
        target: Option<String>,
    },
    /// Restore a snapshot into a directory: the database first (it says when the messages
    /// can be read), then the media
    #[command(after_help = "\
The database is written first; as soon as it is in place and SQLite's integrity_check passes,
a line says the messages are ready (with --json: \"database_ready_ms\" in the progress
lines and \"database\" in the result) while the media go on.

--include takes globs relative to the store: `*` within a folder, `**` across folders; a
folder takes everything in it. Examples: --include Media/Images, --include 'Media/**/*.pdf',
--include msgstore.db (the database alone). Without --include the whole snapshot comes back.")]
    Restore {
        /// A snapshot id, an unambiguous prefix of one, or "latest"
        snapshot: String,
        /// The directory to restore into (created if missing)
        #[arg(long, value_name = "DIR")]
        to: String,
        /// Restore into a non-empty directory, replacing files of the same name
        #[arg(long)]
        force: bool,
        /// The target to restore from [default: the first configured target]
        #[arg(long, value_name = "NAME")]
        target: Option<String>,
        /// Restore only the files this glob takes (repeat for more); the database only if
        /// one takes it
        #[arg(long, value_name = "GLOB")]
        include: Vec<String>,
    },
    /// Read every object of a target and check it: exits 1 if anything is damaged or missing
    Verify {
        /// The target to check [default: the first configured target]
        #[arg(long, value_name = "NAME")]
        target: Option<String>,
    },
    /// Remove index and snapshot objects that fail authentication (left by a torn upload),
    /// after reading each twice in full; says what it removed
    Repair {
        /// The target to repair [default: the first configured target]
        #[arg(long, value_name = "NAME")]
        target: Option<String>,
    },
    /// Apply the retention policy ([retention] in the configuration): forget the snapshots it
    /// does not keep and reclaim the space nothing kept needs; says what it keeps, forgets
    /// and deletes
    Prune {
        /// Say what would be kept, forgotten and deleted; change nothing
        #[arg(long)]
        dry_run: bool,
        /// The target to prune [default: every configured target]
        #[arg(long, value_name = "NAME")]
        target: Option<String>,
    },
    /// Create or import the key that encrypts the backups
    #[command(subcommand)]
    Key(KeyCommand),
    /// Develop storage-provider plugins (runs here, without the daemon)
    #[command(subcommand)]
    Plugin(PluginCommand),
    /// Storage targets
    #[command(subcommand)]
    Target(TargetCommand),
}

#[derive(Subcommand)]
enum TargetCommand {
    /// Sign a target in to its storage account (Google Drive: the device flow)
    #[command(after_help = "\
The daemon runs the authorization with the target's options and shows what to do here: open a
URL on any device with a browser and enter the code. The credentials are written where the
target's options say (Google Drive: refresh_token_file, mode 0600); the target starts working
without a restart. Interrupting this command cancels the authorization. See docs/gdrive.md.")]
    Auth {
        /// The target's name in the configuration
        name: String,
    },
}

#[derive(Subcommand)]
enum PluginCommand {
    /// Run the conformance kit against a plugin file; exits 1 if any case fails
    #[command(after_help = "\
Every object the kit stores is under a fresh prefix conformance-<random>/ in the target, and is
removed at the end. Options are not secret (they are in the process list): a provider takes
its secrets from files or environment variables that its options name. See docs/plugins.md.")]
    Check {
        /// The plugin file, e.g. target/release/libsealback_mine.so
        plugin: PathBuf,
        /// The provider's options: a JSON object, as a target's `options` are passed
        #[arg(long, value_name = "JSON")]
        options: String,
        /// Options for a second instance over the same storage whose puts fail (read-only
        /// credentials, a full quota), for the failed-put cases, which are skipped without
        #[arg(long, value_name = "JSON")]
        failing_options: Option<String>,
    },
}

#[derive(Subcommand)]
enum KeyCommand {
    /// Create a new key and show its recovery key, once
    Generate {
        /// Replace the current key; backups made with it stay readable only with it
        #[arg(long)]
        replace: bool,
    },
    /// Use an existing recovery key, read from standard input
    Import {
        /// Replace the current key
        #[arg(long)]
        replace: bool,
    },
    /// Keep the key in the Backup Key Vault behind a password (read from the terminal, or
    /// one line of standard input)
    SetPassword,
    /// On a new device: fetch the key from the vault with the password
    Recover {
        /// Replace a key this device already has
        #[arg(long)]
        replace: bool,
    },
    /// Protect the vault's copy of the key with a new password (old and new: two lines of
    /// standard input, or asked on the terminal); backups are untouched
    ChangePassword,
    /// Delete the key's vault record (as turning encrypted backup off does); the key stays
    /// on this device
    Disable,
    /// Move every target to a new key: a full backup under it, then the new recovery key (or,
    /// in password mode, the vault updated); the old backups stay readable until --finish
    Rotate {
        /// Remove the old key's backups from every target and forget the old key, once each
        /// target holds a complete backup under the new one
        #[arg(long)]
        finish: bool,
    },
}

/// A mistake in how sealbackctl was called that clap cannot see: exit status 2.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
struct UsageError {
    message: String,
    hint: &'static str,
}

fn main() -> ExitCode {
    sealback_service::docs::generate_if_asked(<Cli as clap::CommandFactory>::command, "1");
    // It reads passwords and recovery keys: never into a core file.
    if let Err(e) = sealback_daemon::hardening::no_core_dumps() {
        eprintln!("sealbackctl: cannot turn core dumps off: {e}");
        return ExitCode::FAILURE;
    }
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    let outcome = match runtime {
        Ok(runtime) => runtime.block_on(run(cli)),
        Err(e) => Err(anyhow::Error::new(e).context("cannot start the async runtime")),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => report(&error),
    }
}

fn report(error: &anyhow::Error) -> ExitCode {
    if let Some(client) = error.downcast_ref::<ClientError>() {
        eprintln!("error: {}", client.message());
        if let Some(hint) = client.hint() {
            eprintln!("hint: {hint}");
        }
        return match client {
            ClientError::Connect { .. } => ExitCode::from(3),
            ClientError::Api(_) | ClientError::Protocol(_) => ExitCode::from(1),
        };
    }
    if let Some(usage) = error.downcast_ref::<UsageError>() {
        eprintln!("error: {}", usage.message);
        eprintln!("hint: {}", usage.hint);
        return ExitCode::from(2);
    }
    eprintln!("error: {error:#}");
    ExitCode::from(1)
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let socket = cli
        .socket
        .or_else(|| std::env::var_os("SEALBACK_SOCKET").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_SOCKET));
    let client = Client::new(socket);
    let json = cli.json;
    let show_progress = !json && io::stdout().is_terminal();
    match cli.command {
        Command::Status => {
            let status = client.status().await?;
            output(json, &status, print_status)?;
        }
        Command::Backup { wait } => {
            let bar = ProgressView::new(show_progress && wait, "backing up");
            let report = client
                .backup(BackupRequest { wait }, |p| bar.update(p))
                .await;
            bar.clear();
            match report? {
                Some(report) => output(json, &report, print_backup)?,
                None => {
                    let accepted = Accepted {
                        accepted: true,
                        message: "backup started; `sealbackctl status` shows when it has \
                                  finished"
                            .to_owned(),
                    };
                    output(json, &accepted, |a| println!("{}", a.message))?;
                }
            }
        }
        Command::Prune { dry_run, target } => {
            let reports = client
                .prune(PruneRequest { target, dry_run }, |_| {})
                .await?;
            output(json, &reports, prune::print)?;
        }
        Command::Repair { target } => {
            let report = client.repair(RepairRequest { target }, |_| {}).await?;
            output(json, &report, print_repair)?;
        }
        Command::Verify { target } => {
            let bar = ProgressView::new(show_progress, "verifying");
            let report = client
                .verify(VerifyRequest { target }, |p| bar.update(p))
                .await;
            bar.clear();
            let report = report?;
            output(json, &report, print_verify)?;
            if !report.problems.is_empty() {
                anyhow::bail!(
                    "{} problem(s) found on target {}",
                    report.problems.len(),
                    report.target
                );
            }
        }
        Command::Snapshots {
            acknowledge_missing: false,
            ..
        } => {
            let list = client.snapshots().await?;
            output(json, &list, print_snapshots)?;
        }
        Command::Snapshots {
            acknowledge_missing: true,
            target,
        } => {
            let done = client
                .acknowledge_missing(AcknowledgeMissingRequest { target })
                .await?;
            output(json, &done, print_acknowledged)?;
        }
        Command::Restore {
            snapshot,
            to,
            force,
            target,
            include,
        } => {
            let request = RestoreRequest {
                snapshot,
                to: absolute(&to)?,
                force,
                target,
                include,
            };
            let bar = ProgressView::new(show_progress, "restoring");
            let ready = browse::MessagesReady::default();
            let report = client
                .restore(request, |p| {
                    if let Some(line) = ready.line(&p).filter(|_| !json) {
                        bar.println(&line);
                    }
                    bar.update(p)
                })
                .await;
            bar.clear();
            output(json, &report?, browse::print_restore)?;
        }
        Command::Ls {
            snapshot,
            path,
            target,
        } => {
            let request = LsRequest {
                snapshot,
                path,
                target,
            };
            output(json, &client.ls(request).await?, browse::print_listing)?;
        }
        Command::Diff { from, to, target } => {
            let request = DiffRequest { from, to, target };
            output(json, &client.diff(request).await?, browse::print_diff)?;
        }
        Command::Target(TargetCommand::Auth { name }) => {
            let request = sealback_daemon::control::api::TargetAuthRequest { target: name };
            let done = client
                .target_auth(request, |text| {
                    // The prompt is what the person acts on: shown even with --json.
                    eprintln!("{text}");
                })
                .await?;
            output(json, &done, |done| {
                println!(
                    "Target {:?} is authorized: it stores backups from its next call on.",
                    done.target
                );
            })?;
        }
        Command::Key(KeyCommand::Generate { replace }) => {
            let generated = client.key_generate(KeyGenerateRequest { replace }).await?;
            output(json, &generated, |g| {
                println!();
                println!("Your recovery key:");
                println!();
                println!("{}", g.recovery_key.as_str());
                println!();
                println!(
                    "Write it down now and keep it somewhere safe: it will not be shown again."
                );
                println!("Without this recovery key or this device, your backups cannot be read.");
            })?;
        }
        Command::Plugin(PluginCommand::Check {
            plugin,
            options,
            failing_options,
        }) => {
            let mut settings = sealback_conformance::Settings::new(options);
            if let Some(failing) = failing_options {
                settings = settings.failing_options(failing);
            }
            check_plugin(json, plugin, settings).await?;
        }
        Command::Key(KeyCommand::SetPassword) => {
            let mut input = PasswordInput::new()?;
            let password = input.new_password("New vault password")?;
            let changed = client
                .key_set_password(KeySetPasswordRequest { password })
                .await?;
            output(json, &changed, |c| println!("{}", c.message))?;
        }
        Command::Key(KeyCommand::Recover { replace }) => {
            let password = PasswordInput::new()?.password("Vault password")?;
            let changed = client
                .key_recover(KeyRecoverRequest { password, replace })
                .await?;
            output(json, &changed, |c| println!("{}", c.message))?;
        }
        Command::Key(KeyCommand::ChangePassword) => {
            let mut input = PasswordInput::new()?;
            let old_password = input.password("Current vault password")?;
            let new_password = input.new_password("New vault password")?;
            let changed = client
                .key_change_password(KeyChangePasswordRequest {
                    old_password,
                    new_password,
                })
                .await?;
            output(json, &changed, |c| println!("{}", c.message))?;
        }
        Command::Key(KeyCommand::Disable) => {
            let password = PasswordInput::new()?.password("Vault password")?;
            let changed = client.key_disable(KeyDisableRequest { password }).await?;
            output(json, &changed, |c| println!("{}", c.message))?;
        }
        Command::Key(KeyCommand::Rotate { finish }) => {
            let password_mode = client.status().await?.key_mode == KeyMode::Password;
            let password = if password_mode && !finish {
                Some(PasswordInput::new()?.password("Vault password")?)
            } else {
                None
            };
            let rotated = client
                .key_rotate(KeyRotateRequest { password, finish })
                .await?;
            output(json, &rotated, |r| {
                println!("{}", r.message);
                if let Some(key) = &r.recovery_key {
                    println!();
                    println!("Your new recovery key:");
                    println!();
                    println!("{}", key.as_str());
                    println!();
                    println!(
                        "Write it down now. The old recovery key opens only the old backups, until `sealbackctl key rotate --finish` removes them."
                    );
                }
                if finish {
                    println!(
                        "removed {} objects ({})",
                        r.removed_objects,
                        HumanBytes(r.removed_bytes)
                    );
                }
            })?;
        }
        Command::Key(KeyCommand::Import { replace }) => {
            let recovery_key = read_recovery_key()?;
            let request = KeyImportRequest {
                recovery_key,
                replace,
            };
            let imported = client.key_import(request).await?;
            output(json, &imported, |i| {
                if i.verified_targets.is_empty() {
                    println!(
                        "recovery key imported (no target has backups to check it against yet)"
                    );
                } else {
                    println!(
                        "recovery key imported; it opened the backups on: {}",
                        i.verified_targets.join(", ")
                    );
                }
            })?;
        }
    }
    Ok(())
}

/// Runs the conformance kit on a blocking thread, printing each case as it ends (or, with
/// `--json`, the report at the end).
async fn check_plugin(
    json: bool,
    plugin: PathBuf,
    settings: sealback_conformance::Settings,
) -> anyhow::Result<()> {
    if !json {
        println!("checking {}", plugin.display());
    }
    let report = tokio::task::spawn_blocking(move || {
        sealback_conformance::run_with(&plugin, &settings, |case| {
            if !json {
                println!("{case}");
            }
        })
    })
    .await
    .context("the conformance kit stopped")??;
    let plugin = &report.plugin;
    output(json, &report, |report| {
        println!(
            "{report}: plugin {:?} {} (ABI v{})",
            plugin.name, plugin.version, plugin.abi_version
        );
    })?;
    if !report.is_success() {
        anyhow::bail!(
            "{} of {} cases failed: the plugin does not keep the provider contract \
             (docs/plugin-abi.md)",
            report.failed(),
            report.cases.len()
        );
    }
    Ok(())
}

/// Prints `value` as JSON with `--json`, else as text.
fn output<T: Serialize>(json: bool, value: &T, text: impl FnOnce(&T)) -> anyhow::Result<()> {
    if json {
        let document = serde_json::to_string_pretty(value).context("cannot encode the answer")?;
        println!("{document}");
    } else {
        text(value);
    }
    Ok(())
}

/// The daemon may run in another directory: it needs an absolute path.
fn absolute(dir: &str) -> anyhow::Result<String> {
    let path = std::path::absolute(dir)
        .with_context(|| format!("cannot make {dir:?} an absolute path"))?;
    path.into_os_string().into_string().map_err(|_| {
        UsageError {
            message: "the current directory is not valid UTF-8, and the control protocol \
                      sends paths as UTF-8"
                .to_owned(),
            hint: "give --to as an absolute path",
        }
        .into()
    })
}

/// Reads the recovery key from standard input, never from the arguments (where other users
/// could read it in the process list and the shell would keep it in its history).
fn read_recovery_key() -> anyhow::Result<Zeroizing<String>> {
    let stdin = io::stdin();
    // Allocated once at its final size, so that no copy is left behind by a reallocation.
    let mut input = Zeroizing::new(String::with_capacity(MAX_RECOVERY_KEY_INPUT as usize));
    if stdin.is_terminal() {
        eprint!("Recovery key: ");
        io::stderr().flush().context("cannot write the prompt")?;
        stdin
            .lock()
            .take(MAX_RECOVERY_KEY_INPUT)
            .read_line(&mut input)
            .context("cannot read the recovery key from the terminal")?;
    } else {
        stdin
            .lock()
            .take(MAX_RECOVERY_KEY_INPUT)
            .read_to_string(&mut input)
            .context("cannot read the recovery key from standard input")?;
    }
    let key = input.trim();
    if key.is_empty() {
        return Err(UsageError {
            message: "no recovery key on standard input".to_owned(),
            hint: "type it when asked, or pipe it in: sealbackctl key import < recovery-key.txt",
        }
        .into());
    }
    Ok(Zeroizing::new(key.to_owned()))
}

/// Where passwords come from: the terminal, without echo; or, when standard input is not a
/// terminal, its lines (one per password asked). Never the command line.
struct PasswordInput {
    lines: Option<std::vec::IntoIter<Zeroizing<String>>>,
}

impl PasswordInput {
    fn new() -> anyhow::Result<PasswordInput> {
        let stdin = io::stdin();
        if stdin.is_terminal() {
            return Ok(PasswordInput { lines: None });
        }
        let mut all = Zeroizing::new(String::with_capacity(MAX_RECOVERY_KEY_INPUT as usize));
        stdin
            .lock()
            .take(MAX_RECOVERY_KEY_INPUT)
            .read_to_string(&mut all)
            .context("cannot read the password from standard input")?;
        let lines: Vec<Zeroizing<String>> = all
            .lines()
            .map(|l| Zeroizing::new(l.trim_end_matches('\r').to_owned()))
            .collect();
        Ok(PasswordInput {
            lines: Some(lines.into_iter()),
        })
    }

    fn password(&mut self, prompt: &str) -> anyhow::Result<Zeroizing<String>> {
        let password = match &mut self.lines {
            Some(lines) => lines.next().unwrap_or_default(),
            None => Zeroizing::new(
                rpassword::prompt_password(format!("{prompt}: "))
                    .context("cannot read the password from the terminal")?,
            ),
        };
        if password.is_empty() {
            return Err(UsageError {
                message: format!("no password given ({prompt})"),
                hint: "type it when asked, or give it as a line of standard input (never as an argument)",
            }
            .into());
        }
        Ok(password)
    }

    /// A new password: on the terminal, asked twice.
    fn new_password(&mut self, prompt: &str) -> anyhow::Result<Zeroizing<String>> {
        let first = self.password(prompt)?;
        if self.lines.is_none() && *self.password("Repeat it")? != *first {
            return Err(UsageError {
                message: "the two passwords differ".to_owned(),
                hint: "run the command again",
            }
            .into());
        }
        Ok(first)
    }
}

/// A progress bar on the terminal, or nothing.
struct ProgressView(Option<ProgressBar>);

impl ProgressView {
    fn new(show: bool, what: &'static str) -> Self {
        ProgressView(show.then(|| {
            let style = ProgressStyle::with_template(
                "{msg} [{bar:30}] {bytes}/{total_bytes} ({bytes_per_sec}, {eta} left)",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
            ProgressBar::new(0).with_style(style).with_message(what)
        }))
    }

    fn update(&self, progress: Progress) {
        if let Some(bar) = &self.0 {
            bar.set_length(progress.total_bytes.max(progress.done_bytes));
            bar.set_position(progress.done_bytes);
        }
    }

    fn clear(&self) {
        if let Some(bar) = &self.0 {
            bar.finish_and_clear();
        }
    }

    /// A line above the bar, or on its own without one.
    fn println(&self, line: &str) {
        match &self.0 {
            Some(bar) => bar.println(line),
            None => println!("{line}"),
        }
    }
}

fn print_status(status: &Status) {
    let activity = match status.activity {
        Activity::Idle => "idle",
        Activity::BackingUp => "backing up",
        Activity::Restoring => "restoring",
    };
    let key = match status.key_mode {
        KeyMode::RecoveryKey => "recovery key".to_owned(),
        KeyMode::Password => match status.vault_attempts_left {
            Some(left) => format!("password, in the vault ({left} password attempt(s) left)"),
            None => "password, in the vault".to_owned(),
        },
        KeyMode::DeviceOnly => "on this device only (no recovery key or vault record)".to_owned(),
        KeyMode::None => {
            "none (sealbackctl key generate, or key import an existing one)".to_owned()
        }
    };
    let last_backup = match &status.last_backup {
        Some(r) => format!(
            "{}, snapshot {} on {}, {} files, {} read, {} written",
            utc(r.time_unix_ms),
            short_id(&r.snapshot),
            r.target,
            r.files,
            HumanBytes(r.bytes_read),
            HumanBytes(r.bytes_written)
        ),
        None => "never".to_owned(),
    };
    print_fields(&[
        (
            "daemon",
            format!(
                "sealbackd {} (control protocol {})",
                status.daemon_version, status.protocol
            ),
        ),
        ("activity", activity.to_owned()),
        ("key", key.to_owned()),
        ("schedule", status.schedule.clone()),
        ("store", status.store.clone()),
        (
            "pending change",
            if status.pending_change { "yes" } else { "no" }.to_owned(),
        ),
        ("last backup", last_backup),
        (
            "last error",
            status
                .last_error
                .clone()
                .unwrap_or_else(|| "none".to_owned()),
        ),
    ]);
    println!();
    if status.targets.is_empty() {
        println!("no storage targets configured");
        return;
    }
    let rows = status
        .targets
        .iter()
        .map(|t| {
            let last = match (&t.last_snapshot, t.last_snapshot_unix_ms) {
                (Some(id), Some(ms)) => format!("{} {}", short_id(id), utc(ms)),
                (Some(id), None) => short_id(id),
                (None, _) => "-".to_owned(),
            };
            let schedule = match t.next_backup_unix_ms {
                Some(ms) => format!("{} (next {})", t.schedule, utc(ms)),
                None => t.schedule.clone(),
            };
            vec![
                t.name.clone(),
                t.plugin.clone(),
                schedule,
                t.snapshots.to_string(),
                HumanBytes(t.bytes_stored).to_string(),
                last,
                format!(
                    "{} ({} retried, {} failed)",
                    t.requests.requests, t.requests.retries, t.requests.failures
                ),
                t.last_error.clone().unwrap_or_else(|| "-".to_owned()),
            ]
        })
        .collect::<Vec<_>>();
    print_table(
        &[
            ("TARGET", false),
            ("PLUGIN", false),
            ("SCHEDULE", false),
            ("SNAPSHOTS", true),
            ("STORED", true),
            ("LAST SNAPSHOT", false),
            ("REQUESTS", false),
            ("LAST ERROR", false),
        ],
        &rows,
    );
    let missing: Vec<MissingSnapshot> = status
        .targets
        .iter()
        .flat_map(|t| t.missing_snapshots.iter().cloned())
        .collect();
    if !missing.is_empty() {
        println!();
        print_missing(&missing);
    }
}

fn print_backup(r: &BackupReport) {
    print_fields(&[
        ("snapshot", format!("{} on {}", r.snapshot, r.target)),
        ("files", files_line(r)),
        ("read", HumanBytes(r.bytes_read).to_string()),
        ("database", database_line(r)),
        (
            "written",
            format!(
                "{} ({} packs; {} new chunks, {} reused)",
                HumanBytes(r.bytes_written),
                r.packs_written,
                r.chunks_new,
                r.chunks_reused
            ),
        ),
        ("took", took(r.duration_ms)),
    ]);
}

fn database_line(r: &BackupReport) -> String {
    match &r.db_read {
        None => "none in the store".to_owned(),
        Some(read) if read.delta => format!(
            "{} pages, {} read: only what changed since the last snapshot{}",
            r.db_pages,
            HumanBytes(read.bytes),
            if read.patch {
                ", stored as a patch"
            } else {
                ""
            }
        ),
        Some(read) => format!(
            "{} pages, {} read: all of it ({})",
            r.db_pages,
            HumanBytes(read.bytes),
            read.why_full.as_deref().unwrap_or("no reason given")
        ),
    }
}

fn files_line(r: &BackupReport) -> String {
    let mut line = format!("{} ({} read, the rest unchanged", r.files, r.files_read);
    if r.files_unstable > 0 {
        line += &format!(
            "; {} kept changing while read, their previous version was kept",
            r.files_unstable
        );
    }
    line + ")"
}

fn print_verify(report: &VerifyReport) {
    println!(
        "target {}: {} snapshots, {} indexes, {} packs, {} blobs, {} read",
        report.target,
        report.snapshots,
        report.indexes,
        report.packs,
        report.blobs,
        HumanBytes(report.bytes_read)
    );
    if report.problems.is_empty() {
        println!("no problems: every object authenticated and every snapshot is complete");
    }
    for problem in &report.problems {
        println!("problem: {problem}");
    }
}

fn print_repair(report: &RepairReport) {
    println!(
        "target {}: {} index and snapshot objects checked, {} removed",
        report.target,
        report.checked,
        report.removed.len()
    );
    for removed in &report.removed {
        println!("removed: {removed}");
    }
    for kept in &report.kept {
        println!("kept: {kept}");
    }
}

fn print_snapshots(list: &SnapshotList) {
    print_missing(&list.missing);
    if list.snapshots.is_empty() {
        println!("no snapshots yet");
        return;
    }
    let rows = list
        .snapshots
        .iter()
        .map(|s| {
            vec![
                short_id(&s.id),
                utc(s.time_unix_ms),
                s.files.to_string(),
                HumanBytes(s.size).to_string(),
                s.target.clone(),
                if s.keep.is_empty() {
                    "forget".to_owned()
                } else {
                    s.keep.join(",")
                },
            ]
        })
        .collect::<Vec<_>>();
    print_table(
        &[
            ("ID", false),
            ("TIME", false),
            ("FILES", true),
            ("SIZE", true),
            ("TARGET", false),
            ("POLICY", false),
        ],
        &rows,
    );
}

/// `key: value` lines, the values aligned.
fn print_fields(fields: &[(&str, String)]) {
    let width = fields
        .iter()
        .map(|(key, _)| key.len() + 1)
        .max()
        .unwrap_or(0);
    for (key, value) in fields {
        println!("{:width$}  {value}", format!("{key}:"));
    }
}

/// A table with a header; columns marked `true` are right-aligned (numbers).
fn print_table(columns: &[(&str, bool)], rows: &[Vec<String>]) {
    let header: Vec<String> = columns.iter().map(|(name, _)| (*name).to_owned()).collect();
    let mut widths = vec![0; columns.len()];
    for row in std::iter::once(&header).chain(rows) {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    for row in std::iter::once(&header).chain(rows) {
        let cells: Vec<String> = row
            .iter()
            .zip(columns.iter().zip(&widths))
            .map(|(cell, ((_, right), &width))| {
                if *right {
                    format!("{cell:>width$}")
                } else {
                    format!("{cell:<width$}")
                }
            })
            .collect();
        println!("{}", cells.join("  ").trim_end());
    }
}

fn short_id(id: &str) -> String {
    id.chars().take(8).collect()
}

/// RFC 3339 in UTC, to the second.
fn utc(unix_ms: i64) -> String {
    // humantime formats from 1970 up to the end of year 9999 only.
    const END_OF_9999_MS: i64 = 253_402_300_800_000;
    match u64::try_from(unix_ms) {
        Ok(ms) if unix_ms < END_OF_9999_MS => {
            humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
        }
        _ => format!("{unix_ms} ms after 1970"),
    }
}

fn took(ms: u64) -> String {
    match ms {
        0..1_000 => format!("{ms} ms"),
        1_000..60_000 => format!("{:.1} s", ms as f64 / 1000.0),
        _ => format!("{} min {} s", ms / 60_000, ms % 60_000 / 1000),
    }
}

/// The alarm of snapshots missing from their target, if any, ahead of a listing.
fn print_missing(missing: &[MissingSnapshot]) {
    if missing.is_empty() {
        return;
    }
    println!(
        "MISSING: {} snapshot(s) this device made or saw are no longer on their target \
         (removed, hidden or rolled back there):",
        missing.len()
    );
    for m in missing {
        println!("  {}", missing_line(m));
    }
    println!(
        "`restore latest` will not restore an older snapshot in place of a missing newer one: \
         name the snapshot to restore, or run `sealbackctl snapshots --acknowledge-missing` \
         if they were removed on purpose."
    );
    println!();
}

/// One missing snapshot: its id, when it was made, how the device knows it.
fn missing_line(m: &MissingSnapshot) -> String {
    let made = m.time_unix_ms.map_or("time unknown".to_owned(), utc);
    let how = match m.known.as_str() {
        "made" => "made by this device",
        "parent" => "the parent of the newest snapshot",
        _ => "seen by this device",
    };
    let gone = if m.damaged {
        "no longer genuine"
    } else {
        "missing"
    };
    format!(
        "{} made {made} on {} ({how}; {gone} since {})",
        m.id,
        m.target,
        utc(m.noticed_unix_ms)
    )
}

fn print_acknowledged(done: &AcknowledgedMissing) {
    if done.acknowledged.is_empty() {
        println!("no snapshot is missing");
        return;
    }
    println!("forgot {} missing snapshot(s):", done.acknowledged.len());
    for m in &done.acknowledged {
        println!("  {}", missing_line(m));
    }
}
