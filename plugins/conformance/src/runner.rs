//! Running the cases: load, open, each case on its own thread under its own prefix, the check
//! and clean-up after each, and the report.

use std::panic::{self, AssertUnwindSafe};
use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

use sealback_plugin_api::host::{LoadError, Plugin};

use crate::cases::{self, Case};
use crate::check::{Ctx, Listing, Problem, Verdict, compare_listing, describe, in_parallel};
use crate::report::{CaseResult, Outcome, PluginInfo, Report};

/// The size of the large object in `round_trip_large`: 64 MiB.
pub const LARGE_OBJECT_SIZE: usize = 64 << 20;

/// How long one case may take before the kit gives up on the plugin: a call that has not
/// returned by then is reported as hanging, and the remaining cases are skipped.
pub const CASE_TIMEOUT: Duration = Duration::from_secs(600);

/// The option `open_refuses_unknown_options` adds to the given ones; no provider knows it.
pub const UNKNOWN_OPTION: &str = "sealback_conformance_unknown_option";

/// What a run is given besides the plugin file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    options_json: String,
    failing_options_json: Option<String>,
}

impl Settings {
    /// The options to open the provider with: a JSON document, as a target's `options` table
    /// would be passed.
    pub fn new(options_json: impl Into<String>) -> Self {
        Self {
            options_json: options_json.into(),
            failing_options_json: None,
        }
    }

    /// Options for a second instance over the same storage whose puts fail, for
    /// `failed_put_keeps_old_object` (skipped without them).
    pub fn failing_options(mut self, options_json: impl Into<String>) -> Self {
        self.failing_options_json = Some(options_json.into());
        self
    }

    pub(crate) fn options_json(&self) -> &str {
        &self.options_json
    }

    pub(crate) fn failing_options_json(&self) -> Option<&str> {
        self.failing_options_json.as_deref()
    }
}

/// Runs every case against the plugin at `plugin`, opened with `options_json`; calls `on_case`
/// as each case ends. Fails only if the file cannot be loaded as a plugin: everything after
/// that, including a failing `open`, is in the report.
pub fn run(
    plugin: &Path,
    options_json: &str,
    on_case: impl FnMut(&CaseResult),
) -> Result<Report, LoadError> {
    run_with(plugin, &Settings::new(options_json), on_case)
}

/// [`run`], with all the [`Settings`].
pub fn run_with(
    plugin: &Path,
    settings: &Settings,
    mut on_case: impl FnMut(&CaseResult),
) -> Result<Report, LoadError> {
    // A bare file name would make the loader search the library path instead of this directory.
    let plugin = std::path::absolute(plugin).unwrap_or_else(|_| plugin.to_owned());
    let plugin = Arc::new(Plugin::load(&plugin)?);
    let info = PluginInfo {
        name: plugin.name().to_owned(),
        version: plugin.version().to_owned(),
        abi_version: plugin.abi_version(),
        path: plugin.path().to_owned(),
    };
    let mut results = Vec::new();
    let mut record = |name, outcome, duration| {
        let result = CaseResult {
            name,
            outcome,
            duration,
        };
        on_case(&result);
        results.push(result);
    };

    let started = Instant::now();
    let logged = crate::log::Logged::default();
    let instance = match plugin.open_with_log(settings.options_json(), logged.sink()) {
        Ok(instance) => Arc::new(instance),
        Err(err) => {
            let reason = format!(
                "open with the given options failed: {}; check the options",
                describe(&err)
            );
            record("open", Outcome::Failed(reason), started.elapsed());
            for case in cases::ALL.iter().chain([&cases::CLEANUP]) {
                let skipped = Outcome::Skipped("open failed".into());
                record(case.name, skipped, Duration::ZERO);
            }
            let refused = err.kind() == sealback_plugin_api::ErrorKind::InvalidConfig;
            return Ok(Report {
                plugin: info,
                cases: results,
                options_refused: refused.then(|| describe(&err)),
            });
        }
    };
    record("open", Outcome::Passed, started.elapsed());

    let run_prefix = format!("conformance-{:016x}", rand::random::<u64>());
    let ctx = |case: &Case| Ctx {
        plugin: Arc::clone(&plugin),
        instance: Arc::clone(&instance),
        settings: Arc::new(settings.clone()),
        run_prefix: run_prefix.clone(),
        prefix: format!("{run_prefix}/{}/", case.name),
    };
    let mut hung: Option<&'static str> = None;
    for case in cases::ALL.iter().chain([&cases::CLEANUP]) {
        if std::ptr::eq(case, &cases::CLEANUP) {
            // ABI v2: what the plugin wrote to the daemon's log during the cases.
            record(
                "log",
                logged.verdict(settings.options_json()),
                Duration::ZERO,
            );
        }
        if let Some(earlier) = hung {
            let reason = format!("{earlier} did not finish, so the plugin may be stuck");
            record(case.name, Outcome::Skipped(reason), Duration::ZERO);
            continue;
        }
        let started = Instant::now();
        let outcome = run_case(case, ctx(case)).unwrap_or_else(|| {
            hung = Some(case.name);
            Outcome::Failed(format!(
                "did not finish within {} s: a call into the plugin blocks (a deadlock, or a \
                 network call without a timeout)",
                CASE_TIMEOUT.as_secs()
            ))
        });
        record(case.name, outcome, started.elapsed());
    }
    Ok(Report {
        plugin: info,
        cases: results,
        options_refused: None,
    })
}

