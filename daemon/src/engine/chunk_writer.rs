//! Writing restored chunks into their files, around the page cache where it pays.
//!
//! A restore writes the whole store once; sending it through the page cache costs more CPU
//! than the disk takes (on the benchmark machine buffered writes ran at a third of the
//! disk's speed, and the copy into the cache was 41% of a restore's profile) and evicts
//! what the device is using. So the 4 KiB-aligned middle of every chunk of 64 KiB or more
//! (media) is written with `O_DIRECT` from an aligned buffer; its unaligned head and tail
//! are written through the cache. Small chunks that follow each other in a file (the
//! database's pages, which a pack holds in runs of consecutive pages) are gathered into an
//! aligned run first and written the same way: one write per run instead of one per page,
//! which took the database's 47,000 `pwrite`s out of a restore. A file read again as soon
//! as it is restored ([`Partials::cached`]: the database, which SQLite checks at once) is
//! written through the cache, runs and all, so that the check finds it there. The middle
//! is aligned to the memory page (at least 4 KiB; 16 or 64 KiB on some
//! arm64 kernels), so the direct and buffered parts never touch the same page and the
//! kernel keeps them coherent. Where `O_DIRECT` is refused (tmpfs on older kernels, some
//! network or FUSE file systems), everything is buffered.
//!
//! A chunk has *landed* once it is written to its file: [`ChunkWriter::write`] and
//! [`ChunkWriter::flush`] say which chunks landed, so that a file is finished only when
//! every one of its chunks has, whichever thread gathered them.
//!
//! The writer never opens a file by path: the caller's [`Partials`] opens file number `n`
//! (the restore creates it the first time, relative to a held directory, see
//! `restore_dir`), once per file and thread.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt as _;

/// Chunks whose aligned middle is smaller than this are written buffered.
const DIRECT_MIN: u64 = 64 * 1024;
/// Bytes copied into the aligned buffer per direct write (a multiple of any page size); also
/// the most a run of small chunks gathers. Each restore thread holds one: 1 MiB took 2 MiB
/// more of the large store's restore, which peaks with every thread's buffers in memory,
/// for half as many writes of the database's runs (about 1,900 instead of 950).
const SLAB: usize = 1 << 19;
/// Files kept open at once; past this they are all closed (a pack of many small files, or
/// one chunk shared by many identical files, must not run the process out of descriptors).
const MAX_OPEN: usize = 64;

/// Chunks that landed in one file: (file, how many).
pub type Landed = (usize, usize);

/// Opens the files a writer writes into, by number.
pub trait Partials: Sync {
    /// Opens file `file` for writing, with `O_DIRECT` if `direct`. The first open of a
    /// file (never a direct one) creates it; later ones, on any thread, must not truncate
    /// it. Together the chunks cover the file.
    fn open(&self, file: usize, direct: bool) -> io::Result<File>;

    /// Whether file `file` is read again as soon as it is restored (the database, which
    /// SQLite checks and the app opens next): it is written through the page cache, which
    /// then serves those reads, instead of around it.
    fn cached(&self, file: usize) -> bool {
        let _ = file;
        false
    }
}

/// One restore thread's open files, aligned buffer and run of small chunks.
pub struct ChunkWriter {
    files: HashMap<usize, Handles>,
    buffer: Vec<u8>,
    direct: bool,
    /// Alignment of direct writes: the memory page, at least 4 KiB.
    align: u64,
    run: Option<Run>,
}

struct Handles {
    buffered: File,
    /// Opened at the first large chunk: `Some(None)` once refused.
    direct: Option<Option<File>>,
}

/// Small chunks gathered for one write: they cover `[offset, offset + len)` of `file`, and
/// sit in the writer's buffer at the same distance from an aligned position as `offset`
/// from an aligned file offset, so that the run's aligned middle is written in place.
struct Run {
    file: usize,
    offset: u64,
    len: usize,
    chunks: usize,
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
            run: None,
        }
    }
}

