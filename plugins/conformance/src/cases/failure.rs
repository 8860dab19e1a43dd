//! A failed put changes nothing: the old object stays whole, and no new one appears. The kit
//! cannot make a working provider fail, so these cases use a second instance opened with
//! options whose puts fail ([`Settings::failing_options`](crate::Settings::failing_options)).

use sealback_plugin_api::host::Instance;

use crate::check::{Ctx, Listing, Problem, Verdict, describe, fail};
use crate::data;

pub(crate) fn keeps_old_object(ctx: &Ctx) -> Verdict {
    let failing = open_failing(ctx)?;
    let name = ctx.name("object");
    let old = data::bytes(1, 100_000);
    ctx.put(&name, &old)?;
    failing_put(&failing, &name)?;
    ctx.get_expecting(&name, &old).map_err(after_failed_put)?;
    let expected = Listing::from([(name, old.len() as u64)]);
    ctx.expect_listing(&ctx.prefix, &expected)
        .map_err(after_failed_put)
}

pub(crate) fn creates_nothing(ctx: &Ctx) -> Verdict {
    let failing = open_failing(ctx)?;
    let name = ctx.name("fresh");
    failing_put(&failing, &name)?;
    ctx.expect_missing(&name, "its only put failed")
        .map_err(after_failed_put)?;
    ctx.expect_listing(&ctx.prefix, &Listing::new())
        .map_err(after_failed_put)
}

fn open_failing(ctx: &Ctx) -> Result<Instance, Problem> {
    let Some(options) = ctx.settings.failing_options_json() else {
        return Err(Problem::Skipped(
            "no failing options given: pass options for an instance over the same storage \
             whose puts fail (sealbackctl plugin check --failing-options '<json>')"
                .into(),
        ));
    };
    ctx.plugin.open(options).map_err(|err| {
        Problem::Failed(format!(
            "open with the failing options failed: {}; they must open, only puts must fail",
            describe(&err)
        ))
    })
}

/// Puts a 1 MiB object through the failing instance, which must fail.
fn failing_put(failing: &Instance, name: &str) -> Verdict {
    match failing.put(name, &data::bytes(2, 1 << 20)) {
        Ok(()) => {
            fail!("put {name:?} with the failing options succeeded; give options whose puts fail")
        }
        Err(_) => Ok(()),
    }
}

fn after_failed_put(problem: Problem) -> Problem {
    match problem {
        Problem::Failed(reason) => Problem::Failed(format!("after a failed put: {reason}")),
        skipped => skipped,
    }
}
