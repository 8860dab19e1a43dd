//! The proof a backup gives before it writes its snapshot: every chunk the snapshot names
//! is stored, in an index already on the target or in a pack this backup stored.
//!
//! The snapshot's references are what its parent named (proven when the parent was
//! written) and what this backup introduced: the ids in the database lists it wrote, those
//! lists and its patch, and the chunks of every file whose entry differs from the parent's.
//! Each introduced id must be known: recorded in the catalog from an index on the target
//! when the backup began, or claimed by this backup. A claim is good only if the chunk went
//! into a stored pack, which [`Proof::stored_claims`] checks by count: every claim made a
//! blob of a stored pack, and nothing else did.
//!
//! The chain of proofs starts at a backup that owes nothing to an earlier one: the first on
//! a target, or the one after a catalog rebuilt, a proof failed or an unclean stop (the
//! catalog forgets its file cache and baseline then, see [`crate::catalog::Catalog::start_over`]).
//!
//! What a proof costs: a set lookup per id introduced (in memory, or one catalog query each
//! for the few dozen of an incremental), and a walk of the two sorted file lists.

use std::time::{Duration, Instant};

use sealback_repo::ChunkId;
use sealback_repo::snapshot::FileEntry;

use super::known::KnownIds;

/// What a backup proved, and the first thing it could not.
#[derive(Debug, Default)]
pub(super) struct Proof {
    /// Ids checked.
    checked: u64,
    /// Ids named and not stored.
    missing: u64,
    /// The first missing id, and what named it.
    first: Option<(ChunkId, String)>,
    /// Time spent checking.
    spent: Duration,
}

/// A snapshot that would name chunks that are not stored.
#[derive(Debug, thiserror::Error)]
#[error(
    "the snapshot would name {missing} chunk(s) that are not stored (first {first}, {what}); it was not written. \
     This is a bug in sealback: please report it with the daemon's log. Nothing already backed up is affected, \
     and the next backup reads the whole store again rather than build on this one"
)]
pub struct Unproven {
    pub missing: u64,
    pub first: String,
    pub what: String,
}

impl Proof {
    /// Checks that each of `ids` is stored; `what` says what names them, for the error.
    pub(super) fn ids<'i>(
        &mut self,
        known: &mut KnownIds,
        ids: impl IntoIterator<Item = &'i ChunkId>,
        what: impl Fn() -> String,
    ) {
        let started = Instant::now();
        for id in ids {
            self.checked += 1;
            if !known.contains(id) {
                self.missing += 1;
                self.first.get_or_insert_with(|| (*id, what()));
            }
        }
        self.spent += started.elapsed();
    }

    /// Checks the chunks of every file in `files` whose entry is not the same in `parent`
    /// (both sorted by path, as snapshots keep them).
    pub(super) fn files(
        &mut self,
        known: &mut KnownIds,
        files: &[FileEntry],
        parent: Option<&[FileEntry]>,
    ) {
        let started = Instant::now();
        let mut parent = parent.unwrap_or_default().iter().peekable();
        for file in files {
            while parent.next_if(|p| p.path < file.path).is_some() {}
            let inherited = parent
                .peek()
                .is_some_and(|p| p.path == file.path && p.chunks == file.chunks);
            if !inherited {
                self.ids(known, &file.chunks, || format!("of {}", file.path));
            }
        }
        self.spent += started.elapsed();
    }

    /// Checks that the `claimed` chunks are the `stored` blobs of this backup's packs.
    pub(super) fn stored_claims(&mut self, claimed: u64, stored: u64) {
        if claimed != stored && self.first.is_none() {
            self.missing += claimed.saturating_sub(stored).max(1);
            self.first = Some((
                ChunkId([0; 32]),
                format!("{claimed} chunk(s) claimed as new, {stored} stored in packs"),
            ));
        }
    }

    pub(super) fn checked(&self) -> u64 {
        self.checked
    }

    pub(super) fn spent(&self) -> Duration {
        self.spent
    }

    /// Ok if every id checked is stored.
    pub(super) fn result(&self) -> Result<(), Unproven> {
        match &self.first {
            None => Ok(()),
            Some((id, what)) => Err(Unproven {
                missing: self.missing,
                first: id.to_string(),
                what: what.clone(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(path: &str, chunks: &[u8]) -> FileEntry {
        FileEntry {
            path: path.into(),
            size: 0,
            mode: 0o644,
            mtime_ns: 0,
            chunks: chunks.iter().map(|&b| ChunkId([b; 32])).collect(),
        }
    }

    #[test]
    fn only_what_the_parent_did_not_name_is_checked_and_a_missing_chunk_is_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let catalog = crate::catalog::Catalog::open(&dir.path().join("c.db")).expect("catalog");
        let mut known = KnownIds::lazy(catalog.reader().expect("reader"));
        assert!(known.claim(ChunkId([1; 32])));
        let parent = [entry("a", &[9]), entry("b", &[8]), entry("d", &[7])];
        let files = [
            entry("a", &[9]),
            entry("b", &[1]),
            entry("c", &[1]),
            entry("d", &[7]),
        ];
        let mut proof = Proof::default();
        proof.files(&mut known, &files, Some(&parent));
        assert_eq!(
            proof.checked(),
            2,
            "b changed and c is new; a and d are the parent's"
        );
        assert!(proof.result().is_ok());

        proof.ids(&mut known, &[ChunkId([1; 32]), ChunkId([5; 32])], || {
            "of a list".into()
        });
        let err = proof.result().expect_err("chunk 5 is not stored");
        assert_eq!((err.missing, err.what.as_str()), (1, "of a list"));
        assert!(
            err.to_string().contains(&ChunkId([5; 32]).to_string()),
            "{err}"
        );
    }

    #[test]
    fn claims_that_made_no_blob_fail_the_proof() {
        let mut proof = Proof::default();
        proof.stored_claims(5, 5);
        assert!(proof.result().is_ok());
        proof.stored_claims(5, 4);
        let err = proof.result().expect_err("a claim made no blob");
        assert!(
            err.to_string()
                .contains("5 chunk(s) claimed as new, 4 stored"),
            "{err}"
        );
    }
}
