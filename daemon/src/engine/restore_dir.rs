//! The directory a restore writes into, reached only through held directory descriptors.
//!
//! The daemon runs as root and restores into a directory that someone else (the app that
//! owns the store) may write into while it works. So no path is ever resolved by name from
//! the top: the restore directory is opened once (`O_DIRECTORY | O_NOFOLLOW`), each
//! sub-directory is made with `mkdirat` and opened with `openat(O_DIRECTORY | O_NOFOLLOW)`
//! relative to its parent's held descriptor, partial files are created with
//! `O_CREAT | O_EXCL | O_NOFOLLOW` and re-opened with `O_NOFOLLOW` and a check that they
//! are still the file that was created (device and inode), and a finished file is renamed
//! with `renameat` on its directory's descriptor. A symbolic link planted anywhere in the
//! tree, at any moment, is never followed: the restore fails naming it (or, with `--force`,
//! a link standing where a directory goes is removed first).
//!
//! Ownership and modes (DESIGN.md, "Restore never arms the device"): a restored file gets
//! at most mode 0777 (never setuid, setgid or sticky) and, with the default
//! [`Owner::Directory`], the owner of the directory restored into; directories the restore
//! creates are given that owner at the end, once every file is in place. Only regular files
//! and directories are ever created.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, openat, renameat};
use nix::sys::stat::{Mode, SFlag, fchmod, fstat, mkdirat};
use nix::unistd::{Gid, Uid, UnlinkatFlags, fchown, unlinkat};

use super::EngineError;

/// Who owns what a restore creates: `[restore] owner` in the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Owner {
    /// The owner and group of the directory restored into (`"directory"`, the default): the
    /// app that restores into its own store gets files it can open.
    #[default]
    Directory,
    /// The daemon's own user (`"daemon"`: root on a device).
    Daemon,
    /// These numeric ids (`"UID:GID"`).
    Ids(u32, u32),
}

impl std::str::FromStr for Owner {
    type Err = String;

    fn from_str(text: &str) -> Result<Owner, String> {
        let ids = text.split_once(':').and_then(|(u, g)| {
            let id = |s: &str| {
                s.parse::<u32>()
                    .ok()
                    .filter(|_| s.bytes().all(|b| b.is_ascii_digit()))
            };
            Some(Owner::Ids(id(u)?, id(g)?))
        });
        match text {
            "directory" => Ok(Owner::Directory),
            "daemon" => Ok(Owner::Daemon),
            _ => ids.ok_or_else(|| {
                format!(
                    "{text:?} is not an owner: write \"directory\" (the restore directory's owner), \
                     \"daemon\" (the daemon's user) or numeric \"UID:GID\""
                )
            }),
        }
    }
}

/// A file the restore created, by device and inode: re-opened by name, it must still be it.
pub type Made = Mutex<Option<(u64, u64)>>;

/// The restore directory and every sub-directory the restore uses, each held open.
pub struct RestoreDir {
    path: PathBuf,
    /// Index 0 is the restore directory itself.
    dirs: Vec<Held>,
    at: HashMap<PathBuf, usize>,
    /// The owner given to what the restore creates, when not the daemon's.
    owner: Option<(Uid, Gid)>,
    force: bool,
}

struct Held {
    fd: OwnedFd,
    /// Made by this restore: given the owner at the end.
    made: bool,
}

/// The mode of a directory a restore makes: snapshots keep no directory modes, and what a
/// messaging app keeps is its own (an app's data directory is 0700), whatever the daemon's
/// umask.
const MADE_DIR_MODE: u32 = 0o700;

impl Held {
    fn new(fd: OwnedFd, made: bool, shown: &Path) -> Result<Held, EngineError> {
        if made {
            fchmod(&fd, Mode::from_bits_truncate(MADE_DIR_MODE))
                .map_err(|e| EngineError::io("cannot set the mode of", shown)(errno_io(e)))?;
        }
        Ok(Held { fd, made })
    }
}

