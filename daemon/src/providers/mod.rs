//! Storage targets: the configured providers, each a plugin loaded from the plugin
//! directory, seen by the repository as an [`ObjectStore`]. The daemon contains no provider
//! code. What every provider needs from a host is added here, once, by wrappers that
//! implement the same trait (as restic wraps its backends):
//!
//! ```text
//! TargetStore (counters) ─▶ Retrying (backoff, jitter, retry-after) ─▶ Throttled (bandwidth)
//!                           ─▶ Timed (deadline per call) ─▶ Limited (concurrency) ─▶ PluginStore
//! ```
//!
//! A target whose plugin name names no plugin, or whose provider refuses its options, is a
//! configuration error that stops start-up ([`OpenError::wrong_key`]). One whose plugin file
//! cannot be loaded, or whose provider fails otherwise when opened (a disk not mounted yet),
//! keeps its error (shown by `status`) and is opened again at the next backup, while the
//! daemon goes on.

mod authorize;
mod limit;
mod metrics;
mod plugin;
mod retry;
mod stop;
mod throttle;
mod timeout;
mod trust;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use sealback_plugin_api::host::Plugin;

pub use authorize::{AuthorizeError, authorize_target, log_sink};
pub use metrics::{Counters, TargetStore};
pub use plugin::PluginStore;
pub use retry::RetryPolicy;
pub use stop::Stop;

use crate::config::TargetConfig;

/// The file a plugin name refers to: `libsealback_<name>.so` in the plugin directory (what
/// cargo builds for a crate `sealback-<name>`), or `<name>.so`.
pub fn plugin_path(dir: &Path, plugin: &str) -> Result<PathBuf, String> {
    let candidates = [
        dir.join(format!("libsealback_{}.so", plugin.replace('-', "_"))),
        dir.join(format!("{plugin}.so")),
    ];
    candidates.iter().find(|p| p.is_file()).cloned().ok_or_else(|| {
        format!(
            "no plugin {plugin:?} in {}: looked for {} and {} (is plugins.dir right? is the plugin installed?)",
            dir.display(),
            candidates[0].display(),
            candidates[1].display()
        )
    })
}

/// Why a target could not be opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenError {
    /// The target's key that is wrong (`plugin`, `options`), when the configuration is at
    /// fault; `None` when opening may work later.
    pub wrong_key: Option<&'static str>,
    pub message: String,
}

impl std::fmt::Display for OpenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl OpenError {
    fn wrong(key: &'static str) -> impl Fn(String) -> OpenError {
        move |message| OpenError {
            wrong_key: Some(key),
            message,
        }
    }
}

/// Loads the target's plugin, opens a provider instance with its options, and wraps it.
pub fn open_target(
    plugins_dir: &Path,
    target: &TargetConfig,
    counters: Arc<Counters>,
    stop: &Stop,
) -> Result<Arc<TargetStore>, OpenError> {
    let path = plugin_path(plugins_dir, &target.plugin).map_err(OpenError::wrong("plugin"))?;
    // A file that is there but cannot be loaded (unsafe permissions, another ABI) may be
    // fixed in place, by an upgrade: the target waits for it, the daemon goes on.
    let later = |message: String| OpenError {
        wrong_key: None,
        message,
    };
    trust::check(&path).map_err(later)?;
    let plugin = Plugin::load(&path).map_err(|e| later(e.to_string()))?;
    let options = serde_json::to_string(&target.options).expect("options serialize");
    let instance = plugin
        .open_with_log(&options, log_sink(&target.name))
        .map_err(|e| OpenError {
            wrong_key: (e.kind() == sealback_plugin_api::ErrorKind::InvalidConfig)
                .then_some("options"),
            message: format!(
                "target {:?}: plugin {} refused its options: {}",
                target.name,
                path.display(),
                e
            ),
        })?;
    tracing::info!(target = %target.name, plugin = %path.display(), version = %plugin.version(), "storage target ready");
    let authorizes = plugin.can_authorize();
    let store = PluginStore::new(&target.name, instance, authorizes);
    let limited = limit::Limited::new(store, target.concurrency);
    let timed = timeout::Timed::new(
        Arc::new(limited),
        target.timeout,
        &target.name,
        stop.clone(),
    );
    let throttled = throttle::Throttled::new(timed, target.bandwidth, stop.clone());
    let retrying = retry::Retrying::new(
        throttled,
        target.retry.clone(),
        counters.clone(),
        stop.clone(),
    );
    Ok(Arc::new(
        TargetStore::new(&target.name, retrying, counters).with_authorization_step(authorizes),
    ))
}
