//! A [`Device`]: one sealback installation in a temporary directory — its configuration
//! file, state directory and control socket — with `sealbackd` started on it and
//! `sealbackctl` talking to it. Every assertion a device makes about a command includes the
//! command's output and the tail of the daemon's log, which is where the cause usually is.

use std::fmt;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use sealback_daemon::control::api::{
    BackupReport, KeyGenerated, RestoreReport, SnapshotInfo, SnapshotList, Status,
};
use serde::de::DeserializeOwned;
use tempfile::TempDir;

use crate::setup::{DevicePaths, Setup};
use crate::{binaries, wait};

/// How long the daemon may take to answer on its socket after being started, or to exit
/// after SIGTERM.
const DAEMON_DEADLINE: Duration = Duration::from_secs(15);
/// How long one `sealbackctl` command may take (a backup or a restore of a test store).
const CTL_DEADLINE: Duration = Duration::from_secs(120);
/// Lines of the daemon's log quoted in failure messages.
const LOG_TAIL_LINES: usize = 40;

/// The outcome of one `sealbackctl` command.
#[derive(Debug)]
pub struct Ctl {
    pub command: String,
    /// `None` if it was killed by a signal.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Ctl {
    fn from_output(command: String, output: Output) -> Ctl {
        Ctl {
            command,
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

impl fmt::Display for Ctl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "`{}` exited with {:?}\n--- its stdout ---\n{}\n--- its stderr ---\n{}",
            self.command, self.code, self.stdout, self.stderr
        )
    }
}

/// One installation of sealback, in a temporary directory that is removed on drop (with the
/// daemon killed if it still runs).
pub struct Device {
    root: TempDir,
    setup: Setup,
    daemon: Option<Child>,
    /// The daemon's `SEALBACK_LOG` filter; `None`: its default (info).
    log_filter: Option<String>,
    /// More variables for the daemon's environment (`NOTIFY_SOCKET`, say).
    env: Vec<(String, String)>,
    /// A command the daemon runs under (`setpriv --reuid=...`), which must exec it.
    wrapper: Vec<String>,
}

impl Device {
    /// A device with `setup`; the daemon is not started yet.
    pub fn new(setup: Setup) -> Device {
        let root = tempfile::Builder::new()
            .prefix("sealback-e2e-")
            .tempdir()
            .expect("a temporary directory for the device");
        let device = Device {
            root,
            setup,
            daemon: None,
            log_filter: None,
            env: Vec::new(),
            wrapper: Vec::new(),
        };
        fs::create_dir_all(device.own_store()).expect("create the device's own store");
        device
    }

    /// A device with `setup` and its daemon running.
    pub fn started(setup: Setup) -> Device {
        let mut device = Device::new(setup);
        device.start();
        device
    }

    pub fn root(&self) -> &Path {
        self.root.path()
    }

    pub fn state_dir(&self) -> PathBuf {
        self.root().join("state")
    }

    /// Under `run/`, which the daemon creates, as `/run/sealback/` would be.
    pub fn socket(&self) -> PathBuf {
        self.root().join("run").join("control.sock")
    }

    pub fn config_path(&self) -> PathBuf {
        self.root().join("sealback.toml")
    }

    /// The daemon's standard error, every run appended.
    pub fn log_path(&self) -> PathBuf {
        self.root().join("sealbackd.log")
    }

    fn own_store(&self) -> PathBuf {
        self.root().join("store")
    }

    /// Sets the daemon's log filter (`SEALBACK_LOG`, e.g. "trace"); takes effect at the
    /// next [`start`](Device::start).
    pub fn log_filter(&mut self, filter: &str) {
        self.log_filter = Some(filter.to_owned());
    }

    /// Sets `name=value` in the daemon's environment; takes effect at the next
    /// [`start`](Device::start).
    pub fn set_env(&mut self, name: &str, value: &str) {
        self.env.push((name.to_owned(), value.to_owned()));
    }

    /// Runs the daemon as `wrapper... sealbackd --config ...` (a command that execs it, as
    /// `setpriv` does, so its pid is the daemon's); takes effect at the next start.
    pub fn run_under(&mut self, wrapper: &[&str]) {
        self.wrapper = wrapper.iter().map(|s| (*s).to_owned()).collect();
    }

    /// Changes the configuration; takes effect at the next [`start`](Device::start).
    pub fn reconfigure(&mut self, setup: Setup) {
        assert!(
            self.daemon.is_none(),
            "stop the daemon before reconfiguring"
        );
        self.setup = setup;
    }

    /// Writes the configuration and starts `sealbackd`; returns once it answers on its
    /// socket.
    pub fn start(&mut self) {
        let paths = DevicePaths {
            state_dir: self.state_dir(),
            socket: self.socket(),
            own_store: self.own_store(),
        };
        self.start_with_config(&self.setup.toml(&paths));
    }

