//! The store's directory, held open, and every path beneath it resolved from that handle
//! without following a symbolic link at any component.
//!
//! The store's owner may plant a link anywhere in the store at any moment, and rename a
//! directory of the store and put a link in its place between our scan and our read. A path
//! joined to the store's and opened as a whole would follow such a link out of the store,
//! as root. So the store's path (which the integrator may have made a link) is resolved
//! once, when the [`StoreRoot`] is opened; beneath it, `openat2(RESOLVE_BENEATH |
//! RESOLVE_NO_SYMLINKS)` refuses any link, and where the kernel lacks `openat2` (before
//! Linux 5.6) a walk of directory handles opened with `O_DIRECTORY | O_NOFOLLOW` does.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;

/// The store's directory as it was when the backup began.
pub struct StoreRoot {
    dir: OwnedFd,
    /// The store's path with every link in it resolved (for SQLite, which opens by path,
    /// and for messages).
    path: PathBuf,
    /// Device and inode of the directory held.
    id: (u64, u64),
}

/// Cleared the first time `openat2` answers `ENOSYS`: the walk is used from then on.
static OPENAT2: AtomicBool = AtomicBool::new(true);

impl StoreRoot {
    /// Resolves `configured` (links in it are the integrator's, and followed) and holds the
    /// directory it names.
    pub fn open(configured: &Path) -> io::Result<StoreRoot> {
        let path = std::fs::canonicalize(configured)?;
        let dir = nix::fcntl::open(
            &path,
            OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW,
            Mode::empty(),
        )?;
        let meta = File::from(dir.try_clone()?).metadata()?;
        Ok(StoreRoot {
            dir,
            path,
            id: (meta.dev(), meta.ino()),
        })
    }

    /// The store's path, every link in it resolved.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The store's path joined with `rel`, for messages and for SQLite.
    pub fn join(&self, rel: &str) -> PathBuf {
        self.path.join(rel)
    }

    /// Device and inode of the store's directory.
    pub fn id(&self) -> (u64, u64) {
        self.id
    }

    /// Whether the store's path still leads to the directory held (a link-free path whose
    /// directories someone renamed would lead elsewhere).
    pub fn still_at_path(&self) -> bool {
        std::fs::symlink_metadata(&self.path).is_ok_and(|m| (m.dev(), m.ino()) == self.id)
    }

    /// Opens `rel` (relative to the store, `/`-separated, as the scan names it; empty for
    /// the store itself) with `flags`, never through a link at any component and never out
    /// of the store. A link on the way fails with `ELOOP`, `ENOTDIR` or `EXDEV`: see
    /// [`is_gone`].
    pub fn open_beneath(&self, rel: &str, flags: OFlag) -> io::Result<OwnedFd> {
        let flags = flags | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        if rel.is_empty() {
            return Ok(nix::fcntl::openat(&self.dir, ".", flags, Mode::empty())?);
        }
        if OPENAT2.load(Ordering::Relaxed) {
            use nix::fcntl::{OpenHow, ResolveFlag};
            let how = OpenHow::new()
                .flags(flags)
                .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_SYMLINKS);
            match nix::fcntl::openat2(&self.dir, rel, how) {
                Err(Errno::ENOSYS) => OPENAT2.store(false, Ordering::Relaxed),
                other => return Ok(other?),
            }
        }
        walk_beneath(self.dir.as_fd(), rel, flags)
    }

    /// The `stat` of `rel` itself (a link is not followed), resolved as
    /// [`StoreRoot::open_beneath`] does.
    pub fn stat_beneath(&self, rel: &str) -> io::Result<std::fs::Metadata> {
        let fd = self.open_beneath(rel, OFlag::O_PATH)?;
        File::from(fd).metadata()
    }
}

