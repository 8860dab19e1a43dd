//! Names: every legal name works, up to 255 bytes, as one segment or many; illegal ones never
//! reach the provider.

use sealback_plugin_api::{ErrorKind, MAX_NAME_LEN};

use crate::check::{Ctx, Listing, Verdict, describe, ensure, fail};
use crate::data;

pub(crate) fn unusual(ctx: &Ctx) -> Verdict {
    let mut relatives: Vec<String> = [
        "-leading-dash",
        "_underscores_",
        "0123456789",
        ".hidden",
        "...",
        "..a",
        "a..",
        "trailing.",
        "x",
        "Mixed.Case-Name_09",
        // Names are case-sensitive: these are two objects.
        "case/A",
        "case/a",
    ]
    .map(String::from)
    .into();
    let room = MAX_NAME_LEN - ctx.prefix.len();
    // The longest name, its last segment as long as the prefix allows.
    relatives.push("L".repeat(room));
    // The longest name, as deep as it gets: "d/d/.../d".
    relatives.push(vec!["d"; room.div_ceil(2)].join("/"));
    let mut stored = Listing::new();
    let mut contents = Vec::new();
    for (i, relative) in relatives.iter().enumerate() {
        let name = ctx.name(relative);
        let data = data::bytes(100 + i as u64, 100 + i);
        ctx.put(&name, &data)?;
        stored.insert(name.clone(), data.len() as u64);
        contents.push((name, data));
    }
    for (name, data) in &contents {
        ctx.get_expecting(name, data)?;
    }
    ctx.expect_listing(&ctx.prefix, &stored)?;
    one_segment_of_255_bytes(ctx)
}

/// A 255-byte name with no '/' at all, beside the run's prefix rather than under it (under it
/// there is no room): `conformance-<hex>-sss...`.
fn one_segment_of_255_bytes(ctx: &Ctx) -> Verdict {
    let stem = format!("{}-", ctx.run_prefix);
    let name = format!("{stem}{}", "s".repeat(MAX_NAME_LEN - stem.len()));
    let data = data::bytes(255, 255);
    ctx.put(&name, &data)?;
    let listed = ctx.expect_listing(&stem, &Listing::from([(name.clone(), 255)]));
    let read = ctx.get_expecting(&name, &data);
    ctx.remove(&name)?;
    listed?;
    read?;
    ctx.expect_missing(&name, "removed")
}

pub(crate) fn invalid_are_refused(ctx: &Ctx) -> Verdict {
    let too_long = ctx.name(&"x".repeat(MAX_NAME_LEN + 1 - ctx.prefix.len()));
    let invalid = [
        String::new(),
        "/absolute".into(),
        ctx.name("a//b"),
        ctx.name("../escape"),
        ctx.name("./here"),
        ctx.name("trailing/"),
        ctx.name("a space"),
        ctx.name("tab\tin"),
        ctx.name("new\nline"),
        ctx.name("back\\slash"),
        ctx.name("caf\u{e9}"),
        too_long,
    ];
    for name in &invalid {
        match ctx.instance.put(name, b"x") {
            Ok(()) => fail!("put {name:?} succeeded, but that is not a valid object name"),
            Err(err) => ensure!(
                err.kind() == ErrorKind::Permanent,
                "put {name:?} failed with {}, but an invalid name is PERMANENT",
                describe(&err)
            ),
        }
    }
    ensure!(
        ctx.instance.list("../").is_err(),
        "list \"../\" succeeded, but that is not a valid prefix"
    );
    ctx.expect_listing(&ctx.prefix, &Listing::new())
}
