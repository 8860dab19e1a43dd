//! The database's family (the database, its WAL, wal-index and rollback journal), checked
//! to be the store's own regular files before SQLite opens them by path.
//!
//! The store's owner may put a link to a database only root can read where the app's
//! database is, or a link where its WAL or wal-index goes: the daemon, running as root,
//! would back the other database up, or SQLite would open the link's target read-write.
//! So each name is looked up beside the held directory without following a link, and the
//! database must be a regular file; SQLite is then told to refuse links (`NOFOLLOW`), and
//! the capture compares the database's device and inode before and after.
//!
//! SQLite's locks on the database and its wal-index are POSIX record locks: they belong to
//! the process, and closing *any* descriptor of the file drops them all, whichever
//! connection took them. An app that opens the database while the daemon's locks are gone
//! believes it is alone: it truncates the wal-index the daemon's SQLite has mapped (SIGBUS)
//! and rebuilds it without the daemon's read mark, so its checkpoints copy commits newer
//! than the capture's snapshot into the file being read (a torn image). So every descriptor
//! the daemon opens on the family itself is closed only after the connection
//! ([`Family::read_member`]), and connections and such descriptors of every store's family
//! are used one at a time in this process ([`lock_families`]).

use std::cell::RefCell;
use std::ffi::OsString;
use std::fs::{File, Metadata};
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::{FileTypeExt as _, MetadataExt as _};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};

use nix::fcntl::OFlag;
use nix::sys::stat::Mode;

use super::DatabaseCaptureError;

/// The members of the family other than the database, with what each is called.
const MEMBERS: [(&str, &str); 3] = [
    ("-wal", "the database's WAL"),
    ("-shm", "the database's wal-index"),
    ("-journal", "the database's rollback journal"),
];

const DATABASE_ADVICE: &str = "put the app's database itself at this path, or point `store` \
                               in the configuration at the directory that holds it";
const MEMBER_ADVICE: &str = "remove it (SQLite creates it again beside the database when the \
                             app next opens it)";

/// Held while this process has a SQLite connection to a store's database open, or a
/// descriptor of a database's family (its file, WAL, wal-index, journal) that it opened
/// itself: closing such a descriptor while another thread's connection is open would drop
/// that connection's locks. One backup's capture waits for another's read transaction,
/// which is kept short.
pub(crate) fn lock_families() -> MutexGuard<'static, ()> {
    static FAMILIES: Mutex<()> = Mutex::new(());
    FAMILIES.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The directory holding the database, held open, and the database's name in it.
///
/// Declared before the capture's connection, it is dropped after it: the descriptors it
/// keeps are closed once SQLite holds no lock they could drop.
pub(super) struct Family {
    dir: OwnedFd,
    dir_path: PathBuf,
    /// Device and inode of the directory held.
    dir_id: (u64, u64),
    name: OsString,
    /// Every member opened by [`Family::read_member`], kept open until the family is dropped.
    kept: RefCell<Vec<File>>,
}

