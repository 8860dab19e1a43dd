//! sealbackd under systemd: its log in a file is plain text, SIGHUP does not kill it, and it
//! speaks the sd_notify protocol to a real datagram socket given as `NOTIFY_SOCKET` (READY
//! once the socket listens, STATUS after a backup, WATCHDOG at the rate asked and only while
//! work moves, STOPPING at SIGTERM); and sealback-vault the same (READY, SIGHUP, STOPPING).

use std::os::unix::net::UnixStream;
use std::process::Stdio;
use std::time::{Duration, Instant};

use sealback_daemon::control::api::VerifyReport;
use sealback_tests::device::signal;
use sealback_tests::notify::{NotifySocket, has_line};
use sealback_tests::{Device, MessageStore, Setup, Target, binaries, wait};
use sealback_vault::testing::{Options as VaultOptions, TestVault};
use serde_json::json;

use crate::fixtures::{BackedUp, TARGET};

const WAIT: Duration = Duration::from_secs(30);

fn device() -> (tempfile::TempDir, Device) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = MessageStore::create(&dir.path().join("store"), 4);
    store.append(20);
    let device = Device::new(Setup::new(
        store.dir(),
        vec![Target::local(TARGET, &dir.path().join("target"))],
    ));
    (dir, device)
}

/// A notify socket in the device's directory, given to the daemon's next start.
fn notify_socket(device: &mut Device) -> NotifySocket {
    let socket = NotifySocket::bind(&device.root().join("notify.sock"));
    let path = socket.path().to_str().expect("UTF-8").to_owned();
    device.set_env("NOTIFY_SOCKET", &path);
    socket
}

fn watchdogs(messages: &[String]) -> usize {
    messages
        .iter()
        .filter(|m| has_line(m, "WATCHDOG=1"))
        .count()
}

#[test]
fn the_log_written_to_a_file_is_plain_text() {
    let (_dir, mut device) = device();
    device.start();
    device.generate_key();
    device.backup();
    device.stop();
    let log = std::fs::read_to_string(device.log_path()).expect("read the log");
    assert!(log.contains("sealbackd started"), "{log}");
    assert!(log.contains("backup finished"), "{log}");
    assert!(
        !log.contains('\u{1b}'),
        "the log, a file, has terminal escape codes:\n{log:?}"
    );
}

#[test]
fn journal_stream_naming_stderr_is_taken_for_the_journal() {
    use std::os::unix::fs::MetadataExt as _;
    let (_dir, mut device) = device();
    let log = std::fs::File::create(device.log_path()).expect("create the log");
    let meta = log.metadata().expect("stat the log");
    // systemd's JOURNAL_STREAM names the stream it gave as stderr; this one is the log file.
    // There is no journald here, so the daemon says so and logs plain text without the
    // timestamps the journal adds.
    device.set_env("JOURNAL_STREAM", &format!("{}:{}", meta.dev(), meta.ino()));
    device.start();
    device.stop();
    let text = std::fs::read_to_string(device.log_path()).expect("read the log");
    assert!(
        text.contains("stderr is the journal but its socket cannot be reached"),
        "{text}"
    );
    let started = text
        .lines()
        .find(|l| l.contains("sealbackd started"))
        .expect("a start line");
    assert!(
        started.trim_start().starts_with("INFO"),
        "a timestamp the journal would add again: {started}"
    );
    assert!(!text.contains('\u{1b}'), "{text:?}");
}

#[test]
fn sighup_leaves_the_daemon_running_and_its_socket_answering() {
    let (_dir, mut device) = device();
    device.start();
    signal(device.pid().expect("running"), "HUP");
    let logged = wait::poll(WAIT, || {
        if !device.is_running() {
            return Some(false);
        }
        let log = std::fs::read_to_string(device.log_path()).unwrap_or_default();
        log.contains("SIGHUP ignored").then_some(true)
    });
    assert_eq!(
        logged,
        Some(true),
        "sealbackd did not survive SIGHUP (or said nothing of it){}",
        device.log_tail()
    );
    assert!(device.is_running(), "{}", device.log_tail());
    device.ctl_ok(&["status"]);
    device.generate_key();
    device.backup();
    device.stop();
}

