//! How a tool's run is measured.
//!
//! - Peers run as one client command each, under GNU time (`-f '%M %e %U %S'`) for peak RSS
//!   and CPU; wall time is taken around the whole command.
//! - Bytes read by a command are its `rchar` (bytes returned by read(2) and friends, page cache
//!   hits included, unlike `read_bytes`). Linux adds a reaped child's I/O counters to its
//!   parent's, so the growth of our own `/proc/self/io` rchar across one spawn-and-wait is the
//!   rchar of the whole command (GNU time included, a few KB). Nothing else runs meanwhile,
//!   and the command's output goes to a file, never through a pipe we read.
//! - A long-running process (the sealback daemon) is read through `/proc/<pid>/status`
//!   (VmRSS, VmHWM), `/proc/<pid>/io` and `/proc/<pid>/stat`.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::Serialize;

/// What one tool did in one phase. `None` means "not measured" and prints as "-".
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct Sample {
    pub wall_s: f64,
    /// CPU time (user + system) of the process doing the work.
    pub cpu_s: Option<f64>,
    /// Bytes read from the store: sealback's own count for its backups, else `rchar`.
    pub bytes_read: Option<u64>,
    /// `rchar` of the process doing the work, for every tool.
    pub rchar: Option<u64>,
    /// Backups: growth of the repository (sum of file sizes). Restore: size of the files
    /// restored.
    pub bytes_written: Option<u64>,
    pub peak_rss: Option<u64>,
    /// sealback: the daemon's VmRSS once it answers after start-up, before any work.
    pub idle_rss: Option<u64>,
    /// sealback: the daemon's VmRSS when the work is done.
    pub rss_after: Option<u64>,
    /// sealback: the daemon's memory by kind at its peak, polled while it worked.
    pub status_peaks: Option<StatusPeaks>,
    /// Restores: seconds until the messages could be read (the database restored and
    /// usable). sealback: when its restore said the database passed `integrity_check`;
    /// restic: a restore of the database file alone (`--include`), from a cold cache.
    pub messages_s: Option<f64>,
    /// Restores: the shortest time the disk allows for reading the repository and writing
    /// the files restored (see [`crate::disk`]).
    pub disk_floor_s: Option<f64>,
    /// Tool-specific figures worth a look (chunk counts, files read, ...).
    pub note: Option<String>,
}

/// Runs commands and measures them.
#[derive(Debug, Clone)]
pub(crate) struct Meter {
    /// GNU time, when installed.
    gnu_time: Option<PathBuf>,
}

/// The measurements of one command.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timed {
    pub wall: Duration,
    pub rchar: Option<u64>,
    pub peak_rss: Option<u64>,
    pub cpu_s: Option<f64>,
}

impl Meter {
    pub(crate) fn new() -> Meter {
        let gnu_time = PathBuf::from("/usr/bin/time");
        Meter {
            gnu_time: gnu_time.is_file().then_some(gnu_time),
        }
    }

    pub(crate) fn has_gnu_time(&self) -> bool {
        self.gnu_time.is_some()
    }

    /// Runs `command` to its end with its output appended to `log`, and fails if it fails.
    pub(crate) fn run(&self, command: &Command, log: &Path, what: &str) -> Result<Timed> {
        let time_file = log.with_extension("time");
        let mut wrapped = match &self.gnu_time {
            Some(time) => {
                let mut c = Command::new(time);
                c.arg("-o")
                    .arg(&time_file)
                    .arg("-f")
                    .arg("%M %e %U %S")
                    .arg(command.get_program())
                    .args(command.get_args());
                c
            }
            None => {
                let mut c = Command::new(command.get_program());
                c.args(command.get_args());
                c
            }
        };
        for (key, value) in command.get_envs() {
            match value {
                Some(value) => wrapped.env(key, value),
                None => wrapped.env_remove(key),
            };
        }
        if let Some(dir) = command.get_current_dir() {
            wrapped.current_dir(dir);
        }
        let out = open_log(log, &format!("{what}: {}", describe(command)))?;
        let err = out
            .try_clone()
            .with_context(|| format!("cannot duplicate the handle of {}", log.display()))?;
        wrapped.stdin(Stdio::null()).stdout(out).stderr(err);

        let rchar_before = self_rchar();
        let started = Instant::now();
        let status = wrapped
            .status()
            .with_context(|| format!("cannot run {}", describe(command)))?;
        let wall = started.elapsed();
        let rchar_after = self_rchar();
        if !status.success() {
            bail!(
                "{what} failed ({status}): {}\n--- last lines of {} ---\n{}",
                describe(command),
                log.display(),
                tail(log, 15)
            );
        }
        let (peak_rss, cpu_s) = match self.gnu_time {
            Some(_) => parse_gnu_time(&time_file)?,
            None => (None, None),
        };
        Ok(Timed {
            wall,
            rchar: rchar_before
                .zip(rchar_after)
                .map(|(before, after)| after.saturating_sub(before)),
            peak_rss,
            cpu_s,
        })
    }
}

/// Opens `log` for appending and writes a header naming what follows.
pub(crate) fn open_log(log: &Path, header: &str) -> Result<fs::File> {
    let mut file = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("cannot open the log {}", log.display()))?;
    writeln!(file, "\n=== {header}")
        .with_context(|| format!("cannot write the log {}", log.display()))?;
    Ok(file)
}

