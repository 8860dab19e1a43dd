//! sealbackctl and sealbackd follow the command-line conventions: `--json` answers are JSON
//! on standard output, errors included; exit statuses say how a command ended (4: a backup
//! reached some targets only); `-q`/`-v`; a closed pipe ends a command quietly; a recovery key
//! written to a file reads back; backups, snapshots and restores count files alike.

use std::process::{Command, Stdio};

use sealback_daemon::control::api::{BackupReport, ErrorResponse, RestoreReport, Status};

use sealback_tests::{Device, Setup, Target, binaries};

use crate::fixtures::{BackedUp, TARGET, one_target_failing};

/// Parses what a `--json` command printed.
#[track_caller]
fn parsed<T: serde::de::DeserializeOwned>(ctl: &sealback_tests::device::Ctl) -> T {
    serde_json::from_str(&ctl.stdout)
        .unwrap_or_else(|e| panic!("stdout is not the expected JSON ({e}): {ctl}"))
}

#[test]
fn json_errors_are_json_on_stdout_with_the_daemons_stable_code() {
    let fixture = BackedUp::new(10, 5);
    let to = fixture.path("restored");
    let to = to.to_str().expect("UTF-8");
    let failed = fixture.device.ctl_fails(
        &[
            "--json", "restore", "latest", "--to", to, "--target", "nope",
        ],
        1,
    );
    let error: ErrorResponse = parsed(&failed);
    assert_eq!(error.error.code, "not-found", "{failed}");
    assert!(error.error.message.contains("nope"), "{failed}");
    assert!(
        failed.stderr.contains("nope"),
        "people still read stderr: {failed}"
    );

    // Nothing answers: sealbackctl's own code, and the exit status 3.
    let gone = Command::new(binaries::sealbackctl())
        .args(["--json", "--socket", "/nonexistent/sealback.sock", "status"])
        .output()
        .expect("run sealbackctl");
    assert_eq!(gone.status.code(), Some(3));
    let error: ErrorResponse = serde_json::from_slice(&gone.stdout).expect("a JSON error");
    assert_eq!(error.error.code, "unreachable");

    // Called wrongly (what the command-line parser refuses): `usage`, and the exit status 2.
    for wrong in [&["--json", "backup", "--bogus"][..], &["ls", "--json"]] {
        let usage = Command::new(binaries::sealbackctl())
            .args(wrong)
            .output()
            .expect("run sealbackctl");
        assert_eq!(usage.status.code(), Some(2), "{wrong:?}");
        let error: ErrorResponse = serde_json::from_slice(&usage.stdout)
            .unwrap_or_else(|e| panic!("{wrong:?}: not a JSON error ({e}): {usage:?}"));
        assert_eq!(error.error.code, "usage", "{wrong:?}");
        assert!(!error.error.message.is_empty(), "{wrong:?}");
        assert!(
            String::from_utf8_lossy(&usage.stderr).contains("Usage:"),
            "people still read stderr: {usage:?}"
        );
    }
    // Help is not an error, --json or not.
    let help = Command::new(binaries::sealbackctl())
        .args(["--json", "--help"])
        .output()
        .expect("run sealbackctl");
    assert_eq!(help.status.code(), Some(0));
}

#[test]
fn a_backup_that_reaches_some_targets_only_exits_4_with_its_report_on_stdout() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_store, mut device) = one_target_failing(dir.path(), 20);
    let partial = device.ctl_fails(&["--json", "backup", "--wait"], 4);
    let report: BackupReport = parsed(&partial);
    assert_eq!(report.target, TARGET, "{partial}");
    assert_eq!(report.failed.len(), 1, "{partial}");
    assert_eq!(report.failed[0].target, "flaky");
    assert!(partial.stderr.contains("flaky"), "{partial}");
    let text = device.ctl_fails(&["backup", "--wait"], 4);
    assert!(
        text.stdout.contains("failed:") && text.stdout.contains("flaky"),
        "{text}"
    );
    device.stop();
}

