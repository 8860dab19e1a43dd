//! sealback: `sealbackd` with the local plugin, driven by `sealbackctl`.
//!
//! A fresh daemon is started for every phase, so that its high-water mark (VmHWM) belongs
//! to that phase alone; its VmRSS once it answers is the idle figure. Wall time is the
//! `sealbackctl backup --wait` (or `restore`) round trip; bytes read come from the daemon's
//! own report, rchar and CPU from `/proc/<daemon>`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde::Deserialize;

use super::{Tool, version_of};
use crate::measure::{self, Sample};

/// How long a daemon may take to answer after start, and to stop after SIGTERM.
const START_TIMEOUT: Duration = Duration::from_secs(30);
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// The programs a sealback run needs, all from one build.
#[derive(Debug, Clone)]
pub(crate) struct SealbackBinaries {
    pub daemon: PathBuf,
    pub ctl: PathBuf,
    /// Holds libsealback_local.so.
    pub plugins: PathBuf,
}

impl SealbackBinaries {
    pub(crate) fn in_dir(dir: &Path) -> Result<SealbackBinaries> {
        let binaries = SealbackBinaries {
            daemon: dir.join("sealbackd"),
            ctl: dir.join("sealbackctl"),
            plugins: dir.to_path_buf(),
        };
        for needed in [
            &binaries.daemon,
            &binaries.ctl,
            &dir.join("libsealback_local.so"),
        ] {
            if !needed.is_file() {
                bail!(
                    "{} is missing: build with `cargo build --release -p sealback-daemon \
                     -p sealback-local -p sealback-bench`, or pass --bin-dir",
                    needed.display()
                );
            }
        }
        Ok(binaries)
    }
}

pub(crate) struct Sealback {
    binaries: SealbackBinaries,
    version: String,
    dir: PathBuf,
    repo: PathBuf,
    config: PathBuf,
    socket: PathBuf,
    store: PathBuf,
}

/// The fields of sealbackctl's BackupReport the benchmark shows.
#[derive(Debug, Deserialize)]
struct BackupReport {
    bytes_read: u64,
    #[serde(default)]
    files: u64,
    #[serde(default)]
    files_read: u64,
    #[serde(default)]
    db_pages: u64,
    #[serde(default)]
    chunks_new: u64,
    #[serde(default)]
    chunks_reused: u64,
    #[serde(default)]
    packs_written: u64,
    #[serde(default)]
    duration_ms: u64,
    #[serde(default)]
    db_read: Option<DbRead>,
    /// The ids the backup proved stored before writing its snapshot, and the time it took.
    #[serde(default)]
    chunks_proved: u64,
    #[serde(default)]
    proof_us: u64,
}

#[derive(Debug, Deserialize)]
struct DbRead {
    delta: bool,
    why_full: Option<String>,
    bytes: u64,
}

#[derive(Debug, Deserialize)]
struct RestoreReport {
    #[serde(default)]
    files: u64,
    #[serde(default)]
    bytes: u64,
    #[serde(default)]
    duration_ms: u64,
    /// When the database was in place and passed `integrity_check`.
    #[serde(default)]
    database: Option<RestoredDatabase>,
}

#[derive(Debug, Deserialize)]
struct RestoredDatabase {
    ready_ms: u64,
}

impl Sealback {
    pub(crate) fn new(binaries: SealbackBinaries, dir: &Path, store: &Path) -> Result<Sealback> {
        fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let sealback = Sealback {
            version: version_of(&binaries.daemon, &["--version"]),
            dir: dir.to_path_buf(),
            repo: dir.join("repo"),
            config: dir.join("sealback.toml"),
            socket: dir.join("control.sock"),
            store: store.to_path_buf(),
            binaries,
        };
        // sun_path holds 108 bytes.
        if sealback.socket.as_os_str().len() > 100 {
            bail!(
                "the control socket path {} is too long for a Unix socket: use a shorter --work",
                sealback.socket.display()
            );
        }
        let config = sealback.config_text("mode = \"manual\"")?;
        fs::write(&sealback.config, config)
            .with_context(|| format!("cannot write {}", sealback.config.display()))?;
        Ok(sealback)
    }

