//! What this device remembers of a target's snapshots, so that a provider cannot hide one,
//! or roll the target back to older ones, without an alarm (DESIGN.md §6.1).
//!
//! Two records. The catalog's `remembered` table names every snapshot this device made or
//! loaded from the target (the catalog is a cache: a rebuild loses it). Beside the catalog,
//! `<target>.remembered` (JSON, mode 0600, replaced atomically) is not a cache and outlives
//! a rebuild: the newest snapshot the device made or saw, with a counter that moves each
//! time it does and never goes back; the snapshots found missing and not yet dealt with
//! (the alarm); and the last snapshots the device forgot on purpose, which raise none.
//!
//! A remembered snapshot that leaves the target's listing, or that no longer reads as
//! genuine, is missing; so is the parent of the newest snapshot the target holds. The alarm
//! ends when the snapshot comes back, or when the user acknowledges it (which forgets it).

use std::collections::HashSet;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rusqlite::OptionalExtension as _;
use serde::{Deserialize, Serialize};

use super::{CatalogError, Result};

/// The format of the file; another is read as no record at all.
const VERSION: u32 = 1;

/// The deliberately forgotten snapshots kept in the file: only the parent of the newest
/// snapshot is checked, so the last few forgotten are all that can matter.
const FORGOTTEN_KEPT: usize = 64;

/// How the device came to know a snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Known {
    /// This device wrote it.
    Made,
    /// This device loaded it from the target.
    Seen,
    /// The newest snapshot the target holds names it as its parent.
    Parent,
}

impl Known {
    /// From the `known` column of the `remembered` table (`made` or `seen`).
    pub(super) fn from_column(value: &str) -> Known {
        match value {
            "made" => Known::Made,
            "parent" => Known::Parent,
            _ => Known::Seen,
        }
    }
}

/// A snapshot the device remembers, gone from the target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Missing {
    /// Object name, `snapshots/<64 hex>`.
    pub name: String,
    /// When it was made, if the device knows (a parent it never loaded: not).
    pub time_unix_ms: Option<i64>,
    pub known: Known,
    /// When this device first found it missing.
    pub noticed_unix_ms: i64,
    /// Whether it is still listed but fails authentication (rather than gone).
    #[serde(default)]
    pub damaged: bool,
}

impl Missing {
    /// The id users see: the 64 hex digits.
    pub fn id(&self) -> &str {
        self.name.trim_start_matches("snapshots/")
    }
}

/// A snapshot at the high-water mark.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Newest {
    pub name: String,
    pub time_unix_ms: i64,
    pub known: Known,
    /// The record's counter when this became the newest.
    pub counter: u64,
}

/// The file's content.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub version: u32,
    /// The repository (its id) this record is about: a target pointed at another
    /// repository starts a new record.
    pub repo: String,
    /// Moves each time `newest` does; never goes back.
    pub counter: u64,
    pub newest: Option<Newest>,
    pub missing: Vec<Missing>,
    /// Snapshots forgotten on purpose, the latest last.
    pub forgotten: Vec<String>,
}

impl Record {
    /// Raises the high-water mark to `name` if it is newer than the mark.
    pub(super) fn saw(&mut self, name: &str, time_unix_ms: i64, known: Known) {
        let newer = self
            .newest
            .as_ref()
            .is_none_or(|n| (time_unix_ms, name) > (n.time_unix_ms, n.name.as_str()));
        if newer {
            self.counter += 1;
            self.newest = Some(Newest {
                name: name.to_owned(),
                time_unix_ms,
                known,
                counter: self.counter,
            });
        }
    }

    /// Notes `found` missing, unless already noted or forgotten on purpose.
    pub(super) fn missing(&mut self, found: Missing) {
        if self.forgotten.contains(&found.name) || self.missing.iter().any(|m| m.name == found.name)
        {
            return;
        }
        tracing::error!(
            snapshot = %found.id(), known = ?found.known, damaged = found.damaged,
            "a snapshot this device remembers is missing from the target: it was removed, hidden or rolled back there; `sealbackctl snapshots` names it"
        );
        self.missing.push(found);
    }

