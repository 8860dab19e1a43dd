//! What the catalog keeps for prunes: when this device first saw each prune marker (its
//! own clock: the sweep's second condition, DESIGN §12.2), when it first saw each pack
//! named by an index (what makes a pack settled), and when it last pruned.
//!
//! Both are in `meta`; a catalog deleted and rebuilt forgets them, which only delays the
//! next sweep and makes the next automatic prune due.

use std::collections::{BTreeMap, HashSet};

use sealback_repo::Repository;
use sealback_repo::gc::forgotten;

use super::{Catalog, Result};

impl Catalog {
    /// The map of object names to times kept under `key` (`prune_seen`, `prune_packs`).
    pub fn prune_times(&self, key: &str) -> Result<BTreeMap<String, i64>> {
        Ok(self
            .meta(key)?
            .and_then(|v| serde_json::from_str(&v).ok())
            .unwrap_or_default())
    }

    pub fn set_prune_times(&self, key: &str, times: &BTreeMap<String, i64>) -> Result<()> {
        let json = serde_json::to_string(times).expect("a map of strings serializes");
        self.set_meta(key, &json)
    }

    pub fn last_prune_unix_ms(&self) -> Result<Option<i64>> {
        Ok(self.meta("last_prune")?.and_then(|v| v.parse().ok()))
    }

    pub fn set_last_prune(&self, at_unix_ms: i64) -> Result<()> {
        self.set_meta("last_prune", &at_unix_ms.to_string())
    }

    /// The snapshots prunes (of any device) deleted on purpose, from the target's sealed
    /// `forgotten/` records (DESIGN §12.6): those read before are kept in `meta` while
    /// their record is listed; a damaged record is left out (and read again next time), so
    /// what it names still raises the alarm. Listed after the snapshots: a prune writes its
    /// record before it deletes any, so a snapshot missing from that listing because of a
    /// prune is named here.
    pub(super) fn forgotten_by_prunes(&self, repo: &Repository) -> Result<HashSet<String>> {
        let mut read: BTreeMap<String, Vec<String>> = self
            .meta("forgotten_records")?
            .and_then(|v| serde_json::from_str(&v).ok())
            .unwrap_or_default();
        let listed = forgotten::list(repo)?;
        let before = read.len();
        read.retain(|name, _| listed.contains(name));
        let mut changed = read.len() != before;
        let new: Vec<&String> = listed.iter().filter(|n| !read.contains_key(*n)).collect();
        for name in new {
            match forgotten::read(repo, name) {
                Ok(record) => {
                    read.insert(name.clone(), record.snapshots);
                    changed = true;
                }
                Err(e) if e.is_integrity() => {
                    tracing::warn!(object = %name, problem = %e, "a record of forgotten snapshots is damaged: the snapshots it names raise the alarm if missing")
                }
                Err(sealback_repo::Error::Store(e))
                    if e.kind == sealback_repo::repository::StoreErrorKind::NotFound => {}
                Err(e) => return Err(e.into()),
            }
        }
        if changed {
            let json = serde_json::to_string(&read).expect("a map of strings serializes");
            self.set_meta("forgotten_records", &json)?;
        }
        Ok(read.into_values().flatten().collect())
    }
}
