//! Repository generations: one repository per backup key on one store, so that a key can be
//! rotated without a moment when nothing restores (DESIGN.md §3.11).
//!
//! The root generation is the layout every repository had before rotation existed:
//! `config`, `data/`, `index/`, `snapshots/` at the top of the store. A key made by
//! `sealbackctl key rotate` gets a generation of its own, named by the key itself:
//!
//! ```text
//! generations/<g>      the generation's `config`
//! g/<g>/data/<64 hex>  and every other object: the repository's own name under g/<g>/
//! g = hex(HKDF-Expand(HKDF-Extract("sealback repository v1", K), "sealback v1 generation name", 8))
//! ```
//!
//! So a key finds its generation with one `get` and no listing, a store lists its
//! generations with `list("generations/")`, and the provider learns nothing from a name it
//! could not learn from the key's `config` object. Inside a generation, objects are sealed
//! under that generation's key with their name *within the generation* in the AAD
//! ([`crate::object`]); an object moved between generations fails authentication because
//! the two generations' keys differ (a rotation always makes a fresh random key).

use std::sync::Arc;

use aes_gcm::aead::{Aead, Payload};
use aes_gcm::{Aes256Gcm, KeyInit, Nonce};
use bytes::Bytes;
use hkdf::Hkdf;
use rand::RngCore;
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::gc::marker::Marker;
use crate::keys::BackupKey;
use crate::object::{self, ObjectKind};
use crate::repository::{CONFIG_NAME, ObjectStore, Repository, StoreError, StoreErrorKind};

const EXTRACT_SALT: &[u8] = b"sealback repository v1";
const LABEL_GENERATION_NAME: &[u8] = b"sealback v1 generation name";
const LABEL_PREVIOUS_KEY: &[u8] = b"sealback v1 previous key";
/// The additional data of a sealed previous key (see [`seal_previous`]).
const PREVIOUS_KEY_AAD: &[u8] = b"sealback previous key v1";
const PREVIOUS_KEY_VERSION: u8 = 1;
/// Where each generation's `config` is.
pub const CONFIGS_PREFIX: &str = "generations/";
/// Where each generation's other objects are, under their generation's name.
pub const OBJECTS_PREFIX: &str = "g/";
/// The mark of a generation being retired, inside it (`retiring` at the root,
/// `g/<g>/retiring` otherwise): sealed under the generation's own key as a prune marker
/// with no packs, so that only a holder of that key can mark it.
pub const RETIRING_NAME: &str = "retiring";

/// Where a key's repository is on a store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layout {
    /// At the top of the store (every repository made before rotation, and any made by
    /// `key generate` or a first backup).
    Root,
    /// Under the generation named by the key ([`name_of`]).
    Generation(String),
}

impl Layout {
    /// The generation of `key`, if it was made by a rotation.
    pub fn of_rotated(key: &BackupKey) -> Layout {
        Layout::Generation(name_of(key))
    }

    /// The layout's name in messages and file names: `root` or the generation's name.
    pub fn label(&self) -> &str {
        match self {
            Layout::Root => "root",
            Layout::Generation(g) => g,
        }
    }
}

/// The name of `key`'s generation: 16 hex digits, a PRF of the key (so nobody without the
/// key can tell which key a generation belongs to).
pub fn name_of(key: &BackupKey) -> String {
    let hk = Hkdf::<Sha256>::new(Some(EXTRACT_SALT), key.expose_secret());
    let mut out = [0u8; 8];
    hk.expand(LABEL_GENERATION_NAME, &mut out)
        .expect("8 bytes of HKDF output");
    out.iter().map(|b| format!("{b:02x}")).collect()
}

/// The store as `layout`'s repository sees it.
pub fn store_for(inner: Arc<dyn ObjectStore>, layout: &Layout) -> Arc<dyn ObjectStore> {
    match layout {
        Layout::Root => inner,
        Layout::Generation(g) => Arc::new(GenerationStore {
            inner,
            config: format!("{CONFIGS_PREFIX}{g}"),
            prefix: format!("{OBJECTS_PREFIX}{g}/"),
        }),
    }
}

