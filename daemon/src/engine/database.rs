//! The database part of a backup: its image in the repository, and the chain of
//! baselines and patches that lets a backup read only what changed.
//!
//! An image ([`DatabaseImage`]) is lists of run ids (a run is `chunk_bytes` of pages), each
//! run a chunk, and then up to [`MAX_PATCHES`] patches applied in order; a patch carries the
//! changed runs' bytes inside it. A capture leaves a baseline (where the WAL stood, and the
//! id of every run of the image it read); the next backup starts from it. Runs wait
//! between the read transaction and packing in `spool`.
//!
//! The invariants this module keeps, each relied on where it says:
//!
//! 1. **A baseline's ids are its image's runs, not all of them stored as chunks.** A run
//!    changed by one of the image's patches exists only inside that patch. So a run read
//!    now whose id matches its baseline id is "as in the parent's image", and nothing more.
//! 2. **A read from a baseline skips the runs that match it only on credit**, and the credit
//!    holds only where the runs' ids are chunks: the new image is a patch on the parent's
//!    image (which holds them), or the parent's image is lists alone (whose runs are all
//!    chunks). Any other outcome reads the database again, whole, from no baseline
//!    ([`capture_database`]): the defect of issue 13 was a whole read after a patch that
//!    wrote lists naming runs only the patch held.
//! 3. **Lists name only chunks that are stored**: every id in a list written now was claimed
//!    by this backup (stored by it, or found in the repository), or is in the parent's
//!    lists-only image. The backup proves this before it writes the snapshot
//!    ([`super::proof`]), and fails rather than write a snapshot that cannot be restored.
//! 4. **A baseline is promoted only with its snapshot**: the catalog replaces the baseline
//!    after the snapshot is stored, and trusts it only while no blob was forgotten, on the
//!    same boot, and not after a backup that stopped uncleanly.

use std::collections::{HashMap, HashSet};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::Ordering;

use sealback_repo::ChunkId;
use sealback_repo::chunk::{LIST_IDS, encode_list};
use sealback_repo::pack::BlobKind;
use sealback_repo::patch;
use sealback_repo::snapshot::DatabaseImage;

use super::EngineError;
use super::backup::BackupInput;
use super::proof::Proof;
use super::sink::{Batcher, ChunkSink, Counters};
use crate::capture::database::{
    Baseline, DatabaseCaptureError, PageImage, Reading, capture_pages, lock_families,
};
use crate::capture::wal;
use crate::catalog::{BaselineIds, NextIds, read_ids};

mod spool;
use spool::{ReadIds, Spool, SpoolFile};

/// How often a database capture is tried when torn by a concurrent schema change, a
/// replacement, a write while it read the file without locks, or the app creating its WAL
/// or wal-index.
const DB_ATTEMPTS: u32 = 3;

/// The database part of a backup.
pub(super) struct CapturedDatabase {
    pub(super) image: DatabaseImage,
    /// How its pages were read (full, or only the runs changed since the baseline).
    pub(super) reading: Reading,
    pub(super) bytes_read: u64,
    /// Whether its changes went as a patch on the parent's image.
    pub(super) patched: bool,
    /// What the next backup can start from.
    pub(super) next: Option<(Baseline, NextIds)>,
    /// That the lists and patch it wrote name only stored chunks (invariant 3).
    pub(super) proof: Proof,
}

/// At most this many runs go into one patch (4 MiB of pages, and at most as much of their
/// old contents, held in memory while it is made); a capture that read more writes its
/// image as lists of page blobs.
const PATCH_RUNS: usize = 1024;
/// A database image is its lists and at most this many patches applied in order; a backup
/// after that many reads the whole database and writes its image as lists again.
pub(super) const MAX_PATCHES: usize = 64;

/// Runs a delta capture read, kept in memory to become a patch.
type Held = Vec<(u64, ChunkId, Vec<u8>)>;

/// What one read of the database gave: the image, the id of each run read, and the runs
/// themselves when few enough were read to make a patch of them (the others were spooled).
struct DatabaseRead {
    image: PageImage,
    read: ReadIds,
    held: Option<Held>,
    /// The baseline's id of each run held, as looked up while reading: what its old
    /// contents must hash to.
    was: HashMap<u64, ChunkId>,
    /// How many runs were read and found equal to the baseline's: not stored again, on
    /// the baseline's credit (invariant 2).
    credited: u64,
}