impl ChunkWriter {
    /// Writes `data` at `offset` of file number `file` (opened by `partials`), or gathers
    /// it into the current run; returns the chunks that landed meanwhile (this one, or the
    /// run it ended, or both).
    pub fn write(
        &mut self,
        file: usize,
        partials: &dyn Partials,
        data: &[u8],
        offset: u64,
    ) -> io::Result<[Option<Landed>; 2]> {
        let small = data.len() < DIRECT_MIN as usize;
        if small && self.direct {
            let start = self.slab_start();
            if let Some(run) = &mut self.run
                && run.file == file
                && run.offset + run.len as u64 == offset
                && run.len + data.len() <= SLAB
            {
                let at = start + (run.offset % self.align) as usize + run.len;
                self.buffer[at..at + data.len()].copy_from_slice(data);
                run.len += data.len();
                run.chunks += 1;
                return Ok([None, None]);
            }
            let ended = self.flush(partials)?;
            let at = self.slab_start() + (offset % self.align) as usize;
            self.buffer[at..at + data.len()].copy_from_slice(data);
            self.run = Some(Run {
                file,
                offset,
                len: data.len(),
                chunks: 1,
            });
            return Ok([ended, None]);
        }
        let ended = self.flush(partials)?;
        self.open(file, partials)?;
        self.write_now(file, partials, data, offset)?;
        Ok([ended, Some((file, 1))])
    }

    /// Writes the current run; returns its chunks.
    pub fn flush(&mut self, partials: &dyn Partials) -> io::Result<Option<Landed>> {
        let Some(run) = self.run.take() else {
            return Ok(None);
        };
        self.open(run.file, partials)?;
        let at = self.slab_start() + (run.offset % self.align) as usize;
        let data = std::mem::take(&mut self.buffer);
        let written = self.write_now(run.file, partials, &data[at..at + run.len], run.offset);
        self.buffer = data;
        written?;
        Ok(Some((run.file, run.chunks)))
    }

    /// Where the aligned part of the buffer starts (allocating it the first time).
    fn slab_start(&mut self) -> usize {
        let align = self.align as usize;
        if self.buffer.is_empty() {
            // A run starts up to `align` bytes into the slab and fills at most SLAB.
            self.buffer = vec![0u8; SLAB + 2 * align];
        }
        self.buffer.as_ptr().align_offset(align)
    }

    fn open(&mut self, file: usize, partials: &dyn Partials) -> io::Result<()> {
        if self.files.len() >= MAX_OPEN && !self.files.contains_key(&file) {
            self.files.clear();
        }
        if let std::collections::hash_map::Entry::Vacant(slot) = self.files.entry(file) {
            slot.insert(Handles {
                buffered: partials.open(file, false)?,
                direct: None,
            });
        }
        Ok(())
    }

