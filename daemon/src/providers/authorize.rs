//! What the plugin ABI v2 adds on the daemon's side: each instance's log lines go to the
//! daemon's log, and a target's interactive authorization (`sealbackctl target auth NAME`) runs
//! on an instance of its own, opened with the target's options.

use std::path::Path;

use sealback_plugin_api::abi;
use sealback_plugin_api::host::{LogSink, Plugin};

use super::{plugin_path, trust};
use crate::config::TargetConfig;

/// Where a target's plugin logs: the daemon's log, with the target's name.
pub fn log_sink(target: &str) -> LogSink {
    let target = target.to_owned();
    Box::new(move |level, message| match level {
        abi::LOG_ERROR => tracing::error!(target = %target, "plugin: {message}"),
        abi::LOG_WARN => tracing::warn!(target = %target, "plugin: {message}"),
        abi::LOG_INFO => tracing::info!(target = %target, "plugin: {message}"),
        _ => tracing::debug!(target = %target, "plugin: {message}"),
    })
}

/// Runs the target's authorization step: `prompt` shows the person what to do, `cancelled` is
/// polled while the plugin waits. Blocks for as long as the person takes (the plugin bounds it).
pub fn authorize_target(
    plugins_dir: &Path,
    target: &TargetConfig,
    prompt: &mut dyn FnMut(&str),
    cancelled: &dyn Fn() -> bool,
) -> Result<(), AuthorizeError> {
    let path = plugin_path(plugins_dir, &target.plugin).map_err(AuthorizeError::Failed)?;
    trust::check(&path).map_err(AuthorizeError::Failed)?;
    let plugin = Plugin::load(&path).map_err(|e| AuthorizeError::Failed(e.to_string()))?;
    if !plugin.can_authorize() {
        return Err(AuthorizeError::NotNeeded(format!(
            "target {:?} (plugin {}) has no authorization step: its credentials come from its \
             options",
            target.name, target.plugin
        )));
    }
    let options = serde_json::to_string(&target.options).expect("options serialize");
    let instance = plugin
        .open_with_log(&options, log_sink(&target.name))
        .map_err(|e| AuthorizeError::Failed(format!("target {:?}: {e}", target.name)))?;
    tracing::info!(target = %target.name, "authorization started");
    instance.authorize(prompt, cancelled).map_err(|e| {
        AuthorizeError::Failed(format!("authorizing target {:?}: {e}", target.name))
    })?;
    tracing::info!(target = %target.name, "authorization completed");
    Ok(())
}

/// Why an authorization did not complete.
#[derive(Debug)]
pub enum AuthorizeError {
    /// The target's plugin has no authorization step.
    NotNeeded(String),
    /// The plugin could not be loaded or opened, or the authorization failed.
    Failed(String),
}