/// Runs one case on its own thread, then checks and cleans its prefix; `None` if it has not
/// finished within [`CASE_TIMEOUT`] (its thread is left behind, blocked in the plugin).
fn run_case(case: &'static Case, ctx: Ctx) -> Option<Outcome> {
    let (sender, receiver) = mpsc::channel();
    let spawned = thread::Builder::new()
        .name(format!("conformance {}", case.name))
        .spawn(move || {
            let verdict = panic::catch_unwind(AssertUnwindSafe(|| {
                let verdict = (case.run)(&ctx);
                let settled = if case.settle { settle(&ctx) } else { Ok(()) };
                verdict.and(settled)
            }));
            // The receiver is gone only if the case timed out; nobody is left to tell.
            let _ = sender.send(verdict);
        });
    if let Err(err) = spawned {
        return Some(Outcome::Failed(format!(
            "the kit cannot start a thread: {err}"
        )));
    }
    Some(match receiver.recv_timeout(CASE_TIMEOUT) {
        Err(RecvTimeoutError::Timeout) => return None,
        Err(RecvTimeoutError::Disconnected) => {
            Outcome::Failed("the case's thread ended without a verdict".into())
        }
        Ok(Ok(Ok(()))) => Outcome::Passed,
        Ok(Ok(Err(Problem::Failed(reason)))) => Outcome::Failed(reason),
        Ok(Ok(Err(Problem::Skipped(reason)))) => Outcome::Skipped(reason),
        Ok(Err(payload)) => {
            let message = payload
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| payload.downcast_ref::<&str>().copied())
                .unwrap_or("(no message)");
            Outcome::Failed(format!("the kit itself panicked: {message}"))
        }
    })
}

/// After a case: every object listed under its prefix must read back whole with the listed
/// size (a visible temporary file or half-written object shows here), and removing them all
/// must leave the prefix empty. Objects are removed even when the case failed; its failure
/// then stays the reason reported.
fn settle(ctx: &Ctx) -> Verdict {
    let listed = ctx.list(&ctx.prefix)?;
    let entries: Vec<(&String, &u64)> = listed.iter().collect();
    in_parallel(entries, 8, |(name, &size)| {
        let data = ctx.get(name).map_err(|problem| match problem {
            Problem::Failed(reason) => Problem::Failed(format!(
                "after the case, {name:?} is listed with {size} bytes but cannot be read: \
                 {reason}"
            )),
            skipped => skipped,
        })?;
        if data.len() as u64 != size {
            return Err(Problem::Failed(format!(
                "after the case, {name:?} is listed with {size} bytes but get returns {}",
                data.len()
            )));
        }
        ctx.remove(name)
    })?;
    let left = ctx.list(&ctx.prefix)?;
    compare_listing(&ctx.prefix, &left, &Listing::new())
        .map_err(|reason| Problem::Failed(format!("after removing every object: {reason}")))
}
