//! The app's write-ahead log, read only for what it says about which pages changed.
//!
//! We never write, checkpoint or lock the WAL: we read its 32-byte header, the 24-byte
//! header of each frame (<https://www.sqlite.org/fileformat2.html#walformat>) and the
//! wal-index header in the `-shm` file (<https://www.sqlite.org/walformat.html>). Two facts
//! of the format carry the change-proportional capture (DESIGN.md §4):
//!
//! - Between two restarts, SQLite only appends frames; every committed page change is a
//!   frame, and a frame is overwritten only after a restart.
//! - A restart (the first write after a checkpoint has copied every frame into the database)
//!   rewrites the header before any frame: the checkpoint sequence number and the first
//!   salt go up by one and the second salt is drawn at random. A WAL deleted and created
//!   again gets two random salts. So a header seen twice means no restart in between.

use std::collections::BTreeSet;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

use serde::{Deserialize, Serialize};

const HEADER_BYTES: usize = 32;
const FRAME_HEADER_BYTES: u64 = 24;
/// The two magic numbers (big- and little-endian checksums).
const MAGIC: [u32; 2] = [0x377f_0682, 0x377f_0683];

/// A WAL header, which names one generation of the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Generation([u8; HEADER_BYTES]);

impl Generation {
    fn parse(bytes: [u8; HEADER_BYTES]) -> Option<Generation> {
        let magic = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
        MAGIC.contains(&magic).then_some(Generation(bytes))
    }

    fn word(&self, at: usize) -> u32 {
        u32::from_be_bytes([self.0[at], self.0[at + 1], self.0[at + 2], self.0[at + 3]])
    }

    fn page_size(&self) -> u64 {
        match self.word(8) {
            1 => 65536,
            n => u64::from(n),
        }
    }

    fn salts(&self) -> &[u8] {
        &self.0[16..24]
    }
}

/// What the log said, read at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Log {
    /// No WAL file, or one without a valid header: it holds no frames.
    Absent,
    /// The header was the same before and after the frames were read.
    Frames {
        generation: Generation,
        /// The page numbers of every frame of this generation (committed or not yet).
        pages: BTreeSet<u64>,
    },
    /// The log was restarted while we read it.
    Restarted,
}

/// Opens a file of the database's family for reading, never through a link at its name
/// (the store's owner may plant one to a file only root can read) and without blocking on
/// a FIFO planted there. Its directory is the store's, resolved with no link in it.
///
/// Closing the file drops every lock this process holds on it, SQLite's included: only
/// under [`super::database::lock_families`], with no connection to the database open.
pub(crate) fn open_in_store(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt as _;
    File::options()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| not_in_store(path, e))
}

/// The error opening the family's member at `path` gave, a link named as such.
pub(crate) fn not_in_store(path: &Path, e: io::Error) -> io::Error {
    match e.raw_os_error() {
        Some(libc::ELOOP) => io::Error::new(
            e.kind(),
            format!(
                "{} is a symbolic link: sealbackd reads only the store's own files, never \
                 through a link; remove the link",
                path.display()
            ),
        ),
        _ => e,
    }
}

/// Bytes of the wal-index header, which the `-shm` file holds twice from its start.
const INDEX_HEADER_BYTES: usize = 48;

/// How many frames of `generation` were committed, as the wal-index `file` says: `mxFrame`
/// of the header SQLite keeps in the `-shm` file beside the log, the last frame a reader
/// starting now would see. Only when both copies of the header agree, its checksum holds
/// and it names this generation's salts (it is read without a lock, as SQLite's own
/// readers first do); `None` otherwise (without a `-shm` file, an app in exclusive locking
/// mode keeps the index in its own memory). A frame in the log is not committed until the
/// index says so: a writer appends its frames, then publishes them here.
pub fn index_frames(file: &File, generation: &Generation) -> io::Result<Option<u64>> {
    let mut both = [0u8; 2 * INDEX_HEADER_BYTES];
    match file.read_exact_at(&mut both, 0) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let (first, second) = both.split_at(INDEX_HEADER_BYTES);
    // The file is shared memory: its words are in this machine's byte order.
    let word =
        |at: usize| u32::from_ne_bytes([first[at], first[at + 1], first[at + 2], first[at + 3]]);
    let initialised = first[12] == 1;
    // The salts are the log header's bytes, copied as they are.
    if first != second || !initialised || &first[32..40] != generation.salts() {
        return Ok(None);
    }
    // SQLite's checksum over the fields before it, in native order.
    let (mut s1, mut s2) = (0u32, 0u32);
    for pair in (0..40).step_by(8) {
        s1 = s1.wrapping_add(word(pair)).wrapping_add(s2);
        s2 = s2.wrapping_add(word(pair + 4)).wrapping_add(s1);
    }
    if [s1, s2] != [word(40), word(44)] {
        return Ok(None);
    }
    Ok(Some(u64::from(word(16))))
}