#[test]
fn a_closed_pipe_ends_sealbackctl_quietly() {
    let fixture = BackedUp::new(10, 5);
    // The reader is gone before sealbackctl writes its first line: every write fails.
    for _ in 0..5 {
        let mut child = Command::new(binaries::sealbackctl())
            .arg("--socket")
            .arg(fixture.device.socket())
            .arg("status")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run sealbackctl");
        drop(child.stdout.take());
        let output = child.wait_with_output().expect("wait for sealbackctl");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(0), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

#[test]
fn sealbackd_version_names_the_program_as_status_does() {
    let fixture = BackedUp::new(1, 5);
    let version = Command::new(binaries::sealbackd())
        .arg("--version")
        .output()
        .expect("run sealbackd --version");
    let version = String::from_utf8_lossy(&version.stdout).trim().to_owned();
    let status = fixture.device.ctl_ok(&["status"]);
    let daemon_line = status
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("daemon:"))
        .expect("a daemon line")
        .trim();
    assert_eq!(version, daemon_line, "{status}");
}

#[test]
fn a_recovery_key_written_to_a_file_is_read_back_from_it() {
    let fixture = BackedUp::new(10, 5);
    let device = Device::started(Setup::restoring_from(vec![Target::local(
        TARGET,
        &fixture.dir.path().join("other-target"),
    )]));
    let generated = device.ctl_ok(&["key", "generate"]);
    // `key generate > key.txt`: standard output is the file.
    assert!(generated.stderr.contains("Write it down"), "{generated}");
    let imported = device.ctl_stdin(&["key", "import", "--replace"], &generated.stdout);
    assert_eq!(imported.code, Some(0), "{imported}");
    let typo = device.ctl_stdin(&["key", "import", "--replace"], "Your key: 0000");
    assert!(
        typo.stderr.contains("'Y' (before the first digit)"),
        "positions count the digits before the character: {typo}"
    );
}

#[test]
fn quiet_prints_no_report_and_verbose_says_more() {
    let fixture = BackedUp::new(10, 5);
    let quiet = fixture.device.ctl_ok(&["-q", "status"]);
    assert_eq!(quiet.stdout, "", "{quiet}");
    let verbose = fixture.device.ctl_ok(&["-v", "status"]);
    assert!(verbose.stderr.contains("control socket"), "{verbose}");
    let failed = fixture
        .device
        .ctl_fails(&["-v", "verify", "--target", "nope"], 1);
    assert!(failed.stderr.contains("error [not-found]"), "{failed}");
    let help = fixture.device.ctl_ok(&["--help"]);
    assert!(
        help.stdout.contains("4  a backup reached some targets"),
        "the exit statuses are documented: {help}"
    );
}

#[test]
fn vault_commands_say_no_vault_is_configured_before_asking_for_a_password() {
    let fixture = BackedUp::new(1, 5);
    for command in [
        vec!["key", "set-password"],
        vec!["key", "recover"],
        vec!["key", "change-password"],
        vec!["key", "disable"],
    ] {
        // No password on standard input: asking for one would fail differently.
        let failed = fixture.device.ctl_fails(&command, 1);
        assert!(failed.stderr.contains("no vault configured"), "{failed}");
    }
}

#[test]
fn status_after_a_restart_shows_the_last_backup() {
    let mut fixture = BackedUp::new(10, 5);
    let before: Status = fixture.device.status();
    let last = before.last_backup.expect("the backup just made");
    fixture.device.stop();
    fixture.device.start();
    let after = fixture.device.status();
    assert_eq!(after.last_backup, Some(last), "{after:?}");
    fixture.device.stop();
}

#[test]
fn a_backup_that_changes_nothing_says_so() {
    let fixture = BackedUp::new(10, 5);
    let again = fixture.device.backup();
    assert!(again.unchanged, "{again:?}");
    assert_eq!(again.snapshot, fixture.snapshots[0]);
    let text = fixture.device.ctl_ok(&["backup", "--wait"]);
    assert!(text.stdout.contains("nothing changed"), "{text}");
    fixture.store.append(5);
    assert!(!fixture.device.backup().unchanged);
}

#[test]
fn snapshots_and_restore_count_files_the_same_way() {
    let fixture = BackedUp::new(20, 5);
    let listed = fixture.device.snapshots();
    let restored: RestoreReport = fixture.device.restore("latest", &fixture.path("restored"));
    assert_eq!(restored.files, listed[0].files, "{restored:?} {listed:?}");
    assert!(restored.database.is_some());
    let text = fixture.device.ctl_ok(&[
        "restore",
        "latest",
        "--to",
        fixture.path("again").to_str().expect("UTF-8"),
    ]);
    assert!(
        text.stdout
            .contains(&format!("the database and {} files", listed[0].files)),
        "{text}"
    );
}

/// When every target fails, the error names each of them, not the first alone.
#[test]
fn a_backup_that_fails_on_every_target_names_each() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = sealback_tests::store::MessageStore::create(&dir.path().join("store"), 5);
    store.append(10);
    let failing = |name: &str| {
        Target::faulty(
            name,
            &dir.path().join(name),
            // The key's config goes in; the backup's packs do not.
            serde_json::json!({ "fail": "put", "kind": "permanent", "only": "data/" }),
        )
    };
    let mut device = Device::started(Setup::new(
        store.dir(),
        vec![failing("first"), failing("second")],
    ));
    device.generate_key();
    let failed = device.ctl_fails(&["--json", "backup", "--wait"], 1);
    let error: ErrorResponse = parsed(&failed);
    for target in ["first", "second"] {
        assert!(error.error.message.contains(target), "{failed}");
        assert!(failed.stderr.contains(target), "{failed}");
    }
    device.stop();
}

