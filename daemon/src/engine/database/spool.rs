//! Where a capture's runs wait: the new runs of each read attempt, spooled to a file during
//! the read transaction and queued once it has ended ([`Spool`]), and the id of every run
//! read ([`ReadIds`]), in a file while they come in order.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use sealback_repo::ChunkId;

use super::super::EngineError;
use super::super::backup::BackupInput;
use super::super::sink::{Batcher, ChunkSink};
use super::super::upload;
use crate::catalog::read_ids;

/// The new runs of a capture, written aside during its read transaction and queued after
/// it: one part per attempt. The runs of a torn attempt are stored too: their ids were
/// claimed, and a file read meanwhile may have found its chunk among them.
#[derive(Default)]
pub(in crate::engine) struct Spool {
    /// Each attempt's spool file and how many runs it holds.
    parts: Vec<(std::fs::File, usize)>,
}

/// An attempt's spool file, being written.
pub(super) struct SpoolFile {
    file: std::io::BufWriter<std::fs::File>,
    runs: usize,
}

/// A new unnamed file in the spool directory.
pub(super) fn spool_file(spool_dir: &Path) -> Result<std::fs::File, EngineError> {
    tempfile::tempfile_in(spool_dir)
        .map_err(EngineError::io("cannot create a spool file in", spool_dir))
}

impl SpoolFile {
    pub(super) fn create(input: &BackupInput<'_>) -> Result<SpoolFile, EngineError> {
        let file = spool_file(input.spool_dir)?;
        Ok(SpoolFile {
            // Buffered: a write per 4 KiB page was a system call per page.
            file: std::io::BufWriter::with_capacity(upload::BATCH_BYTES, file),
            runs: 0,
        })
    }

    /// Spools a run: its id and length ahead of its bytes, in the file rather than in
    /// memory (a full read of the large store spools 232,000 runs: 9 MB of ids and lengths).
    pub(super) fn write(&mut self, id: ChunkId, data: &[u8]) -> std::io::Result<()> {
        let len = u32::try_from(data.len()).map_err(std::io::Error::other)?;
        self.file.write_all(&id.0)?;
        self.file.write_all(&len.to_le_bytes())?;
        self.file.write_all(data)?;
        self.runs += 1;
        Ok(())
    }
}

impl Spool {
    /// Keeps an attempt's spool file.
    pub(super) fn add(
        &mut self,
        spooled: SpoolFile,
        input: &BackupInput<'_>,
    ) -> Result<(), EngineError> {
        let file = spooled.file.into_inner().map_err(|e| {
            EngineError::io("cannot write the spool file in", input.spool_dir)(e.into_error())
        })?;
        self.parts.push((file, spooled.runs));
        Ok(())
    }

    /// Queues the spooled runs, in batches.
    pub(in crate::engine) fn feed(
        self,
        input: &BackupInput<'_>,
        sink: &ChunkSink<'_>,
    ) -> Result<(), EngineError> {
        let unreadable = |e| EngineError::io("cannot read the spool file in", input.spool_dir)(e);
        let mut batcher = Batcher::new(sink);
        for (mut file, runs) in self.parts {
            file.seek(SeekFrom::Start(0)).map_err(unreadable)?;
            let mut reader = std::io::BufReader::with_capacity(upload::BATCH_BYTES, file);
            for _ in 0..runs {
                let (mut id, mut len) = ([0u8; 32], [0u8; 4]);
                reader.read_exact(&mut id).map_err(unreadable)?;
                reader.read_exact(&mut len).map_err(unreadable)?;
                let mut data = vec![0u8; u32::from_le_bytes(len) as usize];
                reader.read_exact(&mut data).map_err(unreadable)?;
                batcher.push_run(ChunkId(id), data)?;
                // Read back after the store's last read: feeds the systemd watchdog (it
                // blocks, and stops feeding it, when the upload queue is full).
                crate::notify::alive();
            }
        }
        batcher.flush()
    }
}

