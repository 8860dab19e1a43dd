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
//! | `retry_after_ms` | with `kind` `"transient"`: the retry-after the failures advise, in milliseconds | none |
//! | `crash_after` | kills the process (SIGKILL) at call N+1 of any operation: a crash point (see `crash.rs`) | none |
//! | `slow_ms`, `slow_op` | each call of `slow_op` (every operation if absent) waits `slow_ms` first (see `slow.rs`) | none |
//! | `torn`   | with `fail` `"put"`: a failing put first overwrites the object's file with the first half of the data, in place, as a provider without atomic puts would; for showing that the conformance kit catches it | `false` |
//! | `only`   | a name prefix (`"index/"`): only calls on objects whose name (or list prefix) starts with it are counted and fail | `""`: every call |
//!
//! For example `{"path": "/tmp/x", "fail": "put", "kind": "quota", "after": 2}` stores two
//! objects, then reports every later put as `QUOTA` without storing anything. Calls are counted
//! per instance and per operation; calls the SDK refuses (invalid names) are not counted. `kind`,
//! `after`, `times` and `panic` without `fail` are an `INVALID_CONFIG` error, like any unknown
//! or mistyped option, and so are `retry_after_ms` with another kind and `torn` with another
//! operation. `only` picks a kind of object: `{"fail": "put", "only": "snapshots/", "torn": true,
//! "times": 1}` tears the next snapshot and nothing else.

mod crash;
mod fault;
mod slow;

use std::fs;
use std::path::PathBuf;

use sealback_local_store::LocalProvider;
use sealback_plugin_api::sdk::Provider;
use sealback_plugin_api::{ObjectInfo, ProviderError};

use crate::crash::Crash;
use crate::fault::{Fault, Operation};
use crate::slow::Slow;

/// The local provider, with a [`Fault`] in front of it.
struct FaultyProvider {
    inner: LocalProvider,
    fault: Option<Fault>,
    crash: Option<Crash>,
    slow: Option<Slow>,
    /// The local provider's directory, where a torn put writes.
    root: PathBuf,
}

impl FaultyProvider {
    /// Writes the first half of `data` over the object's file, in place: the torn write that
    /// atomic puts exist to prevent. Best effort, since the put fails anyway.
    fn tear(&self, name: &str, data: &[u8]) {
        let path = self.root.join(name);
        if let Some(parent) = path.parent() {
            let _ = fs::create_dir_all(parent);
        }
        let _ = fs::write(path, &data[..data.len() / 2]);
    }

    /// Counts a call of `op` on `name` and fails it if the fault says so.
    fn check(&self, op: Operation, name: &str) -> Result<(), ProviderError> {
        if let Some(crash) = &self.crash {
            crash.point();
        }
        if let Some(slow) = &self.slow {
            slow.wait(op);
        }
        match &self.fault {
            Some(fault) => fault.check(op, name),
            None => Ok(()),
        }
    }
}

impl Provider for FaultyProvider {
    const NAME: &'static str = "faulty";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");

    fn open(options_json: &str) -> Result<Self, ProviderError> {
        let (crash, options_json) = Crash::parse(options_json)?;
        let (slow, options_json) = Slow::parse(&options_json)?;
        let (fault, local_options) = Fault::parse(&options_json)?;
        let inner = LocalProvider::open(&local_options)?;
        // The local provider has checked that `path` is there and is an absolute path.
        let root = serde_json::from_str::<serde_json::Value>(&local_options)
            .ok()
            .and_then(|options| options.get("path")?.as_str().map(PathBuf::from))
            .unwrap_or_default();
        Ok(Self {
            inner,
            fault,
            crash,
            slow,
            root,
        })
    }

    fn put(&self, name: &str, data: &[u8]) -> Result<(), ProviderError> {
        if let Err(err) = self.check(Operation::Put, name) {
            if self.fault.as_ref().is_some_and(Fault::torn) {
                self.tear(name, data);
            }
            return Err(err);
        }
        self.inner.put(name, data)
    }

    fn get(&self, name: &str) -> Result<Vec<u8>, ProviderError> {
        self.check(Operation::Get, name)?;
        self.inner.get(name)
    }

    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, ProviderError> {
        self.check(Operation::List, prefix)?;
        self.inner.list(prefix)
    }

    fn remove(&self, name: &str) -> Result<(), ProviderError> {
        self.check(Operation::Remove, name)?;
        self.inner.remove(name)
    }
}

sealback_plugin_api::export_provider!(FaultyProvider);

#[cfg(test)]
mod tests;
