//! The message store the tests back up, shaped like the app's: `msgstore.db` in WAL mode and
//! media under `Media/`. Every byte of it is a function of the message ids, so a restored
//! store can be checked exactly:
//!
//! - message `id` has the text [`message_text`]`(id)`; every `media_every`-th message also
//!   names the image `Media/Images/IMG-<id>.jpg`, whose bytes are [`media_bytes`] of its name;
//! - each message is one transaction that also sets `progress.n` to its id, and its image is
//!   complete on disk before that transaction commits, as an app saves a download before it
//!   shows the message.
//!
//! So a consistent backup restores to the state after one committed transaction `n`:
//! messages exactly `1..=n`, each image they name complete. [`check_restored`] checks that.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, params};

pub const DATABASE: &str = "msgstore.db";
pub const MEDIA_DIR: &str = "Media/Images";
const PARTIAL_SUFFIX: &str = ".sealback-partial";

const SCHEMA: &str = "
    PRAGMA journal_mode = WAL;
    CREATE TABLE message(_id INTEGER PRIMARY KEY, text TEXT NOT NULL, media TEXT);
    -- Inserts land all over this index, as they do in an app's indexes: a commit touches
    -- pages across the file, not only at its end.
    CREATE INDEX message_text ON message(text);
    CREATE TABLE progress(n INTEGER NOT NULL);
    CREATE TABLE settings(media_every INTEGER NOT NULL);
    INSERT INTO progress(n) VALUES (0);
";

/// The text of message `id`: 64 to 256 hex digits.
pub fn message_text(id: i64) -> String {
    let hash = blake3::hash(format!("message {id}").as_bytes());
    hash.to_hex().repeat(1 + id.rem_euclid(4) as usize)
}

/// Whether message `id` carries an image.
pub fn has_media(id: i64, media_every: i64) -> bool {
    media_every > 0 && id % media_every == 0
}

/// The image of message `id`, relative to the store.
pub fn media_path(id: i64) -> String {
    format!("{MEDIA_DIR}/IMG-{id}.jpg")
}

/// The temporary name an image is written under before being renamed to [`media_path`].
pub fn media_temp_path(id: i64) -> String {
    format!("{MEDIA_DIR}/.IMG-{id}.jpg.tmp")
}

/// The bytes of the file named `name`: 50 to 400 KB, incompressible, a function of the name.
pub fn media_bytes(name: &str) -> Vec<u8> {
    let seed = blake3::hash(name.as_bytes());
    let first: [u8; 8] = seed.as_bytes()[..8].try_into().expect("8 bytes");
    let size = 50_000 + (u64::from_le_bytes(first) % 350_001) as usize;
    let mut bytes = vec![0u8; size];
    blake3::Hasher::new()
        .update(b"media ")
        .update(name.as_bytes())
        .finalize_xof()
        .fill(&mut bytes);
    bytes
}

/// Inserts message `id` and sets `progress.n` to it; the caller commits.
pub fn insert_message(tx: &rusqlite::Transaction<'_>, id: i64, media_every: i64) {
    let media = has_media(id, media_every).then(|| media_path(id));
    tx.execute(
        "INSERT INTO message(_id, text, media) VALUES (?1, ?2, ?3)",
        params![id, message_text(id), media],
    )
    .expect("insert a message");
    tx.execute("UPDATE progress SET n = ?1", [id])
        .expect("update progress");
}

/// A message store on disk.
#[derive(Debug, Clone)]
pub struct MessageStore {
    dir: PathBuf,
}

impl MessageStore {
    /// Creates an empty store in `dir`: the database with its schema, and `Media/Images/`.
    pub fn create(dir: &Path, media_every: i64) -> MessageStore {
        fs::create_dir_all(dir.join(MEDIA_DIR)).expect("create the store");
        let conn = Connection::open(dir.join(DATABASE)).expect("create the database");
        conn.execute_batch(SCHEMA).expect("create the schema");
        conn.execute(
            "INSERT INTO settings(media_every) VALUES (?1)",
            [media_every],
        )
        .expect("record media_every");
        MessageStore {
            dir: dir.to_path_buf(),
        }
    }

