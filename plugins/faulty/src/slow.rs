//! Slow calls: a provider on a bad network. Option `slow_ms`: N, with `slow_op` (`"put"`,
//! `"get"`, `"list"` or `"remove"`; every operation if absent): each such call waits N ms
//! before it runs.

use std::time::Duration;

use sealback_plugin_api::ProviderError;
use serde_json::Value;

use crate::fault::{Operation, invalid, options_map};

#[derive(Debug)]
pub(crate) struct Slow {
    op: Option<Operation>,
    delay: Duration,
}

impl Slow {
    /// Takes `slow_ms` and `slow_op` out of the options; returns the slowness (if any) and
    /// the rest.
    pub(crate) fn parse(options_json: &str) -> Result<(Option<Slow>, String), ProviderError> {
        let mut options = options_map(options_json)?;
        let op = options
            .remove("slow_op")
            .map(serde_json::from_value::<Operation>)
            .transpose()
            .map_err(|err| invalid(format!("`slow_op`: {err}")))?;
        let slow = match options.remove("slow_ms") {
            None if op.is_some() => return Err(invalid("`slow_op` needs `slow_ms`".into())),
            None => None,
            Some(value) => Some(Slow {
                op,
                delay: Duration::from_millis(value.as_u64().ok_or_else(|| {
                    invalid(format!("`slow_ms` must be a whole number, not {value}"))
                })?),
            }),
        };
        Ok((slow, Value::Object(options).to_string()))
    }

    /// Waits before a call of `op`, if it is one that is slow.
    pub(crate) fn wait(&self, op: Operation) {
        if self.op.is_none_or(|slow| slow == op) {
            std::thread::sleep(self.delay);
        }
    }
}