/// The offsets of the frame headers the log at `file` has room for.
fn frame_offsets(file: &File, generation: &Generation) -> io::Result<impl Iterator<Item = u64>> {
    let stride = FRAME_HEADER_BYTES + generation.page_size();
    let len = file.metadata()?.len();
    Ok((0..)
        .map(move |at| HEADER_BYTES as u64 + at * stride)
        .take_while(move |offset| offset + FRAME_HEADER_BYTES <= len))
}

/// The header of the WAL open as `file`, if it has a valid one.
pub fn read_header(file: &File) -> io::Result<Option<Generation>> {
    let mut bytes = [0u8; HEADER_BYTES];
    match file.read_exact_at(&mut bytes, 0) {
        Ok(()) => Ok(Generation::parse(bytes)),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(None),
        Err(e) => Err(e),
    }
}

/// Reads the header of the WAL open as `file`, the page number of every frame whose salts
/// match it, and the header again. Returns the log and the bytes read. Given `since`, a
/// generation and a number of its frames, and the log still of that generation, the frames
/// before that number are left out: they were in the capture that saw them committed.
pub fn scan(file: &File, since: Option<(Generation, u64)>) -> io::Result<(Log, u64)> {
    let Some(generation) = read_header(file)? else {
        return Ok((Log::Absent, HEADER_BYTES as u64));
    };
    let skip = match since {
        Some((was, frames)) if was == generation => frames as usize,
        _ => 0,
    };
    let mut pages = BTreeSet::new();
    let mut read = HEADER_BYTES as u64;
    let mut frame = [0u8; FRAME_HEADER_BYTES as usize];
    // Frames of older generations may follow the current ones; including a stale frame
    // that happens to carry the same salts only makes the set larger, never wrong.
    for offset in frame_offsets(file, &generation)?.skip(skip) {
        match file.read_exact_at(&mut frame, offset) {
            Ok(()) => {}
            // Truncated under us: the header check below sees the restart.
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(e),
        }
        read += FRAME_HEADER_BYTES;
        if &frame[8..16] == generation.salts() {
            let pgno = u32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]);
            pages.insert(u64::from(pgno));
        }
    }
    let after = read_header(file)?;
    read += HEADER_BYTES as u64;
    if after == Some(generation) {
        Ok((Log::Frames { generation, pages }, read))
    } else {
        Ok((Log::Restarted, read))
    }
}

/// The log's page size, and (page number, offset of its contents) of the frames found.
pub type Frames = (u64, Vec<(u64, u64)>);

