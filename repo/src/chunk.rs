//! Chunks: the unit of deduplication.
//!
//! A chunk's id is its keyed BLAKE3 hash ([`crate::RepoKeys::chunk_id`]). Media and other
//! files are cut by FastCDC (content-defined, so an insertion moves only nearby boundaries)
//! with a gear table seeded from the backup key, so chunk lengths do not reveal which known
//! file was stored. The database is cut differently, at fixed page-aligned offsets, because
//! SQLite changes pages in place: see `DB_CHUNK_BYTES`.

use std::fmt;
use std::io::Read;

use fastcdc::v2020::Normalization;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Smallest, average and largest chunk of a media file. Media is incompressible and never
/// edited in place, so chunks are large: fewer index entries, fewer blobs per pack.
pub const MEDIA_MIN_BYTES: u32 = 256 * 1024;
pub const MEDIA_AVG_BYTES: u32 = 1024 * 1024;
pub const MEDIA_MAX_BYTES: u32 = 2 * 1024 * 1024;

/// The database is cut into single pages (runs of this many bytes, rounded up to one page):
/// a day of use changes a few hundred pages scattered over the whole file (287 of 46,908
/// in the benchmark's day 1), so a page changed costs one page of new chunk, not a run.
/// Larger runs compress no better (130 MB of the medium database at zstd 3 for 1, 2 or 4
/// pages) and cost 1.9x (2 pages) to 3.7x (4 pages) as much per day.
pub const DB_CHUNK_BYTES: u32 = 4096;

/// Chunk ids a list blob holds at most (2 KiB of ids). Small lists keep a day's scattered
/// changes cheap (163 of the medium database's 733 lists changed on day 1: 0.33 MB, where
/// lists of 1024 would all have changed: 1.5 MB), at 64 hex digits per list in the manifest.
pub const LIST_IDS: usize = 64;

/// The keyed BLAKE3 hash of a chunk's plaintext.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChunkId(pub [u8; 32]);

impl ChunkId {
    /// A hash of the id for hash tables keyed by ids: its first eight bytes, since ids are
    /// keyed hashes already.
    pub fn table_hash(&self) -> u64 {
        let mut first = [0u8; 8];
        first.copy_from_slice(&self.0[..8]);
        u64::from_le_bytes(first)
    }

    pub fn from_hex(s: &str) -> Option<ChunkId> {
        let bytes = s.as_bytes();
        if bytes.len() != 64 {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, pair) in bytes.chunks_exact(2).enumerate() {
            let hi = (pair[0] as char).to_digit(16)?;
            let lo = (pair[1] as char).to_digit(16)?;
            out[i] = (hi << 4 | lo) as u8;
        }
        Some(ChunkId(out))
    }

    /// The 64 lowercase hex digits, without the formatting machinery (`write!` per byte
    /// was a tenth of writing a large store's manifest).
    pub fn hex(&self) -> [u8; 64] {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut out = [0u8; 64];
        for (pair, b) in out.chunks_exact_mut(2).zip(self.0) {
            pair[0] = DIGITS[usize::from(b >> 4)];
            pair[1] = DIGITS[usize::from(b & 15)];
        }
        out
    }

    /// The first 8 hex digits, for messages.
    pub fn short(&self) -> String {
        self.to_string()[..8].to_owned()
    }
}

/// A set of chunk ids, in about 40 bytes per id where a `HashSet<ChunkId>` takes 36 to 70.
///
/// A full backup of the large store claims a quarter of a million ids: in a `HashSet` they
/// took 17 MB (its table rounds up to a power of two, each slot a whole id plus a control
/// byte, 512 Ki slots for 249,000 ids) and 26 MB for a moment while it doubled. Here the
/// ids sit once, in blocks that never move or double, and the table holds their positions
/// (4 bytes and a control byte a slot): 8 MB and 2.6 MB for the same ids. Ids are keyed
/// BLAKE3 hashes, uniform and unpredictable without the backup key, so their first eight
/// bytes are their hash.
#[derive(Clone, Default)]
pub struct IdSet {
    /// The ids in the order added, [`BLOCK`] to a block.
    blocks: Vec<Vec<ChunkId>>,
    len: usize,
    table: hashbrown::HashTable<u32>,
}