    /// The daemon's configuration, with `schedule` as the body of its `[schedule]` table.
    fn config_text(&self, schedule: &str) -> Result<String> {
        Ok(format!(
            "[store]\npath = {}\n[state]\ndir = {}\n[control]\nsocket = {}\n\
             [plugins]\ndir = {}\n[schedule]\n{schedule}\n\
             [retention]\nkeep_last = 1\nkeep_hourly = 0\nkeep_daily = 0\nkeep_weekly = 0\n\
             keep_monthly = 0\nprune = \"never\"\n\
             [[targets]]\nname = \"disk\"\nplugin = \"local\"\n[targets.options]\npath = {}\n",
            toml_string(&self.store)?,
            toml_string(&self.dir.join("state"))?,
            toml_string(&self.socket)?,
            toml_string(&self.binaries.plugins)?,
            toml_string(&self.repo)?,
        ))
    }

    fn log(&self) -> PathBuf {
        self.dir.join("sealbackd.log")
    }

    /// Starts a daemon and waits until it answers `status`.
    fn start(&self) -> Result<Daemon> {
        self.start_with(&self.config)
    }

    /// Starts a daemon on `config` and waits until it answers `status`.
    fn start_with(&self, config: &Path) -> Result<Daemon> {
        let out = measure::open_log(&self.log(), "sealbackd start")?;
        let err = out.try_clone().context("cannot duplicate the log handle")?;
        let child = Command::new(&self.binaries.daemon)
            .arg("--config")
            .arg(config)
            .env("NO_COLOR", "1")
            .envs(unit_environment())
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .with_context(|| format!("cannot start {}", self.binaries.daemon.display()))?;
        let mut daemon = Daemon { child: Some(child) };
        let started = Instant::now();
        loop {
            if let Some(status) = daemon.exited()? {
                bail!(
                    "sealbackd exited at start-up ({status})\n--- last lines of {} ---\n{}",
                    self.log().display(),
                    measure::tail(&self.log(), 15)
                );
            }
            if self.socket.exists() && self.ctl(&["status"]).is_ok() {
                return Ok(daemon);
            }
            if started.elapsed() > START_TIMEOUT {
                bail!(
                    "sealbackd did not answer on {} within {START_TIMEOUT:?}; see {}",
                    self.socket.display(),
                    self.log().display()
                );
            }
            sleep(Duration::from_millis(20));
        }
    }

