//! sealbackd with a `gdrive` target on the Drive v3 emulator: a backup (while Drive rate-limits
//! and fails now and then, which the daemon retries) restores on a fresh device; an upload cut
//! mid-way resumes through the daemon's retry; a target not yet authorized does not stop the
//! daemon, `status` names it from the start and says what to run, and `sealbackctl target auth`
//! completes the device flow (polling through `authorization_pending` and `slow_down`), after
//! which the same daemon backs up to it at once without a restart; and the local disk on every
//! change beside Drive daily, in one configuration.

use std::time::Duration;

use serde_json::json;

use sealback_tests::drive::{
    DevicePoll, DriveEmulator, DriveError, Fault, FaultAction, Matcher, Options, RequestKind,
};
use sealback_tests::store::check_restored;
use sealback_tests::wait::poll;
use sealback_tests::{Ctl, Device, MessageStore, Setup, Target};

use crate::gdrive::SignedIn;

const TARGET: &str = "drive";

#[test]
fn a_store_backed_up_to_drive_restores_on_a_new_device() {
    let signed_in = SignedIn::start(Options::default());
    let drive = &signed_in.drive;
    let dir = tempfile::tempdir().expect("tempdir");
    let store = MessageStore::create(&dir.path().join("store"), 7);
    store.append(120);
    let target = Target::new(TARGET, "gdrive", signed_in.options());
    let mut device = Device::started(Setup::new(store.dir(), vec![target.clone()]));
    let recovery_key = device.generate_key();
    // Drive says "slow down" and fails now and then: the daemon's retries absorb it.
    drive.inject(Fault::new(
        Matcher::kind(RequestKind::CreateMultipart),
        FaultAction::Error(DriveError::user_rate_limit_exceeded()),
        2,
    ));
    drive.inject(Fault::new(
        Matcher::kind(RequestKind::List),
        FaultAction::Error(DriveError::backend_error()),
        1,
    ));
    drive.inject(Fault::new(
        Matcher::any(),
        FaultAction::Error(DriveError::too_many_requests(Some(Duration::from_secs(1)))),
        1,
    ));
    let first = device.backup();
    store.append(30);
    let second = device.backup();
    let status = device.status();
    device.stop();
    let shown = status
        .targets
        .iter()
        .find(|t| t.name == TARGET)
        .expect("the target in status");
    assert!(
        shown.requests.retries >= 3,
        "the daemon retried Drive's refusals: {:?}",
        shown.requests
    );
    assert!(
        drive.app_data_files().len() > 3,
        "objects live in appDataFolder"
    );
    // With the default options, a full (4 MiB) pack goes up resumable, so that a cut
    // connection does not send it again from the start.
    let sessions = drive.upload_sessions();
    assert!(
        !sessions.is_empty() && sessions.iter().all(|s| s.file_id.is_some()),
        "{sessions:?}"
    );

    let fresh = Device::started(Setup::restoring_from(vec![target]));
    fresh.import_key(&recovery_key);
    for (snapshot, messages) in [(&first.snapshot, 120), (&second.snapshot, 150)] {
        let to = fresh.root().join(format!("restored-{}", &snapshot[..8]));
        fresh.restore(snapshot, &to);
        let restored = check_restored(&to).unwrap_or_else(|e| {
            panic!(
                "snapshot {snapshot} restored wrong: {e}{}",
                fresh.log_tail()
            )
        });
        assert_eq!(restored.messages, messages, "snapshot {snapshot}");
    }
}

