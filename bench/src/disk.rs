//! The disk a run restores onto: how fast it moves data around the page cache.
//!
//! A cold restore reads the repository and writes the store. A restore that leaves its
//! files on disk (sealback's writes go around the cache, and every tool's time includes a
//! sync) cannot take less than moving both at the rate the disk reads and writes *together*:
//! on a disk that shares its bandwidth between the two, as the benchmark machine's virtual
//! disk does, that rate is far below the sum of the two alone (1.45 GB/s against 1.43 for
//! writes alone and 1.66 for reads in one run). The benchmark measures it once, in the
//! run's own directory, and shows each restore's time against that floor.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt as _, OpenOptionsExt as _};
use std::path::Path;
use std::time::Instant;

use anyhow::{Context as _, Result};
use serde::Serialize;

/// Bytes per request: a pack's size, as sealback reads and writes them.
const BLOCK: usize = 4 << 20;
/// Bytes read and written by each measurement.
const SAMPLE: u64 = 1 << 30;
/// `O_DIRECT` wants buffers, offsets and lengths aligned to the logical block; a page
/// covers every disk's.
const ALIGN: usize = 4096;
/// Streams each way: a restore runs several threads, each reading and writing.
const STREAMS: u64 = 2;

/// Rates in bytes per second, with `O_DIRECT` and 4 MiB requests, `STREAMS` each way.
#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) struct Disk {
    pub write_bps: f64,
    pub read_bps: f64,
    /// Reading one file while writing another: both streams' bytes over the time.
    pub together_bps: f64,
}

impl Disk {
    /// Measures the disk under `dir`; `None` where the file system refuses `O_DIRECT`.
    pub(crate) fn measure(dir: &Path) -> Result<Option<Disk>> {
        let (a, b) = (dir.join("disk-sample-a"), dir.join("disk-sample-b"));
        let measured = (|| -> io::Result<Option<Disk>> {
            let Some(write) = timed(&[], &[&a])? else {
                return Ok(None);
            };
            let read = timed(&[&a], &[])?.unwrap_or(write);
            let together = timed(&[&a], &[&b])?.unwrap_or(write);
            let rate = |seconds: f64| SAMPLE as f64 / seconds;
            Ok(Some(Disk {
                write_bps: rate(write),
                read_bps: rate(read),
                together_bps: 2.0 * rate(together),
            }))
        })();
        for sample in [&a, &b] {
            let _ = fs::remove_file(sample);
        }
        measured.with_context(|| format!("cannot measure the disk under {}", dir.display()))
    }

    /// The shortest time in which this disk reads `read` bytes and writes `written`.
    pub(crate) fn floor_s(&self, read: u64, written: u64) -> f64 {
        (read + written) as f64 / self.together_bps
    }

    /// "write 1.40 GB/s, read 2.10 GB/s, both at once 1.35 GB/s (...)".
    pub(crate) fn line(&self) -> String {
        let gbs = |bps: f64| format!("{:.2} GB/s", bps / 1e9);
        format!(
            "write {}, read {}, both at once {} (O_DIRECT, 4 MiB requests, {STREAMS} streams \
             each way)",
            gbs(self.write_bps),
            gbs(self.read_bps),
            gbs(self.together_bps)
        )
    }
}