/// The id of each run a read read. A full read reads every run in order: its ids (the
/// large store's 232,000, 7 MB) go to a spool file as they are read, are read back from it a
/// list at a time, and the file becomes the next baseline's ([`NextIds::All`]). A read
/// that skips a run (a delta read: a few hundred runs) keeps them in memory with their runs.
#[derive(Default)]
pub(super) struct ReadIds {
    /// While the runs read are 0, 1, 2...: their ids in that order, and how many.
    ordered: Option<(std::io::BufWriter<std::fs::File>, u64)>,
    /// Once a run was skipped: each run read and its id.
    runs: Vec<(u64, ChunkId)>,
}

impl ReadIds {
    pub(super) fn new(spool_dir: &Path) -> Result<ReadIds, EngineError> {
        Ok(ReadIds {
            ordered: Some((std::io::BufWriter::new(spool_file(spool_dir)?), 0)),
            runs: Vec::new(),
        })
    }

    pub(super) fn push(&mut self, run: u64, id: ChunkId) -> std::io::Result<()> {
        if let Some((file, count)) = &mut self.ordered
            && run == *count
        {
            *count += 1;
            return file.write_all(&id.0);
        }
        if let Some(ordered) = self.ordered.take() {
            // The first run skipped: those before it were 0, 1, 2...
            self.runs = (0..).zip(read_back(ordered)?).collect();
        }
        self.runs.push((run, id));
        Ok(())
    }

    pub(super) fn len(&self) -> u64 {
        self.ordered
            .as_ref()
            .map_or(self.runs.len() as u64, |(_, count)| *count)
    }

    /// Each run read and its id.
    pub(super) fn into_runs(self) -> std::io::Result<Vec<(u64, ChunkId)>> {
        match self.ordered {
            Some(ordered) => Ok((0..).zip(read_back(ordered)?).collect()),
            None => Ok(self.runs),
        }
    }

    /// The file of the ids, if the runs read were 0, 1, 2..., and how many.
    pub(super) fn into_ordered(self) -> std::io::Result<Option<(std::fs::File, u64)>> {
        self.ordered
            .map(|(file, count)| Ok((file.into_inner().map_err(|e| e.into_error())?, count)))
            .transpose()
    }
}

/// The ids spooled so far.
pub(super) fn read_back(
    (file, count): (std::io::BufWriter<std::fs::File>, u64),
) -> std::io::Result<Vec<ChunkId>> {
    let file = file.into_inner().map_err(|e| e.into_error())?;
    read_ids(&file, count)?.collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_ids_stay_in_their_file_while_in_order_and_come_back_with_their_runs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let id = |i: u8| ChunkId([i; 32]);
        let mut full = ReadIds::new(dir.path()).expect("spool");
        for run in 0..5u8 {
            full.push(u64::from(run), id(run)).expect("push");
        }
        assert_eq!(full.len(), 5);
        let (file, count) = full.into_ordered().expect("file").expect("in order");
        let ids: Vec<ChunkId> = read_ids(&file, count)
            .expect("read")
            .collect::<std::io::Result<_>>()
            .expect("ids");
        assert_eq!(ids, (0..5).map(id).collect::<Vec<_>>());

        // A delta read: runs 0 and 1, then 7, then 3.
        let mut delta = ReadIds::new(dir.path()).expect("spool");
        for run in [0u8, 1, 7, 3] {
            delta.push(u64::from(run), id(run)).expect("push");
        }
        assert_eq!(delta.len(), 4);
        assert_eq!(
            delta.into_runs().expect("runs"),
            [0u8, 1, 7, 3].map(|r| (u64::from(r), id(r)))
        );
        let mut skipped = ReadIds::new(dir.path()).expect("spool");
        skipped.push(2, id(2)).expect("push");
        assert!(skipped.into_ordered().expect("no file").is_none());
        let mut few = ReadIds::new(dir.path()).expect("spool");
        few.push(0, id(9)).expect("push");
        assert_eq!(few.into_runs().expect("runs"), [(0, id(9))]);
    }
}
