//! The phases of a run, in order. Each backup phase changes the store at most once, before
//! any tool runs, so that every tool backs up the same bytes.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Phase {
    /// The first backup into an empty repository.
    Full,
    /// After a day of use: new rows stay in the -wal, msgstore.db is unchanged.
    Day1,
    /// A day that starts with a checkpoint: pages scattered over msgstore.db change.
    Day2,
    /// Nothing changed since the last backup.
    NoChange,
    /// Every tool restores its latest snapshot into an empty directory.
    Restore,
}

/// One simulated day: `gen_store.py --mutate --day N [--checkpoint-first]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Mutation {
    pub day: u32,
    pub checkpoint_first: bool,
}

impl Phase {
    pub(crate) const ALL: [Phase; 5] = [
        Phase::Full,
        Phase::Day1,
        Phase::Day2,
        Phase::NoChange,
        Phase::Restore,
    ];

    /// The short name used for snapshot labels and JSON keys.
    pub(crate) fn key(self) -> &'static str {
        match self {
            Phase::Full => "full",
            Phase::Day1 => "day1",
            Phase::Day2 => "day2",
            Phase::NoChange => "nochange",
            Phase::Restore => "restore",
        }
    }

    pub(crate) fn title(self) -> &'static str {
        match self {
            Phase::Full => "full backup",
            Phase::Day1 => "day-1 incremental",
            Phase::Day2 => "day-2 incremental (checkpoint first)",
            Phase::NoChange => "nothing changed",
            Phase::Restore => "full restore",
        }
    }

    pub(crate) fn mutation(self) -> Option<Mutation> {
        match self {
            Phase::Day1 => Some(Mutation {
                day: 1,
                checkpoint_first: false,
            }),
            Phase::Day2 => Some(Mutation {
                day: 2,
                checkpoint_first: true,
            }),
            Phase::Full | Phase::NoChange | Phase::Restore => None,
        }
    }

    pub(crate) fn is_backup(self) -> bool {
        self != Phase::Restore
    }
}
