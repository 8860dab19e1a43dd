//! What a snapshot holds (`sealbackctl ls`) and what changed between two (`sealbackctl
//! diff`), read from their manifests alone: no pack is read.

use std::cmp::Ordering;

use sealback_repo::snapshot::{FileEntry, Snapshot};

use crate::control::api::{ChangedFile, DatabaseChange, ListedFile};

/// The files of `snapshot` (the database among them), sorted by path; with `path`, only
/// that file or the files in that folder. `None` when `path` names nothing in it.
pub fn list(snapshot: &Snapshot, path: Option<&str>) -> Option<Vec<ListedFile>> {
    let wanted = path.map(|p| p.trim_matches('/')).filter(|p| !p.is_empty());
    let under = |file: &str| {
        wanted.is_none_or(|w| {
            file == w || (file.starts_with(w) && file.as_bytes().get(w.len()) == Some(&b'/'))
        })
    };
    let mut files: Vec<ListedFile> = database(snapshot)
        .into_iter()
        .chain(snapshot.files.iter().map(listed))
        .filter(|f| under(&f.path))
        .collect();
    files.sort_by(|a, b| a.path.cmp(&b.path));
    (wanted.is_none() || !files.is_empty()).then_some(files)
}

/// What changed from `from` to `to`: files added, removed, and changed (content or
/// permission bits; a time alone is not a change), and the database.
pub struct Changes {
    pub added: Vec<ListedFile>,
    pub removed: Vec<ListedFile>,
    pub changed: Vec<ChangedFile>,
    pub database: Option<DatabaseChange>,
}

pub fn diff(from: &Snapshot, to: &Snapshot) -> Changes {
    let mut changes = Changes {
        added: Vec::new(),
        removed: Vec::new(),
        changed: Vec::new(),
        database: database_change(from, to),
    };
    // Manifests list their files sorted by path: one merge.
    let (mut old, mut new) = (from.files.iter().peekable(), to.files.iter().peekable());
    loop {
        let order = match (old.peek(), new.peek()) {
            (None, None) => break,
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (Some(a), Some(b)) => a.path.cmp(&b.path),
        };
        match order {
            Ordering::Less => changes.removed.extend(old.next().map(listed)),
            Ordering::Greater => changes.added.extend(new.next().map(listed)),
            Ordering::Equal => {
                let (Some(a), Some(b)) = (old.next(), new.next()) else {
                    break;
                };
                if a.chunks != b.chunks || a.size != b.size || a.mode != b.mode {
                    changes.changed.push(ChangedFile {
                        path: b.path.clone(),
                        size_before: a.size,
                        size_after: b.size,
                    });
                }
            }
        }
    }
    changes
}

fn listed(file: &FileEntry) -> ListedFile {
    ListedFile {
        path: file.path.clone(),
        size: file.size,
        mode: file.mode,
        mtime_unix_ms: Some(file.mtime_ns.div_euclid(1_000_000)),
        database: false,
    }
}

fn database(snapshot: &Snapshot) -> Option<ListedFile> {
    snapshot.database.as_ref().map(|db| ListedFile {
        path: db.path.clone(),
        size: db.size,
        mode: 0o600,
        mtime_unix_ms: None,
        database: true,
    })
}

fn database_change(from: &Snapshot, to: &Snapshot) -> Option<DatabaseChange> {
    let (a, b) = (from.database.as_ref(), to.database.as_ref());
    let path = b.or(a)?.path.clone();
    let (before, after) = (a.map(|d| d.size), b.map(|d| d.size));
    let signed = |size: Option<u64>| i64::try_from(size.unwrap_or(0)).unwrap_or(i64::MAX);
    Some(DatabaseChange {
        path,
        size_before: before,
        size_after: after,
        size_change: signed(after) - signed(before),
        changed: a != b,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use sealback_repo::ChunkId;
    use sealback_repo::snapshot::{DatabaseImage, SNAPSHOT_VERSION};

    fn file(path: &str, size: u64, chunk: u8) -> FileEntry {
        FileEntry {
            path: path.into(),
            size,
            mtime_ns: 1_700_000_000_123_456_789,
            mode: 0o644,
            chunks: vec![ChunkId([chunk; 32])],
        }
    }

    fn snapshot(files: Vec<FileEntry>, db_size: u64, list: u8) -> Snapshot {
        Snapshot {
            version: SNAPSHOT_VERSION,
            time_unix_ms: 0,
            host: "phone".into(),
            parent: None,
            base: None,
            database: Some(DatabaseImage {
                path: "msgstore.db".into(),
                page_size: 4096,
                page_count: db_size / 4096,
                size: db_size,
                chunk_bytes: 65536,
                lists: vec![ChunkId([list; 32])],
                patches: Vec::new(),
            }),
            files,
        }
    }

    #[test]
    fn ls_lists_the_database_and_the_files_under_a_folder() {
        let s = snapshot(
            vec![
                file("Media/Images/a.jpg", 10, 1),
                file("Media/Images2/b.jpg", 20, 2),
                file("Media/Video/c.mp4", 30, 3),
            ],
            8192,
            9,
        );
        let all = list(&s, None).expect("everything");
        let paths: Vec<&str> = all.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "Media/Images/a.jpg",
                "Media/Images2/b.jpg",
                "Media/Video/c.mp4",
                "msgstore.db"
            ]
        );
        assert!(all[3].database && all[3].mtime_unix_ms.is_none());
        assert_eq!(all[0].mtime_unix_ms, Some(1_700_000_000_123));
        let images = list(&s, Some("Media/Images/")).expect("a folder");
        assert_eq!(images.len(), 1, "Media/Images2 is another folder");
        assert_eq!(
            list(&s, Some("msgstore.db")).expect("the database").len(),
            1
        );
        assert!(list(&s, Some("Media/Audio")).is_none());
    }

    #[test]
    fn diff_names_what_was_added_removed_and_changed() {
        let before = snapshot(
            vec![
                file("a", 1, 1),
                file("b", 2, 2),
                file("c", 3, 3),
                file("d", 4, 4),
            ],
            8192,
            9,
        );
        let mut touched = file("c", 3, 3);
        touched.mtime_ns += 5;
        let after = snapshot(vec![file("b", 5, 5), touched, file("e", 6, 6)], 12288, 8);
        let d = diff(&before, &after);
        let paths = |files: &[ListedFile]| files.iter().map(|f| f.path.clone()).collect::<Vec<_>>();
        assert_eq!(paths(&d.added), ["e"]);
        assert_eq!(paths(&d.removed), ["a", "d"]);
        assert_eq!(
            d.changed,
            [ChangedFile {
                path: "b".into(),
                size_before: 2,
                size_after: 5
            }],
            "a new time alone is no change"
        );
        let db = d.database.expect("database");
        assert_eq!(
            (db.size_before, db.size_after, db.size_change),
            (Some(8192), Some(12288), 4096)
        );
        assert!(db.changed);
        let same = diff(&after, &after);
        assert!(same.added.is_empty() && same.removed.is_empty() && same.changed.is_empty());
        assert!(!same.database.expect("database").changed);
    }
}