    /// A store [`create`](MessageStore::create) made earlier.
    pub fn open(dir: &Path) -> MessageStore {
        MessageStore {
            dir: dir.to_path_buf(),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Opens the database as the app does: WAL, default auto-checkpoint.
    pub fn connect(&self) -> Connection {
        let conn = Connection::open(self.dir.join(DATABASE)).expect("open the database");
        conn.busy_timeout(Duration::from_secs(10))
            .expect("set a busy timeout");
        conn.pragma_update(None, "synchronous", "NORMAL")
            .expect("synchronous = NORMAL");
        conn
    }

    /// `(progress.n, settings.media_every)`.
    pub fn progress(conn: &Connection) -> (i64, i64) {
        conn.query_row(
            "SELECT (SELECT n FROM progress), (SELECT media_every FROM settings)",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("read progress")
    }

    /// The number of the last committed message.
    pub fn committed(&self) -> i64 {
        Self::progress(&self.connect()).0
    }

    /// Adds `count` messages in one transaction, their images written whole first; returns
    /// the new number of messages.
    pub fn append(&self, count: i64) -> i64 {
        let mut conn = self.connect();
        let (n, media_every) = Self::progress(&conn);
        for id in n + 1..=n + count {
            if has_media(id, media_every) {
                let path = media_path(id);
                fs::write(self.dir.join(&path), media_bytes(&path)).expect("write an image");
            }
        }
        let tx = conn.transaction().expect("begin");
        for id in n + 1..=n + count {
            insert_message(&tx, id, media_every);
        }
        tx.commit().expect("commit");
        n + count
    }

    /// Writes a file into the store (relative path), outside the message scheme.
    pub fn put_file(&self, rel: &str, contents: &[u8]) {
        let path = self.dir.join(rel);
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).expect("create the directory");
        }
        fs::write(&path, contents).expect("write the file");
    }

    /// Waits until every file written so far has settled: the daemon vouches for a file by
    /// its `stat` only if it was last changed longer ago than its timestamp margin (50 ms on
    /// file systems with nanosecond times, DESIGN.md §4.2); one read sooner is read again
    /// by the next backup, as it should be.
    pub fn settle(&self) {
        std::thread::sleep(std::time::Duration::from_millis(120));
    }
}

/// What a restored store holds, once checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restored {
    /// `progress.n`: the last committed message the snapshot holds.
    pub messages: i64,
    /// Images present and complete.
    pub complete_media: usize,
    /// Images (or their temporary files) of messages the database does not hold yet, whole
    /// or caught while the app wrote them (any prefix of their bytes: the file was what it
    /// was when read). Allowed, since no message names them.
    pub unreferenced_in_progress: usize,
}

/// Checks that `dir` holds a store exactly as it was after one committed transaction:
/// a sound database whose messages are exactly `1..=n` with their texts, and every image
/// they name complete. Images of later messages may be present, whole or as they were while
/// the app wrote them (any prefix of their bytes: a `write(2)` reaches its full length in
/// steps a reader can see); nothing else may be, and no restore leftover.
pub fn check_restored(dir: &Path) -> Result<Restored, String> {
    let files = walk(dir)?;
    if let Some(partial) = files.iter().find(|f| f.ends_with(PARTIAL_SUFFIX)) {
        return Err(format!("a restore leftover is in the store: {partial}"));
    }
    for family in ["-wal", "-shm", "-journal"] {
        let name = format!("{DATABASE}{family}");
        if files.contains(&name) {
            return Err(format!("{name} was restored next to the database"));
        }
    }
    let (n, media_every) = check_database(&dir.join(DATABASE))?;
    let mut restored = Restored {
        messages: n,
        complete_media: 0,
        unreferenced_in_progress: 0,
    };
    for file in files.iter().filter(|f| *f != DATABASE) {
        let id = media_id(file)
            .filter(|id| has_media(*id, media_every))
            .ok_or_else(|| format!("{file} is not a file of the store"))?;
        let final_name = media_path(id);
        let expected = media_bytes(&final_name);
        let found = fs::read(dir.join(file)).map_err(|e| format!("read {file}: {e}"))?;
        let complete = found == expected;
        // Any prefix, not only where the writer pauses (just created, half written): one
        // `write(2)` grows the file a folio at a time, and a reader may find it, unchanged
        // between two `stat`s, between two of those steps (65536 of 72275 bytes on ext4).
        let in_progress = expected.starts_with(&found);
        let is_final = *file == final_name;
        if is_final && complete {
            restored.complete_media += 1;
        } else if id <= n && is_final {
            return Err(format!(
                "{file} holds {} bytes that are not the {} bytes of the image that message \
                 {id} names, though that message was committed (the database holds messages \
                 up to {n}) after the image was written",
                found.len(),
                expected.len()
            ));
        } else if id <= n {
            return Err(format!(
                "{file}, the temporary file of {final_name}, is in the snapshot, though \
                 message {id}, committed after the file was renamed, is in its database"
            ));
        } else if complete || in_progress {
            restored.unreferenced_in_progress += 1;
        } else {
            return Err(format!(
                "{file} holds {} bytes that are neither the {} bytes of its image nor a \
                 state the app leaves it in (a prefix of them, as while it writes): a torn \
                 file",
                found.len(),
                expected.len()
            ));
        }
    }
    let mut id = media_every;
    while media_every > 0 && id <= n {
        if !files.contains(&media_path(id)) {
            return Err(format!(
                "{} is missing, though message {id}, which names it, was committed (the \
                 database holds messages up to {n})",
                media_path(id)
            ));
        }
        id += media_every;
    }
    Ok(restored)
}