    /// Ends the alarm for the snapshots the target holds again, genuine.
    pub(super) fn reappeared(&mut self, present: &HashSet<&str>) {
        self.missing.retain(|m| {
            let back = present.contains(m.name.as_str());
            if back {
                tracing::info!(snapshot = %m.id(), "a missing snapshot is on the target again");
            }
            !back
        });
    }

    /// Notes that `name` was forgotten on purpose: it raises no alarm, and no longer holds
    /// the high-water mark (`next` does, the newest snapshot remembered after it).
    pub(super) fn forgot(&mut self, name: &str, next: Option<(String, i64, Known)>) {
        self.missing.retain(|m| m.name != name);
        self.forgotten.retain(|f| f != name);
        self.forgotten.push(name.to_owned());
        let excess = self.forgotten.len().saturating_sub(FORGOTTEN_KEPT);
        self.forgotten.drain(..excess);
        if self.newest.as_ref().is_some_and(|n| n.name == name) {
            self.newest = next.map(|(name, time_unix_ms, known)| Newest {
                name,
                time_unix_ms,
                known,
                counter: self.counter,
            });
        }
    }
}

/// What the device remembered when a sync began: the `remembered` table's rows (name,
/// time, how known) and the record's newest snapshot.
pub(super) struct Remembered {
    rows: Vec<(String, i64, Known)>,
    newest: Option<Newest>,
    /// Snapshots a prune deleted on purpose (DESIGN §12.6).
    pruned: HashSet<String>,
}

impl Remembered {
    /// Leaves out the snapshots a prune deleted on purpose (`pruned`), and forgets them
    /// in the device's record: their absence raises no alarm.
    pub(super) fn without_pruned(
        mut self,
        catalog: &mut super::Catalog,
        pruned: &HashSet<String>,
    ) -> Result<Remembered> {
        for (name, _, _) in self.rows.iter().filter(|r| pruned.contains(&r.0)) {
            catalog.forget_snapshot(name)?;
            tracing::info!(snapshot = %name, "a prune deleted this snapshot on purpose: forgotten");
        }
        self.rows.retain(|r| !pruned.contains(&r.0));
        self.newest = self.newest.filter(|n| !pruned.contains(&n.name));
        self.pruned = pruned.clone();
        Ok(self)
    }
}

/// One read-change-write of a record at a time in this process (every request has its
/// own catalog connection).
static WRITING: Mutex<()> = Mutex::new(());

/// The record's file beside the catalog at `catalog`.
pub fn path_for(catalog: &Path) -> PathBuf {
    catalog.with_extension("remembered")
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> CatalogError + '_ {
    move |source| CatalogError::Remembered {
        path: path.display().to_string(),
        source,
    }
}

/// The record at `path`; an empty one if there is none. A file that is not a record is an
/// error (it is not a cache: the alarm it may hold must not vanish with it).
pub fn load(path: &Path) -> Result<Record> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Record::default()),
        Err(e) => return Err(io(path)(e)),
    };
    let record: Record = serde_json::from_slice(&bytes).map_err(|e| {
        io(path)(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("not such a record ({e})"),
        ))
    })?;
    Ok(record)
}

/// The snapshots the catalog at `catalog` has found missing and the user has not
/// acknowledged: the alarm, oldest first. Read from the record alone (no catalog needed).
pub fn missing_beside(catalog: &Path) -> Result<Vec<Missing>> {
    let mut missing = load(&path_for(catalog))?.missing;
    missing.sort_by_key(|m| (m.time_unix_ms, m.name.clone()));
    Ok(missing)
}