/// Ids per block of an [`IdSet`] (128 KiB).
const BLOCK: usize = 4096;

fn id_at(blocks: &[Vec<ChunkId>], at: u32) -> &ChunkId {
    let at = at as usize;
    &blocks[at / BLOCK][at % BLOCK]
}

impl IdSet {
    /// An empty set with room for `n` ids.
    pub fn with_capacity(n: usize) -> IdSet {
        IdSet {
            blocks: Vec::with_capacity(n.div_ceil(BLOCK)),
            len: 0,
            table: hashbrown::HashTable::with_capacity(n),
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn contains(&self, id: &ChunkId) -> bool {
        self.position(id).is_some()
    }

    /// How many ids were added before `id`, if it is in the set.
    pub fn position(&self, id: &ChunkId) -> Option<usize> {
        self.table
            .find(id.table_hash(), |&at| id_at(&self.blocks, at) == id)
            .map(|&at| at as usize)
    }

    /// The id at `position` (see [`IdSet::position`]).
    pub fn get(&self, position: usize) -> Option<&ChunkId> {
        self.blocks.get(position / BLOCK)?.get(position % BLOCK)
    }

    /// Adds `id`; true if it was not in the set.
    ///
    /// # Panics
    /// Past `u32::MAX` ids (128 GiB of them).
    pub fn insert(&mut self, id: ChunkId) -> bool {
        let blocks = &self.blocks;
        match self.table.entry(
            id.table_hash(),
            |&at| *id_at(blocks, at) == id,
            |&at| id_at(blocks, at).table_hash(),
        ) {
            hashbrown::hash_table::Entry::Occupied(_) => false,
            hashbrown::hash_table::Entry::Vacant(slot) => {
                slot.insert(u32::try_from(self.len).expect("fewer than 2^32 chunk ids"));
                if self.len.is_multiple_of(BLOCK) {
                    self.blocks.push(Vec::with_capacity(BLOCK));
                }
                if let Some(block) = self.blocks.last_mut() {
                    block.push(id);
                }
                self.len += 1;
                true
            }
        }
    }

    /// The ids, in the order they were added.
    pub fn iter(&self) -> impl Iterator<Item = &ChunkId> {
        self.blocks.iter().flatten()
    }
}

impl Extend<ChunkId> for IdSet {
    fn extend<I: IntoIterator<Item = ChunkId>>(&mut self, ids: I) {
        for id in ids {
            self.insert(id);
        }
    }
}

impl FromIterator<ChunkId> for IdSet {
    fn from_iter<I: IntoIterator<Item = ChunkId>>(ids: I) -> IdSet {
        let mut set = IdSet::default();
        set.extend(ids);
        set
    }
}

impl IntoIterator for IdSet {
    type Item = ChunkId;
    type IntoIter = std::iter::Flatten<std::vec::IntoIter<Vec<ChunkId>>>;

    fn into_iter(self) -> Self::IntoIter {
        self.blocks.into_iter().flatten()
    }
}

/// Equal as sets: the same ids, in any order.
impl PartialEq for IdSet {
    fn eq(&self, other: &IdSet) -> bool {
        self.len() == other.len() && self.iter().all(|id| other.contains(id))
    }
}

impl fmt::Debug for IdSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

impl fmt::Display for ChunkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hex = self.hex();
        f.write_str(std::str::from_utf8(&hex).map_err(|_| fmt::Error)?)
    }
}

impl fmt::Debug for ChunkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChunkId({})", self.short())
    }
}

/// 64 hex digits in text formats (the manifests' JSON); 32 bytes in binary ones (the
/// catalog's MessagePack).
impl Serialize for ChunkId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if !s.is_human_readable() {
            return s.serialize_bytes(&self.0);
        }
        let hex = self.hex();
        s.serialize_str(std::str::from_utf8(&hex).map_err(serde::ser::Error::custom)?)
    }
}

