//! The fault: which operation fails, how, and when.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sealback_plugin_api::{ErrorKind, ProviderError};
use serde::Deserialize;
use serde_json::{Map, Value};

/// An operation that can be made to fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Operation {
    Put,
    Get,
    List,
    Remove,
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Put => "put",
            Self::Get => "get",
            Self::List => "list",
            Self::Remove => "remove",
        })
    }
}

/// The status an injected failure reports.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Kind {
    #[default]
    Transient,
    Permanent,
    Quota,
    Auth,
}

impl From<Kind> for ErrorKind {
    fn from(kind: Kind) -> Self {
        match kind {
            Kind::Transient => ErrorKind::Transient,
            Kind::Permanent => ErrorKind::Permanent,
            Kind::Quota => ErrorKind::Quota,
            Kind::Auth => ErrorKind::Auth,
        }
    }
}

/// The fault options, as the JSON spells them.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FaultOptions {
    fail: Option<Operation>,
    kind: Option<Kind>,
    after: Option<u64>,
    times: Option<u64>,
    panic: Option<bool>,
    retry_after_ms: Option<u64>,
    torn: Option<bool>,
    only: Option<String>,
}

const FAULT_KEYS: [&str; 8] = [
    "fail",
    "kind",
    "after",
    "times",
    "panic",
    "retry_after_ms",
    "torn",
    "only",
];

/// One operation that fails with `kind` (or panics) on calls `after + 1 ..= after + times`.
#[derive(Debug)]
pub(crate) struct Fault {
    op: Operation,
    kind: ErrorKind,
    after: u64,
    times: Option<u64>,
    panic: bool,
    retry_after: Option<Duration>,
    torn: bool,
    /// Only calls on names (or list prefixes) that start with this count and fail.
    only: String,
    calls: AtomicU64,
}

/// An `INVALID_CONFIG` error naming the problem with the options.
pub(crate) fn invalid(problem: String) -> ProviderError {
    ProviderError::invalid_config(format!(
        "invalid options for the faulty provider: {problem}"
    ))
}

/// The options as a JSON object.
pub(crate) fn options_map(options_json: &str) -> Result<Map<String, Value>, ProviderError> {
    serde_json::from_str(options_json).map_err(|err| invalid(err.to_string()))
}

impl Fault {
    /// Splits the options into the fault (if any) and the local provider's options, as JSON.
    pub(crate) fn parse(options_json: &str) -> Result<(Option<Fault>, String), ProviderError> {
        let mut local = options_map(options_json)?;
        let fault_options: Map<String, Value> = FAULT_KEYS
            .iter()
            .filter_map(|key| local.remove_entry(*key))
            .collect();
        let options: FaultOptions = serde_json::from_value(Value::Object(fault_options))
            .map_err(|err| invalid(err.to_string()))?;
        let local = Value::Object(local).to_string();
        let Some(op) = options.fail else {
            if options.kind.is_some()
                || options.after.is_some()
                || options.times.is_some()
                || options.panic.is_some()
                || options.retry_after_ms.is_some()
                || options.torn.is_some()
                || options.only.is_some()
            {
                return Err(invalid(
                    "`kind`, `after`, `times`, `panic`, `retry_after_ms`, `torn` and `only` need `fail`"
                        .into(),
                ));
            }
            return Ok((None, local));
        };
        let kind = ErrorKind::from(options.kind.unwrap_or_default());
        if options.retry_after_ms.is_some() && kind != ErrorKind::Transient {
            return Err(invalid(
                "`retry_after_ms` needs `kind` \"transient\": only transient errors carry one"
                    .into(),
            ));
        }
        let torn = options.torn.unwrap_or(false);
        if torn && op != Operation::Put {
            return Err(invalid("`torn` needs `fail` \"put\"".into()));
        }
        let fault = Fault {
            op,
            kind,
            after: options.after.unwrap_or(0),
            times: options.times,
            panic: options.panic.unwrap_or(false),
            retry_after: options.retry_after_ms.map(Duration::from_millis),
            torn,
            only: options.only.unwrap_or_default(),
            calls: AtomicU64::new(0),
        };
        Ok((Some(fault), local))
    }

    /// Counts a call of `op` on `name` (a list's prefix); fails it if it is one of the calls
    /// that fail.
    pub(crate) fn check(&self, op: Operation, name: &str) -> Result<(), ProviderError> {
        if op != self.op || !name.starts_with(&self.only) {
            return Ok(());
        }
        let call = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        let failing =
            call > self.after && self.times.is_none_or(|times| call - self.after <= times);
        if !failing {
            return Ok(());
        }
        let message = format!(
            "injected {} in {op} (call {call}, sealback-faulty)",
            self.kind
        );
        if self.panic {
            panic!("{message}");
        }
        let err = ProviderError::new(self.kind, message);
        Err(match self.retry_after {
            Some(delay) => err.with_retry_after(delay),
            None => err,
        })
    }

    /// Whether a failing put first tears the object, as a provider without atomic puts would.
    pub(crate) fn torn(&self) -> bool {
        self.torn
    }
}
