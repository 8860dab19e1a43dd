//! Packs: many encrypted blobs in one object, so that a backup of thousands of chunks is a
//! handful of requests to the provider.
//!
//! ```text
//! pack   = header || blob_1 || ... || blob_n || sealed table || table length (u32 LE, of the sealed table)
//! blob_i = AES-256-GCM(K_pack, nonce = offset of blob_i, AAD = header || name || "blob" || kind || chunk id,
//!                      payload)            payload = the chunk, zstd-compressed or not
//! table  = n entries of 46 bytes: kind (u8) || compression (u8) || chunk id (32)
//!          || offset (u32 LE, of blob_i from the start of the pack)
//!          || length (u32 LE, of blob_i with its tag) || raw length (u32 LE, of the chunk)
//! sealed table = AES-256-GCM(K_pack, nonce = 0, AAD = header || name || "table",
//!                             table || 0x80 || 0x00*)
//! ```
//!
//! The table's padding brings the whole pack to a Padmé length ([`crate::padme`]); the
//! blobs' offsets do not move, and a reader finds the table from the pack's end as before.
//! A version-1 pack has no padding and is still read.
//!
//! K_pack comes from the pack's random salt (see [`crate::object`]). Nonce 0 seals the
//! table; each blob's nonce is its byte offset in the pack, at least 42 (the header) and
//! strictly increasing, so within the pack's key no nonce repeats. A blob's
//! AAD binds it to its chunk id, its kind and the pack it sits in; on reading, the chunk
//! id is also recomputed from the plaintext.

use aes_gcm::aead::Aead;
use aes_gcm::aead::inout::InOutBuf;
use aes_gcm::aead::{AeadInOut, Payload};

use bytes::Bytes;

use crate::chunk::ChunkId;
use crate::error::{Error, Result};
use crate::keys::RepoKeys;
use crate::object::{HEADER_LEN, Header, ObjectKind, TAG_LEN, counter_nonce};
use crate::padme;

/// A pack is closed once it holds this many bytes, table included. Every packing worker
/// holds one, and a restore thread reads one at a time: 4 MiB keeps a full backup within its
/// memory goal with a worker per core, at ~300 objects for the medium store's 1.2 GB. A
/// power of two, hence a Padmé length: a pack closed within its target is padded to at
/// most the target, so padding costs a full pack no more than the room it had left.
pub const TARGET_PACK_BYTES: usize = 4 * 1024 * 1024;
const ENTRY_LEN: usize = 46;
/// A chunk larger than this is refused when reading (no chunk is ever written larger).
const MAX_RAW_LEN: u32 = 64 * 1024 * 1024;
/// zstd's fast level -3 (no Huffman coding of literals): the medium store's database
/// pages, compressed one by one, at 560 MB/s to 1.33x, against level 1's 280 MB/s to 1.46x;
/// 0.2 s of a full backup's 2.6 s of CPU for 13 MB more. Page blobs are written by full
/// reads only; a day's pages go as a patch, compressed at level 9 (§4.1.2).
const ZSTD_LEVEL: i32 = -3;
/// A finished pack starts at a multiple of this in memory, so that a provider writing
/// around the page cache (`O_DIRECT`) can write it where it lies instead of copying it.
pub const PACK_ALIGN: usize = 4096;

/// What a blob holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum BlobKind {
    /// A chunk of a file's or the database's content.
    Data = 0,
    /// A list of chunk ids (32 bytes each) describing a large file.
    List = 1,
    /// A database patch ([`crate::patch`]): changed runs against their old contents.
    Patch = 2,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Compression {
    None = 0,
    Zstd = 1,
}

/// Where a blob is, as the pack table and the index record it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PackEntry {
    pub id: ChunkId,
    pub kind: BlobKind,
    pub compression: Compression,
    pub offset: u32,
    pub length: u32,
    pub raw_length: u32,
}

