//! restic, as a user runs it: one repository on local disk, its default cache (placed under
//! the run directory with `--cache-dir`), default compression.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};

use super::{Tool, below, peer_sample, version_of};
use crate::measure::{Meter, Sample};

/// The message database's name in the benchmark's stores.
const DATABASE: &str = "msgstore.db";

/// Not a secret: the repository is thrown away after the run.
const PASSWORD: &str = "sealback-bench-not-a-secret";

pub(crate) struct Restic {
    program: PathBuf,
    version: String,
    dir: PathBuf,
    repo: PathBuf,
    store: PathBuf,
    meter: Meter,
}

impl Restic {
    pub(crate) fn new(program: PathBuf, dir: &Path, store: &Path, meter: Meter) -> Result<Restic> {
        fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        Ok(Restic {
            version: version_of(&program, &["version"]),
            program,
            dir: dir.to_path_buf(),
            repo: dir.join("repo"),
            store: store.to_path_buf(),
            meter,
        })
    }

    fn command(&self) -> Command {
        let mut command = Command::new(&self.program);
        command
            .arg("--repo")
            .arg(&self.repo)
            .arg("--cache-dir")
            .arg(self.dir.join("cache"))
            .env("RESTIC_PASSWORD", PASSWORD);
        command
    }

    fn log(&self) -> PathBuf {
        self.dir.join("restic.log")
    }
}

impl Tool for Restic {
    fn name(&self) -> &'static str {
        "restic"
    }

    fn version(&self) -> &str {
        &self.version
    }

    fn repository(&self) -> &Path {
        &self.repo
    }

    fn init(&mut self) -> Result<()> {
        let mut command = self.command();
        command.arg("init");
        self.meter.run(&command, &self.log(), "restic init")?;
        Ok(())
    }

    fn backup(&mut self, label: &str) -> Result<Sample> {
        let mut command = self.command();
        // A fixed host, so that every backup finds the previous one as its parent.
        command
            .args(["backup", "--host", "sealback-bench", "--tag", label])
            .arg(&self.store);
        let timed = self.meter.run(&command, &self.log(), "restic backup")?;
        Ok(peer_sample(timed))
    }

    fn prune(&mut self) -> Result<Option<Sample>> {
        let mut command = self.command();
        command.args([
            "forget",
            "--host",
            "sealback-bench",
            "--keep-last",
            "1",
            "--prune",
        ]);
        let timed = self
            .meter
            .run(&command, &self.log(), "restic forget --prune")?;
        Ok(Some(peer_sample(timed)))
    }

    fn restore(&mut self, into: &Path) -> Result<(Sample, PathBuf)> {
        let mut command = self.command();
        command.args(["restore", "latest", "--target"]).arg(into);
        let timed = self.meter.run(&command, &self.log(), "restic restore")?;
        Ok((peer_sample(timed), below(into, &self.store)))
    }

    fn restore_database(&mut self, into: &Path) -> Result<Option<f64>> {
        // restic keeps the store's absolute path: its database is `<store>/msgstore.db`.
        let database = self.store.join(DATABASE);
        let mut command = self.command();
        command
            .args(["restore", "latest", "--target"])
            .arg(into)
            .arg("--include")
            .arg(&database);
        let timed = self
            .meter
            .run(&command, &self.log(), "restic restore --include")?;
        let restored = below(into, &self.store).join(DATABASE);
        anyhow::ensure!(
            restored.is_file(),
            "restic restore --include {} restored no {}",
            database.display(),
            restored.display()
        );
        Ok(Some(timed.wall.as_secs_f64()))
    }
}