/// The last `lines` lines of a log, for error messages.
pub(crate) fn tail(log: &Path, lines: usize) -> String {
    match fs::read_to_string(log) {
        Ok(text) => {
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(e) => format!("(cannot read it: {e})"),
    }
}

fn describe(command: &Command) -> String {
    std::iter::once(command.get_program())
        .chain(command.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// `%M %e %U %S` of GNU time: peak RSS in KiB, then seconds. GNU time puts a line
/// "Command exited with non-zero status" before it when the command failed.
fn parse_gnu_time(file: &Path) -> Result<(Option<u64>, Option<f64>)> {
    let text = fs::read_to_string(file)
        .with_context(|| format!("cannot read GNU time's output {}", file.display()))?;
    let line = text.lines().last().unwrap_or_default();
    let fields: Vec<&str> = line.split_whitespace().collect();
    let [rss_kib, _elapsed, user, system] = fields[..] else {
        bail!(
            "GNU time wrote {line:?} into {}, not \"%M %e %U %S\"",
            file.display()
        );
    };
    let rss = rss_kib.parse::<u64>().ok().map(|kib| kib * 1024);
    let cpu = user
        .parse::<f64>()
        .ok()
        .zip(system.parse::<f64>().ok())
        .map(|(u, s)| u + s);
    Ok((rss, cpu))
}

/// Our own rchar, which includes that of every child we have reaped.
fn self_rchar() -> Option<u64> {
    io_field("self", "rchar")
}

/// A field of `/proc/<pid>/io` ("rchar", "wchar", ...).
pub(crate) fn io_field(pid: &str, field: &str) -> Option<u64> {
    proc_field(&format!("/proc/{pid}/io"), field)
}

/// A `kB` field of `/proc/<pid>/status` ("VmRSS", "VmHWM"), in bytes.
pub(crate) fn status_bytes(pid: u32, field: &str) -> Option<u64> {
    proc_field(&format!("/proc/{pid}/status"), field).map(|kib| kib * 1024)
}

/// User plus system CPU seconds of a live process, its finished threads included.
pub(crate) fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After ')' come state (field 3) ... utime is field 14, stime field 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    let ticks = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .filter(|t| *t > 0)?;
    Some((utime + stime) as f64 / ticks as f64)
}

/// The highest values seen in `/proc/<pid>/status` while a process worked: which kind of
/// memory made its peak (anonymous: heap and stacks; file: mapped files and the binary).
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub(crate) struct StatusPeaks {
    pub rss_anon: u64,
    pub rss_file: u64,
    pub threads: u64,
}

/// Polls `/proc/<pid>/status` every few milliseconds until finished.
pub(crate) struct StatusSampler {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<StatusPeaks>,
}

impl StatusSampler {
    pub(crate) fn start(pid: u32) -> StatusSampler {
        use std::sync::atomic::Ordering;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut peaks = StatusPeaks::default();
            let path = format!("/proc/{pid}/status");
            while !stopped.load(Ordering::Relaxed) {
                peaks.rss_anon = peaks
                    .rss_anon
                    .max(proc_field(&path, "RssAnon").unwrap_or(0) * 1024);
                peaks.rss_file = peaks
                    .rss_file
                    .max(proc_field(&path, "RssFile").unwrap_or(0) * 1024);
                peaks.threads = peaks.threads.max(proc_field(&path, "Threads").unwrap_or(0));
                std::thread::sleep(Duration::from_millis(5));
            }
            peaks
        });
        StatusSampler { stop, thread }
    }

    /// Stops polling; `None` if the polling thread panicked.
    pub(crate) fn finish(self) -> Option<StatusPeaks> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.join().ok()
    }
}

/// The first number after `field:` in a `/proc` key-value file.
fn proc_field(path: &str, field: &str) -> Option<u64> {
    let text = fs::read_to_string(path).ok()?;
    text.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        (key == field).then(|| value.split_whitespace().next()?.parse().ok())?
    })
}

/// The sum of the sizes of the regular files under `dir` (like `du -sb`, without the
/// directories themselves); 0 if it does not exist.
pub(crate) fn tree_bytes(dir: &Path) -> Result<u64> {
    if !dir.exists() {
        return Ok(0);
    }
    let mut total = 0;
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let entries =
            fs::read_dir(&dir).with_context(|| format!("cannot list {}", dir.display()))?;
        for entry in entries {
            let entry = entry.with_context(|| format!("cannot list {}", dir.display()))?;
            let kind = entry
                .file_type()
                .with_context(|| format!("cannot stat {}", entry.path().display()))?;
            if kind.is_dir() {
                pending.push(entry.path());
            } else if kind.is_file() {
                let meta = entry
                    .metadata()
                    .with_context(|| format!("cannot stat {}", entry.path().display()))?;
                total += meta.len();
            }
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_reading_a_file_shows_its_bytes_in_our_rchar() {
        let dir = std::env::temp_dir().join(format!("sealback-bench-rchar-{}", std::process::id()));
        fs::create_dir_all(&dir).expect("mkdir");
        let data = dir.join("data");
        fs::write(&data, vec![7u8; 3_000_000]).expect("write");
        let mut cat = Command::new("cat");
        cat.arg(&data);
        let timed = Meter::new()
            .run(&cat, &dir.join("log"), "cat")
            .expect("cat runs");
        let rchar = timed.rchar.expect("rchar");
        assert!(rchar >= 3_000_000, "rchar {rchar}");
        assert!(rchar < 3_500_000, "rchar {rchar}");
        fs::remove_dir_all(&dir).expect("cleanup");
    }
}
