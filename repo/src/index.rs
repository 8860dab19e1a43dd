//! Index objects: which pack holds which blob.
//!
//! ```text
//! index payload = record*
//! record        = pack id (32 bytes: the 64 hex digits of "data/<id>") || n (u32 LE)
//!                 || n pack entries (46 bytes each, as in the pack table)
//! ```
//!
//! One backup writes one index object (`index/<64 hex digits>`) after all of its packs
//! and before its snapshot. An index only ever adds: the blobs of a repository are the
//! union of all its indexes.

use crate::chunk::ChunkId;
use crate::error::{Error, Result};
use crate::pack::PackEntry;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Index {
    pub packs: Vec<IndexedPack>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexedPack {
    /// The pack's object name, `data/<64 hex digits>`.
    pub name: String,
    pub entries: Vec<PackEntry>,
}

impl Index {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for pack in &self.packs {
            let id = pack
                .name
                .strip_prefix("data/")
                .and_then(ChunkId::from_hex)
                .expect("pack names are data/ and 64 hex digits");
            out.extend_from_slice(&id.0);
            out.extend_from_slice(&(pack.entries.len() as u32).to_le_bytes());
            for e in &pack.entries {
                e.encode(&mut out);
            }
        }
        out
    }

    /// Decodes an index payload; `name` is the index object's name, for errors.
    pub fn decode(name: &str, mut bytes: &[u8]) -> Result<Index> {
        let mut packs = Vec::new();
        while !bytes.is_empty() {
            if bytes.len() < 36 {
                return Err(Error::malformed(name, "index record cut short"));
            }
            let mut id = [0u8; 32];
            id.copy_from_slice(&bytes[..32]);
            let n = u32::from_le_bytes([bytes[32], bytes[33], bytes[34], bytes[35]]) as usize;
            let len = n
                .checked_mul(46)
                .filter(|l| *l <= bytes.len() - 36)
                .ok_or_else(|| Error::malformed(name, "index record longer than the object"))?;
            let entries = PackEntry::decode_all(name, &bytes[36..36 + len])?;
            packs.push(IndexedPack {
                name: format!("data/{}", ChunkId(id)),
                entries,
            });
            bytes = &bytes[36 + len..];
        }
        Ok(Index { packs })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pack::{BlobKind, Compression};

    #[test]
    fn index_round_trip_and_damage() {
        let index = Index {
            packs: vec![IndexedPack {
                name: format!("data/{}", ChunkId([5; 32])),
                entries: vec![PackEntry {
                    id: ChunkId([1; 32]),
                    kind: BlobKind::List,
                    compression: Compression::Zstd,
                    offset: 42,
                    length: 100,
                    raw_length: 300,
                }],
            }],
        };
        let bytes = index.encode();
        assert_eq!(bytes.len(), 36 + 46);
        assert_eq!(Index::decode("index/x", &bytes).expect("decodes"), index);
        assert!(Index::decode("index/x", &bytes[..50]).is_err());
        let mut bad_count = bytes.clone();
        bad_count[32] = 0xff;
        assert!(Index::decode("index/x", &bad_count).is_err());
    }
}
