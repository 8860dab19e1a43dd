//! The `gdrive` provider against the Drive v3 emulator (tests/src/drive), loaded as sealbackd
//! loads it: the conformance kit passes, also while Drive pages its listings in sevens, refuses
//! access tokens and answers slowly; Drive's errors reach the host as the ABI's kinds; a cut
//! resumable upload resumes from the offset Drive confirms; duplicate names are resolved and
//! cleaned up; and the kit passes while Drive refuses, cuts and duplicates now and then, the
//! kit retrying transient errors as sealbackd does.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};

use sealback_conformance::{Report, Settings, run_with};
use sealback_plugin_api::ErrorKind;
use sealback_plugin_api::host::{Instance, Plugin};
use sealback_tests::binaries;
use sealback_tests::drive::{
    DriveEmulator, DriveError, Fault, FaultAction, Matcher, Options, RequestKind, SCOPE_APPDATA,
};

/// A signed-in emulator and the refresh-token file that holds its token.
pub(crate) struct SignedIn {
    pub(crate) drive: DriveEmulator,
    pub(crate) token_file: PathBuf,
    _dir: tempfile::TempDir,
}

impl SignedIn {
    pub(crate) fn start(options: Options) -> SignedIn {
        let drive = DriveEmulator::start(options).expect("start the Drive emulator");
        let dir = tempfile::tempdir().expect("tempdir");
        let token_file = dir.path().join("drive.token");
        std::fs::write(&token_file, drive.issue_refresh_token(SCOPE_APPDATA)).expect("token");
        SignedIn {
            drive,
            token_file,
            _dir: dir,
        }
    }

    pub(crate) fn options(&self) -> Value {
        self.drive.provider_options(&self.token_file)
    }
}

fn open(options: &Value) -> Instance {
    let plugin =
        Plugin::load(&binaries::built("libsealback_gdrive.so")).unwrap_or_else(|e| panic!("{e}"));
    plugin
        .open(&options.to_string())
        .unwrap_or_else(|e| panic!("{e}"))
}

fn show(report: &Report) -> String {
    let lines: Vec<String> = report.cases.iter().map(ToString::to_string).collect();
    format!("{}\n{report}", lines.join("\n"))
}

fn passes_the_kit(signed_in: &SignedIn) {
    passes_the_kit_with(signed_in, signed_in.options());
}

/// The kit against the provider opened with `options` (the signed-in emulator's, adjusted).
fn passes_the_kit_with(signed_in: &SignedIn, options: Value) {
    let plugin = binaries::built("libsealback_gdrive.so");
    // A refresh token Drive does not know makes every call fail: the failed-put cases.
    let bogus = signed_in.token_file.with_file_name("bogus.token");
    std::fs::write(&bogus, "1//not-a-token").expect("bogus token");
    let mut failing = options.clone();
    failing["refresh_token_file"] = json!(bogus);
    let settings = Settings::new(options.to_string()).failing_options(failing.to_string());
    let report = run_with(&plugin, &settings, |case| eprintln!("gdrive: {case}"))
        .unwrap_or_else(|err| panic!("the kit cannot load {}: {err}", plugin.display()));
    assert_eq!(report.plugin.name, "gdrive");
    assert!(
        report.is_success(),
        "gdrive fails the kit:\n{}",
        show(&report)
    );
    let skipped = report.skipped_names();
    assert!(
        skipped.is_empty(),
        "skipped: {skipped:?}\n{}",
        show(&report)
    );
    let left: Vec<String> = signed_in
        .drive
        .app_data_files()
        .into_iter()
        .map(|f| f.name)
        .collect();
    assert!(left.is_empty(), "left in appDataFolder: {left:?}");
}

#[test]
fn gdrive_passes_the_conformance_kit() {
    passes_the_kit(&SignedIn::start(Options::default()));
}

#[test]
fn gdrive_passes_the_conformance_kit_under_faults_it_must_absorb() {
    // Faults the provider handles itself (transient ones are the daemon's to retry: see
    // `drive_errors_reach_the_host_as_abi_kinds`): listings of at most 7 files a page, access
    // tokens that expire within seconds and are refused (401) at random points, slow answers.
    let signed_in = SignedIn::start(Options {
        max_page_size: 7,
        access_token_lifetime: Duration::from_secs(2),
        ..Options::default()
    });
    let drive = &signed_in.drive;
    for kind in [
        RequestKind::List,
        RequestKind::GetMedia,
        RequestKind::CreateMultipart,
        RequestKind::Delete,
    ] {
        drive.inject(Fault::new(
            Matcher::kind(kind),
            FaultAction::Error(DriveError::auth_error()),
            1,
        ));
        drive.inject(Fault::new(
            Matcher::kind(kind),
            FaultAction::Delay(Duration::from_millis(300)),
            2,
        ));
    }
    passes_the_kit(&signed_in);
    let counters = drive.counters();
    assert!(
        counters
            .requests
            .get(&RequestKind::Token)
            .copied()
            .unwrap_or(0)
            >= 5,
        "{counters:?}"
    );
}

