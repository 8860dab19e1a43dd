//! Prune markers: `prune/<64 hex>` objects listing packs a prune took out of the index and
//! will delete once its grace period has passed (DESIGN §12).
//!
//! ```text
//! marker payload = written_unix_ms (i64 LE, the writer's clock) || index payload (§3.4)
//! ```
//!
//! The index payload names each pack with the entries it held (none for a pack no index
//! named), so that a later prune can put a pack back in the index without reading it.

use crate::error::{Error, Result};
use crate::index::{Index, IndexedPack};
use crate::object::{self, ObjectKind};
use crate::pack::random_hex;
use crate::repository::Repository;

pub const MARKER_PREFIX: &str = "prune/";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Marker {
    /// When the writer made it, by the writer's clock.
    pub written_unix_ms: i64,
    pub packs: Vec<IndexedPack>,
}

impl Marker {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = self.written_unix_ms.to_le_bytes().to_vec();
        out.extend_from_slice(
            &Index {
                packs: self.packs.clone(),
            }
            .encode(),
        );
        out
    }

    pub fn decode(name: &str, bytes: &[u8]) -> Result<Marker> {
        let (time, rest) = bytes
            .split_first_chunk::<8>()
            .ok_or_else(|| Error::malformed(name, "prune marker cut short"))?;
        Ok(Marker {
            written_unix_ms: i64::from_le_bytes(*time),
            packs: Index::decode(name, rest)?.packs,
        })
    }
}

/// Stores a marker; returns its name and size.
pub fn write(repo: &Repository, marker: &Marker) -> Result<(String, u64)> {
    let name = format!("{MARKER_PREFIX}{}", random_hex());
    let sealed = object::seal(repo.keys(), ObjectKind::Marker, &name, &marker.encode());
    repo.store().put(&name, &sealed)?;
    Ok((name, sealed.len() as u64))
}

pub fn read(repo: &Repository, name: &str) -> Result<Marker> {
    let bytes = repo.store().get(name)?;
    let plain = object::open(repo.keys(), ObjectKind::Marker, name, &bytes)?;
    Marker::decode(name, &plain)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunk::ChunkId;

    #[test]
    fn a_marker_round_trips_and_a_short_one_is_refused() {
        let marker = Marker {
            written_unix_ms: 1_764_000_000_123,
            packs: vec![IndexedPack {
                name: format!("data/{}", ChunkId([7; 32])),
                entries: Vec::new(),
            }],
        };
        let bytes = marker.encode();
        assert_eq!(Marker::decode("prune/x", &bytes).expect("decodes"), marker);
        assert!(Marker::decode("prune/x", &bytes[..5]).is_err());
        assert!(Marker::decode("prune/x", &bytes[..20]).is_err());
    }
}
