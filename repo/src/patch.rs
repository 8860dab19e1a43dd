//! Database patches: the runs a backup changed, compressed against their previous contents.
//!
//! A day of use rewrites a few hundred pages of the database, most of them by a few bytes
//! (a status flag, a row added), and the pages a B-tree split fills are made of cells that
//! sat in their neighbours. A patch holds the new contents of every changed run, compressed
//! as one zstd frame whose prefix (zstd's raw dictionary) is the previous contents of
//! those runs: on the benchmark's day 1, 290 pages take 105 KB this way, against 640 KB
//! compressed alone and 230 KB compressed each against its own old page.
//!
//! ```text
//! patch   = version (u8 = 1) || run_bytes (u32 LE) || size_before (u64 LE)
//!           || size_after (u64 LE) || n (u32 LE) || n runs (u64 LE, ascending)
//!           || m (u32 LE) || m dictionary runs (u64 LE, ascending) || new_hash (32)
//!           || zstd frame
//! ```
//!
//! The frame decompresses to the `n` runs' new contents back to back, each `run_bytes`
//! long except a run cut short by `size_after`; its prefix is the `m` dictionary runs as
//! they were before the patch (cut short by `size_before` likewise). `new_hash` is the
//! keyed hash ([`crate::RepoKeys::chunk_id`]) of the decompressed frame: a patch applied
//! to anything but the image it was made against fails loudly rather than writing noise.

use zstd::zstd_safe::{CCtx, CParameter, DCtx, DParameter};

use crate::chunk::ChunkId;
use crate::error::{Error, Result};
use crate::keys::RepoKeys;

const PATCH_VERSION: u8 = 1;
/// zstd level 9. Its lazy match finder finds each page's old cells in a prefix of a few
/// hundred pages: on the benchmark's day 1, 105 KB in 21 ms against 113 KB at level 3; on
/// the end-to-end test's day (hex values, spread updates), 10 KB against 182 KB at level 3,
/// whose single-probe finder loses the right page among so many alike.
const LEVEL: i32 = 9;
/// The largest window a patch may need (dictionary and new runs together): 128 MiB,
/// zstd's default limit for decompression.
const MAX_WINDOW_LOG: u32 = 27;

/// The most bytes a patch's new runs, or its dictionary runs, may take: a writer puts at
/// most 1,024 runs of at most 1 MiB (the largest `db_chunk_bytes` a repository allows) in
/// one. Checked when decoding, so that a damaged or hostile patch cannot make a reader
/// reserve terabytes for its runs.
const MAX_RUNS_BYTES: u64 = 1 << 30;

/// A decoded patch, borrowing its frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Patch<'a> {
    pub run_bytes: u32,
    pub size_before: u64,
    pub size_after: u64,
    /// The runs it changes, ascending.
    pub runs: Vec<u64>,
    /// The runs whose previous contents are the frame's prefix, ascending.
    pub dictionary: Vec<u64>,
    new_hash: ChunkId,
    frame: &'a [u8],
}

/// Bytes of run `run` in an image of `size` bytes (0 past its end).
pub fn run_len(run_bytes: u32, size: u64, run: u64) -> usize {
    let start = run.saturating_mul(u64::from(run_bytes));
    size.saturating_sub(start).min(u64::from(run_bytes)) as usize
}

fn window_log(bytes: usize) -> u32 {
    (usize::BITS - bytes.max(1).leading_zeros()).clamp(10, MAX_WINDOW_LOG)
}

/// Encodes a patch: `changed` are the runs' new contents and `dictionary` the previous
/// contents of some of them (or of any runs of the image before), both ascending by run.
pub fn encode(
    keys: &RepoKeys,
    run_bytes: u32,
    size_before: u64,
    size_after: u64,
    changed: &[(u64, &[u8])],
    dictionary: &[(u64, &[u8])],
) -> Vec<u8> {
    let joined = |runs: &[(u64, &[u8])]| runs.iter().map(|(_, d)| *d).collect::<Vec<_>>().concat();
    let (new, prefix) = (joined(changed), joined(dictionary));
    let mut out = Vec::with_capacity(64 + 8 * (changed.len() + dictionary.len()));
    out.push(PATCH_VERSION);
    out.extend_from_slice(&run_bytes.to_le_bytes());
    out.extend_from_slice(&size_before.to_le_bytes());
    out.extend_from_slice(&size_after.to_le_bytes());
    for runs in [changed, dictionary] {
        out.extend_from_slice(&(runs.len() as u32).to_le_bytes());
        for (run, _) in runs {
            out.extend_from_slice(&run.to_le_bytes());
        }
    }
    out.extend_from_slice(&keys.chunk_id(&new).0);
    let mut frame = Vec::with_capacity(zstd::zstd_safe::compress_bound(new.len()));
    let mut cctx = CCtx::create();
    let compressed = cctx
        .set_parameter(CParameter::CompressionLevel(LEVEL))
        .and_then(|_| {
            cctx.set_parameter(CParameter::WindowLog(window_log(prefix.len() + new.len())))
        })
        .and_then(|_| cctx.ref_prefix(&prefix))
        .and_then(|_| cctx.compress2(&mut frame, &new));
    // Compression into a buffer of compress_bound bytes only fails on a zstd bug.
    if let Err(code) = compressed {
        panic!(
            "zstd refused to compress a patch: {}",
            zstd::zstd_safe::get_error_name(code)
        );
    }
    out.extend_from_slice(&frame);
    out
}

