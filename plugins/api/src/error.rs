//! What a provider call can fail with: a kind the host can act on, and a message for people.

use std::fmt;
use std::io;
use std::path::Path;
use std::time::Duration;

use crate::abi;

/// What went wrong, as far as the host needs to know to decide what to do next.
///
/// Each kind travels over the ABI as one status code. New kinds may be added (with new status
/// codes) in later ABI versions, so match with a wildcard arm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The object does not exist.
    NotFound,
    /// Retrying later may succeed: a timeout, a dropped connection, a busy server. The error
    /// may say how long to wait first: [`ProviderError::retry_after`].
    Transient,
    /// The storage refused the credentials; a person has to fix them.
    Auth,
    /// The storage is full or over its quota; a person has to make room.
    Quota,
    /// Retrying will not help: a bug, a corrupt object, a missing permission.
    Permanent,
    /// The options given to `open` are wrong; the message says which one.
    InvalidConfig,
}

impl ErrorKind {
    /// Whether retrying the same call may succeed.
    pub fn is_transient(self) -> bool {
        self == Self::Transient
    }

    /// The ABI status code for this kind.
    pub(crate) fn status(self) -> i32 {
        match self {
            Self::NotFound => abi::STATUS_NOT_FOUND,
            Self::Transient => abi::STATUS_TRANSIENT,
            Self::Auth => abi::STATUS_AUTH,
            Self::Quota => abi::STATUS_QUOTA,
            Self::Permanent => abi::STATUS_PERMANENT,
            Self::InvalidConfig => abi::STATUS_INVALID_CONFIG,
        }
    }

    /// The kind for a non-zero ABI status code, or `None` for `STATUS_OK` and unknown codes.
    #[cfg_attr(not(feature = "host"), allow(dead_code))]
    pub(crate) fn from_status(status: i32) -> Option<Self> {
        match status {
            abi::STATUS_NOT_FOUND => Some(Self::NotFound),
            abi::STATUS_TRANSIENT => Some(Self::Transient),
            abi::STATUS_AUTH => Some(Self::Auth),
            abi::STATUS_QUOTA => Some(Self::Quota),
            abi::STATUS_PERMANENT => Some(Self::Permanent),
            abi::STATUS_INVALID_CONFIG => Some(Self::InvalidConfig),
            _ => None,
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NotFound => "not found",
            Self::Transient => "transient failure",
            Self::Auth => "credentials refused",
            Self::Quota => "storage full",
            Self::Permanent => "permanent failure",
            Self::InvalidConfig => "invalid configuration",
        })
    }
}

/// A failed provider call: its [`ErrorKind`], a message that names what is wrong, and for a
/// transient error, optionally, how long to wait before retrying.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ProviderError {
    kind: ErrorKind,
    message: String,
    retry_after: Option<Duration>,
}

impl ProviderError {
    /// An error of any kind.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            retry_after: None,
        }
    }

    /// Advises the host to wait `delay` before it retries: what a server's `Retry-After` or a
    /// rate limit's reset time says. Only a [`Transient`](ErrorKind::Transient) error carries
    /// it; on any other kind this does nothing.
    ///
    /// The delay crosses the ABI in whole milliseconds, so it is rounded up to one (and capped
    /// at `u64::MAX` milliseconds); a zero delay is no advice, as if this were not called.
    pub fn with_retry_after(mut self, delay: Duration) -> Self {
        if self.kind == ErrorKind::Transient {
            self.retry_after = duration_from_ms(ms_from_duration(delay));
        }
        self
    }

    /// [`ErrorKind::NotFound`].
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }

    /// [`ErrorKind::Transient`].
    pub fn transient(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Transient, message)
    }

    /// [`ErrorKind::Auth`].
    pub fn auth(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Auth, message)
    }

    /// [`ErrorKind::Quota`].
    pub fn quota(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Quota, message)
    }

    /// [`ErrorKind::Permanent`].
    pub fn permanent(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Permanent, message)
    }

    /// [`ErrorKind::InvalidConfig`].
    pub fn invalid_config(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidConfig, message)
    }

    /// Classifies a failed file-system operation `op` ("write", "rename", ...) on `path`.
    pub fn from_io(op: &str, path: &Path, err: io::Error) -> Self {
        let path = path.display();
        match err.kind() {
            io::ErrorKind::NotFound => Self::not_found(format!("{op} {path}: {err}")),
            io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded => Self::quota(format!(
                "{op} {path}: {err}: free some space or raise the quota on that file system"
            )),
            io::ErrorKind::PermissionDenied => Self::permanent(format!(
                "{op} {path}: {err}: check the permissions of {path} and its parent \
                 directories for the user sealbackd runs as"
            )),
            io::ErrorKind::ReadOnlyFilesystem => Self::permanent(format!(
                "{op} {path}: {err}: the file system is mounted read-only"
            )),
            io::ErrorKind::Interrupted | io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => {
                Self::transient(format!("{op} {path}: {err}"))
            }
            _ => Self::permanent(format!("{op} {path}: {err}")),
        }
    }

    /// What went wrong, for the host to decide what to do.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The message for people.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// How long the provider advises waiting before a retry; `None` when it gave no advice,
    /// and always for errors that are not [`Transient`](ErrorKind::Transient).
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }

    /// The retry-after as the ABI's `retry_after_ms`: 0 for none.
    pub(crate) fn retry_after_ms(&self) -> u64 {
        self.retry_after.map_or(0, ms_from_duration)
    }
}

