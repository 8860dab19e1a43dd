//! Writing restored chunks into their files, the large ones around the page cache.
//!
//! A restore writes the whole store once; sending it through the page cache costs more CPU
//! than the disk takes (on the benchmark machine buffered writes ran at a third of the
//! disk's speed, and the copy into the cache was 41% of a restore's profile) and evicts
//! what the device is using. So the 4 KiB-aligned middle of every chunk of 64 KiB or more
//! (media) is written with `O_DIRECT` from an aligned buffer; its unaligned head and tail,
//! and small chunks (database pages), are written through the cache as before. The middle
//! is aligned to the memory page (at least 4 KiB; 16 or 64 KiB on some arm64 kernels), so
//! the two never touch the same page and the kernel keeps them coherent. Where `O_DIRECT`
//! is refused (tmpfs on older kernels, some network or FUSE file systems), everything is
//! buffered.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt as _;
use std::path::Path;

/// Chunks whose aligned middle is smaller than this are written buffered.
const DIRECT_MIN: u64 = 64 * 1024;
/// Bytes copied into the aligned buffer per direct write (a multiple of any page size).
const SLAB: usize = 1 << 20;
/// Files kept open at once; past this they are all closed (a pack of many small files, or
/// one chunk shared by many identical files, must not run the process out of descriptors).
const MAX_OPEN: usize = 64;

/// One restore thread's open files and aligned buffer.
pub struct ChunkWriter {
    files: HashMap<usize, Handles>,
    buffer: Vec<u8>,
    direct: bool,
    /// Alignment of direct writes: the memory page, at least 4 KiB.
    align: u64,
}

struct Handles {
    buffered: File,
    /// Opened at the first large chunk: `Some(None)` once refused.
    direct: Option<Option<File>>,
}

impl Default for ChunkWriter {
    fn default() -> Self {
        let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
            .ok()
            .flatten()
            .map_or(4096, |p| p.max(4096) as u64);
        ChunkWriter {
            files: HashMap::new(),
            buffer: Vec::new(),
            direct: cfg!(target_os = "linux") && (SLAB as u64).is_multiple_of(page),
            align: page,
        }
    }
}

impl ChunkWriter {
    /// Writes `data` at `offset` of the file `path`, known to the caller as `file`.
    pub fn write(&mut self, file: usize, path: &Path, data: &[u8], offset: u64) -> io::Result<()> {
        if self.files.len() >= MAX_OPEN && !self.files.contains_key(&file) {
            self.files.clear();
        }
        if let std::collections::hash_map::Entry::Vacant(slot) = self.files.entry(file) {
            slot.insert(Handles {
                // The first chunk of a file creates it; later ones (on any thread) must
                // not truncate it. Together the chunks cover the file.
                buffered: OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(false)
                    .open(path)?,
                direct: None,
            });
        }
        let end = offset + data.len() as u64;
        let align = self.align;
        let (first, last) = (offset.next_multiple_of(align), end / align * align);
        if !self.direct || last < first + DIRECT_MIN {
            return self.buffered(file)?.write_all_at(data, offset);
        }
        let head = (first - offset) as usize;
        let middle = (last - first) as usize;
        self.buffered(file)?.write_all_at(&data[..head], offset)?;
        self.buffered(file)?
            .write_all_at(&data[head + middle..], last)?;
        match self.write_direct(file, path, &data[head..head + middle], first) {
            Ok(true) => Ok(()),
            // Refused: this writer writes through the cache from now on.
            Ok(false) => {
                self.direct = false;
                self.buffered(file)?
                    .write_all_at(&data[head..head + middle], first)
            }
            Err(e) => Err(e),
        }
    }

    /// Closes one file: its last chunk is written.
    pub fn done_with(&mut self, file: usize) {
        self.files.remove(&file);
    }

    /// Closes the files (their chunks are all written, or the restore is failing).
    pub fn close(&mut self) {
        self.files.clear();
    }