/// Reads a patch's header; `name` names it in errors.
pub fn decode<'a>(bytes: &'a [u8], name: &str) -> Result<Patch<'a>> {
    let malformed = |detail: &str| Error::Malformed {
        name: name.to_owned(),
        detail: detail.to_owned(),
    };
    let mut at = 0usize;
    let mut take = |n: usize| -> Result<&'a [u8]> {
        let part = bytes
            .get(at..at + n)
            .ok_or_else(|| malformed("the patch is cut short"))?;
        at += n;
        Ok(part)
    };
    let version = take(1)?[0];
    if version != PATCH_VERSION {
        return Err(malformed(&format!(
            "patch version {version}, this sealback reads {PATCH_VERSION}: upgrade sealback"
        )));
    }
    let u32_at = |b: &[u8]| u32::from_le_bytes(b.try_into().expect("4 bytes"));
    let u64_at = |b: &[u8]| u64::from_le_bytes(b.try_into().expect("8 bytes"));
    let run_bytes = u32_at(take(4)?);
    let size_before = u64_at(take(8)?);
    let size_after = u64_at(take(8)?);
    if run_bytes == 0 {
        return Err(malformed("runs of 0 bytes"));
    }
    let mut lists = [Vec::new(), Vec::new()];
    for (list, size) in lists.iter_mut().zip([size_after, size_before]) {
        let n = u32_at(take(4)?) as usize;
        let raw = take(n.checked_mul(8).ok_or_else(|| malformed("too many runs"))?)?;
        *list = raw.chunks_exact(8).map(u64_at).collect();
        let ascending = list.windows(2).all(|w| w[0] < w[1]);
        let inside = list.iter().all(|&r| run_len(run_bytes, size, r) > 0);
        if !ascending || !inside {
            return Err(malformed("its runs are out of order or outside the image"));
        }
        let bytes = (list.iter()).fold(0u64, |sum, &r| {
            sum.saturating_add(run_len(run_bytes, size, r) as u64)
        });
        if bytes > MAX_RUNS_BYTES {
            return Err(malformed(&format!(
                "its runs take {bytes} bytes, more than the {MAX_RUNS_BYTES} a patch may"
            )));
        }
    }
    let new_hash = ChunkId(take(32)?.try_into().expect("32 bytes"));
    let [runs, dictionary] = lists;
    Ok(Patch {
        run_bytes,
        size_before,
        size_after,
        runs,
        dictionary,
        new_hash,
        frame: &bytes[at..],
    })
}