const DIR_FLAGS: OFlag = OFlag::O_RDONLY
    .union(OFlag::O_DIRECTORY)
    .union(OFlag::O_NOFOLLOW)
    .union(OFlag::O_CLOEXEC);

fn errno_io(e: Errno) -> std::io::Error {
    std::io::Error::from(e)
}

impl RestoreDir {
    /// Creates `to` if missing and opens it; without `force` it must be empty, as seen
    /// through the descriptor every later creation goes through.
    pub fn open(to: &Path, force: bool, owner: Owner) -> Result<RestoreDir, EngineError> {
        // One descriptor per directory of the snapshot may pass systemd's soft limit.
        sealback_service::limits::raise_open_files();
        std::fs::create_dir_all(to).map_err(EngineError::io("cannot create", to))?;
        let fd =
            openat(nix::fcntl::AT_FDCWD, to, DIR_FLAGS, Mode::empty()).map_err(|e| match e {
                Errno::ELOOP | Errno::ENOTDIR => EngineError::RestoreDirIsLink(to.to_path_buf()),
                e => EngineError::io("cannot open", to)(errno_io(e)),
            })?;
        let stat = fstat(&fd).map_err(|e| EngineError::io("cannot read", to)(errno_io(e)))?;
        let owner = match owner {
            Owner::Directory => Some((Uid::from_raw(stat.st_uid), Gid::from_raw(stat.st_gid))),
            Owner::Daemon => None,
            Owner::Ids(u, g) => Some((Uid::from_raw(u), Gid::from_raw(g))),
        };
        if let Some((uid, gid)) = owner {
            may_give(uid, gid, to)?;
        }
        if !force {
            let read = |e| EngineError::io("cannot read", to)(errno_io(e));
            let mut listing =
                nix::dir::Dir::openat(&fd, ".", DIR_FLAGS, Mode::empty()).map_err(read)?;
            for entry in listing.iter() {
                let name = entry.map_err(read)?;
                if ![&b"."[..], b".."].contains(&name.file_name().to_bytes()) {
                    return Err(EngineError::NotEmpty(to.to_path_buf()));
                }
            }
        }
        Ok(RestoreDir {
            path: to.to_path_buf(),
            dirs: vec![Held { fd, made: false }],
            at: HashMap::new(),
            owner,
            force,
        })
    }

    /// The held directory `rel` (relative, made only of normal components), made and opened
    /// one component at a time from its parent's descriptor.
    pub fn dir(&mut self, rel: &Path) -> Result<usize, EngineError> {
        if rel.as_os_str().is_empty() {
            return Ok(0);
        }
        if let Some(&at) = self.at.get(rel) {
            return Ok(at);
        }
        let parent = self.dir(rel.parent().unwrap_or(Path::new("")))?;
        let name = rel.file_name().unwrap_or(rel.as_os_str());
        let shown = self.path.join(rel);
        let held = self.make_dir(parent, name, &shown)?;
        self.dirs.push(held);
        self.at.insert(rel.to_path_buf(), self.dirs.len() - 1);
        Ok(self.dirs.len() - 1)
    }

    fn make_dir(&self, parent: usize, name: &OsStr, shown: &Path) -> Result<Held, EngineError> {
        let parent = &self.dirs[parent].fd;
        // Someone else may make and take back a name between our calls (a link planted and
        // removed again): each try starts over, and a name that keeps changing is refused.
        for _ in 0..MAKE_DIR_TRIES {
            let made = match mkdirat(parent, name, Mode::from_bits_truncate(0o777)) {
                Ok(()) => true,
                Err(Errno::EEXIST) => false,
                Err(e) => return Err(EngineError::io("cannot create", shown)(errno_io(e))),
            };
            match openat(parent, name, DIR_FLAGS, Mode::empty()) {
                Ok(fd) => return Held::new(fd, made, shown),
                // What stood there was taken away after mkdirat saw it: try again.
                Err(Errno::ENOENT) if !made => {}
                // A link or a file where the snapshot has a directory: replaced with --force
                // (unlinkat never follows it), else refused.
                Err(Errno::ELOOP | Errno::ENOTDIR) if self.force && !made => {
                    // Gone already (whoever planted it took it back): nothing to remove.
                    match unlinkat(parent, name, UnlinkatFlags::NoRemoveDir) {
                        Ok(()) | Err(Errno::ENOENT) => {}
                        Err(e) => {
                            return Err(EngineError::io("cannot remove", shown)(errno_io(e)));
                        }
                    }
                }
                Err(e) => return Err(open_dir_error(shown, e)),
            }
        }
        Err(EngineError::Changing(shown.to_path_buf()))
    }

