//! The socket file: binding it without a moment where it is more open than asked, replacing
//! a stale one left by a daemon that died, refusing to displace a live one, and removing it
//! again when the server stops.

use std::fs::{self, DirBuilder, Permissions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use tokio::net::{UnixListener, UnixSocket};

/// Connections the kernel queues for us before `accept`.
const BACKLOG: u32 = 128;

/// Binds the control socket at `path` with permissions `mode` (normally `0o600`).
///
/// Creates the parent directory if it is missing. A socket file already at `path` is replaced
/// only if nobody answers on it (a daemon that died leaves one behind); if a daemon answers,
/// this fails with [`io::ErrorKind::AddrInUse`]. Anything else at `path` is left alone and
/// is an error. Must be called within a tokio runtime.
///
/// No window where the socket is more open than `mode`: we bind, then `chmod`, and only then
/// `listen`. Until `listen`, connecting fails (ECONNREFUSED), and permissions are checked when
/// a client connects, so nobody can connect under the umask's permissions. (Setting the mode
/// after a plain `UnixListener::bind` would not do: it listens at once, and a client that
/// connected in between would sit in the backlog until accepted. Binding in a private
/// temporary directory and renaming would do too, but leaves `local_addr` naming the
/// temporary path.)
pub fn bind(path: &Path, mode: u32) -> io::Result<UnixListener> {
    let mode = mode & 0o777;
    create_parent(path, mode)?;
    remove_if_stale(path)?;
    let context = |e: io::Error| {
        io::Error::new(
            e.kind(),
            format!("cannot create the control socket {}: {e}", path.display()),
        )
    };
    let socket = UnixSocket::new_stream().map_err(context)?;
    socket.bind(path).map_err(context)?;
    if let Err(e) = fs::set_permissions(path, Permissions::from_mode(mode)) {
        let _ = fs::remove_file(path);
        return Err(context(e));
    }
    match socket.listen(BACKLOG) {
        Ok(listener) => Ok(listener),
        Err(e) => {
            let _ = fs::remove_file(path);
            Err(context(e))
        }
    }
}

/// The control socket systemd passed (socket activation, `sealbackd.socket`), if it passed
/// one: `LISTEN_FDS` for this process (`LISTEN_PID`), its first descriptor a listening Unix
/// stream socket. It must be the one `path` names, where sealbackctl connects. Must be
/// called within a tokio runtime.
pub fn passed_by_systemd(path: &Path) -> io::Result<Option<UnixListener>> {
    let mut passed = listenfd::ListenFd::from_env();
    if passed.len() == 0 {
        return Ok(None);
    }
    let refused = |what: String| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "systemd passed {what} (LISTEN_FDS), not the control socket {}: make ListenStream= in sealbackd.socket the same path as control.socket",
                path.display()
            ),
        )
    };
    let listener = match passed.take_unix_listener(0) {
        Ok(Some(listener)) => listener,
        Ok(None) => return Ok(None),
        Err(e) => {
            return Err(refused(format!(
                "a descriptor that is no Unix stream socket ({e})"
            )));
        }
    };
    let address = listener.local_addr()?;
    if address.as_pathname() != Some(path) {
        return Err(refused(format!("a socket on {address:?}")));
    }
    listener.set_nonblocking(true)?;
    UnixListener::from_std(listener).map(Some)
}

/// Creates the socket's directory if it is missing, open to whom the socket is open: owner
/// only for `0o600`, plus search and read for the group or others the mode lets in.
fn create_parent(path: &Path, mode: u32) -> io::Result<()> {
    let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) else {
        return Ok(());
    };
    if parent.is_dir() {
        return Ok(());
    }
    let mut dir_mode = 0o700;
    if mode & 0o070 != 0 {
        dir_mode |= 0o050;
    }
    if mode & 0o007 != 0 {
        dir_mode |= 0o005;
    }
    DirBuilder::new()
        .recursive(true)
        .mode(dir_mode)
        .create(parent)
        .map_err(|e| {
            io::Error::new(
                e.kind(),
                format!(
                    "cannot create {}, the directory of the control socket: {e}",
                    parent.display()
                ),
            )
        })
}

/// Removes a socket file at `path` that no process answers on.
fn remove_if_stale(path: &Path) -> io::Result<()> {
    let metadata = match fs::symlink_metadata(path) {
        Ok(metadata) => metadata,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => {
            return Err(io::Error::new(
                e.kind(),
                format!("cannot inspect {}: {e}", path.display()),
            ));
        }
    };
    if !metadata.file_type().is_socket() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!(
                "{} exists and is not a socket; refusing to replace it with the control \
                 socket (move it away, or choose another socket path)",
                path.display()
            ),
        ));
    }
    // A Unix-socket connect is answered by the kernel as soon as the listener exists, whether
    // or not it ever calls accept, so this neither waits for nor bothers a live daemon.
    match std::os::unix::net::UnixStream::connect(path) {
        Ok(_) => Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            format!(
                "another sealbackd is running on {} (it answered a connection); stop it \
                 first, or give this one another socket path",
                path.display()
            ),
        )),
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
            tracing::info!(socket = %path.display(), "replacing a stale control socket");
            match fs::remove_file(path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io::Error::new(
                    e.kind(),
                    format!("cannot remove the stale socket {}: {e}", path.display()),
                )),
                _ => Ok(()),
            }
        }
        Err(e) => Err(io::Error::new(
            e.kind(),
            format!(
                "cannot tell whether a daemon is still running on {}: {e}",
                path.display()
            ),
        )),
    }
}

/// The socket file a listener was bound to, remembered so that the server removes it when it
/// stops, but only if it is still that file (not one a newer daemon has since bound).
pub(super) struct SocketFile {
    path: PathBuf,
    device: u64,
    inode: u64,
}

impl SocketFile {
    pub(super) fn of(listener: &UnixListener) -> Option<SocketFile> {
        let address = listener.local_addr().ok()?;
        let path = address.as_pathname()?.to_path_buf();
        let metadata = fs::symlink_metadata(&path).ok()?;
        Some(SocketFile {
            device: metadata.dev(),
            inode: metadata.ino(),
            path,
        })
    }

    pub(super) fn remove(self) {
        let unchanged = fs::symlink_metadata(&self.path)
            .is_ok_and(|m| m.dev() == self.device && m.ino() == self.inode);
        if unchanged && let Err(e) = fs::remove_file(&self.path) {
            tracing::warn!(socket = %self.path.display(), "cannot remove the control socket: {e}");
        }
    }
}
