//! systemd's service notifications (sd_notify(3)) for `Type=notify` units: `READY=1` when
//! the program serves, `STATUS=` lines for `systemctl status`, `STOPPING=1` when it begins to
//! stop. Without `NOTIFY_SOCKET` (not under systemd) every call does nothing; a socket that
//! refuses a message is logged, never fatal.

pub use sd_notify::NotifyState;

/// Sends `states` to systemd, if it listens.
pub fn send(states: &[NotifyState]) {
    if let Err(err) = sd_notify::notify(states) {
        tracing::warn!(error = %err, "cannot notify systemd (NOTIFY_SOCKET)");
    }
}

/// The program serves: `READY=1` with `status`.
pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// The program is stopping (SIGTERM or SIGINT).
pub fn stopping() {
    send(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
}

/// `STATUS=` alone.
pub fn status(text: &str) {
    send(&[NotifyState::Status(text)]);
}