/// Opens the repository `key` opens on `inner`, at the root or in its own generation. A
/// missing repository is [`StoreErrorKind::NotFound`]; a root repository of another key
/// with no generation of this key is that key's authentication error.
pub fn open(inner: Arc<dyn ObjectStore>, key: &BackupKey) -> Result<(Repository, Layout)> {
    let root = match Repository::open(inner.clone(), key) {
        Ok(repo) => return Ok((repo, Layout::Root)),
        Err(e @ (Error::Authentication { .. } | Error::Store(_))) => e,
        Err(e) => return Err(e),
    };
    if let Error::Store(s) = &root
        && s.kind != StoreErrorKind::NotFound
    {
        return Err(root);
    }
    let layout = Layout::of_rotated(key);
    match Repository::open(store_for(inner.clone(), &layout), key) {
        Ok(repo) => Ok((repo, layout)),
        Err(Error::Store(s)) if s.kind == StoreErrorKind::NotFound => {
            // No root repository, and none of this key: another key's generation makes
            // this the wrong key rather than a store without a repository.
            if matches!(&root, Error::Store(_)) && !inner.list(CONFIGS_PREFIX)?.is_empty() {
                return Err(Error::Authentication {
                    name: CONFIG_NAME.to_owned(),
                });
            }
            Err(root)
        }
        Err(e) => Err(e),
    }
}

/// A generation's store: its `config` at `generations/<g>`, every other name under
/// `g/<g>/`. Listings see the generation's own objects only (never its `config`).
struct GenerationStore {
    inner: Arc<dyn ObjectStore>,
    config: String,
    prefix: String,
}

impl GenerationStore {
    fn outer(&self, name: &str) -> String {
        if name == CONFIG_NAME {
            self.config.clone()
        } else {
            format!("{}{name}", self.prefix)
        }
    }
}

impl ObjectStore for GenerationStore {
    fn put(&self, name: &str, data: &[u8]) -> Result<(), StoreError> {
        self.inner.put(&self.outer(name), data)
    }
    fn put_shared(&self, name: &str, data: Bytes) -> Result<(), StoreError> {
        self.inner.put_shared(&self.outer(name), data)
    }
    fn get(&self, name: &str) -> Result<Bytes, StoreError> {
        self.inner.get(&self.outer(name))
    }
    fn list(&self, prefix: &str) -> Result<Vec<(String, u64)>, StoreError> {
        let listed = self.inner.list(&format!("{}{prefix}", self.prefix))?;
        Ok(listed
            .into_iter()
            .filter_map(|(n, size)| Some((n.strip_prefix(&self.prefix)?.to_owned(), size)))
            .collect())
    }
    fn remove(&self, name: &str) -> Result<(), StoreError> {
        self.inner.remove(&self.outer(name))
    }
}

/// Marks `repo`'s generation (opened with its own key) as retiring at `now_unix_ms`,
/// unless it is marked already; returns the time of the mark. From the mark on, backups
/// into the generation refuse to start ([`retiring_since`]), and the grace period of
/// DESIGN §12 runs before [`retire`] removes it (§3.11).
pub fn mark_retiring(repo: &Repository, now_unix_ms: i64) -> Result<i64> {
    if let Some(at) = retiring_since(repo)? {
        return Ok(at);
    }
    let marker = Marker {
        written_unix_ms: now_unix_ms,
        packs: Vec::new(),
    };
    let sealed = object::seal(
        repo.keys(),
        ObjectKind::Marker,
        RETIRING_NAME,
        &marker.encode(),
    );
    repo.store().put(RETIRING_NAME, &sealed)?;
    Ok(now_unix_ms)
}

/// When `repo`'s generation was marked as retiring (the marking device's clock), if it
/// was. A mark that does not open is an integrity error, like any damaged object.
pub fn retiring_since(repo: &Repository) -> Result<Option<i64>> {
    let bytes = match repo.store().get(RETIRING_NAME) {
        Ok(bytes) => bytes,
        Err(e) if e.kind == StoreErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let plain = object::open(repo.keys(), ObjectKind::Marker, RETIRING_NAME, &bytes)?;
    Ok(Some(Marker::decode(RETIRING_NAME, &plain)?.written_unix_ms))
}

/// What [`retire`] removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Retired {
    pub objects: u64,
    pub bytes: u64,
}

