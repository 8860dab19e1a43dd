//! One daemon per `state.dir`: two would write the same catalog and key files and corrupt
//! them. The running daemon holds an exclusive `flock` on `state.dir/daemon.lock`; the kernel
//! drops it when the process ends however it ends, so a crash never leaves a stale lock (the
//! file stays, unlocked, and the next daemon takes it).

use std::fs::File;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

/// Held for the daemon's lifetime; dropping it (or the process ending) releases the lock.
#[derive(Debug)]
pub struct StateLock {
    _held: Flock<File>,
}

#[derive(Debug, thiserror::Error)]
pub enum StateLockError {
    #[error(
        "another sealbackd is running on state.dir {} (it holds {}); stop it first, or give this one another state.dir",
        .dir.display(),
        .file.display()
    )]
    Held { dir: PathBuf, file: PathBuf },
    #[error("cannot lock {}: {source}", .file.display())]
    Io {
        file: PathBuf,
        source: std::io::Error,
    },
}

impl StateLock {
    /// Takes the lock of `state_dir`, without waiting: a daemon already holding it is an
    /// error that says so.
    pub fn acquire(state_dir: &Path) -> Result<StateLock, StateLockError> {
        let file_path = state_dir.join("daemon.lock");
        let io = |source: std::io::Error| StateLockError::Io {
            file: file_path.clone(),
            source,
        };
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&file_path)
            .map_err(io)?;
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(held) => Ok(StateLock { _held: held }),
            Err((_, Errno::EWOULDBLOCK)) => Err(StateLockError::Held {
                dir: state_dir.to_owned(),
                file: file_path.clone(),
            }),
            Err((_, errno)) => Err(io(errno.into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_until_the_first_lets_go() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = StateLock::acquire(dir.path()).expect("the first daemon");
        let second = StateLock::acquire(dir.path()).expect_err("a second daemon");
        assert!(matches!(second, StateLockError::Held { .. }), "{second}");
        assert!(second.to_string().contains("another sealbackd"), "{second}");
        drop(first);
        StateLock::acquire(dir.path()).expect("free again once the first has gone");
    }
}