impl<'de> Deserialize<'de> for ChunkId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Id;
        impl serde::de::Visitor<'_> for Id {
            type Value = ChunkId;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a chunk id: 64 hex digits, or 32 bytes")
            }
            // Borrowed where the format allows: no string allocated per id.
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<ChunkId, E> {
                ChunkId::from_hex(s).ok_or_else(|| E::custom("chunk id is not 64 hex digits"))
            }
            fn visit_bytes<E: serde::de::Error>(self, b: &[u8]) -> Result<ChunkId, E> {
                <[u8; 32]>::try_from(b)
                    .map(ChunkId)
                    .map_err(|_| E::custom("chunk id is not 32 bytes"))
            }
        }
        if d.is_human_readable() {
            d.deserialize_str(Id)
        } else {
            d.deserialize_bytes(Id)
        }
    }
}

/// Cuts streams into content-defined chunks within the repository's bounds, with the cut
/// points of fastcdc's `StreamCDC` (the same `cut_gear` over the same windows) but one
/// window buffer for every file: `StreamCDC` allocates and zeroes a buffer of the largest
/// chunk per file, which was 5% of a full backup's time over the medium store's 2,358 files.
pub struct MediaChunker {
    min: usize,
    avg: usize,
    max: usize,
    gear: Vec<u64>,
    gear_ls: Vec<u64>,
    mask_s: u64,
    mask_l: u64,
    window: Vec<u8>,
}

impl MediaChunker {
    /// A chunker for a repository's media chunk bounds (its `config`) and gear seed.
    pub fn new(seed: u64, min: u32, avg: u32, max: u32) -> MediaChunker {
        let (gear, gear_ls) = fastcdc::v2020::get_gear_with_seed(seed);
        let (mask_s, mask_l) = fastcdc::v2020::select_masks(avg as usize, Normalization::Level1);
        MediaChunker {
            min: min as usize,
            avg: avg as usize,
            max: max as usize,
            gear: gear.into_owned(),
            gear_ls: gear_ls.into_owned(),
            mask_s,
            mask_l,
            window: Vec::new(),
        }
    }