#[test]
fn gdrive_passes_the_conformance_kit_under_transient_faults() {
    // Faults the daemon's retries absorb, which the kit retries as sealbackd does: every n-th
    // request of each kind refused (rate limits, 429 with Retry-After, 500, 503) a few times
    // each, spread over the run so that no call meets more than the host's attempts;
    // connections cut in the middle of multipart creates and of resumable chunks (objects
    // above 1 MiB go resumable); creates whose answer is lost, or whose file Drive stores twice
    // under one name; deletes whose answer is lost.
    let signed_in = SignedIn::start(Options::default());
    let drive = &signed_in.drive;
    let refusals = [
        (DriveError::rate_limit_exceeded(), 41),
        (DriveError::user_rate_limit_exceeded(), 43),
        (
            DriveError::too_many_requests(Some(Duration::from_secs(1))),
            47,
        ),
        (DriveError::backend_error(), 53),
        (DriveError::service_unavailable(), 59),
    ];
    for kind in [
        RequestKind::List,
        RequestKind::GetMedia,
        RequestKind::CreateMultipart,
        RequestKind::Delete,
    ] {
        for (error, every) in &refusals {
            drive.inject(
                Fault::new(Matcher::kind(kind), FaultAction::Error(error.clone()), 3).every(*every),
            );
        }
    }
    let spread = |kind, action, count, every| {
        drive.inject(Fault::new(Matcher::kind(kind), action, count).every(every));
    };
    spread(
        RequestKind::CreateMultipart,
        FaultAction::CutBodyAfter(100),
        3,
        37,
    );
    // The 64 MiB object goes up in 64 chunks: two of them are cut. The first session start
    // (the 1 MiB + 3 bytes object's) is refused.
    spread(
        RequestKind::ResumableChunk,
        FaultAction::CutBodyAfter(300_000),
        2,
        15,
    );
    spread(
        RequestKind::ResumableStart,
        FaultAction::Error(DriveError::backend_error()),
        1,
        1,
    );
    spread(RequestKind::CreateMultipart, FaultAction::Duplicate, 3, 41);
    spread(RequestKind::CreateMultipart, FaultAction::LoseAnswer, 2, 43);
    spread(RequestKind::Delete, FaultAction::LoseAnswer, 2, 47);
    let mut options = signed_in.options();
    options["resumable_threshold"] = json!(1 << 20);
    options["chunk_size"] = json!(1 << 20);

    passes_the_kit_with(&signed_in, options);
    let counters = drive.counters();
    assert!(counters.errors >= 40, "{counters:?}");
    assert!(
        counters.of(RequestKind::ResumableStatus) >= 2,
        "cut uploads resumed by asking Drive what it holds: {counters:?}"
    );
}

#[test]
fn drive_errors_reach_the_host_as_abi_kinds() {
    let signed_in = SignedIn::start(Options::default());
    let drive = &signed_in.drive;
    let gdrive = open(&signed_in.options());
    let cases = [
        (DriveError::rate_limit_exceeded(), ErrorKind::Transient),
        (DriveError::user_rate_limit_exceeded(), ErrorKind::Transient),
        (
            DriveError::too_many_requests(Some(Duration::from_secs(7))),
            ErrorKind::Transient,
        ),
        (DriveError::backend_error(), ErrorKind::Transient),
        (DriveError::service_unavailable(), ErrorKind::Transient),
        (DriveError::storage_quota_exceeded(), ErrorKind::Quota),
    ];
    for (i, (error, kind)) in cases.into_iter().enumerate() {
        let shown = format!("{error:?}");
        let name = format!("a{i}");
        drive.fail_next(Some(RequestKind::CreateMultipart), error, 1);
        let err = gdrive.put(&name, b"x").expect_err(&shown);
        assert_eq!(err.kind(), kind, "{shown}: {err}");
        let before = drive
            .counters()
            .requests
            .get(&RequestKind::CreateMultipart)
            .copied();
        gdrive
            .put(&name, b"x")
            .unwrap_or_else(|e| panic!("after {shown}: {e}"));
        // One attempt per put: the plugin retries nothing itself.
        assert_eq!(
            drive
                .counters()
                .requests
                .get(&RequestKind::CreateMultipart)
                .copied(),
            before.map(|n| n + 1)
        );
    }
    drive.fail_next(
        Some(RequestKind::List),
        DriveError::too_many_requests(Some(Duration::from_secs(7))),
        1,
    );
    let err = gdrive.list("").expect_err("429");
    assert_eq!(err.retry_after(), Some(Duration::from_secs(7)), "{err}");

    // 401 twice in a row: refreshed once, then an authentication error.
    drive.fail_next(Some(RequestKind::GetMedia), DriveError::auth_error(), 2);
    let err = gdrive.get("a0").expect_err("401 twice");
    assert_eq!(err.kind(), ErrorKind::Auth, "{err}");
    assert_eq!(&gdrive.get("a0").expect("then fine")[..], b"x");

    // A full Drive.
    drive.set_quota(Some(10));
    let err = gdrive.put("big", &[7; 100]).expect_err("over quota");
    assert_eq!(err.kind(), ErrorKind::Quota, "{err}");
    assert!(err.to_string().contains("full"), "{err}");
    drive.set_quota(None);
}