    /// Starts `sealbackd` on the configuration `text` instead of the device's own; it must
    /// use this device's socket.
    pub fn start_with_config(&mut self, text: &str) {
        assert!(self.daemon.is_none(), "the daemon is already running");
        fs::write(self.config_path(), text).expect("write the configuration");
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("open the daemon's log");
        let mut command = match self.wrapper.split_first() {
            Some((program, args)) => {
                let mut command = Command::new(program);
                command.args(args).arg(binaries::sealbackd());
                command
            }
            None => Command::new(binaries::sealbackd()),
        };
        command
            .arg("--config")
            .arg(self.config_path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        scrub_environment(&mut command);
        command.envs(self.setup.daemon_env.iter().map(|(k, v)| (k, v)));
        if let Some(filter) = &self.log_filter {
            command.env("SEALBACK_LOG", filter);
        }
        command.envs(self.env.iter().map(|(k, v)| (k, v)));
        let mut child = command.spawn().expect("spawn sealbackd");
        let socket = self.socket();
        let ready = wait::poll(DAEMON_DEADLINE, || {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(Err(status));
            }
            UnixStream::connect(&socket).ok().map(|_| Ok(()))
        });
        match ready {
            Some(Ok(())) => self.daemon = Some(child),
            Some(Err(status)) => panic!(
                "sealbackd exited with {status} before it answered on {}{}",
                socket.display(),
                self.log_tail()
            ),
            None => {
                kill(&mut child);
                panic!(
                    "sealbackd did not answer on {} within {DAEMON_DEADLINE:?}{}",
                    socket.display(),
                    self.log_tail()
                )
            }
        }
    }

    /// The daemon's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.daemon.as_ref().map(Child::id)
    }

    /// True while the daemon process runs.
    pub fn is_running(&mut self) -> bool {
        self.daemon
            .as_mut()
            .is_some_and(|child| matches!(child.try_wait(), Ok(None)))
    }

    /// Stops the daemon with SIGTERM and asserts that it exits with 0 in time.
    #[track_caller]
    pub fn stop(&mut self) {
        signal(self.pid().expect("the daemon is running"), "TERM");
        self.stop_after_signal();
    }

    /// Waits for the daemon, sent SIGTERM already, to exit, and asserts that it exits
    /// with 0 in time.
    #[track_caller]
    pub fn stop_after_signal(&mut self) {
        let status = self.wait_for_exit();
        assert_eq!(
            status.code(),
            Some(0),
            "sealbackd did not exit cleanly on SIGTERM: {status}{}",
            self.log_tail()
        );
    }

    /// After a request that may have reached a crash point (the faulty plugin's
    /// `crash_after`): stops the daemon if it still runs; true if it died of SIGKILL (at
    /// the crash point, during the request or while stopping), false if it exited cleanly.
    #[track_caller]
    pub fn stop_or_reap_killed(&mut self) -> bool {
        use std::os::unix::process::ExitStatusExt;
        if self.is_running() {
            signal(self.pid().expect("the daemon is running"), "TERM");
        }
        let status = self.wait_for_exit();
        match (status.code(), status.signal()) {
            (Some(0), _) => false,
            (_, Some(9)) => true,
            _ => panic!(
                "sealbackd ended with {status}, neither cleanly nor at a crash point{}",
                self.log_tail()
            ),
        }
    }

    #[track_caller]
    fn wait_for_exit(&mut self) -> ExitStatus {
        let mut child = self.daemon.take().expect("the daemon is running");
        match wait::poll(DAEMON_DEADLINE, || child.try_wait().ok().flatten()) {
            Some(status) => status,
            None => {
                kill(&mut child);
                panic!(
                    "sealbackd did not exit within {DAEMON_DEADLINE:?} of SIGTERM{}",
                    self.log_tail()
                )
            }
        }
    }

    /// The last lines of the daemon's log, formatted to end a failure message.
    pub fn log_tail(&self) -> String {
        let log = fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        let tail = lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n");
        format!(
            "\n--- sealbackd's stderr ({}, last {LOG_TAIL_LINES} lines) ---\n{tail}",
            self.log_path().display()
        )
    }

    /// Runs `sealbackctl --socket <this device's socket> ARGS`, whatever its outcome.
    pub fn ctl(&self, args: &[&str]) -> Ctl {
        self.ctl_stdin(args, "")
    }

    /// Like [`ctl`](Device::ctl), with `input` on its standard input.
    pub fn ctl_stdin(&self, args: &[&str], input: &str) -> Ctl {
        let mut command = Command::new(binaries::sealbackctl());
        command.arg("--socket").arg(self.socket()).args(args);
        scrub_environment(&mut command);
        let shown = format!("sealbackctl {}", args.join(" "));
        let output = run(command, input.as_bytes(), CTL_DEADLINE)
            .unwrap_or_else(|e| panic!("`{shown}`: {e}{}", self.log_tail()));
        Ctl::from_output(shown, output)
    }

    /// Runs a command that must succeed.
    #[track_caller]
    pub fn ctl_ok(&self, args: &[&str]) -> Ctl {
        let ctl = self.ctl(args);
        assert_eq!(ctl.code, Some(0), "{ctl}{}", self.log_tail());
        ctl
    }

    /// Runs a command that must fail with exit status `code`; returns its output.
    #[track_caller]
    pub fn ctl_fails(&self, args: &[&str], code: i32) -> Ctl {
        let ctl = self.ctl(args);
        assert_eq!(
            ctl.code,
            Some(code),
            "expected exit status {code}: {ctl}{}",
            self.log_tail()
        );
        ctl
    }

    /// Runs a command with `--json` that must succeed, and reads its answer.
    #[track_caller]
    pub fn ctl_json<T: DeserializeOwned>(&self, args: &[&str]) -> T {
        let mut with_json = vec!["--json"];
        with_json.extend_from_slice(args);
        let ctl = self.ctl_ok(&with_json);
        serde_json::from_str(&ctl.stdout).unwrap_or_else(|e| {
            panic!(
                "`{}` printed something that is not the expected JSON ({e}):\n{}",
                ctl.command, ctl.stdout
            )
        })
    }

    #[track_caller]
    pub fn status(&self) -> Status {
        self.ctl_json(&["status"])
    }

    /// `key generate`: returns the recovery key it shows.
    #[track_caller]
    pub fn generate_key(&self) -> String {
        self.ctl_json::<KeyGenerated>(&["key", "generate"])
            .recovery_key
            .to_string()
    }

    /// `key import`, with the recovery key on standard input.
    #[track_caller]
    pub fn import_key(&self, recovery_key: &str) {
        let ctl = self.ctl_stdin(&["key", "import"], recovery_key);
        assert_eq!(ctl.code, Some(0), "{ctl}{}", self.log_tail());
    }

    /// `backup --wait`: the report of the backup.
    #[track_caller]
    pub fn backup(&self) -> BackupReport {
        self.ctl_json(&["backup", "--wait"])
    }

    #[track_caller]
    pub fn snapshots(&self) -> Vec<SnapshotInfo> {
        self.ctl_json::<SnapshotList>(&["snapshots"]).snapshots
    }

    /// `restore SNAPSHOT --to DIR`, which must succeed.
    #[track_caller]
    pub fn restore(&self, snapshot: &str, to: &Path) -> RestoreReport {
        let to = to.to_str().expect("temporary paths are UTF-8");
        self.ctl_json(&["restore", snapshot, "--to", to])
    }
}