    fn buffered(&self, file: usize) -> io::Result<&File> {
        self.files
            .get(&file)
            .map(|h| &h.buffered)
            .ok_or_else(|| io::Error::other("file not open"))
    }

    /// Writes an aligned stretch with `O_DIRECT`; false if the file system refuses it.
    #[cfg(target_os = "linux")]
    fn write_direct(&mut self, file: usize, path: &Path, data: &[u8], at: u64) -> io::Result<bool> {
        use std::os::unix::fs::OpenOptionsExt as _;
        let Some(handles) = self.files.get_mut(&file) else {
            return Ok(false);
        };
        if handles.direct.is_none() {
            let opened = OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_DIRECT)
                .open(path);
            handles.direct = Some(match opened {
                Ok(file) => Some(file),
                Err(e) if refused(&e) => None,
                Err(e) => return Err(e),
            });
        }
        let direct = handles.direct.as_ref().and_then(Option::as_ref);
        let Some(direct) = direct else {
            return Ok(false);
        };
        let align = self.align as usize;
        if self.buffer.is_empty() {
            self.buffer = vec![0u8; SLAB + align];
        }
        let start = self.buffer.as_ptr().align_offset(align);
        let Some(slab) = self.buffer.get_mut(start..start.saturating_add(SLAB)) else {
            return Ok(false);
        };
        let mut pos = at;
        for piece in data.chunks(SLAB) {
            slab[..piece.len()].copy_from_slice(piece);
            match direct.write_all_at(&slab[..piece.len()], pos) {
                Ok(()) => pos += piece.len() as u64,
                Err(e) if refused(&e) => return Ok(false),
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    #[cfg(not(target_os = "linux"))]
    fn write_direct(&mut self, _: usize, _: &Path, _: &[u8], _: u64) -> io::Result<bool> {
        Ok(false)
    }
}

/// Whether an error says the file system does not do direct I/O (or not at this alignment).
#[cfg(target_os = "linux")]
fn refused(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EINVAL | libc::EOPNOTSUPP))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_of_every_size_and_alignment_land_exactly() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("file");
        let mut expected = Vec::new();
        let mut pieces = Vec::new();
        let mut state = 9u64;
        for len in [
            1usize,
            4095,
            100_000,
            4096,
            3 * SLAB + 17,
            70_000,
            65_536 + 4096,
            5,
        ] {
            let data: Vec<u8> = (0..len)
                .map(|_| {
                    state = state.wrapping_mul(6364136223846793005).wrapping_add(1);
                    (state >> 33) as u8
                })
                .collect();
            pieces.push((expected.len() as u64, data.clone()));
            expected.extend_from_slice(&data);
        }
        File::create(&path)
            .and_then(|f| f.set_len(expected.len() as u64))
            .expect("create");
        let mut writer = ChunkWriter::default();
        // Out of order, as packs deliver them.
        for (offset, data) in pieces.iter().rev() {
            writer.write(0, &path, data, *offset).expect("write");
        }
        writer.close();
        assert!(std::fs::read(&path).expect("read") == expected);
    }

    #[test]
    fn a_pack_of_many_small_files_keeps_few_descriptors_open() {
        let dir = tempfile::tempdir().expect("tempdir");
        let open_fds = || std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count());
        let before = open_fds();
        let mut writer = ChunkWriter::default();
        for n in 0..(4 * MAX_OPEN) {
            let path = dir.path().join(format!("f{n}"));
            File::create(&path)
                .and_then(|f| f.set_len(200_000))
                .expect("create");
            writer.write(n, &path, &[7u8; 200_000], 0).expect("write");
        }
        // Other tests open files concurrently: allow them some slack.
        assert!(
            open_fds() <= before + 2 * MAX_OPEN + 16,
            "{} descriptors open after writing {} files",
            open_fds() - before,
            4 * MAX_OPEN
        );
        writer.close();
        assert_eq!(
            std::fs::read(dir.path().join("f3")).expect("read"),
            vec![7u8; 200_000]
        );
    }
}
