//! The store's files other than the database: found by a walk, read between two `stat`s.

use std::fs::{File, Metadata};
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::dir::Dir;
use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{SFlag, fstatat};

use super::beneath::{StoreRoot, is_gone};
use crate::config::Selection;
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

    /// The same, from what `fstatat` answered.
    pub fn of_stat(st: &libc::stat) -> FileStat {
        FileStat {
            size: st.st_size as u64,
            mtime_ns: st.st_mtime * 1_000_000_000 + st.st_mtime_nsec,
            ctime_ns: st.st_ctime * 1_000_000_000 + st.st_ctime_nsec,
            inode: st.st_ino,
            mode: st.st_mode & 0o7777,
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
    /// For messages: the store's path joined with `path`.
    pub abs: PathBuf,
    pub stat: FileStat,
    /// The device the scan found it on: with the inode, which file it is.
    pub dev: u64,
}

/// What the walk passed over, for the log.
#[derive(Debug, Default)]
pub struct Skipped {
    pub not_utf8: Vec<PathBuf>,
    pub not_regular: Vec<PathBuf>,
}

/// Every regular file under the store that `selection` takes, except the database family
/// (`database`, its `-wal`, `-shm` and `-journal`), sorted by path. Symbolic links and
/// special files are skipped; so are folders the selection leaves out whole.
///
/// Each directory is opened from the store's handle without following a link at any
/// component, and must be the directory its parent listed (device and inode): one renamed
/// away and replaced by a link after it was listed is no longer part of the store.
pub fn scan(
    root: &StoreRoot,
    database: &str,
    selection: &Selection,
) -> io::Result<(Vec<StoreFile>, Skipped)> {
    let excluded: Vec<String> = ["", "-wal", "-shm", "-journal"]
        .iter()
        .map(|s| format!("{database}{s}"))
        .collect();
    let mut files = Vec::new();
    let mut skipped = Skipped::default();
    let mut stack = vec![(String::new(), root.id())];
    while let Some((rel, id)) = stack.pop() {
        let dir_abs = root.join(&rel);
        let Some(dir) = open_listed_dir(root, &rel, id)? else {
            continue;
        };
        let mut listing = Dir::from_fd(dir.try_clone()?)?;
        for entry in listing.iter() {
            let entry = entry?;
            let raw = entry.file_name();
            if [&b"."[..], b".."].contains(&raw.to_bytes()) {
                continue;
            }
            let Some(name) = raw.to_str().ok().map(str::to_owned) else {
                skipped
                    .not_utf8
                    .push(dir_abs.join(std::ffi::OsStr::from_bytes(raw.to_bytes())));
                continue;
            };
            let abs = dir_abs.join(&name);
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
            let meta = match fstatat(&dir, raw, AtFlags::AT_SYMLINK_NOFOLLOW) {
                Ok(m) => m,
                Err(Errno::ENOENT) => continue,
                Err(e) => {
                    let kind = io::Error::from(e).kind();
                    return Err(io::Error::new(kind, format!("{}: {e}", abs.display())));
                }
            };
            let kind = SFlag::from_bits_truncate(meta.st_mode) & SFlag::S_IFMT;
            if kind == SFlag::S_IFDIR {
                if !selection.leaves_out_folder(&path) {
                    stack.push((path, (meta.st_dev, meta.st_ino)));
                }
            } else if !selection.takes(&path) {
                continue;
            } else if kind == SFlag::S_IFREG {
                files.push(StoreFile {
                    path,
                    abs,
                    stat: FileStat::of_stat(&meta),
                    dev: meta.st_dev,
                });
            } else {
                skipped.not_regular.push(abs);
            }
        }
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok((files, skipped))
}

/// The directory `rel` of the store, if it is still the one listed as `id` (device, inode);
/// `None` if it is gone, no longer that directory, or reached through a link.
fn open_listed_dir(root: &StoreRoot, rel: &str, id: (u64, u64)) -> io::Result<Option<OwnedFd>> {
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY;
    let dir = match root.open_beneath(rel, flags) {
        Ok(dir) => dir,
        // A directory removed (or swapped for a link) while we walk is simply no longer
        // part of the store.
        Err(e) if is_gone(&e) && !rel.is_empty() => return Ok(None),
        Err(e) if e.raw_os_error() == Some(libc::ENAMETOOLONG) && !rel.is_empty() => {
            skip_too_long(&root.join(rel));
            return Ok(None);
        }
        Err(e) => {
            return Err(io::Error::new(
                e.kind(),
                format!("reading {}: {e}", root.join(rel).display()),
            ));
        }
    };
    let meta = nix::sys::stat::fstat(&dir)?;
    Ok(((meta.st_dev, meta.st_ino) == id).then_some(dir))
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
/// one (at any component, see [`StoreRoot::open_beneath`]), and never blocks on a FIFO's
/// open. The file opened must be the scan's: same device, inode and type.
pub fn open_for_read(root: &StoreRoot, file: &StoreFile) -> io::Result<Option<(File, FileStat)>> {
    let handle = match open_noatime(root, &file.path) {
        Ok(handle) => handle,
        Err(e) if is_gone(&e) => return Ok(None),
        Err(e) => return Err(e),
    };
    let meta = handle.metadata()?;
    if !meta.is_file() || (meta.dev(), meta.ino()) != (file.dev, file.stat.inode) {
        return Ok(None);
    }
    Ok(Some((handle, FileStat::of(&meta))))
}

/// Opens a file for reading beneath the store, never through a link, without blocking (on
/// a FIFO swapped in), and without touching its access time where the system allows it
/// (`O_NOATIME` is for the file's owner): a backup is not a use of the file, and an access
/// time to update is an inode to write while the backup's own writes are being synced.
fn open_noatime(root: &StoreRoot, rel: &str) -> io::Result<File> {
    let open = |flags| root.open_beneath(rel, OFlag::O_RDONLY | OFlag::O_NONBLOCK | flags);
    #[cfg(target_os = "linux")]
    match open(OFlag::O_NOATIME) {
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => {}
        other => return other.map(File::from),
    }
    open(OFlag::empty()).map(File::from)
}

/// True when the file the scan saw as `scanned` is still the one opened, unchanged since
/// `before`; its name is looked up beneath the store as [`open_for_read`] does.
pub fn unchanged_since(
    root: &StoreRoot,
    file: &File,
    scanned: &StoreFile,
    before: &FileStat,
) -> bool {
    let now_open = file.metadata().map(|m| FileStat::of(&m)).ok();
    let now_path = root
        .stat_beneath(&scanned.path)
        .ok()
        .filter(|m| m.is_file() && m.dev() == scanned.dev)
        .map(|m| FileStat::of(&m));
    now_open.as_ref() == Some(before) && now_path.as_ref() == Some(before)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::io::Write;

    fn root(dir: &Path) -> StoreRoot {
        StoreRoot::open(dir).expect("open the store")
    }

    #[test]
    fn scan_finds_media_and_leaves_out_the_database_family() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = dir.path();
        for f in [
            "msgstore.db",
            "msgstore.db-wal",
            "msgstore.db-shm",
            "notes.txt",
        ] {
            fs::write(store.join(f), b"x").expect("write");
        }
        fs::create_dir_all(store.join("Media/Images")).expect("mkdir");
        fs::write(store.join("Media/Images/IMG-1.jpg"), b"jpeg").expect("write");
        fs::write(store.join("Media/msgstore.db"), b"not the database").expect("write");
        std::os::unix::fs::symlink("/etc/passwd", store.join("Media/link")).expect("symlink");
        std::os::unix::fs::symlink("/etc", store.join("Media/etc")).expect("symlink");
        let (files, skipped) =
            scan(&root(store), "msgstore.db", &Selection::default()).expect("scan");
        let paths: Vec<&str> = files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(
            paths,
            ["Media/Images/IMG-1.jpg", "Media/msgstore.db", "notes.txt"]
        );
        assert_eq!(skipped.not_regular.len(), 2);
    }

    #[test]
    fn scan_takes_only_what_the_selection_takes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = dir.path();
        fs::write(store.join("msgstore.db"), b"x").expect("write");
        for f in [
            "Media/Video/a.mp4",
            "Media/Video/2024/b.mp4",
            "Media/Images/c.jpg",
            "d.tmp",
        ] {
            fs::create_dir_all(store.join(f).parent().expect("parent")).expect("mkdir");
            fs::write(store.join(f), b"x").expect("write");
        }
        let rules = |exclude: &[&str]| {
            let exclude: Vec<String> = exclude.iter().map(|s| s.to_string()).collect();
            Selection::new(&[], &exclude, "backup").expect("valid")
        };
        let paths = |selection: &Selection| -> Vec<String> {
            let (files, _) = scan(&root(store), "msgstore.db", selection).expect("scan");
            files.into_iter().map(|f| f.path).collect()
        };
        assert_eq!(
            paths(&rules(&["Media/Video/**", "*.tmp"])),
            ["Media/Images/c.jpg"]
        );
        // Everything but the database is left out: the database is not the walk's.
        assert!(paths(&rules(&["*", "**"])).is_empty());
        assert_eq!(paths(&Selection::default()).len(), 4);
    }

    /// The file at `rel` in the store as a scan sees it.
    fn scanned(store: &Path, rel: &str) -> StoreFile {
        let abs = store.join(rel);
        let meta = fs::symlink_metadata(&abs).expect("lstat");
        StoreFile {
            path: rel.to_owned(),
            abs,
            stat: FileStat::of(&meta),
            dev: meta.dev(),
        }
    }

    #[test]
    fn a_file_swapped_for_a_link_or_another_file_after_the_scan_is_not_opened() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = dir.path().join("store");
        fs::create_dir(&store).expect("mkdir");
        let secret = dir.path().join("secret");
        fs::write(&secret, b"outside the store").expect("write");
        let path = store.join("photo.jpg");
        fs::write(&path, b"jpeg").expect("write");
        let root = root(&store);
        let seen = scanned(&store, "photo.jpg");
        // Made while the scanned file lives: its inode number is another.
        let other = store.join("other");
        fs::write(&other, b"another file").expect("write");
        let link = store.join("link");
        std::os::unix::fs::symlink(&secret, &link).expect("symlink");
        fs::rename(&link, &path).expect("swap the file for a link");
        assert!(
            open_for_read(&root, &seen).expect("open").is_none(),
            "a link was followed"
        );
        fs::rename(&other, &path).expect("replace the file");
        assert!(
            open_for_read(&root, &seen).expect("open").is_none(),
            "another file was read"
        );
        assert!(
            open_for_read(&root, &scanned(&store, "photo.jpg"))
                .expect("open")
                .is_some()
        );
    }

    /// A directory of the store renamed away and replaced by a link to a directory outside
    /// that holds the very file the scan saw (a hard link: same device, inode and type):
    /// it is not read through the link, nor found unchanged through it.
    #[test]
    fn a_directory_swapped_for_a_link_after_the_scan_is_not_followed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = dir.path().join("store");
        fs::create_dir_all(store.join("Media/sub")).expect("mkdir");
        fs::write(store.join("Media/sub/a.jpg"), b"jpeg").expect("write");
        let outside = dir.path().join("outside");
        fs::create_dir(&outside).expect("mkdir");
        fs::hard_link(store.join("Media/sub/a.jpg"), outside.join("a.jpg")).expect("link");
        let root = root(&store);
        let seen = scanned(&store, "Media/sub/a.jpg");
        let (file, before) = open_for_read(&root, &seen)
            .expect("open")
            .expect("the scanned file");
        assert!(unchanged_since(&root, &file, &seen, &before));
        fs::rename(store.join("Media/sub"), dir.path().join("away")).expect("rename");
        std::os::unix::fs::symlink(&outside, store.join("Media/sub")).expect("symlink");
        assert!(
            open_for_read(&root, &seen).expect("open").is_none(),
            "a directory swapped for a link was followed"
        );
        assert!(
            !unchanged_since(&root, &file, &seen, &before),
            "the name was looked up through a link"
        );
        let (files, _) = scan(&root, "msgstore.db", &Selection::default()).expect("scan");
        assert!(files.is_empty(), "the scan went through a link: {files:?}");
    }

    #[test]
    fn a_file_on_another_device_with_the_same_inode_is_not_the_scanned_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::write(dir.path().join("a.jpg"), b"jpeg").expect("write");
        let root = root(dir.path());
        let mut seen = scanned(dir.path(), "a.jpg");
        assert!(open_for_read(&root, &seen).expect("open").is_some());
        seen.dev ^= 1;
        assert!(open_for_read(&root, &seen).expect("open").is_none());
    }

    #[test]
    fn a_write_during_the_read_is_noticed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("voice.opus");
        fs::write(&path, b"first").expect("write");
        let root = root(dir.path());
        let scanned = scanned(dir.path(), "voice.opus");
        let (file, before) = open_for_read(&root, &scanned)
            .expect("open")
            .expect("the scanned file");
        assert!(unchanged_since(&root, &file, &scanned, &before));
        std::thread::sleep(std::time::Duration::from_millis(10));
        fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .expect("open")
            .write_all(b"more")
            .expect("append");
        assert!(!unchanged_since(&root, &file, &scanned, &before));
    }
}