/// Whole milliseconds, rounded up, saturating.
fn ms_from_duration(delay: Duration) -> u64 {
    let ms = delay.as_nanos().div_ceil(1_000_000);
    u64::try_from(ms).unwrap_or(u64::MAX)
}

/// The ABI's `retry_after_ms` as a delay: 0 is none.
#[cfg_attr(not(feature = "host"), allow(dead_code))]
pub(crate) fn duration_from_ms(ms: u64) -> Option<Duration> {
    (ms > 0).then(|| Duration::from_millis(ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_round_trips_through_its_status() {
        for kind in [
            ErrorKind::NotFound,
            ErrorKind::Transient,
            ErrorKind::Auth,
            ErrorKind::Quota,
            ErrorKind::Permanent,
            ErrorKind::InvalidConfig,
        ] {
            assert_eq!(ErrorKind::from_status(kind.status()), Some(kind));
        }
        assert_eq!(ErrorKind::from_status(abi::STATUS_OK), None);
        assert_eq!(ErrorKind::from_status(7), None);
    }

    #[test]
    fn only_transient_errors_carry_a_retry_after() {
        let err = ProviderError::transient("busy").with_retry_after(Duration::from_secs(30));
        assert_eq!(err.retry_after(), Some(Duration::from_secs(30)));
        assert_eq!(err.retry_after_ms(), 30_000);
        let err = ProviderError::quota("full").with_retry_after(Duration::from_secs(30));
        assert_eq!(err.retry_after(), None);
        assert_eq!(err.retry_after_ms(), 0);
        assert_eq!(ProviderError::transient("x").retry_after(), None);
    }

    #[test]
    fn a_retry_after_is_whole_milliseconds_rounded_up() {
        let after = |delay| ProviderError::transient("x").with_retry_after(delay);
        assert_eq!(
            after(Duration::from_micros(1)).retry_after(),
            Some(Duration::from_millis(1))
        );
        assert_eq!(
            after(Duration::from_micros(2_500)).retry_after(),
            Some(Duration::from_millis(3))
        );
        assert_eq!(after(Duration::ZERO).retry_after(), None);
        assert_eq!(after(Duration::MAX).retry_after_ms(), u64::MAX);
    }

    #[test]
    fn io_errors_are_classified_by_what_the_host_can_do_about_them() {
        let path = Path::new("/mnt/backup/x");
        let cases = [
            (io::ErrorKind::NotFound, ErrorKind::NotFound),
            (io::ErrorKind::StorageFull, ErrorKind::Quota),
            (io::ErrorKind::QuotaExceeded, ErrorKind::Quota),
            (io::ErrorKind::PermissionDenied, ErrorKind::Permanent),
            (io::ErrorKind::Interrupted, ErrorKind::Transient),
            (io::ErrorKind::TimedOut, ErrorKind::Transient),
            (io::ErrorKind::WouldBlock, ErrorKind::Transient),
            (io::ErrorKind::InvalidData, ErrorKind::Permanent),
        ];
        for (io_kind, expected) in cases {
            let err = ProviderError::from_io("write", path, io::Error::from(io_kind));
            assert_eq!(err.kind(), expected, "{io_kind:?}");
            assert!(err.message().starts_with("write /mnt/backup/x: "), "{err}");
        }
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn enospc_from_the_os_is_quota() {
        let err =
            ProviderError::from_io("write", Path::new("/x"), io::Error::from_raw_os_error(28));
        assert_eq!(err.kind(), ErrorKind::Quota);
    }

    #[test]
    fn permission_denied_says_which_path_to_check() {
        let err = ProviderError::from_io(
            "create",
            Path::new("/srv/sb"),
            io::Error::from(io::ErrorKind::PermissionDenied),
        );
        assert!(
            err.message().contains("check the permissions of /srv/sb"),
            "{err}"
        );
    }
}
