//! borg, as a user runs it: `repokey-blake2` encryption, default lz4 compression; its
//! cache, keys and security state under the run directory (`BORG_BASE_DIR`).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use super::{Tool, below, peer_sample, version_of};
use crate::measure::{Meter, Sample};

/// Not a secret: the repository is thrown away after the run.
const PASSPHRASE: &str = "sealback-bench-not-a-secret";

pub(crate) struct Borg {
    program: PathBuf,
    version: String,
    dir: PathBuf,
    repo: PathBuf,
    store: PathBuf,
    meter: Meter,
    /// borg 1.2 extracts a named archive: the one the last backup made.
    last_archive: Option<String>,
}

impl Borg {
    pub(crate) fn new(program: PathBuf, dir: &Path, store: &Path, meter: Meter) -> Result<Borg> {
        fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        Ok(Borg {
            version: version_of(&program, &["--version"]),
            program,
            dir: dir.to_path_buf(),
            repo: dir.join("repo"),
            store: store.to_path_buf(),
            meter,
            last_archive: None,
        })
    }

    fn command(&self) -> Command {
        let mut command = Command::new(&self.program);
        command
            .env("BORG_PASSPHRASE", PASSPHRASE)
            .env("BORG_BASE_DIR", self.dir.join("base"));
        command
    }

    fn log(&self) -> PathBuf {
        self.dir.join("borg.log")
    }
}

impl Tool for Borg {
    fn name(&self) -> &'static str {
        "borg"
    }

    fn version(&self) -> &str {
        &self.version
    }

    fn repository(&self) -> &Path {
        &self.repo
    }

    fn init(&mut self) -> Result<()> {
        let mut command = self.command();
        command
            .args(["init", "--encryption=repokey-blake2"])
            .arg(&self.repo);
        self.meter.run(&command, &self.log(), "borg init")?;
        Ok(())
    }

    fn backup(&mut self, label: &str) -> Result<Sample> {
        let mut archive = self.repo.clone().into_os_string();
        archive.push(format!("::{label}"));
        let mut command = self.command();
        command.arg("create").arg(&archive).arg(&self.store);
        let timed = self.meter.run(&command, &self.log(), "borg create")?;
        self.last_archive = Some(label.to_owned());
        Ok(peer_sample(timed))
    }

    fn restore(&mut self, into: &Path) -> Result<(Sample, PathBuf)> {
        let Some(label) = &self.last_archive else {
            bail!("borg: nothing to restore, no backup was made");
        };
        let mut archive = self.repo.clone().into_os_string();
        archive.push(format!("::{label}"));
        fs::create_dir_all(into).with_context(|| format!("cannot create {}", into.display()))?;
        let mut command = self.command();
        command.arg("extract").arg(&archive).current_dir(into);
        let timed = self.meter.run(&command, &self.log(), "borg extract")?;
        Ok((peer_sample(timed), below(into, &self.store)))
    }
}
