//! The store's files other than the database: found by a walk, read between two `stat`s.

use std::fs::{self, File, Metadata};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// What `stat` says of a file; two equal `FileStat`s around a read mean it did not change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStat {
    pub size: u64,
    pub mtime_ns: i64,
    pub ctime_ns: i64,
    pub inode: u64,
    pub mode: u32,
}

impl FileStat {
    pub fn of(meta: &Metadata) -> FileStat {
        FileStat {
            size: meta.len(),
            mtime_ns: meta.mtime() * 1_000_000_000 + meta.mtime_nsec(),
            ctime_ns: meta.ctime() * 1_000_000_000 + meta.ctime_nsec(),
            inode: meta.ino(),
            mode: meta.mode() & 0o7777,
        }
    }
}

/// A file unchanged for this long is settled: any later write to it gets a later `ctime`.
/// File systems with nanosecond fields stamp with the kernel's coarse clock (one tick, at
/// most 10 ms); those without (FAT, ext4 with small inodes) in 1 or 2 s.
const SETTLED_FINE: Duration = Duration::from_millis(50);
const SETTLED_COARSE: Duration = Duration::from_secs(2);

/// The longest wait [`FileStat::unsettled_for`] can ask that a capture may spend waiting.
pub(crate) const SETTLE_WAIT: Duration = SETTLED_FINE;

impl FileStat {
    /// How long until the file is settled, as seen at `now`; zero if it is. Only a settled
    /// file's `stat` can stand for its content later: a write within the same clock tick as
    /// the last one would leave the timestamps as they are.
    pub fn unsettled_for(&self, now: SystemTime) -> Duration {
        let at = |ns: i64| UNIX_EPOCH + Duration::from_nanos(ns.max(0) as u64);
        let coarse = self.mtime_ns % 1_000_000_000 == 0 && self.ctime_ns % 1_000_000_000 == 0;
        let margin = if coarse { SETTLED_COARSE } else { SETTLED_FINE };
        (at(self.mtime_ns).max(at(self.ctime_ns)) + margin)
            .duration_since(now)
            .unwrap_or(Duration::ZERO)
    }
}

/// A regular file of the store.
#[derive(Debug, Clone)]
pub struct StoreFile {
    /// Relative to the store, `/`-separated.
    pub path: String,
    pub abs: PathBuf,
    pub stat: FileStat,
}

/// What the walk passed over, for the log.
#[derive(Debug, Default)]
pub struct Skipped {
    pub not_utf8: Vec<PathBuf>,
    pub not_regular: Vec<PathBuf>,
}

/// Every regular file under `store` except the database family (`database`, its `-wal`,
/// `-shm` and `-journal`), sorted by path. Symbolic links and special files are skipped.
pub fn scan(store: &Path, database: &str) -> io::Result<(Vec<StoreFile>, Skipped)> {
    let excluded: Vec<String> = ["", "-wal", "-shm", "-journal"]
        .iter()
        .map(|s| format!("{database}{s}"))
        .collect();
    let mut files = Vec::new();
    let mut skipped = Skipped::default();
    let mut stack = vec![(store.to_path_buf(), String::new())];
    while let Some((dir, rel)) = stack.pop() {
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            // A directory removed while we walk is simply no longer part of the store.
            Err(e) if e.kind() == io::ErrorKind::NotFound && !rel.is_empty() => continue,
            Err(e) if e.raw_os_error() == Some(libc::ENAMETOOLONG) && !rel.is_empty() => {
                skip_too_long(&dir);
                continue;
            }
            Err(e) => {
                return Err(io::Error::new(
                    e.kind(),
                    format!("reading {}: {e}", dir.display()),
                ));
            }
        };
        for entry in entries {
            let entry = entry?;
            let abs = entry.path();
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                skipped.not_utf8.push(abs);
                continue;
            };
            let path = if rel.is_empty() {
                name.clone()
            } else {
                format!("{rel}/{name}")
            };
            if rel.is_empty() && excluded.contains(&name) {
                continue;
            }
            // Nothing past PATH_MAX can be opened by its path: skipped, not fatal, or one
            // deep folder would stop every backup, the database's included.
            if abs.as_os_str().len() >= PATH_MAX {
                skip_too_long(&abs);
                continue;
            }
            // `fstatat` beside the directory's handle, not following links: a lookup of
            // the name, where a path would walk the whole tree again for every file.
            let meta = match entry.metadata() {
                Ok(m) => m,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            if meta.is_dir() {
                stack.push((abs, path));
            } else if meta.is_file() {
                files.push(StoreFile {
                    path,
                    abs,
                    stat: FileStat::of(&meta),
                });
            } else {
                skipped.not_regular.push(abs);
            }
        }
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok((files, skipped))
}

/// The longest path the system opens, counting its terminating NUL.
const PATH_MAX: usize = libc::PATH_MAX as usize;