    /// Runs `sealbackctl --json ARGS` and returns its standard output.
    fn ctl(&self, args: &[&str]) -> Result<String> {
        let output = Command::new(&self.binaries.ctl)
            .arg("--socket")
            .arg(&self.socket)
            .arg("--json")
            .args(args)
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("cannot run {}", self.binaries.ctl.display()))?;
        if !output.status.success() {
            bail!(
                "sealbackctl {} failed ({}): {}",
                args.join(" "),
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        String::from_utf8(output.stdout)
            .with_context(|| format!("sealbackctl {} printed non-UTF-8", args.join(" ")))
    }

    /// Starts a daemon, runs `args` through sealbackctl, measures, stops the daemon.
    fn measured(&self, args: &[&str]) -> Result<(Sample, String)> {
        let mut daemon = self.start()?;
        let pid = daemon.pid()?;
        let idle_rss = measure::status_bytes(pid, "VmRSS");
        let rchar_before = measure::io_field(&pid.to_string(), "rchar");
        let cpu_before = measure::cpu_seconds(pid);
        let sampler = measure::StatusSampler::start(pid);
        let started = Instant::now();
        let answer = self.ctl(args);
        let wall = started.elapsed();
        let status_peaks = sampler.finish();
        let sample = Sample {
            wall_s: wall.as_secs_f64(),
            cpu_s: measure::cpu_seconds(pid)
                .zip(cpu_before)
                .map(|(after, before)| after - before),
            rchar: measure::io_field(&pid.to_string(), "rchar")
                .zip(rchar_before)
                .map(|(after, before)| after.saturating_sub(before)),
            peak_rss: measure::status_bytes(pid, "VmHWM"),
            idle_rss,
            rss_after: measure::status_bytes(pid, "VmRSS"),
            status_peaks,
            ..Sample::default()
        };
        daemon.stop()?;
        let answer = answer.with_context(|| format!("see {}", self.log().display()))?;
        Ok((sample, answer))
    }
}

/// The fields of `sealbackctl --json status` the latency phase reads.
#[derive(Debug, Deserialize)]
struct Status {
    activity: String,
    #[serde(default)]
    pending_change: bool,
    last_backup: Option<LastBackup>,
    last_error: Option<String>,
}

#[derive(Debug, Deserialize)]
struct LastBackup {
    snapshot: String,
    time_unix_ms: i64,
}

/// How long one commit may wait for its backup before the phase gives up.
const COMMIT_TIMEOUT: Duration = Duration::from_secs(120);
/// How often the latency phase asks the daemon for its status.
const POLL_EVERY: Duration = Duration::from_millis(25);

impl Sealback {
    /// The latency phase: a daemon in `on-change` mode with `debounce` watches the store
    /// (already backed up); `commits` times, one message is committed in its own
    /// transaction, and the time until a snapshot captured after the commit is visible in
    /// the daemon's status is one latency. Commits start `spacing` apart, and never before
    /// the previous commit's backup is done, so that each gets its own backup.
    pub(crate) fn commit_latency(
        &self,
        commits: usize,
        spacing: Duration,
        debounce: Duration,
    ) -> Result<Vec<Duration>> {
        let config = self.dir.join("sealback-on-change.toml");
        let schedule = format!(
            "mode = \"on-change\"\ndebounce = \"{}ms\"",
            debounce.as_millis()
        );
        fs::write(&config, self.config_text(&schedule)?)
            .with_context(|| format!("cannot write {}", config.display()))?;
        let mut daemon = self.start_with(&config)?;
        let result = self.commits(commits, spacing, debounce);
        let stopped = daemon.stop();
        let latencies = result.with_context(|| format!("see {}", self.log().display()))?;
        stopped?;
        Ok(latencies)
    }

    fn status(&self) -> Result<Status> {
        let answer = self.ctl(&["status"])?;
        serde_json::from_str(&answer)
            .with_context(|| format!("sealbackctl status printed {answer:?}"))
    }

