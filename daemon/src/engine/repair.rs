//! Removing index and snapshot objects that are damaged beyond use: torn by a provider
//! without atomic puts (a put that failed halfway leaves half an object), or cut short on
//! the target. Every sync already leaves them out of the catalog (their packs are then
//! unindexed and their chunks stored again; a damaged snapshot is nobody's parent); this
//! takes them off the target, so `verify` stops reporting them. What `sealbackctl repair`
//! runs.
//!
//! An object is removed only when it is confirmed damaged: read twice, in full both times
//! (as many bytes as the listing says it holds), and both times it fails authentication or
//! is too short to be an object. An object that could not be read (a transient error, a
//! timeout) or that came back a different size is kept and named, never removed.

use sealback_repo::object::{self, ObjectKind};
use sealback_repo::{Error, Repository};

use crate::control::api::RepairReport;

pub fn run(repo: &Repository, target: &str) -> Result<RepairReport, Error> {
    let mut report = RepairReport {
        target: target.to_owned(),
        ..RepairReport::default()
    };
    for (prefix, kind) in [
        ("index/", ObjectKind::Index),
        ("snapshots/", ObjectKind::Snapshot),
    ] {
        for (name, size) in repo.store().list(prefix)? {
            report.checked += 1;
            let problem = match finding(repo, kind, &name, size)? {
                Finding::Sound => continue,
                Finding::Unsure(why) => {
                    report.kept.push(format!("{name}: {why}"));
                    continue;
                }
                Finding::Damaged(problem) => problem,
            };
            // Read again: a writer still at work on it would show different bytes.
            match finding(repo, kind, &name, size)? {
                Finding::Damaged(_) => {
                    repo.store().remove(&name)?;
                    tracing::warn!(object = %name, %problem, "repair removed a damaged object");
                    report.removed.push(format!("{name}: {problem}"));
                }
                _ => report.kept.push(format!(
                    "{name}: it read differently twice; run `sealbackctl repair` again when no other device is backing up"
                )),
            }
        }
    }
    Ok(report)
}

/// What one read of an object says.
enum Finding {
    Sound,
    /// Read in full, and not an object this key sealed: what a torn put leaves.
    Damaged(String),
    /// Not read in full, or damaged in a way a torn put does not explain: kept.
    Unsure(String),
}

/// Reads the object `name` of `kind`, whose listing says it holds `size` bytes. A store
/// error (unreachable, transient) is returned as one: nothing is decided on a failed read.
fn finding(repo: &Repository, kind: ObjectKind, name: &str, size: u64) -> Result<Finding, Error> {
    let bytes = repo.store().get(name)?;
    if bytes.len() as u64 != size {
        return Ok(Finding::Unsure(format!(
            "read {} of the {size} bytes the target lists; kept",
            bytes.len()
        )));
    }
    Ok(match object::open(repo.keys(), kind, name, &bytes) {
        Ok(_) => Finding::Sound,
        Err(e @ (Error::Authentication { .. } | Error::Truncated { .. })) => {
            Finding::Damaged(e.to_string())
        }
        Err(e) => Finding::Unsure(format!("{e}; kept for a person to look at")),
    })
}