/// A pack's upload is cut mid-way during a daemon backup: the daemon retries the put, the
/// plugin asks Drive how much it holds and sends only the rest, on the same session.
#[test]
fn a_cut_upload_during_a_backup_resumes_and_the_snapshot_restores() {
    const CHUNK: u64 = 1 << 20;
    let signed_in = SignedIn::start(Options::default());
    let drive = &signed_in.drive;
    let dir = tempfile::tempdir().expect("tempdir");
    // Every second message has an image of 50-400 KB: about 7 MB, so full 4 MiB packs.
    let store = MessageStore::create(&dir.path().join("store"), 2);
    store.append(60);
    let mut options = signed_in.options();
    options["resumable_threshold"] = json!(CHUNK);
    options["chunk_size"] = json!(CHUNK);
    let target = Target::new(TARGET, "gdrive", options);
    let mut device = Device::started(Setup::new(store.dir(), vec![target.clone()]));
    let recovery_key = device.generate_key();
    // The first chunk of the first resumable upload is cut after 600,000 of its bytes: Drive
    // keeps the whole 256 KiB units that arrived (524,288 bytes).
    drive.cut_next_chunk_after(600_000);
    let report = device.backup();
    let status = device.status();
    device.stop();
    assert!(
        status.targets[0].requests.retries >= 1,
        "the daemon retried the cut put: {:?}",
        status.targets[0].requests
    );
    let sessions = drive.upload_sessions();
    assert!(!sessions.is_empty(), "no pack went up resumable");
    for session in &sessions {
        assert!(
            session.file_id.is_some(),
            "an upload was left unfinished: {session:?}"
        );
    }
    // The retry resumed the cut session instead of starting a new one for the same object.
    let mut names: Vec<&str> = sessions.iter().map(|s| s.name.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(
        names.len(),
        sessions.len(),
        "a session was started over: {sessions:?}"
    );
    let resumed: Vec<_> = sessions
        .iter()
        .filter(|s| s.bytes_received > s.total.unwrap_or(0))
        .collect();
    assert_eq!(resumed.len(), 1, "{sessions:?}");
    let total = resumed[0].total.expect("a known size");
    let resent = resumed[0].bytes_received - total;
    assert!(
        resent < total && resent < CHUNK,
        "re-sent {resent} bytes of a {total}-byte object: {:?}",
        resumed[0]
    );
    assert_eq!(
        drive.app_data_named(&resumed[0].name).len(),
        1,
        "one file, no duplicate from the retry"
    );

    let fresh = Device::started(Setup::restoring_from(vec![target]));
    fresh.import_key(&recovery_key);
    let to = fresh.root().join("restored");
    fresh.restore(&report.snapshot, &to);
    let restored = check_restored(&to).unwrap_or_else(|e| panic!("{e}{}", fresh.log_tail()));
    assert_eq!(restored.messages, 60);
}

#[test]
fn sealbackctl_target_auth_completes_the_device_flow_and_the_target_starts_working() {
    let (drive, dir, token_file) = not_signed_in(None);
    let store = MessageStore::create(&dir.path().join("store"), 7);
    store.append(40);
    // Daily: a failed backup is tried again after a wait (30 s, then longer).
    let target = Target::new(TARGET, "gdrive", drive.provider_options(&token_file))
        .with("schedule", json!("daily"));
    let device = Device::started(Setup::new(store.dir(), vec![target]));
    device.generate_key();

    // Not authorized: the daemon runs, the backup fails, and status says what to run.
    device.ctl(&["backup", "--wait"]);
    let failed_at = std::time::Instant::now();
    let status = device.status();
    let shown = status
        .targets
        .iter()
        .find(|t| t.name == TARGET)
        .expect("the target in status");
    let error = shown.last_error.clone().unwrap_or_default();
    assert!(
        error.contains("sealbackctl target auth drive"),
        "status: {error}"
    );

    // The person approves the code `sealbackctl target auth` shows, after the plugin has
    // polled twice and heard `authorization_pending` (RFC 8628 §3.5): it keeps polling, once
    // an interval (1 s), until the approval.
    let (auth, code) = authorize(&drive, &device, |polls| {
        polls
            .iter()
            .filter(|p| p.answer == "authorization_pending")
            .count()
            >= 2
    });
    let polls = drive.device_polls(&code);
    let answers: Vec<&str> = polls.iter().map(|p| p.answer).collect();
    assert_eq!(
        answers,
        ["authorization_pending", "authorization_pending", "ok"],
        "{polls:?}"
    );
    for pair in polls.windows(2) {
        assert!(
            pair[1].at - pair[0].at >= Duration::from_secs(1),
            "polled faster than the interval: {polls:?}"
        );
    }
    assert!(
        auth.stderr.contains(&code) && auth.stderr.contains("/device"),
        "{auth}"
    );
    assert!(auth.stdout.contains("authorized"), "{auth}");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&token_file)
            .expect("token file")
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    let token = std::fs::read_to_string(&token_file).expect("token");
    let log = std::fs::read_to_string(device.log_path()).unwrap_or_default();
    assert!(
        !log.contains(token.trim()),
        "the refresh token is in the daemon's log"
    );
    assert!(!auth.stdout.contains(token.trim()) && !auth.stderr.contains(token.trim()));

    // The same daemon, not restarted, backs up to Drive at once: the authorization ended the
    // target's wait after its failure (which would have lasted until 30 s after it).
    let snapshots = poll(Duration::from_secs(15), || {
        let shown = device.status().targets[0].clone();
        (shown.snapshots > 0).then_some(shown)
    })
    .unwrap_or_else(|| panic!("no backup after the authorization{}", device.log_tail()));
    assert!(
        failed_at.elapsed() < Duration::from_secs(30),
        "too slow to tell the retry apart"
    );
    assert_eq!(snapshots.last_error, None);
    assert!(!drive.app_data_files().is_empty());
}