/// Where the parent snapshot left the database.
pub(super) struct ParentDb<'p> {
    /// The parent capture's baseline and the ids of its runs, if it can be started from.
    pub(super) baseline: Option<(Baseline, BaselineIds)>,
    /// The parent's image of the database (lists and patches).
    pub(super) image: Option<&'p DatabaseImage>,
}

/// Captures the database. Given the baseline of the parent snapshot, only the runs that
/// changed since are read, and become one patch on top of the parent's image (DESIGN.md
/// §4.1.2); otherwise the image is written as lists of runs, the new ones spooled during
/// the read transaction and queued by [`Spool::feed`] once it has ended.
pub(super) fn capture_database(
    db_path: &Path,
    input: &BackupInput<'_>,
    parent: ParentDb<'_>,
    began: &dyn Fn(),
    sink: &ChunkSink<'_>,
    counters: &Counters,
) -> Result<Option<(CapturedDatabase, Spool)>, EngineError> {
    let ParentDb {
        baseline,
        image: parent_db,
    } = parent;
    // A link (even one that leads nowhere) is not "no database": the capture refuses it.
    if std::fs::symlink_metadata(db_path).is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound) {
        tracing::warn!(path = %db_path.display(), "the message store has no database; backing up its files only");
        return Ok(None);
    }
    let chunk_bytes = sink.repo.config().db_chunk_bytes;
    std::fs::create_dir_all(input.spool_dir).map_err(EngineError::io(
        "cannot create the spool directory",
        input.spool_dir,
    ))?;
    let mut spools = Spool::default();
    let mut bytes_read = 0;
    // A baseline is of use only with the image its ids are the runs of.
    let mut baseline = baseline.filter(|_| parent_db.is_some());
    let (mut done, run_bytes, runs) = loop {
        let done = read_database(db_path, baseline.as_ref(), input, began, sink, &mut spools)?;
        bytes_read += done.image.bytes_read;
        let page_size = done.image.page_size;
        let run_bytes = (chunk_bytes / page_size).max(1) * page_size;
        let runs = (done.image.page_count * u64::from(page_size)).div_ceil(u64::from(run_bytes));
        // Invariant 2: runs taken on the baseline's credit (not read, or read and equal to
        // it) are stored as the parent's image holds them. Only a patch on that image, or
        // lists after an image of lists alone, may name them; otherwise read it all again.
        let on_credit = matches!(done.image.reading, Reading::Delta { .. }) || done.credited > 0;
        let from_baseline = baseline.as_ref().is_some_and(|(_, ids)| ids.runs() > 0);
        let patch = from_baseline && patch_base(parent_db, &done, run_bytes).is_some();
        let lists_only = parent_db.is_some_and(|d| d.patches.is_empty());
        if on_credit && !patch && !lists_only {
            tracing::info!(
                "too much of the database changed for a patch on an image with patches: reading it whole"
            );
            baseline = None;
            continue;
        }
        break (done, run_bytes, runs);
    };
    if !done.image.wal {
        tracing::warn!(path = %db_path.display(), "the database is not in WAL mode: the app's writers waited while we read it");
    }
    let before: Option<&BaselineIds> = baseline.as_ref().map(|(_, ids)| ids);
    let from_baseline = before.is_some_and(|b| b.runs() > 0);
    let delta = matches!(done.image.reading, Reading::Delta { .. }) && from_baseline;
    let read = std::mem::take(&mut done.read);
    let runs_read = read.len();
    // A full read's ids are in a file, in order; a delta read's are the runs that changed.
    let unreadable = |e| EngineError::io("cannot read the spool file in", input.spool_dir)(e);
    let (ordered, changed) = if delta {
        (None, read.into_runs().map_err(unreadable)?)
    } else {
        (read.into_ordered().map_err(unreadable)?, Vec::new())
    };
    // A delta read covers every run past the baseline's; the others are as they were.
    let covered = if delta {
        let stored = before.map_or(0, BaselineIds::runs);
        let past: HashSet<u64> = changed
            .iter()
            .map(|(run, _)| *run)
            .filter(|&r| r >= stored)
            .collect();
        changed.iter().all(|(run, _)| *run < runs)
            && past.len() as u64 == runs.saturating_sub(stored)
    } else {
        ordered.as_ref().is_some_and(|(_, count)| *count == runs)
    };
    if !covered {
        return Err(EngineError::Repo(sealback_repo::Error::Malformed {
            name: input.database.to_owned(),
            detail: format!("the capture did not cover all {runs} runs"),
        }));
    }
    if delta {
        // The runs not read are reused from the parent snapshot.
        sink.reused
            .fetch_add(runs.saturating_sub(runs_read), Ordering::Relaxed);
    }
    match &done.image.reading {
        Reading::Full { reason } => {
            tracing::info!(reason, "database read in full");
        }
        Reading::Delta { runs: read } => {
            tracing::info!(runs_read = read, runs, "database read where it changed");
        }
    }
    counters.read(bytes_read, input);

    let size = done.image.page_count * u64::from(done.image.page_size);
    let mut batcher = Batcher::new(sink);
    // A read from the baseline, delta or whole, held only runs that differ from the
    // parent's image: few enough, they are a patch on it.
    let base = patch_base(parent_db, &done, run_bytes).filter(|_| from_baseline);
    let DatabaseRead {
        image, held, was, ..
    } = done;
    let mut patched = false;
    let mut proof = Proof::default();
    let (lists, patches) = match (base, held) {
        (Some(base), Some(held)) => {
            let mut patches = base.patches.clone();
            let file = &image.file;
            if let Some(patch) = make_patch(file, sink, base.size, size, run_bytes, &was, held) {
                let id = batcher.add(BlobKind::Patch, patch, false)?;
                proof.ids(&mut sink.known(), [&id], || "the database's patch".into());
                patches.push(id);
                patched = true;
            }
            (base.lists.clone(), patches)
        }
        (_, held) => {
            // Runs held for a patch that will not be made are stored like any others.
            for (_, id, data) in held.into_iter().flatten() {
                if sink.claim(id) {
                    batcher.push_run(id, data)?;
                }
            }
            let parent_lists = parent_db
                .filter(|d| d.patches.is_empty())
                .map(|d| d.lists.as_slice());
            let before = match before {
                Some(before) => before.all()?,
                None => Vec::new(),
            };
            let each = |group: ListGroup<'_>| match group {
                ListGroup::Unchanged(list) => {
                    sink.reused.fetch_add(1, Ordering::Relaxed);
                    Ok(list)
                }
                ListGroup::Changed(group) => {
                    let what = || format!("a run of {}", input.database);
                    proof.ids(&mut sink.known(), group, what);
                    let list = batcher.add(BlobKind::List, encode_list(group), false)?;
                    proof.ids(&mut sink.known(), [&list], || {
                        "a list of the database".into()
                    });
                    Ok(list)
                }
            };
            let lists = match &ordered {
                Some((file, count)) => {
                    let ids = read_ids(file, *count).map_err(unreadable)?;
                    list_ids(
                        ids.map(|id| id.map_err(unreadable)),
                        &before,
                        parent_lists,
                        each,
                    )?
                }
                None => {
                    let ids = image_ids(&before, runs, &changed);
                    list_ids(ids.into_iter().map(Ok), &before, parent_lists, each)?
                }
            };
            (lists, Vec::new())
        }
    };
    batcher.flush()?;
    let next = image.next.map(|baseline| {
        let ids = match ordered {
            Some((file, runs)) => NextIds::All { file, runs },
            None => NextIds::Changed { runs, changed },
        };
        (baseline, ids)
    });
    let captured = CapturedDatabase {
        image: DatabaseImage {
            path: input.database.to_owned(),
            page_size: image.page_size,
            page_count: image.page_count,
            size,
            chunk_bytes: run_bytes,
            lists,
            patches,
        },
        reading: image.reading,
        bytes_read,
        patched,
        next,
        proof,
    };
    Ok(Some((captured, spools)))
}