impl PackEntry {
    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        out.push(self.kind as u8);
        out.push(self.compression as u8);
        out.extend_from_slice(&self.id.0);
        out.extend_from_slice(&self.offset.to_le_bytes());
        out.extend_from_slice(&self.length.to_le_bytes());
        out.extend_from_slice(&self.raw_length.to_le_bytes());
    }

    /// Decodes entries back to back; `name` is the object they came from, for errors.
    pub(crate) fn decode_all(name: &str, bytes: &[u8]) -> Result<Vec<PackEntry>> {
        if !bytes.len().is_multiple_of(ENTRY_LEN) {
            return Err(Error::malformed(
                name,
                "pack table length is not a multiple of 46",
            ));
        }
        bytes
            .chunks_exact(ENTRY_LEN)
            .map(|e| Self::decode(name, e))
            .collect()
    }

    fn decode(name: &str, e: &[u8]) -> Result<PackEntry> {
        let kind = match e[0] {
            0 => BlobKind::Data,
            1 => BlobKind::List,
            2 => BlobKind::Patch,
            k => return Err(Error::malformed(name, format!("unknown blob kind {k}"))),
        };
        let compression = match e[1] {
            0 => Compression::None,
            1 => Compression::Zstd,
            c => return Err(Error::malformed(name, format!("unknown compression {c}"))),
        };
        let mut id = [0u8; 32];
        id.copy_from_slice(&e[2..34]);
        let u32_at = |at: usize| u32::from_le_bytes([e[at], e[at + 1], e[at + 2], e[at + 3]]);
        Ok(PackEntry {
            id: ChunkId(id),
            kind,
            compression,
            offset: u32_at(34),
            length: u32_at(38),
            raw_length: u32_at(42),
        })
    }
}

/// Builds one pack in memory.
pub struct PackWriter {
    name: String,
    header: Header,
    /// The pack from `buf[start..]`, `start` putting it on a [`PACK_ALIGN`] boundary.
    buf: Vec<u8>,
    start: usize,
    entries: Vec<PackEntry>,
    /// One zstd context for the whole pack, and its output buffer.
    compressor: Option<zstd::bulk::Compressor<'static>>,
    scratch: Vec<u8>,
}

/// A finished pack: the bytes to store under `name`, and its table for the index.
pub struct FinishedPack {
    pub name: String,
    /// Starts on a [`PACK_ALIGN`] boundary.
    pub bytes: Bytes,
    pub entries: Vec<PackEntry>,
}

impl PackWriter {
    /// A new, empty pack under a fresh random name (`data/` followed by 64 hex digits).
    pub fn new(keys: &RepoKeys) -> PackWriter {
        PackWriter::new_in(keys, Vec::new())
    }

