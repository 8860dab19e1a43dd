//! What the catalog keeps for prunes: when this device first saw each prune marker (its
//! own clock: the sweep's second condition, DESIGN §12.2), and when it last pruned.
//!
//! Both are in `meta`; a catalog deleted and rebuilt forgets them, which only delays the
//! next sweep and makes the next automatic prune due.

use std::collections::BTreeMap;

use super::{Catalog, Result};

impl Catalog {
    pub fn prune_seen(&self) -> Result<BTreeMap<String, i64>> {
        Ok(self
            .meta("prune_seen")?
            .and_then(|v| serde_json::from_str(&v).ok())
            .unwrap_or_default())
    }

    pub fn set_prune_seen(&self, seen: &BTreeMap<String, i64>) -> Result<()> {
        let json = serde_json::to_string(seen).expect("a map of strings serializes");
        self.set_meta("prune_seen", &json)
    }

    pub fn last_prune_unix_ms(&self) -> Result<Option<i64>> {
        Ok(self.meta("last_prune")?.and_then(|v| v.parse().ok()))
    }

    pub fn set_last_prune(&self, at_unix_ms: i64) -> Result<()> {
        self.set_meta("last_prune", &at_unix_ms.to_string())
    }
}