/// A Drive target not authorized yet is named in `status` as soon as the daemon has started,
/// before any backup has tried it, with the command to run; `target auth` clears that.
#[test]
fn status_names_a_target_not_yet_authorized_from_the_start() {
    let (drive, dir, token_file) = not_signed_in(None);
    let store = MessageStore::create(&dir.path().join("store"), 7);
    let disk = Target::local("disk", &dir.path().join("disk"));
    let cloud = Target::new(TARGET, "gdrive", drive.provider_options(&token_file));
    // Manual: nothing is backed up unless asked.
    let device = Device::started(Setup::new(store.dir(), vec![disk, cloud]));
    let shown = poll(Duration::from_secs(15), || {
        let status = device.status();
        let error = status.targets[1].last_error.clone()?;
        Some((status, error))
    });
    let (status, error) = shown.unwrap_or_else(|| {
        panic!(
            "status does not name the unauthorized target: {:?}{}",
            device.status().targets,
            device.log_tail()
        )
    });
    assert!(
        error.contains("sealbackctl target auth drive") && error.contains("drive"),
        "{error}"
    );
    assert!(status.last_backup.is_none(), "a backup ran: {status:?}");
    assert_eq!(status.targets[0].last_error, None, "the disk is fine");
    let shown = device.ctl_ok(&["status"]);
    assert!(
        shown.stdout.contains("sealbackctl target auth drive"),
        "{shown}"
    );

    let (auth, _) = authorize(&drive, &device, |_| true);
    assert!(auth.stdout.contains("authorized"), "{auth}");
    assert_eq!(device.status().targets[1].last_error, None);
}

/// The token endpoint enforces a longer interval than it advertised (2 s, not 1 s): the
/// plugin's second poll hears `slow_down`, and from then on it polls 5 s less often (RFC 8628
/// §3.5: 1 + 5 = 6 s), which the emulator then accepts.
#[test]
fn target_auth_polls_5_s_slower_after_slow_down() {
    let (drive, dir, token_file) = not_signed_in(Some(Duration::from_secs(2)));
    let store = MessageStore::create(&dir.path().join("store"), 7);
    let target = Target::new(TARGET, "gdrive", drive.provider_options(&token_file));
    let device = Device::started(Setup::new(store.dir(), vec![target]));
    let (auth, code) = authorize(&drive, &device, |polls| {
        polls.iter().any(|p| p.answer == "slow_down")
    });
    assert!(auth.stdout.contains("authorized"), "{auth}");
    let polls = drive.device_polls(&code);
    let answers: Vec<&str> = polls.iter().map(|p| p.answer).collect();
    assert_eq!(
        answers,
        ["authorization_pending", "slow_down", "ok"],
        "{polls:?}"
    );
    let after_slow_down = polls[2].at - polls[1].at;
    assert!(
        after_slow_down >= Duration::from_secs(6),
        "polled again {after_slow_down:?} after slow_down: {polls:?}"
    );
    assert!(token_file.is_file());
}

/// An emulator whose device flow advertises a 1 s interval (and enforces `enforced`, if
/// given), a directory, and the refresh-token file in it, not written yet.
fn not_signed_in(
    enforced: Option<Duration>,
) -> (DriveEmulator, tempfile::TempDir, std::path::PathBuf) {
    let drive = DriveEmulator::start(Options {
        device_poll_interval: Duration::from_secs(1),
        device_poll_enforced: enforced,
        ..Options::default()
    })
    .expect("emulator");
    let dir = tempfile::tempdir().expect("tempdir");
    let token_file = dir.path().join("drive.token");
    (drive, dir, token_file)
}

