//! Records of forgotten snapshots: `forgotten/<64 hex>` objects listing the snapshots a
//! prune deleted on purpose, written before it deletes them, so that another device's sync
//! forgets them quietly instead of raising the hidden-snapshot alarm (DESIGN §12.6). Sealed
//! with the repository's key and bound to their name: the provider can neither forge one
//! nor move one, so a snapshot it hides alone still raises the alarm.
//!
//! ```text
//! payload = written_unix_ms (i64 LE, the writer's clock) || snapshot id (32 bytes) ...
//! ```

use crate::chunk::ChunkId;
use crate::error::{Error, Result};
use crate::object::{self, ObjectKind};
use crate::pack::random_hex;
use crate::repository::Repository;

pub const FORGOTTEN_PREFIX: &str = "forgotten/";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forgotten {
    pub written_unix_ms: i64,
    /// Snapshot object names, `snapshots/<64 hex>`.
    pub snapshots: Vec<String>,
}

impl Forgotten {
    pub fn encode(&self) -> Result<Vec<u8>> {
        let mut out = self.written_unix_ms.to_le_bytes().to_vec();
        for name in &self.snapshots {
            let id = name
                .strip_prefix("snapshots/")
                .and_then(ChunkId::from_hex)
                .ok_or_else(|| Error::malformed(name, "not a snapshot's name"))?;
            out.extend_from_slice(&id.0);
        }
        Ok(out)
    }

    pub fn decode(name: &str, bytes: &[u8]) -> Result<Forgotten> {
        let (time, rest) = bytes
            .split_first_chunk::<8>()
            .ok_or_else(|| Error::malformed(name, "record of forgotten snapshots cut short"))?;
        if rest.len() % 32 != 0 {
            return Err(Error::malformed(
                name,
                "record of forgotten snapshots cut short",
            ));
        }
        Ok(Forgotten {
            written_unix_ms: i64::from_le_bytes(*time),
            snapshots: rest
                .chunks_exact(32)
                .map(|id| {
                    let id: [u8; 32] = id.try_into().expect("32 bytes");
                    format!("snapshots/{}", ChunkId(id))
                })
                .collect(),
        })
    }
}

/// Stores a record; returns its name.
pub fn write(repo: &Repository, record: &Forgotten) -> Result<String> {
    let name = format!("{FORGOTTEN_PREFIX}{}", random_hex());
    let sealed = object::seal(repo.keys(), ObjectKind::Forgotten, &name, &record.encode()?);
    repo.store().put(&name, &sealed)?;
    Ok(name)
}

pub fn read(repo: &Repository, name: &str) -> Result<Forgotten> {
    let bytes = repo.store().get(name)?;
    let plain = object::open(repo.keys(), ObjectKind::Forgotten, name, &bytes)?;
    Forgotten::decode(name, &plain)
}

/// The names of the records on the target.
pub fn list(repo: &Repository) -> Result<Vec<String>> {
    Ok(repo
        .store()
        .list(FORGOTTEN_PREFIX)?
        .into_iter()
        .map(|(n, _)| n)
        .collect())
}