    /// Removes `name` from held directory `dir` if it is there, never following it.
    pub fn remove(&self, dir: usize, name: &OsStr) -> std::io::Result<()> {
        match unlinkat(&self.dirs[dir].fd, name, UnlinkatFlags::NoRemoveDir) {
            Ok(()) | Err(Errno::ENOENT) => Ok(()),
            Err(e) => Err(errno_io(e)),
        }
    }

    /// Opens the partial file `name` in held directory `dir` with `flags` (the access mode
    /// and, say, `O_DIRECT`): the first open creates it (`O_EXCL`: a name that stands there
    /// already is refused), later ones must find the very file it created.
    pub fn open_partial(
        &self,
        dir: usize,
        name: &OsStr,
        flags: OFlag,
        made: &Made,
    ) -> std::io::Result<File> {
        let fd = &self.dirs[dir].fd;
        let flags = flags | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let mut made = made.lock().unwrap_or_else(|p| p.into_inner());
        let file = match *made {
            None => {
                let mode = Mode::from_bits_truncate(0o600);
                let created = openat(fd, name, flags | OFlag::O_CREAT | OFlag::O_EXCL, mode);
                let file = File::from(created.map_err(|e| match e {
                    Errno::EEXIST => std::io::Error::other(
                        "something else created this name while sealbackd restored (it is \
                         never followed nor overwritten): make sure nothing else writes into \
                         the restore directory, and restore again",
                    ),
                    e => errno_io(e),
                })?);
                let stat = fstat(&file)?;
                *made = Some((stat.st_dev, stat.st_ino));
                file
            }
            Some(id) => {
                let file = File::from(openat(fd, name, flags, Mode::empty())?);
                let stat = fstat(&file)?;
                if (stat.st_dev, stat.st_ino) != id {
                    return Err(std::io::Error::other(
                        "it was replaced by another file while sealbackd restored it; nothing \
                         was written to that file: make sure nothing else writes into the \
                         restore directory, and restore again",
                    ));
                }
                file
            }
        };
        Ok(file)
    }

    /// Where held directory `dir` is now, without links: what the kernel says of its
    /// descriptor. For a tool that opens by path and refuses links (SQLite, for the
    /// database's check): the restore directory's parents may pass through links (`/var/run`,
    /// Android's `/sdcard`), which it then follows as the caller's path says.
    pub fn real_path(&self, dir: usize) -> std::io::Result<PathBuf> {
        use std::os::fd::AsRawFd as _;
        let path = std::fs::read_link(format!("/proc/self/fd/{}", self.dirs[dir].fd.as_raw_fd()))?;
        if path.is_absolute() {
            Ok(path)
        } else {
            // "/a/b (deleted)", an unreachable directory, and the like.
            Err(std::io::Error::other(format!(
                "it is no longer reachable by a path ({})",
                path.display()
            )))
        }
    }

    /// True when `name` in held directory `dir` is the file `made` records (not followed
    /// if a link).
    pub fn is_made(&self, dir: usize, name: &OsStr, made: &Made) -> bool {
        let made = *made.lock().unwrap_or_else(|p| p.into_inner());
        let found = nix::sys::stat::fstatat(&self.dirs[dir].fd, name, AtFlags::AT_SYMLINK_NOFOLLOW);
        matches!((made, found), (Some(id), Ok(st)) if (st.st_dev, st.st_ino) == id
            && SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFREG)
    }

