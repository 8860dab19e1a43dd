//! Storage targets: the configured providers, each a plugin loaded from the plugin
//! directory, seen by the repository as an [`ObjectStore`]. The daemon contains no provider
//! code; a target whose plugin fails to load keeps its error (shown by `status`) and is
//! loaded again at the next backup, while the daemon goes on.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use sealback_plugin_api::host::{Instance, Plugin};
use sealback_plugin_api::{ErrorKind, ProviderError};
use sealback_repo::{ObjectStore, StoreError, StoreErrorKind};

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

/// Loads the target's plugin and opens a provider instance with its options.
pub fn open_target(plugins_dir: &Path, target: &TargetConfig) -> Result<Arc<TargetStore>, String> {
    let path = plugin_path(plugins_dir, &target.plugin)?;
    let plugin = Plugin::load(&path).map_err(|e| e.to_string())?;
    let options = serde_json::to_string(&target.options).expect("options serialize");
    let instance = plugin.open(&options).map_err(|e| {
        format!(
            "target {:?}: plugin {} refused its options: {}",
            target.name,
            path.display(),
            e
        )
    })?;
    tracing::info!(target = %target.name, plugin = %path.display(), version = %plugin.version(), "storage target ready");
    Ok(Arc::new(TargetStore {
        name: target.name.clone(),
        instance,
    }))
}

/// A provider instance as an object store; errors name the target, the operation and the
/// object.
pub struct TargetStore {
    name: String,
    instance: Instance,
}

impl TargetStore {
    pub fn name(&self) -> &str {
        &self.name
    }

    fn error(&self, op: &str, object: &str, e: ProviderError) -> StoreError {
        let kind = match e.kind() {
            ErrorKind::NotFound => StoreErrorKind::NotFound,
            ErrorKind::Transient { .. } => StoreErrorKind::Transient,
            ErrorKind::Auth => StoreErrorKind::Auth,
            ErrorKind::Quota => StoreErrorKind::Quota,
            ErrorKind::InvalidConfig => StoreErrorKind::InvalidConfig,
            _ => StoreErrorKind::Permanent,
        };
        let what = match kind {
            StoreErrorKind::NotFound => {
                format!("object {object} is missing from target {:?}", self.name)
            }
            _ => format!("{op} {object} on target {:?} failed", self.name),
        };
        StoreError {
            kind,
            message: format!("{what}: {}", e.message()),
        }
    }
}

impl ObjectStore for TargetStore {
    fn put(&self, name: &str, data: &[u8]) -> Result<(), StoreError> {
        self.instance
            .put(name, data)
            .map_err(|e| self.error("put", name, e))
    }

    fn get(&self, name: &str) -> Result<Vec<u8>, StoreError> {
        self.instance
            .get(name)
            .map_err(|e| self.error("get", name, e))
    }

    fn list(&self, prefix: &str) -> Result<Vec<(String, u64)>, StoreError> {
        let listed = self
            .instance
            .list(prefix)
            .map_err(|e| self.error("list", &format!("{prefix}*"), e))?;
        Ok(listed.into_iter().map(|o| (o.name, o.size)).collect())
    }

    fn remove(&self, name: &str) -> Result<(), StoreError> {
        self.instance
            .remove(name)
            .map_err(|e| self.error("remove", name, e))
    }
}