/// Changes the record at `path` with `change`, for the repository `repo` (`None`: the one
/// the record is about), and writes it back if it changed: to a new file, synced, renamed
/// over the old one.
fn update<T>(path: &Path, repo: Option<&str>, change: impl FnOnce(&mut Record) -> T) -> Result<T> {
    let _one = WRITING.lock().unwrap_or_else(|p| p.into_inner());
    let before = load(path)?;
    let mut record = before.clone();
    let repo = repo.unwrap_or(&before.repo);
    if record.version != VERSION || record.repo != repo {
        if record.newest.is_some() || !record.missing.is_empty() {
            tracing::warn!(record = %path.display(), was = %record.repo, now = %repo, "the target holds another repository: what this device remembers of the old one no longer applies");
        }
        record = Record {
            version: VERSION,
            repo: repo.to_owned(),
            ..Record::default()
        };
    }
    let out = change(&mut record);
    if record != before {
        save(path, &record)?;
    }
    Ok(out)
}

fn save(path: &Path, record: &Record) -> Result<()> {
    let err = io(path);
    let text = serde_json::to_vec_pretty(record)
        .map_err(|e| err(std::io::Error::new(std::io::ErrorKind::InvalidData, e)))?;
    let mut new = path.as_os_str().to_owned();
    new.push(".new");
    let new = PathBuf::from(new);
    // A leftover of an interrupted write would keep its own mode.
    match std::fs::remove_file(&new) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(err(e)),
        _ => {}
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&new)
        .map_err(&err)?;
    file.write_all(&text).map_err(&err)?;
    file.sync_all().map_err(&err)?;
    std::fs::rename(&new, path).map_err(&err)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(&err)?;
    }
    Ok(())
}

/// The record's side of the catalog: the `remembered` table and the checks of a sync.
impl super::Catalog {
    /// The snapshots this device remembers that the target no longer holds, genuine, and
    /// that the user has not acknowledged: an alarm, oldest first.
    pub fn missing(&self) -> Result<Vec<Missing>> {
        missing_beside(&self.file)
    }