/// Checks the database; returns `(n, media_every)`.
fn check_database(path: &Path) -> Result<(i64, i64), String> {
    if !path.is_file() {
        return Err(format!("{} was not restored", path.display()));
    }
    let conn = Connection::open(path).map_err(|e| format!("open {}: {e}", path.display()))?;
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .map_err(|e| format!("integrity_check: {e}"))?;
    if check != "ok" {
        return Err(format!("PRAGMA integrity_check says: {check}"));
    }
    let (n, media_every) = MessageStore::progress(&conn);
    let (count, min, max): (i64, Option<i64>, Option<i64>) = conn
        .query_row(
            "SELECT count(*), min(_id), max(_id) FROM message",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .map_err(|e| format!("count messages: {e}"))?;
    let exact = count == n && (n == 0 || (min == Some(1) && max == Some(n)));
    if !exact {
        return Err(format!(
            "progress.n is {n} but the messages are {count}, ids {min:?}..={max:?}: not the \
             state after one committed transaction"
        ));
    }
    let mut stmt = conn
        .prepare("SELECT _id, text, media FROM message ORDER BY _id")
        .map_err(|e| e.to_string())?;
    let mut rows = stmt.query([]).map_err(|e| e.to_string())?;
    while let Some(row) = rows.next().map_err(|e| e.to_string())? {
        let id: i64 = row.get(0).map_err(|e| e.to_string())?;
        let text: String = row.get(1).map_err(|e| e.to_string())?;
        let media: Option<String> = row.get(2).map_err(|e| e.to_string())?;
        if text != message_text(id) {
            return Err(format!("message {id} has the wrong text {text:?}"));
        }
        if media != has_media(id, media_every).then(|| media_path(id)) {
            return Err(format!("message {id} names the wrong image {media:?}"));
        }
    }
    Ok((n, media_every))
}

/// The message id of an image or of its temporary file.
fn media_id(rel: &str) -> Option<i64> {
    let name = rel.strip_prefix(MEDIA_DIR)?.strip_prefix('/')?;
    let id = name
        .strip_prefix("IMG-")
        .and_then(|r| r.strip_suffix(".jpg"))
        .or_else(|| {
            name.strip_prefix(".IMG-")
                .and_then(|r| r.strip_suffix(".jpg.tmp"))
        })?;
    id.parse().ok()
}

/// Every file under `dir`, as `/`-separated relative paths.
pub fn walk(dir: &Path) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut stack = vec![(dir.to_path_buf(), String::new())];
    while let Some((abs, rel)) = stack.pop() {
        let entries = fs::read_dir(&abs).map_err(|e| format!("list {}: {e}", abs.display()))?;
        for entry in entries {
            let entry = entry.map_err(|e| e.to_string())?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            if entry.file_type().map_err(|e| e.to_string())?.is_dir() {
                stack.push((entry.path(), path));
            } else {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A store of 40 messages (so message 40 names a complete image), and the image of a
    /// later, uncommitted message holding `bytes`.
    fn store_with_uncommitted(rel: &str, bytes: &[u8]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = MessageStore::create(dir.path(), 40);
        assert_eq!(store.append(40), 40);
        store.put_file(rel, bytes);
        dir
    }

    /// One `write(2)` is not one step for a reader: the kernel copies it a folio at a time
    /// and grows the size after each (ext4 with large folios passes through 65536 bytes on
    /// the way to 72275), so an image of an uncommitted message may be caught, unchanged
    /// between two `stat`s, at any length its bytes are a prefix of.
    #[test]
    fn an_uncommitted_image_caught_between_two_steps_of_one_write_is_a_state_of_the_app() {
        for rel in [media_path(80), media_temp_path(80)] {
            let image = media_bytes(&media_path(80));
            let dir = store_with_uncommitted(&rel, &image[..65536]);
            let restored = check_restored(dir.path()).unwrap_or_else(|e| panic!("{rel}: {e}"));
            assert_eq!(restored.messages, 40);
            assert_eq!(restored.complete_media, 1);
            assert_eq!(restored.unreferenced_in_progress, 1);
        }
    }

    #[test]
    fn an_uncommitted_image_whose_bytes_are_not_its_prefix_is_torn() {
        let mut image = media_bytes(&media_path(80));
        image.truncate(65536);
        image[70] ^= 1;
        let dir = store_with_uncommitted(&media_path(80), &image);
        let e = check_restored(dir.path()).expect_err("a torn file was accepted");
        assert!(e.contains("a torn file"), "{e}");
    }

    #[test]
    fn a_committed_image_must_be_complete() {
        let dir = store_with_uncommitted(&media_path(80), b"");
        let image = media_bytes(&media_path(40));
        fs::write(dir.path().join(media_path(40)), &image[..65536]).expect("truncate");
        let e = check_restored(dir.path()).expect_err("a partial committed image was accepted");
        assert!(e.contains("though that message was committed"), "{e}");
    }
}