    fn commits(
        &self,
        commits: usize,
        spacing: Duration,
        debounce: Duration,
    ) -> Result<Vec<Duration>> {
        let db_path = self.store.join("msgstore.db");
        let db = rusqlite::Connection::open(&db_path)
            .with_context(|| format!("cannot open {}", db_path.display()))?;
        db.busy_timeout(Duration::from_secs(10))?;
        // As the app (and live_writer.py) does.
        db.pragma_update(None, "synchronous", "NORMAL")?;
        let chat: i64 = db
            .query_row("SELECT min(_id) FROM chat", [], |row| row.get(0))
            .context("the store has no chat")?;

        // Whatever the start-up may have caught settles first: idle, nothing pending, for
        // longer than the debounce.
        let settle = debounce + Duration::from_millis(500);
        let started = Instant::now();
        let mut quiet_since = Instant::now();
        let mut last = loop {
            let status = self.status()?;
            if status.activity != "idle" || status.pending_change {
                quiet_since = Instant::now();
            } else if quiet_since.elapsed() >= settle {
                break status.last_backup.map(|b| b.snapshot);
            }
            if started.elapsed() > COMMIT_TIMEOUT {
                bail!("the on-change daemon did not settle within {COMMIT_TIMEOUT:?}");
            }
            sleep(POLL_EVERY);
        };

        let mut latencies = Vec::with_capacity(commits);
        for n in 0..commits {
            let round = Instant::now();
            let now = unix_ms();
            let tx = db.unchecked_transaction()?;
            tx.execute(
                "INSERT INTO message(chat_row_id, from_me, key_id, timestamp, \
                 received_timestamp, status, text_data) VALUES (?1, 1, ?2, ?3, ?3, 0, ?4)",
                rusqlite::params![
                    chat,
                    format!("BENCHLATENCY{now:X}{n}"),
                    now,
                    format!("latency probe {n}")
                ],
            )
            .context("cannot insert the probe message")?;
            tx.commit().context("cannot commit the probe message")?;
            let committed = Instant::now();
            let committed_ms = unix_ms();
            // last_backup is set when a backup has finished, so a new one whose capture
            // started at or after the commit is durable and holds the message. (Not also
            // waiting for `idle`: a backup the daemon starts right after would delay the
            // sighting, not the copy.)
            loop {
                let status = self.status()?;
                if let Some(backup) = &status.last_backup
                    && last.as_deref() != Some(backup.snapshot.as_str())
                    && backup.time_unix_ms >= committed_ms
                {
                    latencies.push(committed.elapsed());
                    last = Some(backup.snapshot.clone());
                    break;
                }
                if committed.elapsed() > COMMIT_TIMEOUT {
                    bail!(
                        "commit {} of {commits}: no backup after {COMMIT_TIMEOUT:?} (activity \
                         {}, last error {:?})",
                        n + 1,
                        status.activity,
                        status.last_error
                    );
                }
                sleep(POLL_EVERY);
            }
            let next = round + spacing;
            sleep(
                next.saturating_duration_since(Instant::now())
                    .max(Duration::from_millis(500)),
            );
        }
        Ok(latencies)
    }
}

fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

impl Tool for Sealback {
    fn as_sealback(&self) -> Option<&Sealback> {
        Some(self)
    }

    fn name(&self) -> &'static str {
        "sealback"
    }

    fn version(&self) -> &str {
        &self.version
    }

    fn repository(&self) -> &Path {
        &self.repo
    }

    fn init(&mut self) -> Result<()> {
        let mut daemon = self.start()?;
        // The answer holds the recovery key: it is neither printed nor logged.
        let generated = self.ctl(&["key", "generate"]);
        daemon.stop()?;
        generated.context("cannot create sealback's key")?;
        Ok(())
    }

    fn backup(&mut self, _label: &str) -> Result<Sample> {
        let (mut sample, answer) = self.measured(&["backup", "--wait"])?;
        let report: BackupReport = serde_json::from_str(&answer)
            .with_context(|| format!("sealbackctl backup printed {answer:?}"))?;
        sample.bytes_read = Some(report.bytes_read);
        let db = match &report.db_read {
            Some(r) if r.delta => format!("{} db bytes read (changed pages only)", r.bytes),
            Some(r) => format!(
                "{} db bytes read (all: {})",
                r.bytes,
                r.why_full.as_deref().unwrap_or("-")
            ),
            None => "no db".to_owned(),
        };
        // The proof's share of the backup: the issue 13 goal is at most 5% of a day-1
        // incremental.
        let proof_share = report.proof_us as f64 / 1000.0 / report.duration_ms.max(1) as f64;
        sample.note = Some(format!(
            "{}/{} files read, {} db pages, {db}, chunks {} new/{} reused, {} packs, daemon {} ms, \
             proof {} ids in {} us ({:.1}% of the backup)",
            report.files_read,
            report.files,
            report.db_pages,
            report.chunks_new,
            report.chunks_reused,
            report.packs_written,
            report.duration_ms,
            report.chunks_proved,
            report.proof_us,
            proof_share * 100.0
        ));
        Ok(sample)
    }