/// Logs a path skipped for its length: its start and its length (the whole path can be
/// tens of kilobytes).
fn skip_too_long(abs: &Path) {
    let shown: String = abs.to_string_lossy().chars().take(160).collect();
    tracing::warn!(
        path = %format!("{shown}..."), bytes = abs.as_os_str().len(),
        "skipped: the path is longer than the system allows (PATH_MAX), so nothing under it can be opened"
    );
}

/// Opens a file of the store for a consistent read: returns it with its `stat` at open
/// time, or `None` if its name no longer leads to the file the scan saw (removed, replaced,
/// swapped for a link or a FIFO, or reached through a directory since swapped for a link).
/// The store's owner may plant links at any moment: a daemon running as root never follows
/// one out of the store, and never blocks on a FIFO's open.
pub fn open_for_read(file: &StoreFile) -> io::Result<Option<(File, FileStat)>> {
    let handle = match open_noatime(&file.abs) {
        Ok(handle) => handle,
        Err(e) if e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ELOOP) => {
            return Ok(None);
        }
        Err(e) => return Err(e),
    };
    let meta = handle.metadata()?;
    if !meta.is_file() || meta.ino() != file.stat.inode {
        return Ok(None);
    }
    Ok(Some((handle, FileStat::of(&meta))))
}

/// Opens a file for reading, never through a link at its last component and without
/// blocking (on a FIFO swapped in), and without touching its access time where the system
/// allows it (`O_NOATIME` is for the file's owner): a backup is not a use of the file, and
/// an access time to update is an inode to write while the backup's own writes are being
/// synced.
fn open_noatime(abs: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let open = |flags| {
        File::options()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | flags)
            .open(abs)
    };
    #[cfg(target_os = "linux")]
    match open(libc::O_NOATIME) {
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => {}
        other => return other,
    }
    open(0)
}

/// True when the file at `abs` is still the one opened, unchanged since `before`.
pub fn unchanged_since(file: &File, abs: &Path, before: &FileStat) -> bool {
    let now_open = file.metadata().map(|m| FileStat::of(&m)).ok();
    let now_path = fs::metadata(abs).map(|m| FileStat::of(&m)).ok();
    now_open.as_ref() == Some(before) && now_path.as_ref() == Some(before)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn scan_finds_media_and_leaves_out_the_database_family() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        for f in [
            "msgstore.db",
            "msgstore.db-wal",
            "msgstore.db-shm",
            "notes.txt",
        ] {
            fs::write(root.join(f), b"x").expect("write");
        }
        fs::create_dir_all(root.join("Media/Images")).expect("mkdir");
        fs::write(root.join("Media/Images/IMG-1.jpg"), b"jpeg").expect("write");
        fs::write(root.join("Media/msgstore.db"), b"not the database").expect("write");
        std::os::unix::fs::symlink("/etc/passwd", root.join("Media/link")).expect("symlink");
        let (files, skipped) = scan(root, "msgstore.db").expect("scan");
        let paths: Vec<&str> = files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(
            paths,
            ["Media/Images/IMG-1.jpg", "Media/msgstore.db", "notes.txt"]
        );
        assert_eq!(skipped.not_regular.len(), 1);
    }

    /// The file at `abs` as a scan sees it.
    fn scanned(abs: &Path) -> StoreFile {
        StoreFile {
            path: abs.display().to_string(),
            abs: abs.to_path_buf(),
            stat: FileStat::of(&fs::symlink_metadata(abs).expect("lstat")),
        }
    }

    #[test]
    fn a_file_swapped_for_a_link_or_another_file_after_the_scan_is_not_opened() {
        let dir = tempfile::tempdir().expect("tempdir");
        let secret = dir.path().join("secret");
        fs::write(&secret, b"outside the store").expect("write");
        let path = dir.path().join("photo.jpg");
        fs::write(&path, b"jpeg").expect("write");
        let seen = scanned(&path);
        // Made while the scanned file lives: its inode number is another.
        let other = dir.path().join("other");
        fs::write(&other, b"another file").expect("write");
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&secret, &link).expect("symlink");
        fs::rename(&link, &path).expect("swap the file for a link");
        assert!(
            open_for_read(&seen).expect("open").is_none(),
            "a link was followed"
        );
        fs::rename(&other, &path).expect("replace the file");
        assert!(
            open_for_read(&seen).expect("open").is_none(),
            "another file was read"
        );
        assert!(open_for_read(&scanned(&path)).expect("open").is_some());
    }

    #[test]
    fn a_write_during_the_read_is_noticed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("voice.opus");
        fs::write(&path, b"first").expect("write");
        let scanned = scanned(&path);
        let (file, before) = open_for_read(&scanned)
            .expect("open")
            .expect("the scanned file");
        assert!(unchanged_since(&file, &path, &before));
        std::thread::sleep(std::time::Duration::from_millis(10));
        fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .expect("open")
            .write_all(b"more")
            .expect("append");
        assert!(!unchanged_since(&file, &path, &before));
    }
}
