//! Process limits a service raises for itself.

use nix::sys::resource::{Resource, getrlimit, setrlimit};

/// Raises this process's soft limit of open files to its hard limit, and returns the hard
/// limit (`None` if it cannot be read). systemd starts services with a soft limit of 1,024
/// (hard 524,288): a restore holds one descriptor per directory of the snapshot, and the
/// vault one per connection, both of which can pass it. A failure to raise it is logged.
pub fn raise_open_files() -> Option<u64> {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).ok()?;
    if soft < hard
        && let Err(e) = setrlimit(Resource::RLIMIT_NOFILE, hard, hard)
    {
        tracing::warn!(soft, hard, error = %e, "cannot raise the limit of open files");
    }
    Some(hard)
}