#[test]
fn ready_once_the_socket_listens_status_after_a_backup_stopping_at_sigterm() {
    let (_dir, mut device) = device();
    let notify = notify_socket(&mut device);
    let control = device.socket();
    let (ready, before) = std::thread::scope(|scope| {
        // Connects to the control socket the moment READY=1 arrives.
        let watcher = scope.spawn(|| {
            let (ready, before) = notify.wait_for("READY=1", WAIT);
            let connected = UnixStream::connect(&control).map(|_| ());
            (ready.map(|r| (r, connected)), before)
        });
        device.start();
        watcher.join().expect("the notify watcher")
    });
    let (ready, connected) = ready.expect("READY=1 never came");
    assert!(before.is_empty(), "sent before READY=1: {before:?}");
    assert!(
        connected.is_ok(),
        "READY=1 came before the control socket listened: {connected:?}"
    );
    assert!(has_line(&ready, "STATUS="), "{ready}");
    let catalog = device
        .state_dir()
        .join("catalog")
        .join(format!("{TARGET}.db"));
    assert!(
        catalog.is_file(),
        "READY=1 came before the catalog {} was opened",
        catalog.display()
    );

    device.generate_key();
    let report = device.backup();
    let (status, _) = notify.wait_for("STATUS=", WAIT);
    let status = status.expect("no STATUS= after the backup");
    assert!(
        status.contains("last backup ok") && status.contains(&report.snapshot),
        "the status does not name the backup: {status}"
    );

    device.stop();
    let (stopping, between) = notify.wait_for("STOPPING=1", WAIT);
    assert!(stopping.is_some(), "no STOPPING=1 at SIGTERM: {between:?}");
    assert_eq!(
        watchdogs(&between),
        0,
        "WATCHDOG=1 without WATCHDOG_USEC: {between:?}"
    );
}

/// A catalog that cannot be opened is found at start, not at the first backup: no READY=1,
/// and sealbackd exits non-zero with a message naming the catalog and what to do.
#[test]
fn a_catalog_that_cannot_be_opened_stops_start_up_before_ready() {
    let (_dir, mut device) = device();
    // The first start writes the configuration; then the catalogs' folder becomes a file.
    device.start();
    device.stop();
    let folder = device.state_dir().join("catalog");
    let _ = std::fs::remove_dir_all(&folder);
    std::fs::write(&folder, "not a folder").expect("write a file where the catalogs go");
    let notify = NotifySocket::bind(&device.root().join("notify.sock"));
    let socket = notify.path().to_str().expect("UTF-8").to_owned();
    let (code, stderr) = sealback_tests::device::sealbackd_exit_with_env(
        &device.config_path(),
        &[("NOTIFY_SOCKET", &socket)],
    );
    let sent = notify.collect(Duration::from_millis(100));
    assert!(
        !sent.iter().any(|m| has_line(m, "READY=1")),
        "READY=1 with an unopenable catalog: {sent:?}"
    );
    assert!(matches!(code, Some(c) if c != 0), "exit {code:?}: {stderr}");
    let catalog = folder.join(format!("{TARGET}.db"));
    assert!(
        stderr.contains(&format!("{}", catalog.display()))
            && stderr.contains("cannot open the local catalog"),
        "the error does not name the catalog: {stderr}"
    );
}

/// When each `WATCHDOG=1` arrived, read until `done()` says to stop.
fn ping_times(notify: &NotifySocket, done: impl Fn() -> bool) -> Vec<Instant> {
    let mut times = Vec::new();
    while !done() {
        if let Some(message) = notify.next(Duration::from_millis(20))
            && has_line(&message, "WATCHDOG=1")
        {
            times.push(Instant::now());
        }
    }
    times
}

/// The longest the daemon went without a ping between `from` and `to`, given the pings
/// that came in between: what systemd's watchdog timer measures.
fn longest_silence(from: Instant, pings: &[Instant], to: Instant) -> Duration {
    let mut edges = vec![from];
    edges.extend_from_slice(pings);
    edges.push(to);
    edges
        .windows(2)
        .map(|w| w[1].saturating_duration_since(w[0]))
        .max()
        .unwrap_or_default()
}

/// The daemon's pings in a 3 s window with `WATCHDOG_USEC` = `usec`, and the longest
/// silence in that window.
fn pings_in_three_seconds(usec: u64) -> (usize, Duration) {
    let (_dir, mut device) = device();
    let notify = notify_socket(&mut device);
    device.set_env("WATCHDOG_USEC", &usec.to_string());
    device.start();
    let (ready, _) = notify.wait_for("READY=1", WAIT);
    assert!(ready.is_some(), "no READY=1{}", device.log_tail());
    let from = Instant::now();
    let to = from + Duration::from_secs(3);
    let pings = ping_times(&notify, || Instant::now() >= to);
    device.stop();
    (pings.len(), longest_silence(from, &pings, to))
}

