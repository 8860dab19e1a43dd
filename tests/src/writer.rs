//! The app, writing while backups run: the `store_writer` program in a process of its own
//! (its own SQLite connection and locks, as the real app has). It runs until its standard
//! input closes; [`Writer::stop`] closes it and reads how many messages were committed.

use std::io::Read;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::Duration;

use crate::store::MessageStore;
use crate::{binaries, wait};

const STOP_DEADLINE: Duration = Duration::from_secs(20);

/// How the writer writes.
#[derive(Debug, Clone, Copy)]
pub struct Pace {
    /// Messages per second; `None`: as fast as it can.
    pub per_second: Option<u32>,
    /// The pause between the two halves of an image, so that backups catch images
    /// half-written and being written.
    pub media_pause_ms: u64,
}

pub struct Writer {
    child: Child,
    stdin: Option<ChildStdin>,
}

impl Writer {
    /// Starts writing messages into `store`, after the ones it holds.
    pub fn start(store: &MessageStore, pace: Pace) -> Writer {
        let mut command = Command::new(binaries::store_writer());
        command
            .arg("--store")
            .arg(store.dir())
            .arg("--media-pause-ms")
            .arg(pace.media_pause_ms.to_string());
        if let Some(rate) = pace.per_second {
            command.arg("--rate").arg(rate.to_string());
        }
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start store_writer");
        let stdin = child.stdin.take();
        Writer { child, stdin }
    }

    /// Panics, with the writer's stderr, if it has exited.
    pub fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!(
                "store_writer exited early with {status}: {}",
                self.read_stderr()
            );
        }
    }

    /// Tells the writer to stop after its current message; returns the last message it
    /// committed.
    pub fn stop(mut self) -> i64 {
        drop(self.stdin.take());
        let status = wait::poll(STOP_DEADLINE, || self.child.try_wait().ok().flatten())
            .unwrap_or_else(|| panic!("store_writer did not stop within {STOP_DEADLINE:?}"));
        let mut stdout = String::new();
        if let Some(mut out) = self.child.stdout.take() {
            let _ = out.read_to_string(&mut stdout);
        }
        assert!(
            status.success(),
            "store_writer failed with {status}: {}",
            self.read_stderr()
        );
        stdout.trim().parse().unwrap_or_else(|_| {
            panic!("store_writer printed {stdout:?}, not the number of its last message")
        })
    }

    fn read_stderr(&mut self) -> String {
        let mut stderr = String::new();
        if let Some(mut err) = self.child.stderr.take() {
            let _ = err.read_to_string(&mut stderr);
        }
        stderr
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