    /// Writes `data` at `offset`: its aligned middle directly when large enough, the rest
    /// through the cache. A middle that already sits aligned in memory (a run in this
    /// writer's buffer, or a blob decrypted where the caller placed it, see
    /// [`ChunkWriter::alignment`]) is written from where it lies; any other through the
    /// aligned buffer.
    fn write_now(
        &mut self,
        file: usize,
        partials: &dyn Partials,
        data: &[u8],
        offset: u64,
    ) -> io::Result<()> {
        let end = offset + data.len() as u64;
        let align = self.align;
        let (first, last) = (offset.next_multiple_of(align), end / align * align);
        if !self.direct || last < first + DIRECT_MIN || partials.cached(file) {
            return self.buffered(file)?.write_all_at(data, offset);
        }
        let head = (first - offset) as usize;
        let middle = (last - first) as usize;
        self.buffered(file)?.write_all_at(&data[..head], offset)?;
        self.buffered(file)?
            .write_all_at(&data[head + middle..], last)?;
        match self.write_direct(file, partials, &data[head..head + middle], first) {
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

    /// The memory alignment a chunk's aligned middle needs to be written where it lies: a
    /// chunk bound for offset `o` should sit at `o % alignment()` past a multiple of it.
    pub fn alignment(&self) -> usize {
        self.align as usize
    }

    /// The file the current run is gathered for, if any.
    pub fn run_file(&self) -> Option<usize> {
        self.run.as_ref().map(|r| r.file)
    }

    /// Closes one file: its last chunk has landed (no run holds any of it).
    pub fn done_with(&mut self, file: usize) {
        self.files.remove(&file);
    }

    /// Closes the files: after a [`ChunkWriter::flush`], or when the restore is failing (a
    /// run not flushed is dropped).
    pub fn close(&mut self) {
        self.run = None;
        self.files.clear();
    }

    fn buffered(&self, file: usize) -> io::Result<&File> {
        self.files
            .get(&file)
            .map(|h| &h.buffered)
            .ok_or_else(|| io::Error::other("file not open"))
    }

    /// The file's `O_DIRECT` handle, opened the first time; `None` if refused.
    #[cfg(target_os = "linux")]
    fn direct_handle(&mut self, file: usize, partials: &dyn Partials) -> io::Result<Option<&File>> {
        let Some(handles) = self.files.get_mut(&file) else {
            return Ok(None);
        };
        if handles.direct.is_none() {
            let opened = partials.open(file, true);
            handles.direct = Some(match opened {
                Ok(file) => Some(file),
                Err(e) if refused(&e) => None,
                Err(e) => return Err(e),
            });
        }
        Ok(handles.direct.as_ref().and_then(Option::as_ref))
    }

    /// Writes an aligned stretch with `O_DIRECT`: where it lies if it sits aligned in
    /// memory, else through the aligned buffer; false if the file system refuses it.
    #[cfg(target_os = "linux")]
    fn write_direct(
        &mut self,
        file: usize,
        partials: &dyn Partials,
        data: &[u8],
        at: u64,
    ) -> io::Result<bool> {
        let in_place = (data.as_ptr() as usize).is_multiple_of(self.align as usize);
        let start = if in_place { 0 } else { self.slab_start() };
        let mut slab = std::mem::take(&mut self.buffer);
        let result = (|| {
            let Some(direct) = self.direct_handle(file, partials)? else {
                return Ok(false);
            };
            let written = if in_place {
                direct.write_all_at(data, at)
            } else {
                let slab = &mut slab[start..start + SLAB];
                data.chunks(SLAB)
                    .try_fold(at, |pos, piece| {
                        slab[..piece.len()].copy_from_slice(piece);
                        direct.write_all_at(&slab[..piece.len()], pos)?;
                        Ok(pos + piece.len() as u64)
                    })
                    .map(|_| ())
            };
            match written {
                Ok(()) => Ok(true),
                Err(e) if refused(&e) => Ok(false),
                Err(e) => Err(e),
            }
        })();
        self.buffer = slab;
        result
    }

    #[cfg(not(target_os = "linux"))]
    fn write_direct(&mut self, _: usize, _: &dyn Partials, _: &[u8], _: u64) -> io::Result<bool> {
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
    use std::os::unix::fs::OpenOptionsExt as _;
    use std::path::PathBuf;

    /// Files by path, as the tests make them.
    struct Paths(Vec<PathBuf>);

    impl Partials for Paths {
        fn open(&self, file: usize, direct: bool) -> io::Result<File> {
            let flags = if direct { libc::O_DIRECT } else { 0 };
            std::fs::OpenOptions::new()
                .write(true)
                .custom_flags(flags)
                .open(&self.0[file])
        }
    }

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
        let paths = Paths(vec![path.clone()]);
        let mut writer = ChunkWriter::default();
        // Out of order, as packs deliver them.
        let mut landed = 0;
        for (offset, data) in pieces.iter().rev() {
            let now = writer.write(0, &paths, data, *offset).expect("write");
            landed += now.iter().flatten().map(|(_, n)| n).sum::<usize>();
        }
        landed += writer.flush(&paths).expect("flush").map_or(0, |(_, n)| n);
        assert_eq!(landed, pieces.len(), "every chunk lands once");
        writer.close();
        assert!(std::fs::read(&path).expect("read") == expected);
    }

    #[test]
    fn consecutive_small_chunks_land_together_and_exactly() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("db");
        // 600 pages from an unaligned offset, a gap, 3 more, and one out of order.
        let mut pieces: Vec<(u64, Vec<u8>)> = (0..600u64)
            .map(|i| (100 + i * 4096, vec![(i % 251) as u8; 4096]))
            .collect();
        let after = 100 + 700 * 4096;
        pieces.extend((0..3u64).map(|i| (after + i * 4096, vec![7u8; 4096])));
        pieces.push((100 + 650 * 4096, vec![9u8; 4096]));
        let size = after + 3 * 4096;
        File::create(&path)
            .and_then(|f| f.set_len(size))
            .expect("create");
        let paths = Paths(vec![path.clone()]);
        let mut writer = ChunkWriter::default();
        let mut landings = Vec::new();
        for (offset, data) in &pieces {
            let now = writer.write(0, &paths, data, *offset).expect("write");
            landings.extend(now.into_iter().flatten());
        }
        landings.extend(writer.flush(&paths).expect("flush"));
        writer.close();
        assert_eq!(
            landings.iter().map(|(_, n)| n).sum::<usize>(),
            pieces.len(),
            "every chunk lands once"
        );
        // 600 pages (2.3 MiB) in runs of at most a slab; then the 3, then the 1.
        let runs = 600usize.div_ceil(SLAB / 4096);
        assert_eq!(landings.len(), runs + 2, "{landings:?}");
        let mut expected = vec![0u8; size as usize];
        for (offset, data) in &pieces {
            expected[*offset as usize..*offset as usize + data.len()].copy_from_slice(data);
        }
        assert!(std::fs::read(&path).expect("read") == expected);
    }

    /// Files by path, file 0 read again at once; counts the opens of each kind.
    struct CachedFirst {
        paths: Paths,
        direct_opens: std::sync::Mutex<Vec<usize>>,
    }

    impl Partials for CachedFirst {
        fn open(&self, file: usize, direct: bool) -> io::Result<File> {
            if direct {
                self.direct_opens.lock().expect("lock").push(file);
            }
            self.paths.open(file, direct)
        }

        fn cached(&self, file: usize) -> bool {
            file == 0
        }
    }

    #[test]
    fn a_file_read_again_at_once_is_written_through_the_cache_runs_and_large_chunks_alike() {
        let dir = tempfile::tempdir().expect("tempdir");
        let paths: Vec<PathBuf> = ["db", "video"].iter().map(|n| dir.path().join(n)).collect();
        let partials = CachedFirst {
            paths: Paths(paths.clone()),
            direct_opens: std::sync::Mutex::new(Vec::new()),
        };
        // Pages in a run, then a large chunk, into both files.
        let page = |i: u64| vec![(i % 251) as u8; 4096];
        let large = vec![9u8; 3 * DIRECT_MIN as usize];
        let size = 300 * 4096 + large.len() as u64;
        for path in &paths {
            File::create(path)
                .and_then(|f| f.set_len(size))
                .expect("create");
        }
        let mut writer = ChunkWriter::default();
        for file in 0..2 {
            for i in 0..300u64 {
                writer
                    .write(file, &partials, &page(i), i * 4096)
                    .expect("page");
            }
            writer
                .write(file, &partials, &large, 300 * 4096)
                .expect("large");
            writer.flush(&partials).expect("flush");
        }
        writer.close();
        let mut expected: Vec<u8> = (0..300).flat_map(page).collect();
        expected.extend_from_slice(&large);
        for path in &paths {
            assert!(std::fs::read(path).expect("read") == expected, "{path:?}");
        }
        let direct = partials.direct_opens.lock().expect("lock").clone();
        assert!(!direct.contains(&0), "the cached file was opened O_DIRECT");
        // Where the file system takes O_DIRECT, the other file's large chunk went around
        // the cache: the test tells the two apart.
        if writer.direct {
            assert!(direct.contains(&1), "the other file never went O_DIRECT");
        }
    }

    #[test]
    fn a_pack_of_many_small_files_keeps_few_descriptors_open() {
        let dir = tempfile::tempdir().expect("tempdir");
        let open_fds = || std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count());
        let before = open_fds();
        let mut writer = ChunkWriter::default();
        let paths = Paths(
            (0..(4 * MAX_OPEN))
                .map(|n| dir.path().join(format!("f{n}")))
                .collect(),
        );
        for (n, path) in paths.0.iter().enumerate() {
            File::create(path)
                .and_then(|f| f.set_len(200_000))
                .expect("create");
            writer.write(n, &paths, &[7u8; 200_000], 0).expect("write");
            writer.flush(&paths).expect("flush");
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