    /// [`PackWriter::new`] in the buffer of an earlier pack.
    pub fn new_in(keys: &RepoKeys, mut buf: Vec<u8>) -> PackWriter {
        let header = Header::new(keys, ObjectKind::Pack);
        buf.clear();
        buf.reserve(TARGET_PACK_BYTES + PACK_ALIGN);
        let start = buf.as_ptr().align_offset(PACK_ALIGN).min(PACK_ALIGN);
        buf.resize(start, 0);
        buf.extend_from_slice(&header.bytes);
        PackWriter {
            name: format!("data/{}", random_hex()),
            header,
            buf,
            start,
            entries: Vec::new(),
            compressor: None,
            scratch: Vec::new(),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Bytes in the pack so far.
    pub fn len(&self) -> usize {
        self.buf.len() - self.start
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The pack's size once finished, before its padding, with `blobs` more blobs of
    /// `bytes` in all.
    fn finished_len(&self, blobs: usize, bytes: usize) -> usize {
        let table = (self.entries.len() + blobs) * ENTRY_LEN + 1 + TAG_LEN + 4;
        self.len() + bytes + blobs * TAG_LEN + table
    }

    /// True once the pack, table included, has reached its target size.
    pub fn is_full(&self) -> bool {
        self.finished_len(0, 0) >= TARGET_PACK_BYTES
    }

    /// Whether a chunk of `len` bytes still fits within the target size, table included (an
    /// empty pack takes any chunk). Closing a pack before it would overflow keeps every pack
    /// within the buffer it was given, so a writer holds one allocation, never a doubled one.
    pub fn has_room_for(&self, len: usize) -> bool {
        self.is_empty() || self.finished_len(1, len) <= TARGET_PACK_BYTES
    }

    /// Adds a chunk, compressed with zstd if `compress` and if that saves at least 1/32.
    pub fn add(&mut self, kind: BlobKind, id: ChunkId, chunk: &[u8], compress: bool) {
        let at = self.buf.len();
        let offset = self.len();
        let compressed = compress && self.compress(chunk);
        let (payload, compression) = if compressed {
            (self.scratch.as_slice(), Compression::Zstd)
        } else {
            (chunk, Compression::None)
        };
        self.buf.extend_from_slice(payload);
        let aad = blob_aad(&self.header, &self.name, kind, &id);
        let tag = self
            .header
            .cipher
            .encrypt_inout_detached(
                &counter_nonce(offset as u64),
                &aad,
                self.buf[at..].as_mut().into(),
            )
            .expect("AES-GCM encrypts any chunk");
        self.buf.extend_from_slice(&tag);
        self.entries.push(PackEntry {
            id,
            kind,
            compression,
            offset: offset as u32,
            length: (self.buf.len() - at) as u32,
            raw_length: chunk.len() as u32,
        });
    }

    /// Compresses `chunk` into `scratch`; true if that saved at least 1/32.
    fn compress(&mut self, chunk: &[u8]) -> bool {
        let compressor = match &mut self.compressor {
            Some(c) => c,
            None => match zstd::bulk::Compressor::new(ZSTD_LEVEL) {
                Ok(c) => self.compressor.insert(c),
                Err(_) => return false,
            },
        };
        self.scratch.clear();
        self.scratch
            .reserve(zstd::zstd_safe::compress_bound(chunk.len()));
        match compressor.compress_to_buffer(chunk, &mut self.scratch) {
            Ok(n) => n < chunk.len() - chunk.len() / 32,
            Err(_) => false,
        }
    }

    /// Calls `f` with each blob added so far, decrypted and checked as a reader would: how
    /// a backup's last partial packs are merged into one, padded once (DESIGN §3.10).
    pub fn for_each_chunk(
        &self,
        keys: &RepoKeys,
        mut f: impl FnMut(&PackEntry, &[u8]),
    ) -> Result<()> {
        let reader = PackReader::new(keys, &self.name, &self.buf[self.start..])?;
        let mut scratch = BlobScratch::default();
        for entry in &self.entries {
            f(entry, reader.blob_in(entry, &mut scratch)?);
        }
        Ok(())
    }

    /// Seals the table, padded to bring the pack to its Padmé length, and returns the pack.
    pub fn finish(self) -> FinishedPack {
        let PackWriter {
            name,
            header,
            mut buf,
            start,
            entries,
            ..
        } = self;
        let mut table = Vec::with_capacity(entries.len() * ENTRY_LEN);
        for e in &entries {
            e.encode(&mut table);
        }
        if header.padded() {
            padme::pad(&mut table, buf.len() - start + TAG_LEN + 4);
        }
        let aad = header.aad(&name, b"table");
        let sealed = header
            .cipher
            .encrypt(
                &counter_nonce(0),
                Payload {
                    msg: &table,
                    aad: &aad,
                },
            )
            .expect("AES-GCM encrypts any table");
        buf.extend_from_slice(&sealed);
        buf.extend_from_slice(&(sealed.len() as u32).to_le_bytes());
        FinishedPack {
            name,
            bytes: Bytes::from(buf).slice(start..),
            entries,
        }
    }
}

fn blob_aad(header: &Header, name: &str, kind: BlobKind, id: &ChunkId) -> Vec<u8> {
    let mut extra = Vec::with_capacity(4 + 1 + 32);
    extra.extend_from_slice(b"blob");
    extra.push(kind as u8);
    extra.extend_from_slice(&id.0);
    header.aad(name, &extra)
}

pub(crate) fn random_hex() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    ChunkId(bytes).to_string()
}

/// Reads blobs out of a pack's bytes, verifying each.
pub struct PackReader<'a> {
    keys: &'a RepoKeys,
    name: &'a str,
    header: Header,
    bytes: &'a [u8],
}

impl<'a> PackReader<'a> {
    /// Checks the pack's header; the table is read only by [`PackReader::table`].
    pub fn new(keys: &'a RepoKeys, name: &'a str, bytes: &'a [u8]) -> Result<PackReader<'a>> {
        let header = Header::parse(keys, ObjectKind::Pack, name, bytes)?;
        Ok(PackReader {
            keys,
            name,
            header,
            bytes,
        })
    }

    /// Decrypts and decodes the pack's own table (used to rebuild a lost index).
    pub fn table(&self) -> Result<Vec<PackEntry>> {
        let len = self.bytes.len();
        let truncated = || Error::Truncated {
            name: self.name.to_owned(),
            len,
        };
        if len < HEADER_LEN + 4 {
            return Err(truncated());
        }
        let table_len =
            u32::from_le_bytes(self.bytes[len - 4..].try_into().map_err(|_| truncated())?) as usize;
        let start = (len - 4)
            .checked_sub(table_len)
            .filter(|s| *s >= HEADER_LEN);
        let start = start.ok_or_else(truncated)?;
        let aad = self.header.aad(self.name, b"table");
        let table = self
            .header
            .cipher
            .decrypt(
                &counter_nonce(0),
                Payload {
                    msg: &self.bytes[start..len - 4],
                    aad: &aad,
                },
            )
            .map_err(|_| Error::Authentication {
                name: self.name.to_owned(),
            })?;
        let table = if self.header.padded() {
            padme::unpad(self.name, &table)?
        } else {
            &table
        };
        PackEntry::decode_all(self.name, table)
    }

    /// The plaintext chunk of `entry`: authenticated, decompressed, and checked against its id.
    pub fn blob(&self, entry: &PackEntry) -> Result<Vec<u8>> {
        let mut scratch = BlobScratch::default();
        self.blob_in(entry, &mut scratch).map(<[u8]>::to_vec)
    }

    /// [`PackReader::blob`] into reusable buffers and zstd context: restoring a pack of
    /// thousands of one-page blobs allocates nothing per blob.
    pub fn blob_in<'s>(&self, entry: &PackEntry, scratch: &'s mut BlobScratch) -> Result<&'s [u8]> {
        self.blob_placed(entry, scratch, None)
    }

