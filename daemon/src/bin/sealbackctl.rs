//! sealbackctl: the command line of sealbackd. Every command is one request on the daemon's
//! control socket (see `control::api`); this file only parses arguments and prints answers.
//! `plugin check` is the exception: it runs the conformance kit here, without the daemon.

use std::io::{self, IsTerminal};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use indicatif::HumanBytes;
use sealback_daemon::control::api::{
    Accepted, AcknowledgeMissingRequest, BackupRequest, DiffRequest, KeyChangePasswordRequest,
    KeyDisableRequest, KeyGenerateRequest, KeyImportRequest, KeyMode, KeyRecoverRequest,
    KeyRotateRequest, KeySetPasswordRequest, LsRequest, PruneRequest, RepairRequest,
    RestoreRequest, VerifyRequest,
};
use sealback_daemon::control::client::{Client, ClientError};
use serde::Serialize;

#[path = "sealbackctl/out.rs"]
#[macro_use]
mod out;
#[path = "sealbackctl/failure.rs"]
mod failure;
#[path = "sealbackctl/input.rs"]
mod input;

use failure::{Reported, UsageError, exit};
#[path = "sealbackctl/browse.rs"]
mod browse;
#[path = "sealbackctl/plugin_check.rs"]
mod plugin_check;
#[path = "sealbackctl/print.rs"]
mod print;
#[path = "sealbackctl/prune.rs"]
mod prune;

use input::{PasswordInput, read_recovery_key};
use print::{
    ProgressView, print_acknowledged, print_backup, print_repair, print_snapshots, print_status,
    print_verify, took,
};

const DEFAULT_SOCKET: &str = "/run/sealback/control.sock";

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

Output: the answer on standard output (with --json, one JSON document, errors
included: {\"error\": {\"code\", \"message\", \"hint\"}}), messages on standard error.

Exit status:
  0  done
  1  the daemon reported an error, verify found a problem, or a plugin check failed
  2  usage error
  3  the daemon cannot be reached
  4  a backup reached some targets and failed on others (each is reported)"
)]
struct Cli {
    /// The daemon's control socket [default: $SEALBACK_SOCKET, else /run/sealback/control.sock]
    #[arg(long, global = true, value_name = "PATH")]
    socket: Option<PathBuf>,

    /// Print the daemon's answer as one JSON document instead of text, errors included
    #[arg(long, global = true)]
    json: bool,

    /// Say more: the socket, each error's code and how long the command took (on stderr)
    #[arg(short, long, global = true, conflicts_with = "quiet")]
    verbose: bool,

