//! The cases, in the order they run. Each works under its own prefix (`ctx.prefix`), and the
//! runner checks and empties that prefix after it, so a case only stores and checks.
//!
//! `open` is not here: the runner opens the instance every case shares, and reports that as the
//! first case.

mod absence;
mod concurrency;
mod failure;
mod listing;
mod names;
mod options;
mod round_trip;

use crate::check::{Ctx, Listing, Verdict, compare_listing};

/// One case: a name (what `sealbackctl plugin check` prints) and its check.
pub(crate) struct Case {
    pub(crate) name: &'static str,
    pub(crate) run: fn(&Ctx) -> Verdict,
    /// Whether the runner checks and empties the case's prefix afterwards.
    pub(crate) settle: bool,
}

const fn case(name: &'static str, run: fn(&Ctx) -> Verdict) -> Case {
    Case {
        name,
        run,
        settle: true,
    }
}

/// Every case but `open` and [`CLEANUP`].
pub(crate) static ALL: [Case; 17] = [
    case(
        "open_refuses_unknown_options",
        options::refuses_unknown_options,
    ),
    case(
        "open_refuses_malformed_options",
        options::refuses_malformed_options,
    ),
    case("round_trip_empty", round_trip::empty),
    case("round_trip_small", round_trip::small),
    case("round_trip_large", round_trip::large),
    case("overwrite_replaces", round_trip::overwrite_replaces),
    case(
        "put_again_is_idempotent",
        round_trip::put_again_is_idempotent,
    ),
    case(
        "get_missing_is_not_found",
        absence::get_missing_is_not_found,
    ),
    case("remove_missing_succeeds", absence::remove_missing_succeeds),
    case("list_prefixes", listing::prefixes),
    case("list_thousands", listing::thousands),
    case("unusual_names", names::unusual),
    case("invalid_names_are_refused", names::invalid_are_refused),
    case("concurrent_distinct_names", concurrency::distinct_names),
    case("concurrent_same_name", concurrency::same_name),
    case("failed_put_keeps_old_object", failure::keeps_old_object),
    case("failed_put_creates_nothing", failure::creates_nothing),
];

/// The last case: removes whatever the run left (a failed case may leave objects) and checks
/// that nothing under the run's prefix remains.
pub(crate) static CLEANUP: Case = Case {
    name: "cleanup",
    run: cleanup,
    settle: false,
};

fn cleanup(ctx: &Ctx) -> Verdict {
    for name in ctx.list(&ctx.run_prefix)?.keys() {
        ctx.remove(name)?;
    }
    let left = ctx.list(&ctx.run_prefix)?;
    Ok(compare_listing(&ctx.run_prefix, &left, &Listing::new())?)
}
