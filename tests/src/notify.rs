//! A stand-in for systemd's notify socket: a real datagram socket whose path the daemon gets
//! as `NOTIFY_SOCKET`, and the messages (`READY=1`, `STATUS=...`, `WATCHDOG=1`, ...) it sent.

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub struct NotifySocket {
    socket: UnixDatagram,
    path: PathBuf,
}

impl NotifySocket {
    /// Binds `path`.
    pub fn bind(path: &Path) -> NotifySocket {
        let socket = UnixDatagram::bind(path)
            .unwrap_or_else(|e| panic!("bind the notify socket {}: {e}", path.display()));
        NotifySocket {
            socket,
            path: path.to_owned(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The next message, waiting at most `timeout`; `None` if none came.
    pub fn next(&self, timeout: Duration) -> Option<String> {
        self.socket
            .set_read_timeout(Some(timeout.max(Duration::from_millis(1))))
            .expect("set the notify socket's timeout");
        let mut buf = vec![0u8; 4096];
        match self.socket.recv(&mut buf) {
            Ok(n) => Some(String::from_utf8_lossy(&buf[..n]).into_owned()),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                None
            }
            Err(e) => panic!("read the notify socket: {e}"),
        }
    }

    /// Reads messages until one has the line `line` (or a line starting with it, for a
    /// `KEY=` prefix), at most for `timeout`; returns it and the messages read before it.
    pub fn wait_for(&self, line: &str, timeout: Duration) -> (Option<String>, Vec<String>) {
        let deadline = Instant::now() + timeout;
        let mut before = Vec::new();
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.next(left) {
                Some(message) if has_line(&message, line) => return (Some(message), before),
                Some(message) => before.push(message),
                None => break,
            }
        }
        (None, before)
    }

    /// Every message that arrives within `window`.
    pub fn collect(&self, window: Duration) -> Vec<String> {
        let deadline = Instant::now() + window;
        let mut messages = Vec::new();
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            if let Some(message) = self.next(left) {
                messages.push(message);
            }
        }
        messages
    }
}

/// Whether `message` has a line that is `line` or, for `line` ending in `=`, starts with it.
pub fn has_line(message: &str, line: &str) -> bool {
    message
        .lines()
        .any(|l| l == line || (line.ends_with('=') && l.starts_with(line)))
}