    /// One `sealbackctl prune --now`, without the grace period (one device, nothing
    /// running beside it): that one run marks what nothing kept needs and sweeps it
    /// (DESIGN §12.1).
    fn prune(&mut self) -> Result<Option<Sample>> {
        let (mut sample, answer) = self.measured(&["prune", "--now"])?;
        sample.note = Some(answer.chars().take(2000).collect());
        Ok(Some(sample))
    }

    fn restore(&mut self, into: &Path) -> Result<(Sample, PathBuf)> {
        let to = into
            .to_str()
            .with_context(|| format!("{} is not UTF-8", into.display()))?;
        let (mut sample, answer) = self.measured(&["restore", "latest", "--to", to])?;
        let report: RestoreReport = serde_json::from_str(&answer)
            .with_context(|| format!("sealbackctl restore printed {answer:?}"))?;
        sample.bytes_read = sample.rchar;
        // From the command's start, as the full restore's time is: what came after the
        // database was ready is taken off it.
        let after_ready_ms = |db: &RestoredDatabase| report.duration_ms.saturating_sub(db.ready_ms);
        sample.messages_s = report
            .database
            .as_ref()
            .map(|db| (sample.wall_s - after_ready_ms(db) as f64 / 1000.0).max(0.0));
        sample.note = Some(format!(
            "{} files, {} bytes, daemon {} ms, database ready at {} ms",
            report.files,
            report.bytes,
            report.duration_ms,
            report.database.as_ref().map_or(0, |db| db.ready_ms)
        ));
        Ok((sample, into.to_path_buf()))
    }
}

/// A running sealbackd, stopped (SIGTERM, then SIGKILL) at the latest when dropped.
struct Daemon {
    child: Option<Child>,
}

impl Daemon {
    fn pid(&self) -> Result<u32> {
        self.child
            .as_ref()
            .map(Child::id)
            .context("the daemon has already been stopped")
    }

    fn exited(&mut self) -> Result<Option<std::process::ExitStatus>> {
        match &mut self.child {
            Some(child) => child.try_wait().context("cannot check on sealbackd"),
            None => Ok(None),
        }
    }

    /// Sends SIGTERM and waits; fails if the daemon had to be killed or exited with an error.
    fn stop(&mut self) -> Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        let pid = Pid::from_raw(i32::try_from(child.id()).context("pid out of range")?);
        kill(pid, Signal::SIGTERM).context("cannot send SIGTERM to sealbackd")?;
        let asked = Instant::now();
        loop {
            if let Some(status) = child.try_wait().context("cannot wait for sealbackd")? {
                if !status.success() {
                    bail!("sealbackd exited with {status} when asked to stop");
                }
                return Ok(());
            }
            if asked.elapsed() > STOP_TIMEOUT {
                let _ = child.kill();
                let _ = child.wait();
                bail!("sealbackd did not stop within {STOP_TIMEOUT:?} of SIGTERM; killed it");
            }
            sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A path as a TOML basic string (JSON's string syntax is a subset of it).
fn toml_string(path: &Path) -> Result<String> {
    let text = path
        .to_str()
        .with_context(|| format!("{} is not UTF-8", path.display()))?;
    serde_json::to_string(text).context("cannot quote a path")
}

/// The service's unit, as built: the daemon is measured with the environment it sets.
const UNIT: &str = include_str!("../../../systemd/sealbackd.service");

/// The variables the unit's `Environment=` lines set (`KEY=VALUE` words, unquoted).
pub(crate) fn unit_environment() -> impl Iterator<Item = (&'static str, &'static str)> {
    UNIT.lines()
        .filter_map(|line| line.trim().strip_prefix("Environment="))
        .flat_map(str::split_whitespace)
        .filter_map(|word| word.split_once('='))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_daemon_is_measured_with_the_units_allocator_setting() {
        let environment: Vec<_> = super::unit_environment().collect();
        assert!(
            environment.contains(&("MALLOC_ARENA_MAX", "1")),
            "{environment:?}"
        );
    }
}
