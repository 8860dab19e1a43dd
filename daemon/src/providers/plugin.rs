//! A plugin instance as an object store. Errors keep the provider's classification and
//! retry-after, and name the target, the operation and the object.

use bytes::Bytes;

use sealback_plugin_api::host::Instance;
use sealback_plugin_api::{ErrorKind, ProviderError};
use sealback_repo::{ObjectStore, StoreError, StoreErrorKind};

pub struct PluginStore {
    target: String,
    instance: Instance,
    /// The plugin has an authorization step (`sealbackctl target auth`), which is what to run
    /// when the storage refuses the credentials.
    authorizes: bool,
}

impl PluginStore {
    pub fn new(target: &str, instance: Instance, authorizes: bool) -> PluginStore {
        PluginStore {
            target: target.to_owned(),
            instance,
            authorizes,
        }
    }

    fn error(&self, op: &str, object: &str, e: ProviderError) -> StoreError {
        let kind = match e.kind() {
            ErrorKind::NotFound => StoreErrorKind::NotFound,
            ErrorKind::Transient => StoreErrorKind::Transient,
            ErrorKind::Auth => StoreErrorKind::Auth,
            ErrorKind::Quota => StoreErrorKind::Quota,
            ErrorKind::InvalidConfig => StoreErrorKind::InvalidConfig,
            _ => StoreErrorKind::Permanent,
        };
        let what = match kind {
            StoreErrorKind::NotFound => {
                format!("object {object} is missing from target {:?}", self.target)
            }
            _ => format!("{op} {object} on target {:?} failed", self.target),
        };
        let hint = if kind == StoreErrorKind::Auth && self.authorizes {
            format!("; run `sealbackctl target auth {}`", self.target)
        } else {
            String::new()
        };
        StoreError {
            kind,
            message: format!("{what}: {}{hint}", e.message()),
            retry_after: e.retry_after(),
        }
    }
}

impl ObjectStore for PluginStore {
    fn put(&self, name: &str, data: &[u8]) -> Result<(), StoreError> {
        self.instance
            .put(name, data)
            .map_err(|e| self.error("put", name, e))
    }

    fn put_shared(&self, name: &str, data: Bytes) -> Result<(), StoreError> {
        self.put(name, &data)
    }

    fn get(&self, name: &str) -> Result<Bytes, StoreError> {
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