    /// Gives a complete partial file (open as `out`) its owner, mode (at most 0777) and
    /// time, and renames it to `name` in the same held directory (`shown` in messages).
    #[allow(clippy::too_many_arguments)]
    pub fn finish_file(
        &self,
        dir: usize,
        out: &File,
        partial: &OsStr,
        name: &OsStr,
        shown: &Path,
        mode: u32,
        mtime: Option<SystemTime>,
    ) -> Result<(), EngineError> {
        let shown = || shown.to_path_buf();
        let metadata = |e: Errno| EngineError::io("cannot set metadata of", shown())(errno_io(e));
        self.chown(out).map_err(metadata)?;
        // Never setuid, setgid or sticky: only the permission bits come back.
        fchmod(out, Mode::from_bits_truncate(mode & 0o777)).map_err(metadata)?;
        if let Some(t) = mtime {
            out.set_modified(t)
                .map_err(EngineError::io("cannot set metadata of", shown()))?;
        }
        let fd = &self.dirs[dir].fd;
        renameat(fd, partial, fd, name)
            .map_err(|e| EngineError::io("cannot rename into place", shown())(errno_io(e)))
    }

    /// Gives the directories this restore made their owner (last, so that nobody else can
    /// write into them while the restore works), and flushes the file system.
    pub fn finish(&self) -> Result<(), EngineError> {
        for held in self.dirs.iter().filter(|h| h.made) {
            self.chown(&held.fd)
                .map_err(|e| EngineError::io("cannot set the owner of", &self.path)(errno_io(e)))?;
        }
        nix::unistd::syncfs(&self.dirs[0].fd)
            .map_err(|e| EngineError::io("cannot flush", &self.path)(errno_io(e)))
    }

    fn chown(&self, fd: impl AsFd) -> nix::Result<()> {
        let Some((uid, gid)) = self.owner else {
            return Ok(());
        };
        let stat = fstat(&fd)?;
        if (stat.st_uid, stat.st_gid) == (uid.as_raw(), gid.as_raw()) {
            return Ok(());
        }
        fchown(fd, Some(uid), Some(gid))
    }

    /// The restore directory's path, for messages.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Refuses, before anything is written, a restore whose files this process could not give
/// to `uid`:`gid`: without `CAP_CHOWN` (sealbackd as systemd runs it, the user `sealback`),
/// a file can only be given to its own user and to a group that user is in.
fn may_give(uid: Uid, gid: Gid, to: &Path) -> Result<(), EngineError> {
    let own_user = uid == nix::unistd::geteuid();
    let own_group = gid == nix::unistd::getegid()
        || nix::unistd::getgroups().is_ok_and(|groups| groups.contains(&gid));
    if (own_user && own_group) || may_chown() {
        return Ok(());
    }
    Err(EngineError::CannotGiveOwner {
        dir: to.to_path_buf(),
        uid: uid.as_raw(),
        gid: gid.as_raw(),
        daemon: nix::unistd::geteuid().as_raw(),
    })
}

/// Whether this process holds `CAP_CHOWN` (bit 0 of `CapEff` in /proc/self/status).
fn may_chown() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|status| {
        status
            .lines()
            .find_map(|line| line.strip_prefix("CapEff:"))
            .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
            .is_some_and(|caps| caps & 1 == 1)
    })
}

/// How often [`RestoreDir::make_dir`] starts over when the name it makes changes under it.
const MAKE_DIR_TRIES: usize = 8;

/// A directory that could not be opened: a link or non-directory in its place is named as
/// such.
fn open_dir_error(path: &Path, e: Errno) -> EngineError {
    match e {
        Errno::ELOOP | Errno::ENOTDIR => EngineError::InTheWay(path.to_path_buf()),
        e => EngineError::io("cannot open", path)(errno_io(e)),
    }
}

/// The partial name of `name`.
pub fn partial_name(name: &OsStr, suffix: &str) -> OsString {
    let mut partial = name.to_os_string();
    partial.push(suffix);
    partial
}
