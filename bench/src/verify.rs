//! Checks a restore against the store it came from: a benchmark that restores garbage fast
//! proves nothing.
//!
//! - The restored msgstore.db must pass `PRAGMA integrity_check` and hold the same rows as
//!   the store's database (its -wal included: a restore that drops the WAL loses a day):
//!   every table's rows, in rowid order, are hashed value by value.
//! - Every file under `Media/` must be restored byte-identical, and nothing added.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use anyhow::{Context, Result};
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags};
use serde::Serialize;

const DATABASE: &str = "msgstore.db";
const MEDIA: &str = "Media";

/// What a correct restore holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Reference {
    database: DatabaseDigest,
    media: BTreeMap<String, (u64, blake3::Hash)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct DatabaseDigest {
    /// Rows per table, by table name.
    rows: BTreeMap<String, u64>,
    content: blake3::Hash,
}

/// The outcome of checking one restore.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Verdict {
    pub ok: bool,
    pub detail: String,
}

impl Reference {
    /// Reads the store. Its database is copied (with its -wal, without the -shm) into
    /// `scratch` first, so that the store itself is never opened by us.
    pub(crate) fn of_store(store: &Path, scratch: &Path) -> Result<Reference> {
        fs::create_dir_all(scratch)
            .with_context(|| format!("cannot create {}", scratch.display()))?;
        for name in [DATABASE.to_owned(), format!("{DATABASE}-wal")] {
            let from = store.join(&name);
            if from.exists() {
                fs::copy(&from, scratch.join(&name))
                    .with_context(|| format!("cannot copy {}", from.display()))?;
            }
        }
        let (integrity, database) = digest_database(&scratch.join(DATABASE))?;
        if integrity != "ok" {
            anyhow::bail!("the store's own database fails integrity_check: {integrity}");
        }
        Ok(Reference {
            database,
            media: digest_media(&store.join(MEDIA))?,
        })
    }

    pub(crate) fn messages(&self) -> u64 {
        self.database.rows.get("message").copied().unwrap_or(0)
    }

    /// Checks the restored store whose top level is `root`.
    pub(crate) fn check(&self, root: &Path) -> Verdict {
        match self.problems(root) {
            Ok(problems) if problems.is_empty() => Verdict {
                ok: true,
                detail: format!(
                    "integrity_check ok, {} tables / {} messages identical, {} media files \
                     byte-identical",
                    self.database.rows.len(),
                    self.messages(),
                    self.media.len()
                ),
            },
            Ok(problems) => Verdict {
                ok: false,
                detail: problems.join("; "),
            },
            Err(error) => Verdict {
                ok: false,
                detail: format!("{error:#}"),
            },
        }
    }

    fn problems(&self, root: &Path) -> Result<Vec<String>> {
        let mut problems = Vec::new();
        let (integrity, database) = digest_database(&root.join(DATABASE))?;
        if integrity != "ok" {
            problems.push(format!("integrity_check: {integrity}"));
        }
        if database.rows != self.database.rows {
            problems.push(format!(
                "row counts differ: restored {:?}, store {:?}",
                database.rows, self.database.rows
            ));
        } else if database.content != self.database.content {
            problems.push("same row counts but different row contents".to_owned());
        }
        let media = digest_media(&root.join(MEDIA))?;
        let missing = self
            .media
            .keys()
            .filter(|k| !media.contains_key(*k))
            .count();
        let extra = media
            .keys()
            .filter(|k| !self.media.contains_key(*k))
            .count();
        let different = self
            .media
            .iter()
            .filter(|(k, v)| media.get(*k).is_some_and(|r| r != *v))
            .count();
        if missing + extra + different > 0 {
            problems.push(format!(
                "media: {missing} missing, {extra} extra, {different} different of {}",
                self.media.len()
            ));
        }
        Ok(problems)
    }
}

/// `integrity_check`'s answer and a digest of every table's rows.
fn digest_database(path: &Path) -> Result<(String, DatabaseDigest)> {
    if !path.is_file() {
        anyhow::bail!("{} is missing", path.display());
    }
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE)
        .with_context(|| format!("cannot open {}", path.display()))?;
    let failed = |what: &str| format!("{what} on {}", path.display());
    let integrity = conn
        .prepare("PRAGMA integrity_check")
        .and_then(|mut s| {
            s.query_map([], |row| row.get::<_, String>(0))?
                .collect::<rusqlite::Result<Vec<_>>>()
        })
        .with_context(|| failed("integrity_check"))?
        .join(", ");
    let tables: Vec<String> = conn
        .prepare(
            "SELECT name FROM sqlite_schema WHERE type = 'table' \
             AND name NOT LIKE 'sqlite_%' ORDER BY name",
        )
        .and_then(|mut s| {
            s.query_map([], |row| row.get(0))?
                .collect::<rusqlite::Result<Vec<_>>>()
        })
        .with_context(|| failed("listing the tables"))?;
    let mut hasher = blake3::Hasher::new();
    let mut rows = BTreeMap::new();
    for table in tables {
        let quoted = table.replace('"', "\"\"");
        // WITHOUT ROWID tables have no rowid: their primary key order is just as stable.
        let mut statement = conn
            .prepare(&format!("SELECT * FROM \"{quoted}\" ORDER BY rowid"))
            .or_else(|_| conn.prepare(&format!("SELECT * FROM \"{quoted}\" ORDER BY 1")))
            .with_context(|| failed(&format!("reading table {table}")))?;
        let columns = statement.column_count();
        hasher.update(table.as_bytes());
        let mut count = 0u64;
        let mut cursor = statement
            .query([])
            .with_context(|| failed(&format!("reading table {table}")))?;
        while let Some(row) = cursor
            .next()
            .with_context(|| failed(&format!("reading table {table}")))?
        {
            for i in 0..columns {
                let value = row
                    .get_ref(i)
                    .with_context(|| failed(&format!("reading table {table}")))?;
                hash_value(&mut hasher, value);
            }
            count += 1;
        }
        rows.insert(table, count);
    }
    Ok((
        integrity,
        DatabaseDigest {
            rows,
            content: hasher.finalize(),
        },
    ))
}

fn hash_value(hasher: &mut blake3::Hasher, value: ValueRef<'_>) {
    match value {
        ValueRef::Null => hasher.update(&[0]),
        ValueRef::Integer(i) => hasher.update(&[1]).update(&i.to_le_bytes()),
        ValueRef::Real(r) => hasher.update(&[2]).update(&r.to_bits().to_le_bytes()),
        ValueRef::Text(t) => hasher
            .update(&[3])
            .update(&(t.len() as u64).to_le_bytes())
            .update(t),
        ValueRef::Blob(b) => hasher
            .update(&[4])
            .update(&(b.len() as u64).to_le_bytes())
            .update(b),
    };
}

/// Size and BLAKE3 of every file under `dir`, by relative path.
fn digest_media(dir: &Path) -> Result<BTreeMap<String, (u64, blake3::Hash)>> {
    let mut media = BTreeMap::new();
    if !dir.is_dir() {
        return Ok(media);
    }
    let listing = crate::store::scan(dir)?;
    for (relative, stamp) in listing.files {
        let path = dir.join(&relative);
        let mut hasher = blake3::Hasher::new();
        hasher
            .update_reader(
                fs::File::open(&path).with_context(|| format!("cannot open {}", path.display()))?,
            )
            .with_context(|| format!("cannot read {}", path.display()))?;
        media.insert(relative, (stamp.size, hasher.finalize()));
    }
    Ok(media)
}
