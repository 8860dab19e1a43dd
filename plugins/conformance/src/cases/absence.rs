//! Absence: a missing object is `NOT_FOUND` on get, and only then; removing one succeeds.

use crate::check::{Ctx, Listing, Verdict};

pub(crate) fn get_missing_is_not_found(ctx: &Ctx) -> Verdict {
    ctx.expect_missing(&ctx.name("never-stored"), "never stored")?;
    ctx.expect_missing(
        &ctx.name("no/such/dir/object"),
        "under directories never created",
    )?;
    let stored = ctx.name("dir/object");
    ctx.put(&stored, b"x")?;
    ctx.expect_missing(&ctx.name("dir"), "a prefix of a stored name, not an object")?;
    ctx.expect_missing(&ctx.name("dir/objec"), "a stored name minus its last byte")?;
    ctx.expect_missing(&ctx.name("dir/object/below"), "below a stored object")?;
    ctx.remove(&stored)?;
    ctx.expect_missing(&stored, "removed")
}

pub(crate) fn remove_missing_succeeds(ctx: &Ctx) -> Verdict {
    ctx.remove(&ctx.name("never-stored"))?;
    ctx.remove(&ctx.name("no/such/dir/object"))?;
    let (kept, gone) = (ctx.name("dir/kept"), ctx.name("gone"));
    ctx.put(&kept, b"kept")?;
    ctx.put(&gone, b"gone")?;
    // "dir" names no object, only a prefix of one: removing it removes nothing.
    ctx.remove(&ctx.name("dir"))?;
    ctx.get_expecting(&kept, b"kept")?;
    ctx.remove(&gone)?;
    ctx.remove(&gone)?;
    ctx.expect_missing(&gone, "removed twice")?;
    ctx.expect_listing(&ctx.prefix, &Listing::from([(kept, 4)]))
}