impl Drop for Device {
    fn drop(&mut self) {
        if let Some(mut child) = self.daemon.take() {
            kill(&mut child);
        }
    }
}

/// Runs `sealbackd --config CONFIG`, which is expected to exit by itself (a bad
/// configuration); returns its exit code and standard error.
pub fn sealbackd_exit(config: &Path) -> (Option<i32>, String) {
    sealbackd_exit_with_env(config, &[])
}

/// [`sealbackd_exit`] with these variables in its environment.
pub fn sealbackd_exit_with_env(config: &Path, env: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut command = Command::new(binaries::sealbackd());
    command.arg("--config").arg(config);
    scrub_environment(&mut command);
    command.envs(env.iter().copied());
    let output = run(command, b"", DAEMON_DEADLINE)
        .unwrap_or_else(|e| panic!("sealbackd --config {}: {e}", config.display()));
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Keeps the developer's environment out of the programs under test: `SEALBACK_*__*`
/// variables override configuration keys, a systemd credential would replace the key, and
/// systemd's notify socket, watchdog and journal stream are the test's to give.
fn scrub_environment(command: &mut Command) {
    for (name, _) in std::env::vars_os() {
        let name_str = name.to_string_lossy();
        if (name_str.starts_with("SEALBACK_") && name_str != "SEALBACK_LOG")
            || matches!(
                name_str.as_ref(),
                "CREDENTIALS_DIRECTORY"
                    | "NOTIFY_SOCKET"
                    | "WATCHDOG_USEC"
                    | "WATCHDOG_PID"
                    | "JOURNAL_STREAM"
            )
        {
            command.env_remove(&name);
        }
    }
}

/// Runs `command` to its end with `input` on standard input; kills it after `deadline`.
fn run(mut command: Command, input: &[u8], deadline: Duration) -> Result<Output, String> {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start it: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A program that does not read its input may have exited already: not our failure.
        let _ = stdin.write_all(input);
    }
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(deadline) {
        Ok(Ok(output)) => Ok(output),
        Ok(Err(e)) => Err(format!("cannot wait for it: {e}")),
        Err(_) => {
            signal(pid, "KILL");
            Err(format!(
                "it did not finish within {deadline:?} and was killed"
            ))
        }
    }
}

/// Sends a signal with kill(1): no unsafe code, no extra dependency. Whether it was
/// delivered (the process may have just exited) is for the caller to find out.
pub fn signal(pid: u32, name: &str) {
    Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .stderr(Stdio::null())
        .status()
        .expect("run kill(1)");
}

fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}
