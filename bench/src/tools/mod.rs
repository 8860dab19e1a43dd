//! The tools under test, behind one trait: sealback and its peers.

use std::path::{Path, PathBuf};

use anyhow::Result;

use crate::measure::Sample;

mod borg;
mod restic;
mod sealback;

pub(crate) use borg::Borg;
pub(crate) use restic::Restic;
pub(crate) use sealback::{Sealback, SealbackBinaries};

/// A backup tool, set up for one run: its repository and any state live in a directory of
/// its own under the run directory, and it backs up one store (fixed at construction).
pub(crate) trait Tool {
    /// Short lowercase name, used in tables and file names.
    fn name(&self) -> &'static str;

    /// The version line the tool prints about itself.
    fn version(&self) -> &str;

    /// The directory its backups land in; its growth is the "bytes added" of a backup.
    fn repository(&self) -> &Path;

    /// Creates the empty repository and whatever else the first backup needs (a key).
    /// Called once, before any backup; not measured.
    fn init(&mut self) -> Result<()>;

    /// Backs up the store as it is now, measured; `label` names the snapshot where the tool
    /// takes a name. Fields the tool cannot measure stay `None`; `bytes_written` is filled
    /// in by the caller from `repository()`.
    fn backup(&mut self, label: &str) -> Result<Sample>;

    /// Restores the latest snapshot into `into` (not yet existing), measured. Returns the
    /// measurement and the directory holding the restored store's top level (tools that
    /// restore absolute paths put it below `into`).
    fn restore(&mut self, into: &Path) -> Result<(Sample, PathBuf)>;

    /// Restores only the database of the latest snapshot into `into` (not yet existing):
    /// the seconds it took, for the "time to messages" of a tool whose full restore cannot
    /// say when its database was ready; `None` where not compared.
    fn restore_database(&mut self, into: &Path) -> Result<Option<f64>> {
        let _ = into;
        Ok(None)
    }

    /// Keeps the latest snapshot only and reclaims the rest, measured; `None` if the tool
    /// is not compared there.
    fn prune(&mut self) -> Result<Option<Sample>> {
        Ok(None)
    }

    /// sealback itself, for the phases only it takes part in.
    fn as_sealback(&self) -> Option<&Sealback> {
        None
    }
}

/// The first `name` on `PATH` that is an executable file.
pub(crate) fn on_path(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| {
            candidate
                .metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// The name and version a `--version`-like command prints first, or why it printed nothing.
pub(crate) fn version_of(program: &Path, args: &[&str]) -> String {
    match std::process::Command::new(program).args(args).output() {
        Ok(output) => {
            let text = String::from_utf8_lossy(&output.stdout);
            // "restic 0.14.0 compiled with go1.19.8 on linux/amd64": name and version.
            let words: Vec<&str> = text.split_whitespace().take(2).collect();
            let line = words.join(" ");
            if line.is_empty() {
                format!("{} (version unknown)", program.display())
            } else {
                line.to_owned()
            }
        }
        Err(e) => format!("{} (cannot run it: {e})", program.display()),
    }
}

/// Where a tool that records absolute paths (restic, borg) puts `store` when restoring
/// into `into`.
pub(crate) fn below(into: &Path, store: &Path) -> PathBuf {
    into.join(store.strip_prefix("/").unwrap_or(store))
}

/// A peer's sample from one measured command.
pub(crate) fn peer_sample(timed: crate::measure::Timed) -> Sample {
    Sample {
        wall_s: timed.wall.as_secs_f64(),
        cpu_s: timed.cpu_s,
        bytes_read: timed.rchar,
        rchar: timed.rchar,
        peak_rss: timed.peak_rss,
        ..Sample::default()
    }
}