#[test]
fn watchdog_pings_come_at_half_the_interval_asked() {
    // Asked 1 s: a ping every 0.5 s. A daemon pinging at the full interval would go 1 s
    // without one; 0.25 s of slack is for a loaded machine's scheduling, no more.
    let (fast, silence) = pings_in_three_seconds(1_000_000);
    eprintln!("asked 1 s: {fast} pings in 3 s, longest without one: {silence:?}");
    assert!(
        silence <= Duration::from_millis(750),
        "{fast} pings in 3 s, asked 1 s: {silence:?} without a ping"
    );
    // Asked 10 s: one ping at start, the next 5 s later.
    let (slow, _) = pings_in_three_seconds(10_000_000);
    assert!(slow <= 1, "{slow} pings in 3 s, asked 10 s");
}

/// A healthy backup to a slow provider keeps the watchdog fed: every provider call that
/// answers counts as work that moves, not only the reads of the store. Before, the pings
/// stopped while the packs, the index and the snapshot were uploaded after the last read,
/// and systemd would have killed a daemon doing its job.
#[test]
fn a_backup_to_a_slow_provider_keeps_the_watchdog_fed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = MessageStore::create(&dir.path().join("store"), 2);
    store.append(300);
    // Each put takes 0.3 s: the backup's uploads take several seconds in all.
    let slow = Target::faulty(
        TARGET,
        &dir.path().join("target"),
        json!({ "slow_ms": 300, "slow_op": "put" }),
    );
    let mut device = Device::new(Setup::new(store.dir(), vec![slow]));
    let notify = notify_socket(&mut device);
    device.set_env("WATCHDOG_USEC", "1000000");
    device.start();
    device.generate_key();
    let (ready, _) = notify.wait_for("READY=1", WAIT);
    assert!(ready.is_some(), "no READY=1{}", device.log_tail());
    let device = &device;
    let (from, pings, to, backup) = std::thread::scope(|scope| {
        let from = Instant::now();
        let backup = scope.spawn(|| device.ctl(&["backup", "--wait"]));
        let pings = ping_times(&notify, || backup.is_finished());
        let to = Instant::now();
        (from, pings, to, backup.join().expect("the backup's client"))
    });
    assert_eq!(backup.code, Some(0), "{backup}{}", device.log_tail());
    let took = to - from;
    assert!(
        took >= Duration::from_secs(2),
        "the backup took {took:?}: too fast to show anything"
    );
    let silence = longest_silence(from, &pings, to);
    eprintln!(
        "{} pings in a {took:?} backup to a slow provider; longest without one: {silence:?}",
        pings.len()
    );
    assert!(
        silence < Duration::from_secs(1),
        "{silence:?} without a ping during a {took:?} backup, asked 1 s: systemd would kill the daemon{}",
        device.log_tail()
    );
}

#[test]
fn a_backup_hung_in_its_provider_stops_the_watchdog_pings_and_sigterm_still_stops_it() {
    let mut fixture = BackedUp::new(40, 5);
    fixture.device.stop();
    // Every put hangs in the plugin for ten minutes: the engine is stuck.
    let hung = Target::faulty(
        TARGET,
        &fixture.target,
        json!({ "slow_ms": 600_000, "slow_op": "put" }),
    );
    fixture
        .device
        .reconfigure(Setup::new(fixture.store.dir(), vec![hung]));
    let notify = notify_socket(&mut fixture.device);
    fixture.device.set_env("WATCHDOG_USEC", "1000000");
    fixture.device.start();
    fixture.store.append(20);
    let device = &fixture.device;
    let backup = std::thread::scope(|scope| {
        let backup = scope.spawn(|| device.ctl(&["backup", "--wait"]));
        let first = notify.wait_for("WATCHDOG=1", WAIT).0;
        assert!(
            first.is_some(),
            "no ping before the hang{}",
            device.log_tail()
        );
        let stuck = wait::poll(WAIT, || {
            (device.status().targets[0].requests.in_flight > 0).then_some(())
        });
        assert!(stuck.is_some(), "the backup never reached its provider");
        // A quiet 3 s (six ping intervals) must come: the pings stop while the engine hangs.
        let quiet = wait::poll(WAIT, || {
            notify.next(Duration::from_secs(3)).is_none().then_some(())
        });
        assert!(
            quiet.is_some(),
            "the watchdog pings went on while the backup hung{}",
            device.log_tail()
        );
        signal(device.pid().expect("running"), "TERM");
        backup.join().expect("the backup's client")
    });
    fixture.device.stop_after_signal();
    assert_ne!(
        backup.code,
        Some(0),
        "the hung backup cannot have finished: {backup}"
    );
    let (stopping, _) = notify.wait_for("STOPPING=1", WAIT);
    assert!(stopping.is_some(), "no STOPPING=1 at SIGTERM");

    // The repository stopped mid-backup is valid, and the next backup completes it.
    fixture.device.reconfigure(Setup::new(
        fixture.store.dir(),
        vec![Target::local(TARGET, &fixture.target)],
    ));
    fixture.device.start();
    let verify: VerifyReport = fixture.device.ctl_json(&["verify"]);
    assert!(verify.problems.is_empty(), "{verify:?}");
    let report = fixture.device.backup();
    let listed: Vec<String> = fixture
        .device
        .snapshots()
        .into_iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(listed, vec![fixture.snapshots[0].clone(), report.snapshot]);
    fixture.device.stop();
}