    /// Forgets the snapshot `name` on purpose (a prune, or the user acknowledging that it
    /// is gone): its absence from the target raises no alarm.
    pub fn forget_snapshot(&mut self, name: &str) -> Result<()> {
        self.conn
            .execute("DELETE FROM remembered WHERE name = ?1", [name])
            .map_err(|e| self.err(e))?;
        let next = self
            .conn
            .query_row(
                "SELECT name, time_unix_ms, known FROM remembered
                 ORDER BY time_unix_ms DESC, name DESC LIMIT 1",
                [],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, i64>(1)?,
                        Known::from_column(&r.get::<_, String>(2)?),
                    ))
                },
            )
            .optional()
            .map_err(|e| self.err(e))?;
        let repo = self.meta("repo")?;
        update(&self.remembered, repo.as_deref(), |record| {
            record.forgot(name, next)
        })
    }

    /// Forgets every missing snapshot (the user says they are gone on purpose, or accepts
    /// that they are lost): the alarm ends. Returns what was acknowledged.
    pub fn acknowledge_missing(&mut self) -> Result<Vec<Missing>> {
        let missing = self.missing()?;
        for m in &missing {
            self.forget_snapshot(&m.name)?;
            tracing::warn!(snapshot = %m.id(), "the user acknowledged that a snapshot is missing from the target");
        }
        Ok(missing)
    }

    /// Remembers a snapshot this device just wrote, and raises the high-water mark to it.
    pub(super) fn remember_made(&mut self, name: &str, time_unix_ms: i64) -> Result<()> {
        self.conn
            .execute(
                "INSERT OR REPLACE INTO remembered(name, time_unix_ms, known) VALUES (?1, ?2, 'made')",
                rusqlite::params![name, time_unix_ms],
            )
            .map_err(|e| self.err(e))?;
        let repo = self.meta("repo")?;
        update(&self.remembered, repo.as_deref(), |record| {
            record.saw(name, time_unix_ms, Known::Made)
        })
    }

    /// The checks of a sync, once the catalog holds the snapshots the target lists (`listed`)
    /// but those that failed to read (`damaged`): every snapshot remembered, and the parent
    /// of the newest, must be there; the alarm ends for those back; the snapshots held are
    /// remembered, and the high-water mark raised to the newest.
    pub(super) fn check_remembered(
        &mut self,
        repo: &str,
        before: Remembered,
        listed: &[(String, u64)],
        damaged: &[(String, String)],
    ) -> Result<()> {
        let damaged: HashSet<&str> = damaged.iter().map(|(n, _)| n.as_str()).collect();
        let genuine: HashSet<&str> = listed
            .iter()
            .map(|(n, _)| n.as_str())
            .filter(|n| !damaged.contains(n))
            .collect();
        self.conn
            .execute(
                "INSERT OR IGNORE INTO remembered(name, time_unix_ms, known)
                 SELECT name, time_unix_ms, 'seen' FROM snapshots",
                [],
            )
            .map_err(|e| self.err(e))?;
        let Remembered {
            rows: remembered,
            newest: newest_before,
            pruned,
        } = before;
        let newest: Option<(String, i64, Known)> = self
            .conn
            .query_row(
                "SELECT s.name, s.time_unix_ms, r.known FROM snapshots s
                 JOIN remembered r ON r.name = s.name
                 ORDER BY s.time_unix_ms DESC, s.name DESC LIMIT 1",
                [],
                |r| {
                    Ok((
                        r.get(0)?,
                        r.get(1)?,
                        Known::from_column(&r.get::<_, String>(2)?),
                    ))
                },
            )
            .optional()
            .map_err(|e| self.err(e))?;
        let parent = match &newest {
            Some((name, _, _)) => self
                .stored_manifest(name)?
                .and_then(|m| m.parent)
                .map(|id| format!("snapshots/{id}")),
            None => None,
        };
        let now = crate::engine::backup::now_unix_ms();
        let gone = |name: &str, time_unix_ms: Option<i64>, known: Known| Missing {
            name: name.to_owned(),
            time_unix_ms,
            known,
            noticed_unix_ms: now,
            damaged: damaged.contains(name),
        };
        update(&self.remembered, Some(repo), |record| {
            record.reappeared(&genuine);
            for (name, time, known) in &remembered {
                if !genuine.contains(name.as_str()) {
                    record.missing(gone(name, Some(*time), *known));
                }
            }
            if let Some(n) = newest_before.filter(|n| !genuine.contains(n.name.as_str())) {
                record.missing(gone(&n.name, Some(n.time_unix_ms), n.known));
            }
            if let Some(p) = parent.filter(|p| !genuine.contains(p.as_str()) && !pruned.contains(p))
            {
                let time = remembered.iter().find(|r| r.0 == p).map(|r| r.1);
                record.missing(gone(&p, time, Known::Parent));
            }
            if let Some((name, time, known)) = &newest {
                record.saw(name, *time, *known);
            }
        })
    }

    /// What the device remembers of the repository `repo`, as a sync takes it before it
    /// lists the target.
    pub(super) fn remembered_before_listing(&self, repo: &str) -> Result<Remembered> {
        let record = load(&self.remembered)?;
        Ok(Remembered {
            rows: self.remembered_rows()?,
            newest: record
                .newest
                .filter(|_| record.version == VERSION && record.repo == repo),
            pruned: HashSet::new(),
        })
    }

    /// Every row of the `remembered` table: name, time, how it is known.
    fn remembered_rows(&self) -> Result<Vec<(String, i64, Known)>> {
        let mut stmt = self
            .conn
            .prepare("SELECT name, time_unix_ms, known FROM remembered")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, i64>(1)?,
                    Known::from_column(&r.get::<_, String>(2)?),
                ))
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<std::result::Result<_, _>>()
            .map_err(|e| self.err(e))
    }
}

#[cfg(test)]
mod tests;
