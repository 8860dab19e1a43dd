//! What a process holding the backup key does to itself before anything else: no core dumps
//! (a core holds K, and a crash report uploads it), no tracing by other processes of its user,
//! and files created private by default.

use std::io;

/// Makes this process undumpable: the core-size limit drops to 0 (soft and hard, so a child
/// cannot raise it again) and the kernel's dumpable flag is cleared, which also stops a
/// crash handler reached through `core_pattern`'s pipe and `ptrace` by other processes of
/// the same user.
pub fn no_core_dumps() -> io::Result<()> {
    use nix::sys::resource::{Resource, setrlimit};
    setrlimit(Resource::RLIMIT_CORE, 0, 0).map_err(io::Error::from)?;
    nix::sys::prctl::set_dumpable(false).map_err(io::Error::from)
}

/// Files and directories the daemon creates are its own alone unless it says otherwise
/// (the catalog, the spool, state files): a umask of 0077. Restore and the control socket
/// set their modes explicitly.
pub fn private_files() {
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_that_holds_the_key_cannot_dump_core() {
        no_core_dumps().expect("no core dumps");
        assert!(!nix::sys::prctl::get_dumpable().expect("dumpable"));
        let limits = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_CORE)
            .expect("core limit");
        assert_eq!(limits, (0, 0));
    }
}