/// Seconds taken to read the samples `read` (written before) and write the samples
/// `write`, all at once, `STREAMS` streams per file; `None` if `O_DIRECT` is refused.
fn timed(read: &[&Path], write: &[&Path]) -> io::Result<Option<f64>> {
    for path in write {
        let file = File::create(path)?;
        file.set_len(SAMPLE)?;
    }
    let part = SAMPLE / STREAMS;
    let started = Instant::now();
    let done = std::thread::scope(|scope| {
        let streams: Vec<_> = (0..STREAMS)
            .flat_map(|n| {
                let (start, end) = (n * part, (n + 1) * part);
                let reads = read.iter().map(move |p| (*p, start..end, false));
                let writes = write.iter().map(move |p| (*p, start..end, true));
                reads.chain(writes)
            })
            .map(|(path, range, write)| scope.spawn(move || stream(path, range, write)))
            .collect();
        streams
            .into_iter()
            .map(|s| s.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .try_fold(true, |all, done| Ok::<_, io::Error>(all && done?))
    })?;
    if !done {
        return Ok(None);
    }
    for path in write {
        File::open(path)?.sync_all()?;
    }
    Ok(Some(started.elapsed().as_secs_f64()))
}

/// Reads or writes `range` of the sample at `path` in `BLOCK`s; false if `O_DIRECT` is
/// refused. Written blocks are random bytes no layer below can compress, made once per
/// stream and stamped with their offset so that no two are alike: made afresh for each
/// block, 1 GiB of them put the CPU's work inside the disk's time.
fn stream(path: &Path, range: std::ops::Range<u64>, write: bool) -> io::Result<bool> {
    let Some(file) = open_direct(path, write)? else {
        return Ok(false);
    };
    let mut buffer = AlignedBlock::new();
    if write {
        let mut state = 0x9E37_79B9_7F4A_7C15u64 ^ range.start;
        for word in buffer.get().chunks_exact_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            word.copy_from_slice(&state.to_le_bytes());
        }
    }
    for at in range.step_by(BLOCK) {
        if write {
            buffer.get()[..8].copy_from_slice(&at.to_le_bytes());
            file.write_all_at(buffer.get(), at)?;
        } else {
            file.read_exact_at(buffer.get(), at)?;
        }
    }
    Ok(true)
}

fn open_direct(path: &Path, write: bool) -> io::Result<Option<File>> {
    let opened = OpenOptions::new()
        .read(!write)
        .write(write)
        .custom_flags(nix::libc::O_DIRECT)
        .open(path);
    match opened {
        Ok(file) => Ok(Some(file)),
        Err(e) if e.raw_os_error() == Some(nix::libc::EINVAL) => Ok(None),
        Err(e) => Err(e),
    }
}

/// One request's buffer, aligned for `O_DIRECT`.
struct AlignedBlock(Vec<u8>);

impl AlignedBlock {
    fn new() -> AlignedBlock {
        AlignedBlock(vec![0u8; BLOCK + ALIGN])
    }

    fn get(&mut self) -> &mut [u8] {
        let start = self.0.as_ptr().align_offset(ALIGN);
        &mut self.0[start..start + BLOCK]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_floor_moves_both_directions_at_the_shared_rate() {
        let disk = Disk {
            write_bps: 1.4e9,
            read_bps: 2.1e9,
            together_bps: 1.25e9,
        };
        assert!((disk.floor_s(1_250_000_000, 1_250_000_000) - 2.0).abs() < 1e-9);
        assert_eq!(
            disk.line(),
            "write 1.40 GB/s, read 2.10 GB/s, both at once 1.25 GB/s (O_DIRECT, 4 MiB \
             requests, 2 streams each way)"
        );
    }

    #[test]
    fn a_sample_written_around_the_cache_reads_back() {
        // Under the build's target directory: /tmp may be a tmpfs without O_DIRECT.
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../target")
            .join(format!("sealback-disk-{}", std::process::id()));
        fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("block");
        File::create(&path).expect("create");
        let file = open_direct(&path, true).expect("open");
        if let Some(file) = file {
            // One aligned page, not a whole block: `measure`'s test counts this process's
            // reads (rchar), and tests run side by side in it.
            let mut block = AlignedBlock::new();
            block.get()[..4].copy_from_slice(b"seal");
            file.write_all_at(&block.get()[..ALIGN], 0).expect("write");
            let mut back = AlignedBlock::new();
            let reader = open_direct(&path, false).expect("reopen").expect("direct");
            reader
                .read_exact_at(&mut back.get()[..ALIGN], 0)
                .expect("read");
            assert_eq!(&back.get()[..4], b"seal");
        }
        fs::remove_dir_all(&dir).expect("clean up");
    }
}
