//! Pruning one target: the retention policy over the catalog's snapshots, the forgotten
//! ones forgotten on purpose (no hidden-snapshot alarm, DESIGN §6.1), then
//! `sealback_repo::gc::prune`, which deletes them and reclaims what nothing kept needs.

use std::collections::HashSet;

use sealback_repo::Repository;
use sealback_repo::gc::{self, PruneInput};

use super::EngineError;
use super::backup::now_unix_ms;
use crate::catalog::{Catalog, Packs};
use crate::control::api::{PolicyDecision, PruneReport};
use crate::retention::policy::{self, Candidate, Rules};

/// The grace period between marking a pack and deleting it ([`gc::GRACE_MS`]). Tests of
/// the binaries shorten it with `SEALBACK_TEST_PRUNE_GRACE_MS`, which only debug builds
/// read: a release binary cannot be talked out of the two-phase safety by its environment
/// (`sealbackctl prune --now` is the documented, checked way to skip the wait).
pub fn grace_ms() -> i64 {
    if !cfg!(debug_assertions) {
        return gc::GRACE_MS;
    }
    std::env::var("SEALBACK_TEST_PRUNE_GRACE_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|ms| *ms >= 0)
        .unwrap_or(gc::GRACE_MS)
}

/// What the policy says of every snapshot the catalog knows, oldest first; days, weeks and
/// months are the daemon's local ones (`TZ`, else `/etc/localtime`, else UTC).
pub fn decide(catalog: &Catalog, rules: &Rules) -> Result<Vec<PolicyDecision>, EngineError> {
    let rows = catalog.snapshots()?;
    let candidates: Vec<Candidate> = rows
        .iter()
        .map(|r| Candidate {
            name: &r.name,
            time_unix_ms: r.time_unix_ms,
            host: &r.host,
        })
        .collect();
    Ok(
        policy::apply(rules, &candidates, &jiff::tz::TimeZone::system())
            .into_iter()
            .zip(&rows)
            .map(|(d, row)| PolicyDecision {
                id: row.id().to_owned(),
                time_unix_ms: row.time_unix_ms,
                host: row.host.clone(),
                keep: d.reasons.iter().map(|r| (*r).to_owned()).collect(),
            })
            .collect(),
    )
}

pub struct Input<'a> {
    pub target: &'a str,
    pub rules: &'a Rules,
    pub dry_run: bool,
    /// No grace period for this run (`prune --now`): it marks and sweeps at once. Refused
    /// when the target holds snapshots of a host other than `host`.
    pub now: bool,
    /// This device's host name, as its snapshots carry it.
    pub host: &'a str,
    /// Called before every object written or deleted (fault injection in tests).
    pub before_change: &'a (dyn Fn(&str) + Sync),
}

pub fn run(
    repo: &Repository,
    catalog: &mut Catalog,
    input: &Input<'_>,
) -> Result<PruneReport, EngineError> {
    catalog.sync(repo, Packs::List)?;
    let decisions = decide(catalog, input.rules)?;
    if input.now {
        only_this_host(&decisions, input.host)?;
    }
    // The base of a kept snapshot's manifest stays, and stays remembered.
    let mut bases = HashSet::new();
    for d in decisions.iter().filter(|d| !d.keep.is_empty()) {
        if let Some(base) = catalog
            .stored_manifest(&format!("snapshots/{}", d.id))?
            .and_then(|m| m.base)
        {
            bases.insert(base);
        }
    }
    let forget: Vec<String> = decisions
        .iter()
        .filter(|d| d.keep.is_empty())
        .map(|d| format!("snapshots/{}", d.id))
        .collect();
    if !input.dry_run {
        // Forgotten on purpose before they go: a crash in between leaves a snapshot this
        // device no longer watches for, never an alarm about one it deleted itself.
        for d in decisions
            .iter()
            .filter(|d| d.keep.is_empty() && !bases.contains(&d.id))
        {
            catalog.forget_snapshot(&format!("snapshots/{}", d.id))?;
        }
    }
    let mut seen = catalog.prune_times("prune_seen")?;
    let mut indexed_seen = catalog.prune_times("prune_packs")?;
    let now = now_unix_ms();
    let report = gc::prune(
        repo,
        PruneInput {
            forget: &forget,
            now_unix_ms: now,
            grace_ms: if input.now { 0 } else { grace_ms() },
            seen: &mut seen,
            indexed_seen: &mut indexed_seen,
            dry_run: input.dry_run,
            before_change: input.before_change,
        },
    );
    if !input.dry_run {
        // What the run learnt of markers is kept even if it failed half-way.
        catalog.set_prune_times("prune_seen", &seen)?;
        catalog.set_prune_times("prune_packs", &indexed_seen)?;
    }
    let report = report?;
    if !input.dry_run {
        catalog.set_last_prune(now)?;
        catalog.sync(repo, Packs::List)?;
    }
    Ok(PruneReport {
        target: input.target.to_owned(),
        snapshots: decisions,
        gc: report,
    })
}

/// `prune --now` deletes at once what nothing kept needs, which is safe only while no other
/// device writes to the target (a backup running there may use a chunk the prune takes for
/// garbage, DESIGN §12.2). Another host's snapshot on the target says one does, or did.
fn only_this_host(decisions: &[PolicyDecision], host: &str) -> Result<(), EngineError> {
    let mut others: Vec<&str> = decisions
        .iter()
        .map(|d| d.host.as_str())
        .filter(|h| *h != host)
        .collect();
    others.sort_unstable();
    others.dedup();
    if others.is_empty() {
        return Ok(());
    }
    Err(EngineError::SharedTarget {
        hosts: others.join(", "),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(host: &str) -> PolicyDecision {
        PolicyDecision {
            id: format!("{host}-1"),
            time_unix_ms: 0,
            host: host.to_owned(),
            keep: Vec::new(),
        }
    }

    #[test]
    fn prune_now_is_refused_naming_each_other_host_with_snapshots_on_the_target() {
        assert!(only_this_host(&[], "phone").is_ok());
        assert!(only_this_host(&[of("phone"), of("phone")], "phone").is_ok());
        let refused = only_this_host(
            &[of("tablet"), of("phone"), of("old"), of("tablet")],
            "phone",
        )
        .expect_err("another host backs up here");
        let message = refused.to_string();
        assert!(message.contains("snapshots of old, tablet:"), "{message}");
        assert!(message.contains("without --now"), "{message}");
    }
}