/// Removes every object of `layout`'s generation from `inner`: snapshots first (so that
/// an interrupted retirement leaves no snapshot whose data is half gone), then everything
/// else, its retiring mark and its `config` last, so that until the end the generation is
/// still found, still marked, and a retirement run again finishes the work at once. Other
/// generations are never touched. The caller decides whether the generation may go (see
/// DESIGN.md §3.11: marked at least the grace period ago).
/// `old` is the generation's repository, opened with its key (to read which manifests are
/// relative).
pub fn retire(inner: &dyn ObjectStore, layout: &Layout, old: &Repository) -> Result<Retired> {
    let (listed, prefix, config) = match layout {
        Layout::Root => {
            let all = inner.list("")?;
            let own = all
                .into_iter()
                .filter(|(n, _)| {
                    n != CONFIG_NAME
                        && !n.starts_with(CONFIGS_PREFIX)
                        && !n.starts_with(OBJECTS_PREFIX)
                })
                .collect::<Vec<_>>();
            (own, String::new(), CONFIG_NAME.to_owned())
        }
        Layout::Generation(g) => {
            let prefix = format!("{OBJECTS_PREFIX}{g}/");
            (inner.list(&prefix)?, prefix, format!("{CONFIGS_PREFIX}{g}"))
        }
    };
    let mark = format!("{prefix}{RETIRING_NAME}");
    // Relative manifests, then whole ones (a retirement cut short never leaves a snapshot
    // whose base is gone), then the rest, then the mark.
    let whole = |n: &str| {
        old.read_manifest(&n[prefix.len()..])
            .is_ok_and(|(manifest, _)| manifest.base.is_none())
    };
    let order = |n: &str| {
        if n == mark {
            3
        } else if n.rsplit('/').nth(1) == Some("snapshots") {
            u8::from(whole(n))
        } else {
            2
        }
    };
    let mut listed = listed;
    listed.sort_by_cached_key(|(n, _)| order(n));
    let mut retired = Retired::default();
    for (name, size) in listed {
        inner.remove(&name)?;
        retired.objects += 1;
        retired.bytes += size;
    }
    match inner.get(&config) {
        Ok(bytes) => {
            inner.remove(&config)?;
            retired.objects += 1;
            retired.bytes += bytes.len() as u64;
        }
        Err(e) if e.kind == StoreErrorKind::NotFound => {}
        Err(e) => return Err(e.into()),
    }
    Ok(retired)
}

fn previous_key_cipher(current: &BackupKey) -> Aes256Gcm {
    let hk = Hkdf::<Sha256>::new(Some(EXTRACT_SALT), current.expose_secret());
    let mut wrap = Zeroizing::new([0u8; 32]);
    hk.expand(LABEL_PREVIOUS_KEY, wrap.as_mut_slice())
        .expect("32 bytes of HKDF output");
    Aes256Gcm::new_from_slice(wrap.as_slice()).expect("a 32-byte key")
}

/// The previous key `previous`, sealed under the current key `current` for the time its
/// generation is kept: `1 || nonce (12) || AES-256-GCM(HKDF(current, "sealback v1
/// previous key"), nonce, previous, AAD = "sealback previous key v1")`.
pub fn seal_previous(current: &BackupKey, previous: &BackupKey) -> Vec<u8> {
    let mut nonce = [0u8; 12];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    let sealed = previous_key_cipher(current)
        .encrypt(
            &Nonce::from(nonce),
            Payload {
                msg: previous.expose_secret(),
                aad: PREVIOUS_KEY_AAD,
            },
        )
        .expect("AES-GCM seals 32 bytes");
    let mut out = Vec::with_capacity(1 + 12 + sealed.len());
    out.push(PREVIOUS_KEY_VERSION);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&sealed);
    out
}

/// The previous key sealed by [`seal_previous`]; `None` if `current` did not seal it (or
/// the bytes were changed).
pub fn open_previous(current: &BackupKey, sealed: &[u8]) -> Option<BackupKey> {
    if sealed.len() != 1 + 12 + 32 + 16 || sealed[0] != PREVIOUS_KEY_VERSION {
        return None;
    }
    let plain = Zeroizing::new(
        previous_key_cipher(current)
            .decrypt(
                &Nonce::from(<[u8; 12]>::try_from(&sealed[1..13]).ok()?),
                Payload {
                    msg: &sealed[13..],
                    aad: PREVIOUS_KEY_AAD,
                },
            )
            .ok()?,
    );
    let mut bytes = [0u8; 32];
    bytes.copy_from_slice(&plain);
    Some(BackupKey::from_bytes(&mut bytes))
}

#[cfg(test)]
#[path = "generation_tests.rs"]
mod tests;