/// Runs `sealbackctl target auth drive` while a person approves its code once the polls of
/// the token endpoint so far satisfy `approve_when`; its output and the user code.
fn authorize(
    drive: &DriveEmulator,
    device: &Device,
    approve_when: impl Fn(&[DevicePoll]) -> bool + Sync,
) -> (Ctl, String) {
    std::thread::scope(|scope| {
        let approver = scope.spawn(|| {
            let code = poll(Duration::from_secs(60), || {
                drive.pending_user_codes().into_iter().next()
            });
            let code = code.expect("a user code was requested");
            let ready = poll(Duration::from_secs(60), || {
                approve_when(&drive.device_polls(&code)).then_some(())
            });
            ready.unwrap_or_else(|| panic!("polls: {:?}", drive.device_polls(&code)));
            assert!(drive.approve(&code));
            code
        });
        let auth = device.ctl_ok(&["target", "auth", TARGET]);
        let code = approver.join().expect("approver");
        (auth, code)
    })
}

/// The app's usual settings: the local disk follows every change, Drive gets a daily backup.
/// A change reaches the disk alone; Drive's next backup is planned a day after its last;
/// asked for, a backup covers both, and Drive's latest snapshot restores on a new device.
#[test]
fn local_disk_on_change_and_drive_daily_in_one_configuration() {
    let signed_in = SignedIn::start(Options::default());
    let drive = &signed_in.drive;
    let dir = tempfile::tempdir().expect("tempdir");
    let store = MessageStore::create(&dir.path().join("store"), 7);
    store.append(40);
    let disk = Target::local("disk", &dir.path().join("disk"));
    let cloud = Target::new(TARGET, "gdrive", signed_in.options()).with("schedule", json!("daily"));
    let mut device =
        Device::started(Setup::new(store.dir(), vec![disk, cloud.clone()]).on_change("200ms"));
    let recovery_key = device.generate_key();
    // Both once by hand (Drive may also have made its first daily backup right after start).
    device.backup();
    let counts = |device: &Device| -> (u64, u64) {
        let status = device.status();
        (status.targets[0].snapshots, status.targets[1].snapshots)
    };
    let before = counts(&device);
    let drive_files = drive.app_data_files().len();

    store.append(25);
    let after = poll(Duration::from_secs(30), || {
        let now = counts(&device);
        (now.0 > before.0).then_some(now)
    })
    .unwrap_or_else(|| {
        panic!(
            "no change-triggered snapshot on the disk{}",
            device.log_tail()
        )
    });
    assert_eq!(after.1, before.1, "the change was backed up to Drive too");
    assert_eq!(
        drive.app_data_files().len(),
        drive_files,
        "the change wrote to Drive"
    );

    let status = device.status();
    let shown = &status.targets[1];
    assert_eq!(
        (shown.name.as_str(), shown.schedule.as_str()),
        (TARGET, "interval (1day)")
    );
    let (last, next) = (
        shown.last_snapshot_unix_ms.expect("Drive has a snapshot"),
        shown
            .next_backup_unix_ms
            .expect("Drive has a planned backup"),
    );
    assert!(
        (next - (last + 86_400_000)).abs() < 60_000,
        "next Drive backup at {next}, its last at {last}"
    );

    // Asked for: Drive catches up (the disk has nothing new since the change's backup), and
    // its snapshot holds the latest messages.
    device.backup();
    assert_eq!(counts(&device), (after.0, after.1 + 1));
    device.stop();
    let fresh = Device::started(Setup::restoring_from(vec![cloud]));
    fresh.import_key(&recovery_key);
    let to = fresh.root().join("restored");
    fresh.restore("latest", &to);
    let restored = check_restored(&to).unwrap_or_else(|e| panic!("{e}{}", fresh.log_tail()));
    assert_eq!(restored.messages, 65);
}

#[test]
fn target_auth_for_a_target_without_an_authorization_step_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = MessageStore::create(&dir.path().join("store"), 7);
    let device = Device::started(Setup::new(
        store.dir(),
        vec![Target::local("disk", &dir.path().join("disk"))],
    ));
    let refused = device.ctl(&["target", "auth", "disk"]);
    assert_ne!(refused.code, Some(0), "{refused}");
    assert!(
        refused.stderr.contains("no authorization step"),
        "{refused}"
    );
    let unknown = device.ctl(&["target", "auth", "nope"]);
    assert!(unknown.stderr.contains("no target named"), "{unknown}");
}