impl Family {
    /// Holds the directory of the database at `path`.
    pub(super) fn open(path: &Path) -> io::Result<Family> {
        let (Some(dir_path), Some(name)) = (path.parent(), path.file_name()) else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the database's path names no file in a directory",
            ));
        };
        let dir_path = if dir_path.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir_path
        };
        let dir = nix::fcntl::open(
            dir_path,
            OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )?;
        let meta = File::from(dir.try_clone()?).metadata()?;
        Ok(Family {
            dir,
            dir_path: dir_path.to_path_buf(),
            dir_id: (meta.dev(), meta.ino()),
            name: name.to_owned(),
            kept: RefCell::new(Vec::new()),
        })
    }

    /// Reads the member `suffix` (a link at its name is refused, a FIFO never blocks) with
    /// `read`; `None` if it does not exist. Its descriptor stays open as long as the family:
    /// closing it would drop the locks SQLite holds on the same file.
    pub(super) fn read_member<T>(
        &self,
        suffix: &str,
        read: impl FnOnce(&File) -> io::Result<T>,
    ) -> Result<Option<T>, DatabaseCaptureError> {
        self.try_read_member(suffix, read).map_err(|e| {
            if e.kind() == io::ErrorKind::PermissionDenied {
                self.unreadable(suffix, e.to_string())
            } else {
                DatabaseCaptureError::Wal(e)
            }
        })
    }

    /// The member `suffix` exists but this process may not read it: the app may be creating
    /// it (an app running as root creates the WAL and wal-index, then gives them to the
    /// database's owner), or the store's permissions leave it out.
    pub(super) fn unreadable(&self, suffix: &str, why: String) -> DatabaseCaptureError {
        DatabaseCaptureError::FamilyUnreadable {
            path: self.shown(suffix),
            why,
        }
    }

    fn try_read_member<T>(
        &self,
        suffix: &str,
        read: impl FnOnce(&File) -> io::Result<T>,
    ) -> io::Result<Option<T>> {
        let opened = nix::fcntl::openat(
            &self.dir,
            self.member(suffix).as_os_str(),
            OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
            Mode::empty(),
        );
        let file = match opened {
            Ok(fd) => File::from(fd),
            Err(nix::errno::Errno::ENOENT) => return Ok(None),
            Err(e) => {
                let path = self.dir_path.join(self.member(suffix));
                return Err(super::wal::not_in_store(&path, io::Error::from(e)));
            }
        };
        let result = read(&file);
        self.kept.borrow_mut().push(file);
        result.map(Some)
    }

    fn member(&self, suffix: &str) -> OsString {
        let mut name = self.name.clone();
        name.push(suffix);
        name
    }

    /// The `stat` of the member `suffix` ("" for the database) itself: a link is not
    /// followed.
    pub(super) fn stat(&self, suffix: &str) -> io::Result<Metadata> {
        let fd = nix::fcntl::openat(
            &self.dir,
            self.member(suffix).as_os_str(),
            OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )?;
        File::from(fd).metadata()
    }

    /// The database must be a regular file; its WAL, wal-index and journal regular files or
    /// absent.
    pub(super) fn check(&self) -> Result<(), DatabaseCaptureError> {
        let database = [("", "the database")];
        for (at, (suffix, what)) in database.iter().chain(MEMBERS.iter()).enumerate() {
            let meta = match self.stat(suffix) {
                Ok(meta) => meta,
                Err(e) if e.kind() == io::ErrorKind::NotFound && at > 0 => continue,
                Err(source) => {
                    return Err(DatabaseCaptureError::Stat {
                        path: self.shown(suffix),
                        source,
                    });
                }
            };
            if !meta.file_type().is_file() {
                return Err(DatabaseCaptureError::NotInStore {
                    what,
                    path: self.shown(suffix),
                    found: self.describe(suffix, &meta),
                    advice: if at == 0 {
                        DATABASE_ADVICE
                    } else {
                        MEMBER_ADVICE
                    },
                });
            }
        }
        Ok(())
    }

    /// What SQLite's failure to open the database means: a link planted since the check is
    /// named as such.
    pub(super) fn open_error(&self, source: rusqlite::Error) -> DatabaseCaptureError {
        let symlink = source.sqlite_error().is_some_and(|e| {
            e.extended_code == rusqlite::ffi::SQLITE_CANTOPEN_SYMLINK
                || e.extended_code == rusqlite::ffi::SQLITE_CANTOPEN
                    && self.stat("").is_ok_and(|m| m.file_type().is_symlink())
        });
        if symlink {
            return DatabaseCaptureError::NotInStore {
                what: "the database",
                path: self.shown(""),
                found: "reached through a symbolic link".into(),
                advice: DATABASE_ADVICE,
            };
        }
        DatabaseCaptureError::Open {
            path: self.shown(""),
            source,
        }
    }

    /// Whether the directory's path still leads to the directory held.
    pub(super) fn still_at_path(&self) -> bool {
        std::fs::symlink_metadata(&self.dir_path).is_ok_and(|m| (m.dev(), m.ino()) == self.dir_id)
    }

    fn shown(&self, suffix: &str) -> String {
        self.dir_path
            .join(self.member(suffix))
            .display()
            .to_string()
    }

    fn describe(&self, suffix: &str, meta: &Metadata) -> String {
        let kind = meta.file_type();
        if kind.is_symlink() {
            let to = nix::fcntl::readlinkat(&self.dir, self.member(suffix).as_os_str())
                .map(|to| PathBuf::from(to).display().to_string())
                .unwrap_or_else(|_| "somewhere".into());
            format!("a symbolic link to {to}")
        } else if kind.is_dir() {
            "a directory".into()
        } else if kind.is_fifo() {
            "a FIFO".into()
        } else if kind.is_socket() {
            "a socket".into()
        } else if kind.is_block_device() || kind.is_char_device() {
            "a device".into()
        } else {
            "not a regular file".into()
        }
    }
}