#[test]
fn a_target_not_yet_authorized_says_what_to_run_and_works_once_the_token_is_there() {
    let drive = DriveEmulator::start(Options::default()).expect("emulator");
    let dir = tempfile::tempdir().expect("tempdir");
    let token_file = dir.path().join("drive.token");
    let gdrive = open(&drive.provider_options(&token_file));
    let err = gdrive.list("").expect_err("no token yet");
    assert_eq!(err.kind(), ErrorKind::Auth);
    assert!(err.to_string().contains("sealbackctl target auth"), "{err}");
    std::fs::write(&token_file, drive.issue_refresh_token(SCOPE_APPDATA)).expect("token");
    gdrive
        .put("now", b"works")
        .expect("the same instance works without reopening");

    // A revoked refresh token is an authentication error naming the file and the command.
    let revoked = std::fs::read_to_string(&token_file).expect("read token");
    drive.revoke_refresh_token(revoked.trim());
    drive.expire_access_tokens();
    let err = gdrive.get("now").expect_err("revoked");
    assert_eq!(err.kind(), ErrorKind::Auth, "{err}");
    assert!(
        err.to_string().contains("sealbackctl target auth")
            && err.to_string().contains("drive.token"),
        "{err}"
    );
    assert!(
        !err.to_string().contains(revoked.trim()),
        "the token is in the message: {err}"
    );
}

#[test]
fn a_cut_resumable_upload_resumes_from_the_offset_drive_confirms() {
    let signed_in = SignedIn::start(Options::default());
    let drive = &signed_in.drive;
    let mut options = signed_in.options();
    options["resumable_threshold"] = json!(1 << 20);
    options["chunk_size"] = json!(1 << 20);
    let gdrive = open(&options);
    let object: Vec<u8> = (0..3_500_000u32).map(|i| (i % 251) as u8).collect();
    // The second chunk's connection is cut after 600,000 of its bytes.
    drive.inject(Fault::new(
        Matcher::kind(RequestKind::ResumableChunk),
        FaultAction::Delay(Duration::ZERO),
        1,
    ));
    drive.cut_next_chunk_after(600_000);
    let err = gdrive.put("packs/big", &object).expect_err("the cut chunk");
    assert_eq!(err.kind(), ErrorKind::Transient, "{err}");
    gdrive
        .put("packs/big", &object)
        .expect("the retried put resumes");
    assert_eq!(&gdrive.get("packs/big").expect("get")[..], &object[..]);
    let files = drive.app_data_named("packs/big");
    assert_eq!(files.len(), 1, "one file, no duplicate from the retry");
    let sessions = drive.upload_sessions();
    assert_eq!(
        sessions.len(),
        1,
        "the retry used the same session: {sessions:?}"
    );
    let total = object.len() as u64;
    let resent = sessions[0].bytes_received - total;
    assert!(
        resent > 0 && resent < total,
        "re-sent {resent} of {total} bytes: {sessions:?}"
    );
    assert!(
        resent < 1 << 20,
        "re-sent more than the cut chunk: {resent}"
    );
}

#[test]
fn duplicate_names_are_read_deterministically_and_a_put_leaves_one_file() {
    let signed_in = SignedIn::start(Options::default());
    let drive = &signed_in.drive;
    let gdrive = open(&signed_in.options());
    drive.put_file("snap/1", b"first", true);
    drive.put_file("snap/1", b"second", true);
    // Every reader picks the same one of the two (the oldest, then the smallest id).
    let read = gdrive.get("snap/1").expect("get");
    assert!(&read[..] == b"first" || &read[..] == b"second");
    for _ in 0..3 {
        assert_eq!(open(&signed_in.options()).get("snap/1").expect("get"), read);
    }
    let listed = gdrive.list("snap/").expect("list");
    assert_eq!(listed.len(), 1, "{listed:?}");
    gdrive.put("snap/1", b"third").expect("put");
    let files = drive.app_data_named("snap/1");
    assert_eq!(files.len(), 1, "{files:?}");
    assert_eq!(&gdrive.get("snap/1").expect("get")[..], b"third");
    // The name cache is refreshed when the file it names is gone.
    let other = open(&signed_in.options());
    other
        .put("snap/1", b"fourth")
        .expect("put through a second instance");
    assert_eq!(&gdrive.get("snap/1").expect("get")[..], b"fourth");
    // A put whose answer was lost leaves no duplicate once it is retried.
    drive.inject(Fault::new(
        Matcher::kind(RequestKind::CreateMultipart),
        FaultAction::LoseAnswer,
        1,
    ));
    let err = gdrive
        .put("snap/2", b"lost")
        .expect_err("the answer is lost");
    assert_eq!(err.kind(), ErrorKind::Transient, "{err}");
    gdrive.put("snap/2", b"lost").expect("retry");
    assert_eq!(drive.app_data_named("snap/2").len(), 1);
    gdrive.remove("snap/1").expect("remove");
    gdrive.remove("snap/2").expect("remove");
    assert!(drive.app_data_files().is_empty());
}
