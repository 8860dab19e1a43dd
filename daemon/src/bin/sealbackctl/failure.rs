//! How a sealbackctl command ends badly: the kinds of failure, the exit status each means,
//! and the error printed (on standard error, and with `--json` as JSON on standard output).

use std::process::ExitCode;

use sealback_daemon::control::api::{ErrorBody, ErrorResponse};
use sealback_daemon::control::client::ClientError;

/// The exit statuses, as `--help` and the README list them.
pub(crate) mod exit {
    /// The daemon reported an error, a check found problems, or a plugin check failed.
    pub const FAILED: u8 = 1;
    /// sealbackctl was called wrongly (clap uses 2 for its own usage errors too).
    pub const USAGE: u8 = 2;
    /// Nothing answers on the control socket.
    pub const UNREACHABLE: u8 = 3;
    /// A backup reached some targets and failed on others.
    pub const PARTIAL: u8 = 4;
}

/// A mistake in how sealbackctl was called that clap cannot see: exit status 2.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub(crate) struct UsageError {
    pub(crate) message: String,
    pub(crate) hint: &'static str,
}

/// A command whose answer is printed on standard output but that did not succeed (a backup
/// that failed on some targets, `verify` finding problems, a failed plugin check): what went
/// wrong goes to standard error only, so that `--json` prints one document, and the command
/// exits with `status`.
#[derive(Debug, thiserror::Error)]
#[error("{}", .failures.join("; "))]
pub(crate) struct Reported {
    pub(crate) status: u8,
    pub(crate) failures: Vec<String>,
}

/// Says what went wrong: on standard error, and with `--json` also as an [`ErrorResponse`]
/// on standard output, whose `code` is the daemon's stable one when the daemon answered.
/// Returns the exit status the error means.
pub(crate) fn report(error: &anyhow::Error, json: bool, verbose: bool) -> ExitCode {
    if let Some(reported) = error.downcast_ref::<Reported>() {
        for failure in &reported.failures {
            eprintln!("error: {failure}");
        }
        return ExitCode::from(reported.status);
    }
    let (body, status) = classify(error);
    if verbose {
        eprintln!("error [{}]: {}", body.code, body.message);
    } else {
        eprintln!("error: {}", body.message);
    }
    if let Some(hint) = &body.hint {
        eprintln!("hint: {hint}");
    }
    if json {
        print_json(body);
    }
    ExitCode::from(status)
}

/// The error as one JSON document on standard output (`--json`).
fn print_json(error: ErrorBody) {
    match serde_json::to_string_pretty(&ErrorResponse { error }) {
        Ok(text) => outln!("{text}"),
        Err(e) => eprintln!("error: cannot encode the error as JSON: {e}"),
    }
}

/// A command line the parser refuses: clap's message and usage on standard error as
/// always, and with `--json` anywhere before a `--` also the `usage` error as JSON on
/// standard output, since the parsed `--json` is not there to say so. Help and version,
/// which clap raises as errors too, print and exit 0.
pub(crate) fn refused_command_line(error: clap::Error) -> ExitCode {
    if !error.use_stderr() {
        error.exit();
    }
    let json = std::env::args_os()
        .skip(1)
        .take_while(|arg| arg != "--")
        .any(|arg| arg == "--json");
    let _ = error.print();
    if json {
        let rendered = error.render().to_string();
        let first = rendered.lines().next().unwrap_or_default();
        print_json(ErrorBody {
            code: "usage".to_owned(),
            message: first.strip_prefix("error: ").unwrap_or(first).to_owned(),
            hint: Some("`sealbackctl --help` lists the commands, and `sealbackctl COMMAND --help` their options".to_owned()),
        });
    }
    ExitCode::from(exit::USAGE)
}

/// The error as the control protocol would report it, and its exit status. Errors that
/// never reached the daemon get codes of sealbackctl's own: `unreachable`, `protocol`,
/// `usage`, `failed`.
fn classify(error: &anyhow::Error) -> (ErrorBody, u8) {
    let body = |code: &str, message: String, hint: Option<String>| ErrorBody {
        code: code.to_owned(),
        message,
        hint,
    };
    if let Some(client) = error.downcast_ref::<ClientError>() {
        return match client {
            ClientError::Connect { .. } => (
                body("unreachable", client.message(), client.hint()),
                exit::UNREACHABLE,
            ),
            ClientError::Api(api) => (api.clone(), exit::FAILED),
            ClientError::Protocol(message) => {
                (body("protocol", message.clone(), None), exit::FAILED)
            }
        };
    }
    if let Some(usage) = error.downcast_ref::<UsageError>() {
        let hint = Some(usage.hint.to_owned());
        return (body("usage", usage.message.clone(), hint), exit::USAGE);
    }
    (body("failed", format!("{error:#}"), None), exit::FAILED)
}
