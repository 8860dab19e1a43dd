//! Messages first, while the media are restored: until the restored database has been
//! checked, only some of the restore threads run.
//!
//! `PRAGMA integrity_check` is one thread of CPU work (about 1 s for the medium store's
//! 192 MB database, 8 s for a 900 MB one); with every restore thread competing for the
//! cores it took 4 s on the medium store and the database was ready only just before the
//! media. Holding half the threads back until it is done gives it a core, and keeps their
//! packs out of memory while the check's page cache is in it.

use std::sync::{Condvar, Mutex};

/// Closed while the database is checked; threads held back wait for it to open.
#[derive(Default)]
pub(in crate::engine) struct Gate {
    open: Mutex<bool>,
    opened: Condvar,
}

impl Gate {
    /// A gate already open: nothing to wait for.
    pub(in crate::engine) fn opened() -> Gate {
        Gate {
            open: Mutex::new(true),
            opened: Condvar::new(),
        }
    }

    pub(in crate::engine) fn open(&self) {
        *self.open.lock().unwrap_or_else(|p| p.into_inner()) = true;
        self.opened.notify_all();
    }

    /// Returns once the gate is open.
    pub(in crate::engine) fn wait(&self) {
        let open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let _open = self
            .opened
            .wait_while(open, |open| !*open)
            .unwrap_or_else(|p| p.into_inner());
    }
}

/// Opens its gate when dropped: however the check ends (a panic too), no thread waits
/// forever.
pub(in crate::engine) struct Opens<'g>(pub(in crate::engine) &'g Gate);

impl Drop for Opens<'_> {
    fn drop(&mut self) {
        self.0.open();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waiters_go_on_once_the_check_ends_however_it_ends() {
        Gate::opened().wait();
        let gate = Gate::default();
        std::thread::scope(|scope| {
            let waiter = scope.spawn(|| gate.wait());
            std::thread::sleep(std::time::Duration::from_millis(20));
            assert!(!waiter.is_finished(), "held back while the gate is closed");
            let check = scope.spawn(|| {
                let _opens = Opens(&gate);
                panic!("the check panicked");
            });
            assert!(check.join().is_err());
            waiter.join().expect("the waiter went on");
        });
    }
}