/// Opens `rel` beneath `root` one component at a time, each directory with
/// `O_DIRECTORY | O_NOFOLLOW`; `flags` (with `O_NOFOLLOW`) for the last.
fn walk_beneath(root: std::os::fd::BorrowedFd<'_>, rel: &str, flags: OFlag) -> io::Result<OwnedFd> {
    let parts: Vec<&str> = rel.split('/').collect();
    if parts
        .iter()
        .any(|p| p.is_empty() || *p == "." || *p == "..")
    {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{rel:?} is not a plain path beneath the store"),
        ));
    }
    let (last, dirs) = parts.split_last().expect("split yields one part at least");
    let dir_flags = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let mut held: Option<OwnedFd> = None;
    for part in dirs {
        let at = held.as_ref().map_or(root, |fd| fd.as_fd());
        held = Some(nix::fcntl::openat(at, *part, dir_flags, Mode::empty())?);
    }
    let at = held.as_ref().map_or(root, |fd| fd.as_fd());
    Ok(nix::fcntl::openat(at, *last, flags, Mode::empty())?)
}

/// Whether an error of [`StoreRoot::open_beneath`] means the name no longer leads to a file
/// in the store (removed, or a link on the way): the entry is no longer part of the store.
pub fn is_gone(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound
        || [libc::ELOOP, libc::ENOTDIR, libc::EXDEV].contains(&e.raw_os_error().unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::symlink;

    fn store() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = dir.path().join("store");
        fs::create_dir_all(store.join("Media/sub")).expect("mkdir");
        fs::write(store.join("Media/sub/a.jpg"), b"in the store").expect("write");
        fs::create_dir_all(dir.path().join("outside")).expect("mkdir");
        fs::write(dir.path().join("outside/a.jpg"), b"secret").expect("write");
        (dir, store)
    }

    fn read(root: &StoreRoot, rel: &str) -> io::Result<Vec<u8>> {
        let fd = root.open_beneath(rel, OFlag::O_RDONLY)?;
        let mut bytes = Vec::new();
        io::Read::read_to_end(&mut File::from(fd), &mut bytes)?;
        Ok(bytes)
    }

    /// Both ways of resolving, whatever the kernel: `openat2` first, then the walk.
    fn each_way(check: impl Fn()) {
        check();
        let was = OPENAT2.swap(false, Ordering::Relaxed);
        check();
        OPENAT2.store(was, Ordering::Relaxed);
    }

    #[test]
    fn a_link_at_any_component_is_never_followed() {
        let (dir, store) = store();
        let root = StoreRoot::open(&store).expect("open the store");
        each_way(|| {
            assert_eq!(
                read(&root, "Media/sub/a.jpg").expect("read"),
                b"in the store"
            )
        });
        fs::rename(store.join("Media/sub"), dir.path().join("away")).expect("rename");
        symlink(dir.path().join("outside"), store.join("Media/sub")).expect("symlink");
        each_way(|| {
            let e = read(&root, "Media/sub/a.jpg").expect_err("a link in the middle was followed");
            assert!(is_gone(&e), "{e}");
        });
        symlink("../outside/a.jpg", store.join("Media/b.jpg")).expect("symlink");
        symlink(dir.path().join("outside/a.jpg"), store.join("Media/c.jpg")).expect("symlink");
        each_way(|| {
            for rel in ["Media/b.jpg", "Media/c.jpg"] {
                let e = read(&root, rel).expect_err("a link at the end was followed");
                assert!(is_gone(&e), "{rel}: {e}");
            }
            let stat = root.stat_beneath("Media/c.jpg").expect("stat the link");
            assert!(stat.file_type().is_symlink());
        });
        assert!(walk_beneath(root.dir.as_fd(), "Media/../x", OFlag::O_RDONLY).is_err());
    }

    #[test]
    fn a_store_reached_through_a_link_is_held_and_checked() {
        let (dir, store) = store();
        let link = dir.path().join("link-to-store");
        symlink(&store, &link).expect("symlink");
        let root = StoreRoot::open(&link).expect("open the store through the integrator's link");
        assert_eq!(root.path(), fs::canonicalize(&store).expect("canonical"));
        assert!(root.still_at_path());
        fs::rename(&store, dir.path().join("moved")).expect("rename the store");
        fs::create_dir(&store).expect("another directory in its place");
        assert!(!root.still_at_path());
        // The handle still leads to the directory first resolved.
        assert_eq!(
            read(&root, "Media/sub/a.jpg").expect("read"),
            b"in the store"
        );
    }
}
