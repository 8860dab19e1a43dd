//! What a case works with: the instance under test, its own prefix, and calls whose failures
//! are already worded as reasons ("put \"x\" failed: transient failure: ...").

use std::collections::BTreeMap;
use std::sync::Arc;

use sealback_plugin_api::host::{Instance, Plugin};
use sealback_plugin_api::{ErrorKind, ProviderError};

use crate::data;
use crate::runner::Settings;

/// Why a case did not pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Problem {
    /// The provider broke the contract.
    Failed(String),
    /// The case cannot run here.
    Skipped(String),
}

impl From<String> for Problem {
    fn from(reason: String) -> Self {
        Self::Failed(reason)
    }
}

/// What a case returns.
pub(crate) type Verdict = Result<(), Problem>;

/// Fails the case with a formatted reason.
macro_rules! fail {
    ($($reason:tt)*) => {
        return Err($crate::check::Problem::Failed(format!($($reason)*)))
    };
}

/// Fails the case with a formatted reason unless `cond` holds.
macro_rules! ensure {
    ($cond:expr, $($reason:tt)*) => {
        if !$cond {
            fail!($($reason)*);
        }
    };
}

pub(crate) use {ensure, fail};

/// Names and sizes, as a listing returns them or a case expects them.
pub(crate) type Listing = BTreeMap<String, u64>;

/// One case's view of the provider under test.
#[derive(Clone)]
pub(crate) struct Ctx {
    pub(crate) plugin: Arc<Plugin>,
    pub(crate) instance: Arc<Instance>,
    pub(crate) settings: Arc<Settings>,
    /// `conformance-<hex>`: every name of the run starts with it.
    pub(crate) run_prefix: String,
    /// `conformance-<hex>/<case>/`: every name of the case starts with it.
    pub(crate) prefix: String,
}

/// A provider error as a reason: its kind, then the host's message (which names the plugin,
/// the call and the object).
pub(crate) fn describe(err: &ProviderError) -> String {
    format!("{}: {}", err.kind(), err.message())
}

impl Ctx {
    /// The case's object `relative`: `<prefix><relative>`.
    pub(crate) fn name(&self, relative: &str) -> String {
        format!("{}{relative}", self.prefix)
    }

    /// Puts `name` as the host does: a transient error (a busy server, an object locked by
    /// a concurrent put) is tried again, as sealbackd's retry layer does, since a plugin
    /// sends each request once and leaves retrying to the host. Every call of the kit goes
    /// this way, so that a server's passing hiccup does not fail a case.
    pub(crate) fn put(&self, name: &str, data: &[u8]) -> Verdict {
        as_host(|| self.instance.put(name, data)).map_err(|err| {
            Problem::Failed(format!(
                "put {name:?} ({} bytes) failed: {}",
                data.len(),
                describe(&err)
            ))
        })
    }

    /// Gets `name` as the host does (see [`Ctx::put`]).
    pub(crate) fn get(&self, name: &str) -> Result<Vec<u8>, Problem> {
        as_host(|| self.instance.get(name).map(Vec::from))
            .map_err(|err| Problem::Failed(format!("get {name:?} failed: {}", describe(&err))))
    }

    /// Gets `name` and checks that it holds exactly `stored`.
    pub(crate) fn get_expecting(&self, name: &str, stored: &[u8]) -> Verdict {
        let got = self.get(name)?;
        Ok(data::compare(name, &got, stored)?)
    }

    /// Checks that `name` does not exist: get is `NOT_FOUND`, and nothing else.
    pub(crate) fn expect_missing(&self, name: &str, why: &str) -> Verdict {
        match as_host(|| self.instance.get(name)) {
            Ok(data) => fail!(
                "get {name:?} ({why}) returned {} bytes; it must fail with NOT_FOUND",
                data.len()
            ),
            Err(err) if err.kind() == ErrorKind::NotFound => Ok(()),
            Err(err) => fail!(
                "get {name:?} ({why}) failed with {}; a missing object must be NOT_FOUND, and \
                 only a missing one",
                describe(&err)
            ),
        }
    }

    pub(crate) fn remove(&self, name: &str) -> Verdict {
        as_host(|| self.instance.remove(name))
            .map_err(|err| Problem::Failed(format!("remove {name:?} failed: {}", describe(&err))))
    }

    /// Lists `prefix`; a name listed twice is a failure.
    pub(crate) fn list(&self, prefix: &str) -> Result<Listing, Problem> {
        let listed = as_host(|| self.instance.list(prefix)).map_err(|err| {
            Problem::Failed(format!("list {prefix:?} failed: {}", describe(&err)))
        })?;
        let mut objects = Listing::new();
        for entry in listed {
            if objects.insert(entry.name.clone(), entry.size).is_some() {
                fail!("list {prefix:?} returned {:?} twice", entry.name);
            }
        }
        Ok(objects)
    }

