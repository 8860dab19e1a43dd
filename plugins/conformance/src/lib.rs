//! The conformance kit: the one test suite every sealback storage provider runs, whatever it is
//! written in, against its own build and its own storage.
//!
//! The kit loads a plugin file the way sealbackd does ([`sealback_plugin_api::host`]), opens it
//! with the options a developer gives, and checks the contract of `docs/plugin-abi.md` case by
//! case: round trips of empty, small and 64 MiB objects; overwrites and repeated puts; complete
//! listings of thousands of objects with byte-wise prefixes; `NOT_FOUND` for missing objects and
//! only for them; removal of missing objects; concurrent puts and gets on distinct names and on
//! one name; unusual but legal names up to 255 bytes; refusal of unknown or malformed options;
//! and, given options whose puts fail, that a failed put leaves the old object whole.
//!
//! ```no_run
//! use std::path::Path;
//!
//! let report = sealback_conformance::run(
//!     Path::new("target/debug/libsealback_local.so"),
//!     r#"{"path": "/tmp/conformance"}"#,
//!     |case| println!("{case}"),
//! )?;
//! assert_eq!(report.failed(), 0);
//! # Ok::<(), sealback_conformance::LoadError>(())
//! ```
//!
//! # What it touches
//!
//! Every object the kit stores is under a fresh prefix, `conformance-<16 hex digits>`, so a run
//! never reads, lists as its own or removes anything else in the target, and two runs never
//! meet. Each case works under `conformance-<hex>/<case name>/`. After each case the kit lists
//! that prefix, checks that every listed object reads back with the listed size (no temporary
//! file or half-written object shows), and removes everything; the last case, `cleanup`,
//! checks that nothing of the run is left. The kit sees objects only; a provider that keeps
//! directories should remove those its objects no longer need where it can do so safely (the
//! local provider does), so that a check leaves the target as it found it. WebDAV cannot:
//! a DELETE of a collection is recursive and cannot be made conditional on its being empty,
//! so a put landing in it meanwhile would be lost; its empty collections stay.
//!
//! # Options the kit derives
//!
//! `open_refuses_unknown_options` opens the plugin with the given options plus the key
//! [`UNKNOWN_OPTION`], which every provider must refuse with `INVALID_CONFIG` (so that a typo
//! in a configuration is an error, not a silently ignored setting); it is skipped when the
//! options are not a JSON object. `open_refuses_malformed_options` opens it with documents that
//! are not a JSON object at all.
//!
//! # Transient errors
//!
//! A plugin sends each request once and reports a transient failure (a busy server, a cut
//! connection) back; retrying is the host's. The kit makes every call of a case as sealbackd
//! does: a `TRANSIENT` error is tried again, up to 6 attempts in all (sealbackd's default), after
//! the asked retry-after (at most a second, to keep runs short) or a short backoff. So a
//! provider can run the kit against storage that refuses or drops a request now and then (the
//! gdrive tests inject Drive's rate limits, 5xx, cut connections and duplicated creates), and
//! passes as long as each call succeeds within the host's attempts. Only a call meant to fail
//! (an invalid name) is made once.
//!
//! # Failed puts
//!
//! The kit cannot make a working provider fail. Given options for a second instance over the
//! same storage whose puts fail ([`Settings::failing_options`]: read-only credentials, a full
//! quota, the faulty test provider), `failed_put_keeps_old_object` checks that a failed put
//! leaves the old object whole and creates no new one; without them that case is skipped.

#![forbid(unsafe_code)]

mod cases;
mod check;
mod data;
mod log;
mod report;
mod runner;

pub use report::{CaseResult, Outcome, PluginInfo, Report};
pub use runner::{CASE_TIMEOUT, LARGE_OBJECT_SIZE, Settings, UNKNOWN_OPTION, run, run_with};
pub use sealback_plugin_api::host::LoadError;