/// The ids of the image's `runs` runs after a delta read: those `changed`, and the
/// baseline's (`before`) for the others.
fn image_ids(before: &[ChunkId], runs: u64, changed: &[(u64, ChunkId)]) -> Vec<ChunkId> {
    let mut ids = before.to_vec();
    ids.resize(runs as usize, ChunkId([0; 32]));
    for (run, id) in changed {
        ids[*run as usize] = *id;
    }
    ids
}

/// The parent's image, if `done` can be a patch on top of it: a read from the baseline of
/// that image (delta, or whole after a checkpoint) that held few enough runs, and room in
/// its chain.
fn patch_base<'p>(
    parent_db: Option<&'p DatabaseImage>,
    done: &DatabaseRead,
    run_bytes: u32,
) -> Option<&'p DatabaseImage> {
    parent_db.filter(|d| {
        done.held.is_some()
            && d.patches.len() < MAX_PATCHES
            && d.page_size == done.image.page_size
            && d.chunk_bytes == run_bytes
    })
}

/// One read of the database, retried when a schema change tears it. A full read spools
/// the runs the repository lacks; a delta read holds what it reads for a patch, and
/// spools it too once it has read more than a patch takes.
fn read_database(
    db_path: &Path,
    baseline: Option<&(Baseline, BaselineIds)>,
    input: &BackupInput<'_>,
    began: &dyn Fn(),
    sink: &ChunkSink<'_>,
    spools: &mut Spool,
) -> Result<DatabaseRead, EngineError> {
    let chunk_bytes = sink.repo.config().db_chunk_bytes;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let mut spool = SpoolFile::create(input)?;
        let mut read = ReadIds::new(input.spool_dir)?;
        let mut held: Option<Held> = baseline.is_some().then(Vec::new);
        let mut old = baseline.map(|(_, ids)| OldIds::new(ids));
        let mut was = HashMap::new();
        let mut credited = 0;
        let mut to_spool = |id: ChunkId, data: &[u8]| -> std::io::Result<()> {
            if sink.claim(id) {
                spool.write(id, data)?;
            }
            Ok(())
        };
        let baseline = baseline.map(|(b, _)| b);
        let result = capture_pages(db_path, chunk_bytes, baseline, began, |run, data| {
            let id = sink.repo.keys().chunk_id(data);
            read.push(run, id)?;
            // A run as it is in the baseline's image is in the parent's image, as a chunk or
            // inside one of its patches (invariant 1): taken on credit, which
            // `capture_database` settles. After a checkpoint the whole database is read, and
            // only the runs that differ make the patch.
            let old_id = old.as_mut().and_then(|old| old.get(run));
            if old_id == Some(id) {
                sink.reused.fetch_add(1, Ordering::Relaxed);
                credited += 1;
                return Ok(());
            }
            match &mut held {
                Some(runs) if runs.len() < PATCH_RUNS => {
                    runs.push((run, id, data.to_vec()));
                    if let Some(old_id) = old_id {
                        was.insert(run, old_id);
                    }
                }
                Some(_) => {
                    // More than a patch takes: everything read goes the way of a full read.
                    for (_, id, data) in held.take().into_iter().flatten() {
                        to_spool(id, &data)?;
                    }
                    to_spool(id, data)?;
                }
                None => to_spool(id, data)?,
            }
            Ok(())
        });
        match result {
            Ok(image) => {
                spools.add(spool, input)?;
                return Ok(DatabaseRead {
                    image,
                    read,
                    held,
                    was,
                    credited,
                });
            }
            Err(
                e @ (DatabaseCaptureError::Torn { .. }
                | DatabaseCaptureError::Replaced { .. }
                | DatabaseCaptureError::WrittenWhileRead { .. }
                | DatabaseCaptureError::FamilyUnreadable { .. }),
            ) if attempt < DB_ATTEMPTS => {
                spools.add(spool, input)?;
                tracing::info!(
                    attempt,
                    error = %e,
                    "database changed shape during capture; capturing again"
                );
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// The baseline's id of each run a read asks about: looked up one at a time while few are
/// asked for (a delta read), all loaded once many are (a full read asks for every one).
struct OldIds<'b> {
    ids: &'b BaselineIds,
    all: Option<Vec<ChunkId>>,
    asked: usize,
}

impl<'b> OldIds<'b> {
    fn new(ids: &'b BaselineIds) -> Self {
        OldIds {
            ids,
            all: None,
            asked: 0,
        }
    }

    /// The baseline's id of `run`; `None` past its end, or if the ids cannot be read (the
    /// run then counts as changed, which costs bytes, never a snapshot).
    fn get(&mut self, run: u64) -> Option<ChunkId> {
        self.asked += 1;
        if self.asked == PATCH_RUNS {
            self.all = self.ids.all().ok();
        }
        match &self.all {
            Some(all) => all.get(run as usize).copied(),
            None => self.ids.get(run).ok().flatten(),
        }
    }
}

/// The patch of the runs in `held` that differ from their baseline ids `was`, compressed
/// against their old contents; `None` if nothing changed. A run's old contents are looked
/// for in the database file `db_file` (a page no checkpoint has copied over yet) and in
/// the earlier frames of its WAL (a page changed before the baseline, and again since):
/// a candidate counts only if its keyed hash is the baseline's id for the run. A run whose
/// old contents are nowhere is compressed without them.
fn make_patch(
    db_file: &Path,
    sink: &ChunkSink<'_>,
    size_before: u64,
    size_after: u64,
    run_bytes: u32,
    was: &HashMap<u64, ChunkId>,
    held: Held,
) -> Option<Vec<u8>> {
    let changed: Vec<(u64, Vec<u8>)> = held
        .into_iter()
        .filter(|(run, id, _)| was.get(run) != Some(id))
        .map(|(run, _, data)| (run, data))
        .collect();
    if changed.is_empty() && size_before == size_after {
        return None;
    }
    let keys = sink.repo.keys();
    // Declared first, released last: these descriptors close before another thread's
    // capture may open a connection whose locks their closing would drop.
    let _one_at_a_time = lock_families();
    let file = wal::open_in_store(db_file).ok();
    let wal = wal::open_in_store(&crate::capture::database::wal_path(db_file)).ok();
    let mut frames: HashMap<u64, Vec<u64>> = HashMap::new();
    // WAL frames hold one page: they can stand for runs of one page only.
    if let Some(w) = &wal
        && patch::run_len(run_bytes, size_before, 0) == run_bytes as usize
    {
        let pages = changed.iter().map(|(run, _)| run + 1).collect();
        if let Ok(Some((page_size, found))) = wal::frames_of(w, &pages)
            && page_size == u64::from(run_bytes)
        {
            for (page, offset) in found {
                frames.entry(page).or_default().push(offset);
            }
        }
    }
    let old: Vec<(u64, Vec<u8>)> = changed
        .iter()
        .filter_map(|(run, _)| {
            let len = patch::run_len(run_bytes, size_before, *run);
            let want = was.get(run)?;
            let mut data = vec![0u8; len];
            let mut matches = |from: &std::fs::File, offset: u64| {
                from.read_exact_at(&mut data, offset).is_ok() && keys.chunk_id(&data) == *want
            };
            // The file first, then the WAL's frames from the newest back.
            let in_file = file
                .as_ref()
                .is_some_and(|f| matches(f, run * u64::from(run_bytes)));
            let found = in_file
                || wal.as_ref().is_some_and(|w| {
                    let offsets = frames.get(&(run + 1)).map_or(&[][..], Vec::as_slice);
                    offsets.iter().rev().any(|&o| matches(w, o))
                });
            (len > 0 && found).then_some((*run, data))
        })
        .collect();
    let changed: Vec<(u64, &[u8])> = changed.iter().map(|(r, d)| (*r, d.as_slice())).collect();
    let old: Vec<(u64, &[u8])> = old.iter().map(|(r, d)| (*r, d.as_slice())).collect();
    let patch = patch::encode(keys, run_bytes, size_before, size_after, &changed, &old);
    tracing::info!(
        runs = changed.len(),
        against_old = old.len(),
        bytes = patch.len(),
        "database patch"
    );
    Some(patch)
}

/// One list of a database image: the same ids as the parent's list, or others.
enum ListGroup<'i> {
    Unchanged(ChunkId),
    Changed(&'i [ChunkId]),
}

/// The list blobs of a database image of chunk ids `ids`, whose baseline (the parent's
/// image) was `before` in `parent_lists`. A list holding the same ids as in the baseline is
/// the parent's list blob, stored and vouched for with the baseline: only the lists around
/// changed pages are encoded and hashed again (the large store has 3,600 lists, a day
/// changes a few hundred). `each` turns every group into its list's id.
fn list_ids(
    ids: impl Iterator<Item = Result<ChunkId, EngineError>>,
    before: &[ChunkId],
    parent_lists: Option<&[ChunkId]>,
    mut each: impl FnMut(ListGroup<'_>) -> Result<ChunkId, EngineError>,
) -> Result<Vec<ChunkId>, EngineError> {
    let parent_lists = parent_lists
        .filter(|lists| lists.len() == before.len().div_ceil(LIST_IDS))
        .unwrap_or_default();
    let mut lists = Vec::new();
    let mut group = Vec::with_capacity(LIST_IDS);
    let mut ids = ids.peekable();
    while ids.peek().is_some() {
        group.clear();
        for id in ids.by_ref().take(LIST_IDS) {
            group.push(id?);
        }
        let at = lists.len();
        let start = at * LIST_IDS;
        let end = start + group.len();
        // The parent's list covered exactly this stretch, with these ids.
        let unchanged = parent_lists.get(at).filter(|_| {
            before.len().min(start + LIST_IDS) == end && before.get(start..end) == Some(&group)
        });
        lists.push(match unchanged {
            Some(list) => each(ListGroup::Unchanged(*list))?,
            None => each(ListGroup::Changed(&group))?,
        });
    }
    Ok(lists)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The lists as `list_ids` makes them, and how many it encoded.
    fn lists(
        ids: &[ChunkId],
        before: &[ChunkId],
        parent: Option<&[ChunkId]>,
    ) -> (Vec<ChunkId>, usize) {
        let mut encoded = 0;
        let lists = list_ids(ids.iter().copied().map(Ok), before, parent, |group| {
            Ok(match group {
                ListGroup::Unchanged(list) => list,
                ListGroup::Changed(group) => {
                    encoded += 1;
                    name(group)
                }
            })
        })
        .expect("lists");
        (lists, encoded)
    }

    fn name(group: &[ChunkId]) -> ChunkId {
        sealback_repo::BackupKey::from_bytes(&mut [1u8; 32])
            .derive()
            .chunk_id(&encode_list(group))
    }

    fn ids(n: usize, seed: u8) -> Vec<ChunkId> {
        (0..n)
            .map(|i| {
                let mut id = [seed; 32];
                id[..8].copy_from_slice(&(i as u64).to_le_bytes());
                ChunkId(id)
            })
            .collect()
    }

    #[test]
    fn only_the_lists_whose_ids_changed_are_made_again() {
        let before = ids(3 * LIST_IDS + 10, 1);
        let (parent, _) = lists(&before, &[], None);
        // Whatever happens, the lists are those of a fresh encoding of the new ids.
        let check = |now: &[ChunkId], encoded_expected: usize| {
            let (fresh, _) = lists(now, &[], None);
            let (made, encoded) = lists(now, &before, Some(&parent));
            assert_eq!(made, fresh);
            assert_eq!(encoded, encoded_expected);
        };
        check(&before, 0);
        let mut one = before.clone();
        one[LIST_IDS + 5] = ChunkId([9; 32]);
        check(&one, 1);
        // Grown: the short last list and the new one.
        check(&ids(4 * LIST_IDS + 1, 1), 2);
        // Shrunk within the last list, and to a whole number of lists: the lists that end
        // elsewhere than the parent's are made again, even with the same leading ids.
        check(&before[..3 * LIST_IDS + 3], 1);
        check(&before[..3 * LIST_IDS], 0);
        check(&before[..2 * LIST_IDS + 7], 1);
        // Parent lists that do not match the baseline are not used.
        let (made, encoded) = lists(&before, &before, Some(&parent[1..]));
        assert_eq!((made.len(), encoded), (parent.len(), parent.len()));
    }
}
