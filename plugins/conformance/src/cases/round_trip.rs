//! Objects come back exactly as they were put, whatever their size, and a put replaces.

use crate::check::{Ctx, Listing, Verdict};
use crate::data;
use crate::runner::LARGE_OBJECT_SIZE;

pub(crate) fn empty(ctx: &Ctx) -> Verdict {
    let name = ctx.name("empty");
    ctx.put(&name, b"")?;
    ctx.get_expecting(&name, b"")?;
    ctx.expect_listing(&ctx.prefix, &Listing::from([(name, 0)]))
}

pub(crate) fn small(ctx: &Ctx) -> Verdict {
    // Every byte value, NUL and newline included, for providers that treat data as text.
    let every_byte: Vec<u8> = (0..=255).chain((0..=255).rev()).collect();
    let mut objects = vec![(ctx.name("small/every-byte"), every_byte)];
    for size in [1, 2, 17, 1000, 4096, 65_537, (1 << 20) + 3] {
        objects.push((
            ctx.name(&format!("small/{size}")),
            data::bytes(size as u64, size),
        ));
    }
    for (name, data) in &objects {
        ctx.put(name, data)?;
    }
    for (name, data) in &objects {
        ctx.get_expecting(name, data)?;
    }
    let expected = objects.iter().map(|(n, d)| (n.clone(), d.len() as u64));
    ctx.expect_listing(&ctx.prefix, &expected.collect())
}

pub(crate) fn large(ctx: &Ctx) -> Verdict {
    let name = ctx.name("large");
    let data = data::bytes(64, LARGE_OBJECT_SIZE);
    ctx.put(&name, &data)?;
    ctx.get_expecting(&name, &data)?;
    ctx.expect_listing(&ctx.prefix, &Listing::from([(name, data.len() as u64)]))
}

/// Longer, shorter, longer, empty: each put replaces the whole object (a shorter one must not
/// keep the longer one's tail).
pub(crate) fn overwrite_replaces(ctx: &Ctx) -> Verdict {
    let name = ctx.name("object");
    for (seed, size) in [(1, 10_000), (2, 10), (3, 50_000), (4, 0)] {
        let data = data::bytes(seed, size);
        ctx.put(&name, &data)?;
        ctx.get_expecting(&name, &data)?;
        ctx.expect_listing(&ctx.prefix, &Listing::from([(name.clone(), size as u64)]))?;
    }
    Ok(())
}

/// The host repeats a put whose outcome it does not know: the same put three times leaves one
/// object, the same as one put.
pub(crate) fn put_again_is_idempotent(ctx: &Ctx) -> Verdict {
    let (first, second) = (ctx.name("again"), ctx.name("again-copy"));
    let data = data::bytes(5, 3000);
    for _ in 0..3 {
        ctx.put(&first, &data)?;
    }
    ctx.put(&second, &data)?;
    ctx.get_expecting(&first, &data)?;
    ctx.get_expecting(&second, &data)?;
    let expected = Listing::from([(first, 3000), (second, 3000)]);
    ctx.expect_listing(&ctx.prefix, &expected)
}