impl Patch<'_> {
    /// Bytes the new runs take, back to back.
    pub fn new_len(&self) -> usize {
        self.runs
            .iter()
            .map(|&r| run_len(self.run_bytes, self.size_after, r))
            .sum()
    }

    /// Bytes the dictionary runs take, back to back.
    pub fn dictionary_len(&self) -> usize {
        self.dictionary
            .iter()
            .map(|&r| run_len(self.run_bytes, self.size_before, r))
            .sum()
    }

    /// The new runs' contents back to back, given the dictionary runs' previous contents
    /// back to back; checked against the patch's keyed hash.
    pub fn decompress(&self, keys: &RepoKeys, prefix: &[u8], name: &str) -> Result<Vec<u8>> {
        let failed = |detail: String| Error::Malformed {
            name: name.to_owned(),
            detail,
        };
        if prefix.len() != self.dictionary_len() {
            return Err(failed(format!(
                "its dictionary is {} bytes, {} were given",
                self.dictionary_len(),
                prefix.len()
            )));
        }
        let expected = self.new_len();
        let mut out = Vec::with_capacity(expected);
        let mut dctx = DCtx::create();
        dctx.set_parameter(DParameter::WindowLogMax(MAX_WINDOW_LOG))
            .and_then(|_| dctx.ref_prefix(prefix))
            .and_then(|_| dctx.decompress(&mut out, self.frame))
            .map_err(|code| {
                failed(format!(
                    "its frame does not decompress ({})",
                    zstd::zstd_safe::get_error_name(code)
                ))
            })?;
        if out.len() != expected || keys.chunk_id(&out) != self.new_hash {
            return Err(failed(
                "it does not apply to this image (the runs it was made against differ)".into(),
            ));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::BackupKey;

    fn keys() -> RepoKeys {
        BackupKey::from_bytes(&mut [7; 32]).derive()
    }

    fn page(seed: u8) -> Vec<u8> {
        (0..4096u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8 ^ seed)
            .collect()
    }

    #[test]
    fn a_patch_restores_its_runs_and_is_small_against_similar_pages() {
        let keys = keys();
        let old = [page(1), page(2), page(3)];
        let mut new = old.clone();
        new[0][100..110].copy_from_slice(b"0123456789");
        new[2][4000..4010].copy_from_slice(b"abcdefghij");
        let size_before = 3 * 4096;
        // The image grows by half a run: its last run is short.
        let tail = page(9)[..2048].to_vec();
        let size_after = 3 * 4096 + 2048;
        let changed = [(0, &new[0][..]), (2, &new[2][..]), (3, &tail[..])];
        let dict = [(0, &old[0][..]), (2, &old[2][..])];
        let bytes = encode(&keys, 4096, size_before, size_after, &changed, &dict);
        let patch = decode(&bytes, "p").expect("decodes");
        assert_eq!(patch.runs, vec![0, 2, 3]);
        assert_eq!(patch.dictionary, vec![0, 2]);
        assert_eq!(patch.new_len(), 2 * 4096 + 2048);
        let prefix = [&old[0][..], &old[2][..]].concat();
        let out = patch.decompress(&keys, &prefix, "p").expect("applies");
        assert_eq!(out, [&new[0][..], &new[2][..], &tail[..]].concat());
        // Two 10-byte edits cost far less than the 8 KiB of pages they sit in.
        let frame = bytes.len() - (1 + 4 + 8 + 8 + 4 + 3 * 8 + 4 + 2 * 8 + 32);
        assert!(frame < 2048 + 200, "frame of {frame} bytes");
    }

    #[test]
    fn a_patch_refuses_another_base_and_damage() {
        let keys = keys();
        let (old, mut new) = (page(1), page(1));
        new[10] ^= 0xff;
        let bytes = encode(&keys, 4096, 4096, 4096, &[(0, &new)], &[(0, &old)]);
        let patch = decode(&bytes, "p").expect("decodes");
        let wrong = page(2);
        let err = patch
            .decompress(&keys, &wrong, "p")
            .expect_err("other base");
        assert!(err.to_string().contains("does not apply"), "{err}");
        assert!(patch.decompress(&keys, &old[..100], "p").is_err());
        for cut in [0, 5, 30, bytes.len() - 1] {
            let short = &bytes[..cut];
            let refused = decode(short, "p").and_then(|p| p.decompress(&keys, &old, "p"));
            assert!(refused.is_err(), "cut at {cut}");
        }
        let mut bad = bytes.clone();
        bad[1 + 4 + 8 + 8 + 4] = 9; // run 9 of a one-run image
        assert!(decode(&bad, "p").is_err());
    }

    #[test]
    fn a_patch_claiming_more_runs_than_a_writer_makes_is_refused_before_allocating() {
        // 2^20 runs of 4 GiB: decompress would have reserved 4 PiB for them and aborted.
        let n: u32 = 1 << 20;
        let mut bytes = vec![PATCH_VERSION];
        bytes.extend_from_slice(&u32::MAX.to_le_bytes());
        bytes.extend_from_slice(&0u64.to_le_bytes());
        bytes.extend_from_slice(&u64::MAX.to_le_bytes());
        bytes.extend_from_slice(&n.to_le_bytes());
        for run in 0..u64::from(n) {
            bytes.extend_from_slice(&run.to_le_bytes());
        }
        bytes.extend_from_slice(&0u32.to_le_bytes());
        bytes.extend_from_slice(&[0; 32]);
        let err = decode(&bytes, "p").expect_err("refused");
        assert!(err.to_string().contains("more than"), "{err}");
    }
}
