//! `open` refuses options it does not understand, with `INVALID_CONFIG`: a typo in a
//! configuration must be an error that names the option, not a setting silently ignored.

use sealback_plugin_api::ErrorKind;
use serde_json::Value;

use crate::check::{Ctx, Problem, Verdict, describe, fail};
use crate::runner::UNKNOWN_OPTION;

pub(crate) fn refuses_unknown_options(ctx: &Ctx) -> Verdict {
    let Ok(Value::Object(mut options)) = serde_json::from_str(ctx.settings.options_json()) else {
        return Err(Problem::Skipped(
            "the options are not a JSON object, so the kit cannot add an unknown one".into(),
        ));
    };
    options.insert(UNKNOWN_OPTION.into(), Value::Bool(true));
    expect_refused(
        ctx,
        &Value::Object(options).to_string(),
        "an unknown option",
    )
}

pub(crate) fn refuses_malformed_options(ctx: &Ctx) -> Verdict {
    let trailing = format!("{} trailing", ctx.settings.options_json());
    for (options, what) in [
        ("", "empty options"),
        ("{", "a truncated document"),
        ("[]", "an array instead of an object"),
        ("null", "null instead of an object"),
        ("\"path\"", "a string instead of an object"),
        (trailing.as_str(), "the options followed by text"),
    ] {
        expect_refused(ctx, options, what)?;
    }
    Ok(())
}

/// Opens the plugin with `options` and checks that it refuses them with `INVALID_CONFIG`.
fn expect_refused(ctx: &Ctx, options: &str, what: &str) -> Verdict {
    match ctx.plugin.open(options) {
        Ok(_instance) => fail!(
            "open accepted {what} ({options:?}); options a provider does not understand must \
             be refused with INVALID_CONFIG"
        ),
        Err(err) if err.kind() == ErrorKind::InvalidConfig => Ok(()),
        Err(err) => fail!(
            "open with {what} ({options:?}) failed with {}; it must be INVALID_CONFIG",
            describe(&err)
        ),
    }
}