/// Where the frames of `pages` (of the current generation of the log open as `file`) hold
/// their page, in log order, with the log's page size; `None` if it has no valid header.
/// Read outside any transaction, so the frames may be overwritten by a restart meanwhile:
/// whoever reads them must check what they read.
pub fn frames_of(file: &File, pages: &BTreeSet<u64>) -> io::Result<Option<Frames>> {
    let Some(generation) = read_header(file)? else {
        return Ok(None);
    };
    let stride = FRAME_HEADER_BYTES + generation.page_size();
    let len = file.metadata()?.len();
    let mut found = Vec::new();
    let mut frame = [0u8; FRAME_HEADER_BYTES as usize];
    let mut offset = HEADER_BYTES as u64;
    while offset + stride <= len {
        file.read_exact_at(&mut frame, offset)?;
        let pgno = u64::from(u32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]));
        if &frame[8..16] == generation.salts() && pages.contains(&pgno) {
            found.push((pgno, offset + FRAME_HEADER_BYTES));
        }
        offset += stride;
    }
    Ok(Some((generation.page_size(), found)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::Connection;

    #[test]
    fn names_the_pages_of_every_frame_and_changes_generation_on_restart() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("m.db");
        let wal = dir.path().join("m.db-wal");
        let app = Connection::open(&db).expect("open");
        app.execute_batch(
            "PRAGMA journal_mode=WAL; PRAGMA wal_autocheckpoint=0;
             CREATE TABLE t(x); INSERT INTO t VALUES (1);",
        )
        .expect("schema");
        let (log, read) = scan_at(&wal, None);
        let Log::Frames { generation, pages } = log else {
            panic!("expected frames, got {log:?}");
        };
        // Page 1 (schema) and page 2 (the table) were written.
        assert_eq!(pages, BTreeSet::from([1, 2]));
        assert!(read > 32);
        assert_eq!(header(&wal), Some(generation));
        let committed = committed_count(&wal);
        assert_eq!(committed, frame_count(&wal).1, "every frame is committed");

        // Frames a capture saw committed are left out of the next one's scan.
        app.execute("INSERT INTO t VALUES (3)", []).expect("insert");
        let (log, _) = scan_at(&wal, Some((generation, committed)));
        assert_eq!(
            log,
            Log::Frames {
                generation,
                pages: BTreeSet::from([2])
            }
        );
        // Not those of another generation.
        let (log, _) = scan_at(&wal, Some((Generation([0; 32]), committed)));
        assert!(matches!(log, Log::Frames { pages, .. } if pages == BTreeSet::from([1, 2])));
        // The frames an open write transaction spills into the log are not committed.
        assert_eq!(committed_count(&wal), committed + 1);
        app.execute_batch(
            "PRAGMA cache_size = 1; BEGIN;
             INSERT INTO t SELECT randomblob(3000) FROM (WITH RECURSIVE n(i) AS
                 (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 50) SELECT i FROM n);",
        )
        .expect("spill");
        let (_, spilled) = frame_count(&wal);
        assert!(
            spilled > committed + 1,
            "the transaction spilled frames: {spilled}"
        );
        assert_eq!(committed_count(&wal), committed + 1);
        app.execute_batch("COMMIT").expect("commit");
        assert!(committed_count(&wal) > spilled);

        app.execute_batch("PRAGMA wal_checkpoint(RESTART); INSERT INTO t VALUES (2);")
            .expect("restart");
        let (log, _) = scan_at(&wal, None);
        let Log::Frames {
            generation: next, ..
        } = log
        else {
            panic!("expected frames, got {log:?}");
        };
        assert_ne!(next, generation);

        app.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")
            .expect("truncate");
        assert_eq!(scan_at(&wal, None).0, Log::Absent);
        assert_eq!(scan_at(&dir.path().join("none-wal"), None).0, Log::Absent);
    }

    /// [`scan`] of the log at `wal`, absent if there is no file.
    fn scan_at(wal: &Path, since: Option<(Generation, u64)>) -> (Log, u64) {
        match File::open(wal) {
            Ok(file) => scan(&file, since).expect("scan"),
            Err(e) if e.kind() == io::ErrorKind::NotFound => (Log::Absent, 0),
            Err(e) => panic!("open {}: {e}", wal.display()),
        }
    }

    fn header(wal: &Path) -> Option<Generation> {
        read_header(&File::open(wal).expect("open the log")).expect("read")
    }

    fn committed_count(wal: &Path) -> u64 {
        let generation = header(wal).expect("a log");
        let shm = File::open(wal.with_extension("db-shm")).expect("open the wal-index");
        index_frames(&shm, &generation)
            .expect("read")
            .expect("a valid index")
    }

    /// The log's generation and how many frames it has room for.
    fn frame_count(wal: &Path) -> (Generation, u64) {
        let file = File::open(wal).expect("open");
        let generation = read_header(&file).expect("read").expect("a log");
        let frames = frame_offsets(&file, &generation).expect("len").count();
        (generation, frames as u64)
    }
}
