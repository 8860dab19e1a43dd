//! The crash point: the daemon killed with SIGKILL at a chosen provider call, as a power
//! loss or the OOM killer would stop it, leaving whatever the call before had stored.
//!
//! Option `crash_after`: N. Calls 1..=N of any operation run as usual; call N+1 kills the
//! process (the plugin runs inside sealbackd) before it does anything.

use std::sync::atomic::{AtomicU64, Ordering};

use nix::sys::signal::{Signal, raise};
use sealback_plugin_api::ProviderError;
use serde_json::Value;

use crate::fault::{invalid, options_map};

/// Kills the process at call `after + 1`.
#[derive(Debug)]
pub(crate) struct Crash {
    after: u64,
    calls: AtomicU64,
}

impl Crash {
    /// Takes `crash_after` out of the options; returns the crash (if any) and the rest.
    pub(crate) fn parse(options_json: &str) -> Result<(Option<Crash>, String), ProviderError> {
        let mut options = options_map(options_json)?;
        let crash = match options.remove("crash_after") {
            None => None,
            Some(value) => Some(Crash {
                after: value.as_u64().ok_or_else(|| {
                    invalid(format!("`crash_after` must be a whole number, not {value}"))
                })?,
                calls: AtomicU64::new(0),
            }),
        };
        Ok((crash, Value::Object(options).to_string()))
    }

    /// Counts a call; the one after the last allowed kills the process.
    pub(crate) fn point(&self) {
        if self.calls.fetch_add(1, Ordering::SeqCst) >= self.after {
            // SIGKILL cannot be caught: nothing of the daemon runs after this.
            let _ = raise(Signal::SIGKILL);
        }
    }
}