    /// Hands each chunk of `reader`, in order, to `each`; stops at the first error.
    pub fn chunks<E: From<std::io::Error>>(
        &mut self,
        mut reader: impl Read,
        mut each: impl FnMut(&[u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        let max = self.max;
        self.window.resize(max, 0);
        let (mut start, mut end, mut eof) = (0usize, 0usize, false);
        loop {
            if !eof && end - start < max {
                self.window.copy_within(start..end, 0);
                end -= start;
                start = 0;
                while end < max && !eof {
                    match reader.read(&mut self.window[end..]) {
                        Ok(0) => eof = true,
                        Ok(n) => end += n,
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(e.into()),
                    }
                }
            }
            if start == end {
                return Ok(());
            }
            let (_, count) = fastcdc::v2020::cut_gear(
                &self.window[start..end],
                self.min,
                self.avg,
                max,
                self.mask_s,
                self.mask_l,
                self.mask_s << 1,
                self.mask_l << 1,
                &self.gear,
                &self.gear_ls,
            );
            each(&self.window[start..start + count])?;
            start += count;
        }
    }
}

/// Whether zstd is worth trying on a file, judged by its name: formats that are already
/// compressed (photos, video, voice notes, office documents, archives) are stored as they are.
pub fn worth_compressing(path: &str) -> bool {
    let ext = path
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    !matches!(
        ext.as_str(),
        "jpg"
            | "jpeg"
            | "png"
            | "gif"
            | "webp"
            | "heic"
            | "mp4"
            | "m4a"
            | "mov"
            | "3gp"
            | "mkv"
            | "webm"
            | "opus"
            | "ogg"
            | "mp3"
            | "aac"
            | "amr"
            | "zip"
            | "gz"
            | "xz"
            | "zst"
            | "7z"
            | "rar"
            | "docx"
            | "xlsx"
            | "pptx"
            | "pdf"
            | "apk"
    )
}

/// Encodes chunk ids as a list blob's plaintext: the ids back to back.
pub fn encode_list(ids: &[ChunkId]) -> Vec<u8> {
    let mut out = Vec::with_capacity(ids.len() * 32);
    for id in ids {
        out.extend_from_slice(&id.0);
    }
    out
}

/// Decodes a list blob; `None` if its length is not a multiple of 32.
pub fn decode_list(bytes: &[u8]) -> Option<Vec<ChunkId>> {
    if !bytes.len().is_multiple_of(32) {
        return None;
    }
    Some(
        bytes
            .chunks_exact(32)
            .map(|c| {
                let mut id = [0u8; 32];
                id.copy_from_slice(c);
                ChunkId(id)
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use fastcdc::v2020::StreamCDC;

    #[test]
    fn id_set_holds_each_id_once_through_growth() {
        // Ids that share their first eight bytes (the table's hash) collide on purpose.
        let id = |i: u32, tail: u8| {
            let mut bytes = [tail; 32];
            bytes[..4].copy_from_slice(&(i % 1000).to_le_bytes());
            bytes[8..12].copy_from_slice(&i.to_le_bytes());
            ChunkId(bytes)
        };
        let mut set = IdSet::default();
        for i in 0..20_000 {
            assert!(set.insert(id(i, 1)), "{i} is new");
        }
        for i in 0..20_000 {
            assert!(!set.insert(id(i, 1)), "{i} is there already");
            assert!(set.contains(&id(i, 1)));
            assert!(!set.contains(&id(i, 2)), "{i} differs past the hash");
        }
        assert_eq!(set.len(), 20_000);
        let reversed: IdSet = (0..20_000).rev().map(|i| id(i, 1)).collect();
        assert_eq!(set, reversed, "equal as sets, whatever the order");
        let mut more = reversed.clone();
        more.insert(id(0, 2));
        assert_ne!(set, more);
        assert_eq!(
            set.iter().next(),
            Some(&id(0, 1)),
            "kept in insertion order"
        );
        for i in [0, 4095, 4096, 19_999] {
            assert_eq!(set.position(&id(i, 1)), Some(i as usize));
            assert_eq!(set.get(i as usize), Some(&id(i, 1)));
        }
        assert_eq!(set.position(&id(7, 2)), None);
        assert_eq!(set.get(20_000), None);
    }

    /// fastcdc's own stream chunker: the reference [`MediaChunker`] must cut like.
    fn media_chunks<R: Read>(
        reader: R,
        seed: u64,
    ) -> impl Iterator<Item = std::io::Result<Vec<u8>>> {
        StreamCDC::with_level_and_seed(
            reader,
            MEDIA_MIN_BYTES as usize,
            MEDIA_AVG_BYTES as usize,
            MEDIA_MAX_BYTES as usize,
            Normalization::Level1,
            seed,
        )
        .map(|r| {
            r.map(|c| c.data).map_err(|e| match e {
                fastcdc::v2020::Error::IoError(io) => io,
                other => std::io::Error::other(other.to_string()),
            })
        })
    }
    use rand::{RngCore, SeedableRng};

    fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
        let mut v = vec![0u8; len];
        rand::rngs::StdRng::seed_from_u64(seed).fill_bytes(&mut v);
        v
    }

    /// The chunks [`MediaChunker`] cuts `data` into, at the media bounds, with `seed`.
    fn cut(data: &[u8], seed: u64) -> Vec<Vec<u8>> {
        let mut chunker =
            MediaChunker::new(seed, MEDIA_MIN_BYTES, MEDIA_AVG_BYTES, MEDIA_MAX_BYTES);
        let mut chunks = Vec::new();
        chunker
            .chunks(ShortReads(data), |c| {
                chunks.push(c.to_vec());
                Ok::<_, std::io::Error>(())
            })
            .expect("reading from memory does not fail");
        chunks
    }

    #[test]
    fn chunks_cover_the_input_within_bounds() {
        let data = random_bytes(9 * 1024 * 1024 + 123, 1);
        let chunks = cut(&data, 7);
        assert_eq!(chunks.concat(), data, "the chunks, in order, are the input");
        let (last, whole) = chunks.split_last().expect("9 MiB gives chunks");
        for (i, c) in whole.iter().enumerate() {
            assert!(
                (MEDIA_MIN_BYTES as usize..=MEDIA_MAX_BYTES as usize).contains(&c.len()),
                "chunk {i} is {} bytes, outside the media bounds",
                c.len()
            );
        }
        assert!(!last.is_empty() && last.len() <= MEDIA_MAX_BYTES as usize);
        assert!(chunks.len() >= 3, "9 MiB should give several chunks");
    }

    #[test]
    fn an_insertion_moves_only_nearby_boundaries() {
        let data = random_bytes(8 * 1024 * 1024, 2);
        let mut edited = data.clone();
        edited.splice(4 * 1024 * 1024..4 * 1024 * 1024, *b"inserted");
        let a = cut(&data, 7);
        let b = cut(&edited, 7);
        let shared = a.iter().filter(|c| b.contains(c)).count();
        assert!(a.len() >= 4, "8 MiB should give several chunks");
        assert!(
            shared + 2 >= a.len(),
            "only the chunks around the insertion may change: {shared} of {} kept",
            a.len()
        );
    }

    #[test]
    fn the_seed_changes_the_boundaries() {
        let data = random_bytes(8 * 1024 * 1024, 3);
        let lengths = |seed| cut(&data, seed).iter().map(Vec::len).collect::<Vec<_>>();
        assert_eq!(lengths(1), lengths(1), "the same seed cuts the same way");
        assert_ne!(lengths(1), lengths(2));
    }

    #[test]
    fn ids_and_lists_round_trip() {
        let id = ChunkId([0xab; 32]);
        assert_eq!(ChunkId::from_hex(&id.to_string()), Some(id));
        let mut bytes = [0u8; 32];
        bytes[0] = 0x0f;
        bytes[31] = 0xf0;
        let id = ChunkId(bytes);
        let expected = format!("0f{}f0", "00".repeat(30));
        assert_eq!(id.to_string(), expected);
        assert_eq!(
            serde_json::to_string(&id).expect("json"),
            format!("\"{expected}\"")
        );
        assert_eq!(ChunkId::from_hex("zz"), None);
        let ids = vec![ChunkId([1; 32]), ChunkId([2; 32])];
        assert_eq!(decode_list(&encode_list(&ids)), Some(ids));
        assert_eq!(decode_list(&[0u8; 33]), None);
        assert!(!worth_compressing("Media/Images/IMG-1.JPG"));
        assert!(worth_compressing("notes.txt"));
    }

    #[test]
    fn the_reusable_chunker_cuts_where_stream_cdc_cuts() {
        let mut chunker = MediaChunker::new(7, MEDIA_MIN_BYTES, MEDIA_AVG_BYTES, MEDIA_MAX_BYTES);
        let mut state = 1u64;
        // Several files through one chunker: sizes around the window and the bounds.
        for len in [
            0usize,
            1,
            300_000,
            4 << 20,
            (4 << 20) + 1,
            9_000_000,
            23_456_789,
        ] {
            let data: Vec<u8> = (0..len)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    state as u8
                })
                .collect();
            let expected: Vec<Vec<u8>> = media_chunks(&data[..], 7)
                .collect::<std::io::Result<_>>()
                .expect("chunks");
            let mut got = Vec::new();
            // A reader that returns short reads, as pipes and network files do.
            let reader = ShortReads(&data[..]);
            chunker
                .chunks(reader, |c| {
                    got.push(c.to_vec());
                    Ok::<_, std::io::Error>(())
                })
                .expect("chunks");
            assert!(
                got == expected,
                "length {len}: {} chunks against {}",
                got.len(),
                expected.len()
            );
        }
    }

    struct ShortReads<'a>(&'a [u8]);

    impl Read for ShortReads<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = buf.len().min(self.0.len()).min(100_003);
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }
}