    /// Print no report and no progress on success; errors, --json documents and a new
    /// recovery key are still printed
    #[arg(short, long, global = true)]
    quiet: bool,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Show what the daemon is doing, its key, schedule and storage targets
    Status,
    /// What each target's repository holds: its size, deduplication ratio, snapshots and
    /// objects (from the daemon's catalog, as of its last backup or listing)
    Stats,
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
        /// Delete what nothing kept needs at once, without the 24-hour grace period that
        /// protects other devices' running backups: only for a target no other device writes
        /// to (refused when it holds another host's snapshots)
        #[arg(long, conflicts_with = "dry_run")]
        now: bool,
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
        /// them
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

fn main() -> ExitCode {
    sealback_service::docs::generate_if_asked(<Cli as clap::CommandFactory>::command, "1");
    // It reads passwords and recovery keys: never into a core file.
    if let Err(e) = sealback_daemon::hardening::no_core_dumps() {
        eprintln!("sealbackctl: cannot turn core dumps off: {e}");
        return ExitCode::FAILURE;
    }
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return failure::refused_command_line(e),
    };
    let (json, verbose) = (cli.json, cli.verbose);
    out::set_quiet(cli.quiet);
    let started = std::time::Instant::now();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    let outcome = match runtime {
        Ok(runtime) => runtime.block_on(run(cli)),
        Err(e) => Err(anyhow::Error::new(e).context("cannot start the async runtime")),
    };
    let status = match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => failure::report(&error, json, verbose),
    };
    if verbose {
        eprintln!(
            "sealbackctl: took {}",
            took(started.elapsed().as_millis() as u64)
        );
    }
    status
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let socket = cli
        .socket
        .or_else(|| std::env::var_os("SEALBACK_SOCKET").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_SOCKET));
    if cli.verbose {
        eprintln!("sealbackctl: control socket {}", socket.display());
    }
    let client = Client::new(socket);
    let json = cli.json;
    let show_progress = !json && !out::quiet() && io::stdout().is_terminal();
    match cli.command {
        Command::Status => {
            let status = client.status().await?;
            output(json, &status, print_status)?;
        }
        Command::Stats => {
            let stats = client.stats().await?;
            output(json, &stats, print::print_stats)?;
        }
        Command::Backup { wait } => {
            let bar = ProgressView::new(show_progress && wait, "backing up");
            let report = client
                .backup(BackupRequest { wait }, |p| bar.update(p))
                .await;
            bar.clear();
            match report? {
                Some(report) => {
                    output(json, &report, print_backup)?;
                    if !report.failed.is_empty() {
                        let failures = report
                            .failed
                            .iter()
                            .map(|f| format!("target {}: {}", f.target, f.error.message));
                        return Err(Reported {
                            status: exit::PARTIAL,
                            failures: failures.collect(),
                        }
                        .into());
                    }
                }
                None => {
                    let accepted = Accepted {
                        accepted: true,
                        message: "backup started; `sealbackctl status` shows when it has \
                                  finished"
                            .to_owned(),
                    };
                    output(json, &accepted, |a| outln!("{}", a.message))?;
                }
            }
        }
        Command::Prune {
            dry_run,
            target,
            now,
        } => {
            let reports = client
                .prune(
                    PruneRequest {
                        target,
                        dry_run,
                        now,
                    },
                    |_| {},
                )
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
                return Err(Reported {
                    status: exit::FAILED,
                    failures: vec![format!(
                        "{} problem(s) found on target {}",
                        report.problems.len(),
                        report.target
                    )],
                }
                .into());
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
                outln!(
                    "Target {:?} is authorized: it stores backups from its next call on.",
                    done.target
                );
            })?;
        }
        Command::Key(KeyCommand::Generate { replace }) => {
            let generated = client.key_generate(KeyGenerateRequest { replace }).await?;
            // The key alone on standard output, the words around it on standard error: so
            // `key generate > key.txt` writes a file `key import < key.txt` reads back.
            if json {
                output(json, &generated, |_| {})?;
            } else {
                say("\nYour recovery key:\n");
                outln!("{}", generated.recovery_key.as_str());
                say(
                    "\nWrite it down now and keep it somewhere safe: it will not be shown again.\n\
                     Without this recovery key or this device, your backups cannot be read.",
                );
            }
        }
        Command::Plugin(PluginCommand::Check {
            plugin,
            options,
            failing_options,
        }) => {
            let mut settings = sealback_conformance::Settings::new(plugin_check::json_option(
                "--options",
                options,
            )?);
            if let Some(failing) = failing_options {
                settings = settings
                    .failing_options(plugin_check::json_option("--failing-options", failing)?);
            }
            plugin_check::run(json, plugin, settings).await?;
        }
        Command::Key(KeyCommand::SetPassword) => {
            needs_vault(&client).await?;
            let mut input = PasswordInput::new()?;
            let password = input.new_password("New vault password")?;
            let changed = client
                .key_set_password(KeySetPasswordRequest { password })
                .await?;
            output(json, &changed, |c| outln!("{}", c.message))?;
        }
        Command::Key(KeyCommand::Recover { replace }) => {
            needs_vault(&client).await?;
            let password = PasswordInput::new()?.password("Vault password")?;
            let changed = client
                .key_recover(KeyRecoverRequest { password, replace })
                .await?;
            output(json, &changed, |c| outln!("{}", c.message))?;
        }
        Command::Key(KeyCommand::ChangePassword) => {
            needs_vault(&client).await?;
            let mut input = PasswordInput::new()?;
            let old_password = input.password("Current vault password")?;
            let new_password = input.new_password("New vault password")?;
            let changed = client
                .key_change_password(KeyChangePasswordRequest {
                    old_password,
                    new_password,
                })
                .await?;
            output(json, &changed, |c| outln!("{}", c.message))?;
        }
        Command::Key(KeyCommand::Disable) => {
            needs_vault(&client).await?;
            let password = PasswordInput::new()?.password("Vault password")?;
            let changed = client.key_disable(KeyDisableRequest { password }).await?;
            output(json, &changed, |c| outln!("{}", c.message))?;
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
            if let (false, Some(key)) = (json, &rotated.recovery_key) {
                // As `key generate`: the key alone on standard output.
                say("\nYour new recovery key:\n");
                outln!("{}", key.as_str());
                say(
                    "\nWrite it down now. The old recovery key opens only the old backups, until \
                     `sealbackctl key rotate --finish` removes them.\n",
                );
            }
            output(json, &rotated, |r| {
                outln!("{}", r.message);
                if finish {
                    outln!(
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
                    outln!("recovery key imported (no target has backups to check it against yet)");
                } else {
                    outln!(
                        "recovery key imported; it opened the backups on: {}",
                        i.verified_targets.join(", ")
                    );
                }
            })?;
        }
    }
    Ok(())
}

/// Prints `value` as JSON with `--json`, else as text (none with `--quiet`).
fn output<T: Serialize>(json: bool, value: &T, text: impl FnOnce(&T)) -> anyhow::Result<()> {
    if json {
        let document = serde_json::to_string_pretty(value).context("cannot encode the answer")?;
        outln!("{document}");
    } else if !out::quiet() {
        text(value);
    }
    Ok(())
}

/// Words for the person around a secret printed on standard output: on standard error, so
/// that the output redirected to a file holds the secret alone (none with `--quiet`).
fn say(text: &str) {
    if !out::quiet() {
        eprintln!("{text}");
    }
}

/// The vault commands ask for a password: first make sure there is a vault to send it to.
async fn needs_vault(client: &Client) -> anyhow::Result<()> {
    if client.status().await?.vault_configured {
        return Ok(());
    }
    Err(ClientError::Api(sealback_daemon::control::ApiError::no_vault().body).into())
}

/// The daemon may run in another directory: it needs an absolute path.
fn absolute(dir: &str) -> anyhow::Result<String> {
    let path = std::path::absolute(dir).map_err(|e| UsageError {
        message: format!("--to {dir:?} is not a path sealbackctl can use ({e})"),
        hint: "give --to as the directory to restore into, e.g. --to ~/restored",
    })?;
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
