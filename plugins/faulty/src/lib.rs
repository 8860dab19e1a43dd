//! A fault-injecting storage provider, for tests only: it stores objects exactly like the local
//! provider (it is one, [`sealback_local_store::LocalProvider`], wrapped) and makes one operation fail
//! on demand. Built as `libsealback_faulty.so`; its provider name is `"faulty"`.
//!
//! Options are the local provider's plus:
//!
//! | option   | value                                            | default       |
//! |----------|--------------------------------------------------|---------------|
//! | `fail`   | `"put"`, `"get"`, `"list"` or `"remove"`: the operation that fails | none: nothing fails |
//! | `kind`   | `"transient"`, `"permanent"`, `"quota"` or `"auth"`: the status it fails with | `"transient"` |
//! | `after`  | how many calls of that operation succeed before the failures start | `0` |
//! | `times`  | how many calls fail before the operation works again | unlimited |
//! | `panic`  | `true`: panic instead of returning an error (the SDK reports `PERMANENT`, "provider panicked in put: ...") | `false` |
//!
//! For example `{"path": "/tmp/x", "fail": "put", "kind": "quota", "after": 2}` stores two
//! objects, then reports every later put as `QUOTA` without storing anything. Calls are counted
//! per instance and per operation; calls the SDK refuses (invalid names) are not counted. `kind`,
//! `after`, `times` and `panic` without `fail` are an `INVALID_CONFIG` error, like any unknown
//! or mistyped option.

mod fault;

use sealback_local_store::LocalProvider;
use sealback_plugin_api::sdk::Provider;
use sealback_plugin_api::{ObjectInfo, ProviderError};

use crate::fault::{Fault, Operation};

/// The local provider, with a [`Fault`] in front of it.
struct FaultyProvider {
    inner: LocalProvider,
    fault: Option<Fault>,
}

impl FaultyProvider {
    /// Counts a call of `op` and fails it if the fault says so.
    fn check(&self, op: Operation) -> Result<(), ProviderError> {
        match &self.fault {
            Some(fault) => fault.check(op),
            None => Ok(()),
        }
    }
}

impl Provider for FaultyProvider {
    const NAME: &'static str = "faulty";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");

    fn open(options_json: &str) -> Result<Self, ProviderError> {
        let (fault, local_options) = Fault::parse(options_json)?;
        let inner = LocalProvider::open(&local_options)?;
        Ok(Self { inner, fault })
    }

    fn put(&self, name: &str, data: &[u8]) -> Result<(), ProviderError> {
        self.check(Operation::Put)?;
        self.inner.put(name, data)
    }

    fn get(&self, name: &str) -> Result<Vec<u8>, ProviderError> {
        self.check(Operation::Get)?;
        self.inner.get(name)
    }

    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, ProviderError> {
        self.check(Operation::List)?;
        self.inner.list(prefix)
    }

    fn remove(&self, name: &str) -> Result<(), ProviderError> {
        self.check(Operation::Remove)?;
        self.inner.remove(name)
    }
}

sealback_plugin_api::export_provider!(FaultyProvider);

#[cfg(test)]
mod tests;
