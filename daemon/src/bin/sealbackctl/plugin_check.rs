//! `sealbackctl plugin check`: the conformance kit, run here without the daemon. Options the
//! plugin refuses are the caller's mistake (status 2), a broken contract the plugin's.

use std::path::PathBuf;

use anyhow::Context;

use crate::failure::{Reported, UsageError, exit};
use crate::output;

/// Runs the conformance kit on a blocking thread, printing each case as it ends (or, with
/// `--json`, the report at the end).
pub(crate) async fn run(
    json: bool,
    plugin: PathBuf,
    settings: sealback_conformance::Settings,
) -> anyhow::Result<()> {
    // Each case as it ends is progress: none with --json (or --quiet).
    if !json {
        progressln!("checking {}", plugin.display());
    }
    let report = tokio::task::spawn_blocking(move || {
        sealback_conformance::run_with(&plugin, &settings, |case| {
            if !json {
                progressln!("{case}");
            }
        })
    })
    .await
    .context("the conformance kit stopped")??;
    if let Some(reason) = &report.options_refused {
        return Err(UsageError {
            message: format!("the plugin refused the options given with --options: {reason}"),
            hint: "fix --options: a JSON object of the provider's options, as a target's \
                   `options` table (see the provider's documentation)",
        }
        .into());
    }
    let plugin = &report.plugin;
    output(json, &report, |report| {
        outln!(
            "{report}: plugin {:?} {} (ABI v{})",
            plugin.name,
            plugin.version,
            plugin.abi_version
        );
    })?;
    if !report.is_success() {
        return Err(Reported {
            status: exit::FAILED,
            failures: vec![format!(
                "{} of {} cases failed: the plugin does not keep the provider contract \
                 (docs/plugin-abi.md)",
                report.failed(),
                report.cases.len()
            )],
        }
        .into());
    }
    Ok(())
}

/// A JSON object given as an option; anything else is a usage error naming the option.
pub(crate) fn json_option(option: &'static str, text: String) -> anyhow::Result<String> {
    match serde_json::from_str::<serde_json::Value>(&text) {
        Ok(serde_json::Value::Object(_)) => Ok(text),
        Ok(_) => Err(UsageError {
            message: format!("{option} is not a JSON object"),
            hint: "give the provider's options as an object, e.g. '{\"path\": \"/tmp/sb-check\"}'",
        }
        .into()),
        Err(e) => Err(UsageError {
            message: format!("{option} is not valid JSON: {e}"),
            hint: "quote it for the shell, e.g. --options '{\"path\": \"/tmp/sb-check\"}'",
        }
        .into()),
    }
}