    /// [`PackReader::blob_in`], an uncompressed blob's plaintext placed in memory at
    /// `phase.0` bytes past a multiple of `phase.1` (a power of two): a writer bound for a
    /// file offset with that phase can then write its aligned middle with `O_DIRECT` where
    /// it lies, without copying it to an aligned buffer first.
    pub fn blob_placed<'s>(
        &self,
        entry: &PackEntry,
        scratch: &'s mut BlobScratch,
        phase: Option<(usize, usize)>,
    ) -> Result<&'s [u8]> {
        let start = entry.offset as usize;
        let end = start.checked_add(entry.length as usize);
        let range = end
            .filter(|e| {
                start >= HEADER_LEN && *e <= self.bytes.len() && entry.length as usize >= TAG_LEN
            })
            .map(|e| start..e);
        let Some(range) = range else {
            return Err(Error::Truncated {
                name: self.name.to_owned(),
                len: self.bytes.len(),
            });
        };
        let (ciphertext, tag) = self.bytes[range].split_at(entry.length as usize - TAG_LEN);
        let tag = aes_gcm::Tag::try_from(tag).expect("the tag is TAG_LEN bytes");
        // Decrypted straight from the pack into the scratch buffer, which only ever grows.
        let (skew, align) = match (entry.compression, phase) {
            (Compression::None, Some((at, align))) if align.is_power_of_two() => {
                (at % align, align)
            }
            _ => (0, 1),
        };
        if scratch.payload.len() < ciphertext.len() + 2 * align {
            scratch.payload.resize(ciphertext.len() + 2 * align, 0);
        }
        let base = scratch.payload.as_ptr() as usize;
        let start = (skew + align - base % align) % align;
        let payload = &mut scratch.payload[start..start + ciphertext.len()];
        let aad = blob_aad(&self.header, self.name, entry.kind, &entry.id);
        self.header
            .cipher
            .decrypt_inout_detached(
                &counter_nonce(entry.offset as u64),
                &aad,
                InOutBuf::new(ciphertext, payload).expect("equal lengths"),
                &tag,
            )
            .map_err(|_| Error::Authentication {
                name: format!("{} (blob {})", self.name, entry.id.short()),
            })?;
        let payload = &scratch.payload[start..start + ciphertext.len()];
        let plain: &[u8] = match entry.compression {
            Compression::None => payload,
            Compression::Zstd => {
                if entry.raw_length > MAX_RAW_LEN {
                    return Err(Error::malformed(self.name, "blob larger than 64 MiB"));
                }
                let decompressor = match &mut scratch.decompressor {
                    Some(d) => d,
                    None => scratch.decompressor.insert(
                        zstd::bulk::Decompressor::new()
                            .map_err(|e| Error::malformed(self.name, format!("zstd: {e}")))?,
                    ),
                };
                scratch.plain.clear();
                scratch.plain.reserve(entry.raw_length as usize);
                decompressor
                    .decompress_to_buffer(payload, &mut scratch.plain)
                    .map_err(|e| Error::malformed(self.name, format!("zstd: {e}")))?;
                &scratch.plain
            }
        };
        if plain.len() != entry.raw_length as usize || self.keys.chunk_id(plain) != entry.id {
            return Err(Error::ChunkMismatch {
                pack: self.name.to_owned(),
                chunk: entry.id.to_string(),
            });
        }
        Ok(plain)
    }
}