#[test]
fn a_store_without_its_database_is_an_error_not_an_empty_backup() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("store");
    std::fs::create_dir_all(store.join("Media")).expect("mkdir");
    std::fs::write(store.join("Media/a.jpg"), b"jpeg").expect("write");
    let mut device = Device::started(Setup::new(
        &store,
        vec![Target::local(TARGET, &dir.path().join("target"))],
    ));
    device.generate_key();
    let failed = device.ctl_fails(&["--json", "backup", "--wait"], 1);
    let error: ErrorResponse = parsed(&failed);
    assert_eq!(error.error.code, "no-database", "{failed}");
    assert!(error.error.message.contains("msgstore.db"), "{failed}");
    device.stop();
}

/// `plugin check` stores its objects under a fresh prefix and removes them; the local
/// provider removes the directories that held them too, so the target is as it was.
#[test]
fn plugin_check_leaves_the_target_as_it_found_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let target = dir.path().join("target");
    std::fs::create_dir(&target).expect("mkdir");
    std::fs::write(target.join("mine.txt"), b"kept").expect("write");
    let plugin = binaries::plugins_dir().join("libsealback_local.so");
    let options = serde_json::json!({ "path": target }).to_string();
    let device = Device::new(Setup::restoring_from(Vec::new()));
    let checked = device.ctl_ok(&[
        "plugin",
        "check",
        plugin.to_str().expect("UTF-8"),
        "--options",
        &options,
    ]);
    assert!(checked.stdout.contains("0 failed"), "{checked}");
    let left: Vec<_> = std::fs::read_dir(&target)
        .expect("read_dir")
        .map(|entry| entry.expect("entry").file_name())
        .collect();
    assert_eq!(left, ["mine.txt"], "the check left {left:?} in the target");
}

#[test]
fn plugin_check_blames_bad_options_on_the_options() {
    let dir = tempfile::tempdir().expect("tempdir");
    let plugin = binaries::plugins_dir().join("libsealback_local.so");
    let plugin = plugin.to_str().expect("UTF-8");
    let device = Device::new(Setup::restoring_from(Vec::new()));
    let refused = device.ctl(&["plugin", "check", plugin, "--options", r#"{"path": 5}"#]);
    assert_eq!(refused.code, Some(2), "{refused}");
    assert!(
        refused
            .stderr
            .contains("refused the options given with --options")
            && !refused
                .stderr
                .contains("does not keep the provider contract"),
        "{refused}"
    );
    let as_json = device.ctl(&[
        "--json",
        "plugin",
        "check",
        plugin,
        "--options",
        r#"{"path": 5}"#,
    ]);
    let error: ErrorResponse = parsed(&as_json);
    assert_eq!(error.error.code, "usage", "{as_json}");
    let not_json = device.ctl(&["plugin", "check", plugin, "--options", "{path:"]);
    assert_eq!(not_json.code, Some(2), "{not_json}");
    assert!(
        not_json.stderr.contains("--options is not valid JSON"),
        "{not_json}"
    );
    let help = device.ctl_ok(&["plugin", "check", "--help"]);
    assert!(help.stdout.contains("skipped without them"), "{help}");
    drop(dir);
}