/// Socket activation (systemd/sealbackd.socket), with systemd-socket-activate as systemd:
/// the daemon serves the socket it is passed rather than binding its own, says READY=1, and
/// leaves the socket file, which is systemd's, in place when it stops.
#[test]
fn a_control_socket_systemd_passes_is_served_and_left_in_place() {
    let (_dir, mut device) = device();
    let socket = device.socket();
    let listen = format!("--listen={}", socket.display());
    let notify = notify_socket(&mut device);
    // systemd-socket-activate hands the program only the variables it is told to.
    let setenv = format!("--setenv=NOTIFY_SOCKET={}", notify.path().display());
    device.run_under(&["systemd-socket-activate", &listen, &setenv]);
    // systemd-socket-activate starts sealbackd on the first connection, which start() makes.
    device.start();
    let (ready, _) = notify.wait_for("READY=1", WAIT);
    assert!(ready.is_some(), "no READY=1{}", device.log_tail());
    device.generate_key();
    device.backup();
    let log = std::fs::read_to_string(device.log_path()).expect("read the log");
    assert!(
        log.contains("socket_from_systemd=true"),
        "the daemon did not serve the passed socket:\n{log}"
    );
    device.stop();
    use std::os::unix::fs::FileTypeExt as _;
    let kept = std::fs::symlink_metadata(&socket).map(|m| m.file_type().is_socket());
    assert!(
        matches!(kept, Ok(true)),
        "the daemon removed systemd's socket file {}: {kept:?}",
        socket.display()
    );
}

/// sealback-vault under `Type=notify`: READY=1 (naming where it serves) once it listens,
/// SIGHUP logged and survived, STOPPING=1 at SIGTERM, and a clean exit.
#[test]
fn the_vault_is_ready_once_it_listens_survives_sighup_and_says_stopping() {
    let mut vault =
        TestVault::start_with(&binaries::built("sealback-vault"), VaultOptions::default())
            .unwrap_or_else(|e| panic!("cannot start a vault: {e}"));
    // Served again by hand, on the port it kept, with a notify socket.
    vault.stop();
    let notify = NotifySocket::bind(&vault.dir().join("notify.sock"));
    let log = vault.dir().join("serve.log");
    let mut child = vault
        .command(&["serve"])
        .env("NOTIFY_SOCKET", notify.path())
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("sealback-vault serve");
    let (ready, before) = notify.wait_for("READY=1", WAIT);
    let ready = ready.unwrap_or_else(|| panic!("no READY=1: {before:?}"));
    let port = vault.url.rsplit(':').next().expect("port");
    assert!(
        has_line(
            &ready,
            &format!("STATUS=serving on https://127.0.0.1:{port}")
        ),
        "{ready}"
    );
    let address = format!("127.0.0.1:{port}");
    std::net::TcpStream::connect(&address).expect("READY=1 came before the vault listened");

    signal(child.id(), "HUP");
    let survived = wait::poll(WAIT, || {
        if child.try_wait().ok().flatten().is_some() {
            return Some(false);
        }
        let logged = std::fs::read_to_string(&log).unwrap_or_default();
        logged.contains("SIGHUP ignored").then_some(true)
    });
    assert_eq!(
        survived,
        Some(true),
        "the vault did not survive SIGHUP (or said nothing of it): {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    std::net::TcpStream::connect(&address).expect("the vault listens after SIGHUP");

    signal(child.id(), "TERM");
    let (stopping, between) = notify.wait_for("STOPPING=1", WAIT);
    assert!(stopping.is_some(), "no STOPPING=1 at SIGTERM: {between:?}");
    let exited = wait::poll(WAIT, || child.try_wait().ok().flatten()).expect("the vault stops");
    assert!(exited.success(), "the vault exited with {exited}");
}
