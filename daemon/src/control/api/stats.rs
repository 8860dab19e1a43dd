//! `GET /v1/stats` (`sealbackctl stats`): what each target's repository holds, from the
//! daemon's catalog (as of its last sync with the target, at the last backup or listing).
//! `GET /metrics` answers Prometheus' text format instead, documented in
//! `daemon/src/daemon/metrics.rs`.

use serde::{Deserialize, Serialize};

/// The answer to `GET /v1/stats`: one entry per configured target.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct RepositoryStats {
    pub targets: Vec<TargetStats>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct TargetStats {
    pub target: String,
    pub snapshots: u64,
    /// Bytes of the packs, indexes and snapshots stored (the repository's few small config
    /// and key objects are left out: the catalog does not record them).
    pub stored_bytes: u64,
    /// What restoring every snapshot would write: the sum of their sizes.
    pub restored_bytes: u64,
    /// `restored_bytes / stored_bytes`: how many times over deduplication, delta capture and
    /// compression make the stored bytes count; 0 while nothing is stored.
    pub deduplication_ratio: f64,
    /// The objects by kind: `data` (packs), `index`, `snapshots`.
    pub objects: Vec<ObjectCount>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ObjectCount {
    pub kind: String,
    pub count: u64,
    pub bytes: u64,
}