/// Buffers and a zstd context that [`PackReader::blob_in`] reuses from blob to blob.
#[derive(Default)]
pub struct BlobScratch {
    payload: Vec<u8>,
    plain: Vec<u8>,
    decompressor: Option<zstd::bulk::Decompressor<'static>>,
}

#[cfg(test)]
#[path = "pack_padding_tests.rs"]
mod padding_tests;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::BackupKey;

    pub(super) fn keys() -> RepoKeys {
        BackupKey::from_bytes(&mut [9u8; 32]).derive()
    }

    pub(super) fn pack_of(keys: &RepoKeys, chunks: &[&[u8]]) -> FinishedPack {
        let mut w = PackWriter::new(keys);
        for c in chunks {
            w.add(BlobKind::Data, keys.chunk_id(c), c, true);
        }
        w.finish()
    }

    #[test]
    fn finished_packs_start_on_a_block_boundary() {
        let keys = keys();
        for chunks in [
            &[][..],
            &[&b"x"[..]][..],
            &[&[7u8; 100_000][..], &b"y"[..]][..],
        ] {
            // In a fresh buffer, and in used ones of other sizes and contents.
            for buffer in [Vec::new(), vec![9u8; 17], Vec::with_capacity(5 << 20)] {
                let mut w = PackWriter::new_in(&keys, buffer);
                for c in chunks {
                    w.add(BlobKind::Data, keys.chunk_id(c), c, true);
                }
                let pack = w.finish();
                assert_eq!(pack.bytes.as_ptr().align_offset(PACK_ALIGN), 0);
                let reader = PackReader::new(&keys, &pack.name, &pack.bytes).expect("header");
                let table = reader.table().expect("table");
                assert_eq!(table.len(), chunks.len());
                for (entry, c) in table.iter().zip(chunks) {
                    assert_eq!(reader.blob(entry).expect("blob"), *c);
                }
            }
        }
    }

    #[test]
    fn blobs_round_trip_and_compress_only_when_it_helps() {
        let keys = keys();
        let text = b"hello hello hello hello hello hello hello hello".repeat(100);
        let mut random = vec![0u8; 5000];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut random);
        let pack = pack_of(&keys, &[&text, &random, b""]);
        assert!(pack.name.starts_with("data/") && pack.name.len() == 5 + 64);
        assert_eq!(pack.entries[0].compression, Compression::Zstd);
        assert_eq!(pack.entries[1].compression, Compression::None);
        let reader = PackReader::new(&keys, &pack.name, &pack.bytes).expect("header");
        assert_eq!(reader.table().expect("table"), pack.entries);
        assert_eq!(reader.blob(&pack.entries[0]).expect("blob"), text);
        assert_eq!(reader.blob(&pack.entries[1]).expect("blob"), random);
        assert_eq!(reader.blob(&pack.entries[2]).expect("blob"), b"");
    }

    #[test]
    fn an_uncompressed_blob_is_placed_at_the_phase_asked_for() {
        let keys = keys();
        let mut random = vec![0u8; 70_000];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut random);
        let text = b"compressible ".repeat(1000);
        let pack = pack_of(&keys, &[&random, &text]);
        let reader = PackReader::new(&keys, &pack.name, &pack.bytes).expect("header");
        let mut scratch = BlobScratch::default();
        for (at, align) in [(0, 4096), (1, 4096), (4095, 4096), (100, 16384), (7, 1)] {
            let plain = reader
                .blob_placed(&pack.entries[0], &mut scratch, Some((at, align)))
                .expect("blob");
            assert_eq!(plain, &random[..]);
            assert_eq!(plain.as_ptr() as usize % align, at % align);
        }
        // Compressed blobs come out of zstd where they come: the phase is ignored.
        let plain = reader
            .blob_placed(&pack.entries[1], &mut scratch, Some((5, 4096)))
            .expect("blob");
        assert_eq!(plain, &text[..]);
    }

    #[test]
    fn any_flipped_byte_is_detected() {
        let keys = keys();
        let pack = pack_of(&keys, &[b"first chunk", b"second chunk"]);
        for i in 0..pack.bytes.len() {
            let mut bad = pack.bytes.to_vec();
            bad[i] ^= 0x80;
            let detected = match PackReader::new(&keys, &pack.name, &bad) {
                Err(_) => true,
                Ok(r) => r.table().is_err() || pack.entries.iter().any(|e| r.blob(e).is_err()),
            };
            assert!(detected, "flip at byte {i} went unnoticed");
        }
    }

    #[test]
    fn a_pack_under_another_name_or_a_wrong_entry_fails() {
        let keys = keys();
        let pack = pack_of(&keys, &[b"first chunk", b"second chunk"]);
        let moved = PackReader::new(&keys, "data/other", &pack.bytes).expect("header parses");
        assert!(matches!(moved.table(), Err(Error::Authentication { .. })));
        assert!(moved.blob(&pack.entries[0]).is_err());
        let reader = PackReader::new(&keys, &pack.name, &pack.bytes).expect("header");
        let mut swapped = pack.entries[0];
        swapped.id = pack.entries[1].id;
        assert!(reader.blob(&swapped).is_err());
        let mut out_of_range = pack.entries[0];
        out_of_range.length = u32::MAX;
        assert!(matches!(
            reader.blob(&out_of_range),
            Err(Error::Truncated { .. })
        ));
    }
}
