//! What the catalog keeps for prunes: when this device first saw each prune marker (its
//! own clock: the sweep's second condition, DESIGN §12.2), the indexes its prunes wrote
//! and when (what makes a pack settled), and when it last pruned.
//!
//! Both are in `meta`; a catalog deleted and rebuilt forgets them, which only delays the
//! next sweep and makes the next automatic prune due.

use std::collections::BTreeMap;

use super::{Catalog, Result};

impl Catalog {
    /// The map of object names to times kept under `key` (`prune_seen`, `prune_indexes`).
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
}
