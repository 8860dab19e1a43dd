//! `list` is complete, exact and byte-wise: every object whose full name starts with the
//! prefix, each once, with its size, and nothing else.

use crate::check::{Ctx, Listing, Verdict, in_parallel};
use crate::data;

/// How many objects `list_thousands` stores: more than one page of any storage API we know
/// (S3 and WebDAV servers page at 1,000).
const MANY: usize = 2_000;

pub(crate) fn prefixes(ctx: &Ctx) -> Verdict {
    let names = [
        "snap/1", "snap/10", "snap/2", "snapshot", "snap2/x", "other/y",
    ];
    let mut stored = Listing::new();
    for (i, relative) in names.iter().enumerate() {
        let name = ctx.name(relative);
        let data = data::bytes(i as u64, 10 + i);
        ctx.put(&name, &data)?;
        stored.insert(name, data.len() as u64);
    }
    let only = |relatives: &[&str]| -> Listing {
        relatives
            .iter()
            .map(|relative| {
                let name = ctx.name(relative);
                let size = stored.get(&name).copied().unwrap_or_default();
                (name, size)
            })
            .collect()
    };
    for (prefix, expected) in [
        ("", only(&names)),
        ("snap/", only(&["snap/1", "snap/10", "snap/2"])),
        ("snap/1", only(&["snap/1", "snap/10"])),
        ("snap/10", only(&["snap/10"])),
        (
            "snap",
            only(&["snap/1", "snap/10", "snap/2", "snapshot", "snap2/x"]),
        ),
        ("snapshot", only(&["snapshot"])),
        ("other/", only(&["other/y"])),
        ("nothing/", Listing::new()),
        ("nothin", Listing::new()),
    ] {
        ctx.expect_listing(&ctx.name(prefix), &expected)?;
    }
    Ok(())
}

pub(crate) fn thousands(ctx: &Ctx) -> Verdict {
    let objects: Vec<(String, Vec<u8>)> = (0..MANY)
        .map(|i| {
            let name = ctx.name(&format!("d{:02}/o{i:04}", i % 20));
            (name, data::bytes(i as u64, i % 23))
        })
        .collect();
    in_parallel(objects.iter().collect(), 8, |(name, data)| {
        ctx.put(name, data)
    })?;
    let all: Listing = objects
        .iter()
        .map(|(name, data)| (name.clone(), data.len() as u64))
        .collect();
    ctx.expect_listing(&ctx.prefix, &all)?;
    let in_d07 = |name: &String| name.starts_with(&ctx.name("d07/"));
    let d07: Listing = all.clone().into_iter().filter(|(n, _)| in_d07(n)).collect();
    ctx.expect_listing(&ctx.name("d07/"), &d07)?;
    let below_100: Listing = d07
        .into_iter()
        .filter(|(name, _)| name.starts_with(&ctx.name("d07/o00")))
        .collect();
    ctx.expect_listing(&ctx.name("d07/o00"), &below_100)
}
