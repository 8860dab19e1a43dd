//! Several threads at once on one instance, as the host calls it: distinct names all land
//! whole, and concurrent puts of one name never show a reader a mix or a part. Where
//! writers race on one name, a transient error (a lock, a busy server) is tried again as
//! the host's retry layer would, since plugins leave retrying to the host.

use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;

use crate::check::{Ctx, Listing, Problem, Verdict, fail, in_parallel};
use crate::data;

const THREADS: usize = 8;
const PER_THREAD: usize = 25;

pub(crate) fn distinct_names(ctx: &Ctx) -> Verdict {
    let objects: Vec<(String, Vec<u8>)> = (0..THREADS * PER_THREAD)
        .map(|i| {
            let name = ctx.name(&format!("t{}/o{i}", i % THREADS));
            (name, data::bytes(i as u64, 1000 + i * 37 % 5000))
        })
        .collect();
    // Each thread puts its objects and reads each back at once, while the others do the same.
    in_parallel(objects.iter().collect(), THREADS, |(name, data)| {
        ctx.put(name, data)?;
        ctx.get_expecting(name, data)
    })?;
    let stored = objects.iter().map(|(n, d)| (n.clone(), d.len() as u64));
    ctx.expect_listing(&ctx.prefix, &stored.collect())
}

/// Writers replace one object with their own versions while readers read it: every read must
/// be one whole version.
pub(crate) fn same_name(ctx: &Ctx) -> Verdict {
    const WRITERS: usize = 4;
    const PUTS_EACH: usize = 8;
    const READERS: usize = 2;
    let name = ctx.name("shared");
    let versions: Vec<Vec<u8>> = (0..=WRITERS)
        .map(|v| data::bytes(77 + v as u64, (256 << 10) + v * 4099))
        .collect();
    let whole = |data: &[u8]| versions.iter().any(|version| version == data);
    ctx.put(&name, &versions[0])?;
    let writing = AtomicBool::new(true);
    let outcome: Verdict = thread::scope(|scope| {
        let readers: Vec<_> = (0..READERS)
            .map(|_| {
                scope.spawn(|| -> Verdict {
                    loop {
                        let still_writing = writing.load(Ordering::SeqCst);
                        let data = ctx.get(&name).map_err(|problem| match problem {
                            Problem::Failed(reason) => Problem::Failed(format!(
                                "while other threads replaced the object: {reason}"
                            )),
                            skipped => skipped,
                        })?;
                        if !whole(&data) {
                            fail!(
                                "get {name:?} returned {} bytes that are none of the versions \
                                 being put: a reader saw a partly written or mixed object",
                                data.len()
                            );
                        }
                        if !still_writing {
                            return Ok(());
                        }
                    }
                })
            })
            .collect();
        let writers: Vec<_> = (1..=WRITERS)
            .map(|v| {
                let (name, data) = (&name, &versions[v]);
                scope.spawn(move || (0..PUTS_EACH).try_for_each(|_| ctx.put(name, data)))
            })
            .collect();
        let written = writers.into_iter().try_for_each(join);
        writing.store(false, Ordering::SeqCst);
        let read = readers.into_iter().try_for_each(join);
        written.and(read)
    });
    outcome?;
    let last = ctx.get(&name)?;
    if !whole(&last) {
        fail!(
            "after concurrent puts, get {name:?} returned {} bytes that are none of the versions put",
            last.len()
        );
    }
    ctx.expect_listing(&ctx.prefix, &Listing::from([(name, last.len() as u64)]))
}

fn join(handle: thread::ScopedJoinHandle<'_, Verdict>) -> Verdict {
    handle
        .join()
        .unwrap_or_else(|_| Err(Problem::Failed("a kit thread panicked".into())))
}