    /// Checks that listing `prefix` returns exactly `expected`, names and sizes.
    pub(crate) fn expect_listing(&self, prefix: &str, expected: &Listing) -> Verdict {
        let listed = self.list(prefix)?;
        Ok(compare_listing(prefix, &listed, expected)?)
    }
}

/// How a listing differs from what was expected, with up to three examples of each difference.
pub(crate) fn compare_listing(
    prefix: &str,
    listed: &Listing,
    expected: &Listing,
) -> Result<(), String> {
    let missing: Vec<&String> = expected
        .keys()
        .filter(|n| !listed.contains_key(*n))
        .collect();
    let unexpected: Vec<&String> = listed
        .keys()
        .filter(|n| !expected.contains_key(*n))
        .collect();
    let resized: Vec<String> = expected
        .iter()
        .filter_map(|(name, size)| {
            let listed = listed.get(name)?;
            (listed != size).then(|| format!("{name:?} listed with {listed} bytes, stored {size}"))
        })
        .collect();
    let mut problems = Vec::new();
    if !missing.is_empty() {
        problems.push(format!(
            "{} of the {} stored objects missing (e.g. {})",
            missing.len(),
            expected.len(),
            examples(&missing)
        ));
    }
    if !unexpected.is_empty() {
        problems.push(format!(
            "{} names that were not stored under it (e.g. {}); temporary files and objects \
             outside the prefix must not be listed",
            unexpected.len(),
            examples(&unexpected)
        ));
    }
    if !resized.is_empty() {
        problems.push(format!(
            "{} wrong sizes (e.g. {})",
            resized.len(),
            resized[..resized.len().min(3)].join(", ")
        ));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!("list {prefix:?}: {}", problems.join("; ")))
    }
}

fn examples(names: &[&String]) -> String {
    let shown: Vec<String> = names.iter().take(3).map(|n| format!("{n:?}")).collect();
    shown.join(", ")
}

/// Runs `check` on every item from `threads` threads; the first failure wins.
pub(crate) fn in_parallel<T: Send>(
    items: Vec<T>,
    threads: usize,
    check: impl Fn(T) -> Verdict + Sync,
) -> Verdict {
    let mut shares: Vec<Vec<T>> = (0..threads).map(|_| Vec::new()).collect();
    for (i, item) in items.into_iter().enumerate() {
        shares[i % threads].push(item);
    }
    let check = &check;
    std::thread::scope(|scope| {
        let workers: Vec<_> = shares
            .into_iter()
            .map(|share| scope.spawn(move || share.into_iter().try_for_each(check)))
            .collect();
        workers.into_iter().try_for_each(|worker| {
            worker
                .join()
                .unwrap_or_else(|_| Err(Problem::Failed("a kit thread panicked".into())))
        })
    })
}

/// Calls `call` until it succeeds or fails other than transiently, at most
/// [`HOST_ATTEMPTS`] times, waiting as the host would (the asked `Retry-After`, up to a
/// second, else 50 ms doubling).
fn as_host<T>(mut call: impl FnMut() -> Result<T, ProviderError>) -> Result<T, ProviderError> {
    let mut attempt = 1;
    loop {
        match call() {
            Err(err) if err.kind() == ErrorKind::Transient && attempt < HOST_ATTEMPTS => {
                let wait = err
                    .retry_after()
                    .unwrap_or(std::time::Duration::from_millis(50 << attempt.min(4)))
                    .min(std::time::Duration::from_secs(1));
                std::thread::sleep(wait);
                attempt += 1;
            }
            outcome => return outcome,
        }
    }
}

/// Tries of a call made as the host makes it, the first included (sealbackd's default).
const HOST_ATTEMPTS: u32 = 6;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listing_differences_are_spelled_out() {
        let expected: Listing = [("p/a".into(), 1), ("p/b".into(), 2)].into();
        let listed: Listing = [("p/b".into(), 3), ("p/.b.tmp".into(), 2)].into();
        assert_eq!(
            compare_listing("p/", &listed, &expected),
            Err(
                "list \"p/\": 1 of the 2 stored objects missing (e.g. \"p/a\"); 1 names that \
                 were not stored under it (e.g. \"p/.b.tmp\"); temporary files and objects \
                 outside the prefix must not be listed; 1 wrong sizes (e.g. \"p/b\" listed with \
                 3 bytes, stored 2)"
                    .into()
            )
        );
        assert_eq!(compare_listing("p/", &expected, &expected), Ok(()));
    }

    #[test]
    fn parallel_checks_report_the_first_failure() {
        let verdict = in_parallel((0..100).collect(), 4, |i| {
            ensure!(i != 42, "item {i}");
            Ok(())
        });
        assert_eq!(verdict, Err(Problem::Failed("item 42".into())));
        assert_eq!(in_parallel(Vec::<u8>::new(), 4, |_| Ok(())), Ok(()));
    }
}
