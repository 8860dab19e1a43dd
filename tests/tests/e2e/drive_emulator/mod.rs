//! The Drive v3 emulator (`sealback_tests::drive`) against the requests Google's own generated
//! client (`google-drive3`'s `DriveHub`) sends — multipart and resumable creates, files.list with
//! `q`/`spaces`/`fields`/`pageSize`/`pageToken`, `alt=media`, delete, error bodies — and, by
//! hand, the parts of the wire protocol that client does not speak: a resumable upload cut
//! mid-chunk and resumed after a status query, Retry-After, and the OAuth device flow.

mod wire;

use std::io::Cursor;
use std::time::Duration;

use google_drive3::api::{File, Scope};
use google_drive3::common::{self, Delegate};
use google_drive3::{DriveHub, Error as DriveClientError};
use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use sealback_tests::drive::{
    APP_DATA_FOLDER, CHUNK_GRANULE, DriveEmulator, DriveError, Fault, FaultAction, Matcher,
    Options, RequestKind,
};

pub(super) type Hub = DriveHub<HttpConnector>;

pub(super) fn hub(drive: &DriveEmulator, token: String) -> Hub {
    let client: common::Client<HttpConnector> =
        Client::builder(TokioExecutor::new()).build(HttpConnector::new());
    let mut hub = DriveHub::new(client, token);
    hub.root_url(drive.api_root());
    hub.base_url(format!("{}drive/v3/", drive.api_root()));
    hub
}

/// Bytes that would break a text parser of multipart bodies: every byte value, CRLFs and a
/// delimiter line of another boundary. (Not of the client's own: google-apis-common uses
/// one fixed boundary, so content holding `CRLF--MDuXWGyeE33QFXGchb2VFWc4Z7945d` would be
/// split there by Drive too.)
pub(super) fn awkward_content(len: usize) -> Vec<u8> {
    let mut content: Vec<u8> = (0..len).map(|i| (i * 7 + i / 251) as u8).collect();
    let trap = b"\r\n--MDuXWGyeE33QFXGchb2VFWc4Z7945c\r\n\r\n\0";
    if len > trap.len() * 2 {
        content[len / 2..len / 2 + trap.len()].copy_from_slice(trap);
    }
    content
}

fn app_file(name: &str) -> File {
    File {
        name: Some(name.to_string()),
        parents: Some(vec![APP_DATA_FOLDER.to_string()]),
        ..File::default()
    }
}

fn octet() -> mime::Mime {
    "application/octet-stream".parse().expect("mime")
}

/// A delegate that uploads in 256 KiB chunks (the client's default is larger).
struct SmallChunks;
impl Delegate for SmallChunks {
    fn chunk_size(&mut self) -> u64 {
        CHUNK_GRANULE
    }
}

fn reason(err: &DriveClientError) -> String {
    match err {
        DriveClientError::BadRequest(v) => v["error"]["errors"][0]["reason"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        other => format!("not a Drive error body: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn google_drive3_creates_lists_reads_and_deletes_through_the_emulator() {
    let drive = DriveEmulator::start(Options::default()).expect("start the emulator");
    let hub = hub(&drive, drive.issue_access_token());

    // Multipart create, binary content.
    let small = awkward_content(5000);
    let (_, created) = hub
        .files()
        .create(app_file("pack-small"))
        .add_scope(Scope::Appdata)
        .param("fields", "id,name,size,parents")
        .upload(Cursor::new(small.clone()), octet())
        .await
        .expect("multipart create");
    assert_eq!(created.size, Some(small.len() as i64));
    assert_eq!(created.parents, Some(vec![APP_DATA_FOLDER.to_string()]));
    assert_eq!(
        drive.app_data_content("pack-small").as_deref(),
        Some(&small[..]),
        "stored bytes differ from those sent"
    );

    // Resumable create in 256 KiB chunks, the last one short.
    let big = awkward_content(2 * CHUNK_GRANULE as usize + 1234);
    let mut chunks = SmallChunks;
    let (_, created_big) = hub
        .files()
        .create(app_file("pack-big"))
        .delegate(&mut chunks)
        .upload_resumable(Cursor::new(big.clone()), octet())
        .await
        .expect("resumable create");
    assert_eq!(
        drive.app_data_content("pack-big").as_deref(),
        Some(&big[..])
    );
    let sessions = drive.upload_sessions();
    assert_eq!(sessions.len(), 1);
    assert_eq!(
        (sessions[0].requests, sessions[0].bytes_received),
        (3, big.len() as u64),
        "{sessions:?}"
    );
    let counters = drive.counters();
    assert_eq!(counters.of(RequestKind::ResumableStart), 1);
    assert_eq!(counters.of(RequestKind::ResumableChunk), 3);
    assert_eq!(counters.of(RequestKind::CreateMultipart), 1);
    assert_eq!(counters.bytes_uploaded, (small.len() + big.len()) as u64);

    // Files outside the hidden folder do not show in its space, nor it in theirs.
    drive.put_file("visible", b"x", false);
    for i in 0..7 {
        drive.put_file(&format!("idx-{i}"), &[i as u8; 10], true);
    }

    // files.list as a backup client pages through it: the server returns fewer than asked.
    drive.set_max_page_size(3);
    let mut names = Vec::new();
    let mut token: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut call = hub
            .files()
            .list()
            .spaces(APP_DATA_FOLDER)
            .q("'appDataFolder' in parents and trashed = false and name contains 'idx-'")
            .page_size(1000)
            .param("fields", "nextPageToken,files(id,name,size)");
        if let Some(t) = &token {
            call = call.page_token(t);
        }
        let (_, page) = call.doit().await.expect("files.list");
        pages += 1;
        for f in page.files.unwrap_or_default() {
            assert_eq!(f.size, Some(10), "size asked for in fields");
            assert!(f.mime_type.is_none(), "mimeType was not asked for");
            names.push(f.name.expect("name"));
        }
        token = page.next_page_token;
        if token.is_none() {
            break;
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(
        names,
        (0..7).map(|i| format!("idx-{i}")).collect::<Vec<_>>()
    );
    let (_, by_name) = hub
        .files()
        .list()
        .spaces(APP_DATA_FOLDER)
        .q("name = 'pack-big'")
        .doit()
        .await
        .expect("files.list by name");
    let found = by_name.files.expect("files");
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].id, created_big.id);
    let (_, visible) = hub
        .files()
        .list()
        .q("name = 'visible'")
        .doit()
        .await
        .expect("list space drive");
    assert_eq!(visible.files.map(|f| f.len()), Some(1));
    let (_, hidden) = hub
        .files()
        .list()
        .spaces(APP_DATA_FOLDER)
        .q("name = 'visible'")
        .doit()
        .await
        .expect("list");
    assert_eq!(hidden.files.map(|f| f.len()), Some(0));

    // alt=media.
    let id = created_big.id.clone().expect("id");
    let (response, _) = hub
        .files()
        .get(&id)
        .param("alt", "media")
        .doit()
        .await
        .expect("files.get alt=media");
    let body = response
        .into_body()
        .collect()
        .await
        .expect("read media")
        .to_bytes();
    assert_eq!(&body[..], &big[..]);

    // Delete, then 404 in Drive's shape.
    hub.files().delete(&id).doit().await.expect("files.delete");
    let err = hub.files().get(&id).doit().await.expect_err("deleted file");
    assert_eq!(reason(&err), "notFound");
    assert!(drive.app_data_content("pack-big").is_none());

    // A query the emulator does not understand is refused as Drive does, naming q.
    let err = hub
        .files()
        .list()
        .q("size > 3")
        .doit()
        .await
        .expect_err("unsupported query");
    match &err {
        DriveClientError::BadRequest(v) => {
            assert_eq!(v["error"]["errors"][0]["location"], "q", "{v}")
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_and_faults_reach_google_drive3_as_drive_sends_them() {
    let drive = DriveEmulator::start(Options::default()).expect("start the emulator");
    let hub = hub(&drive, drive.issue_access_token());
    let list = || hub.files().list().spaces(APP_DATA_FOLDER).doit();

    let cases = [
        (DriveError::rate_limit_exceeded(), "rateLimitExceeded"),
        (
            DriveError::user_rate_limit_exceeded(),
            "userRateLimitExceeded",
        ),
        (
            DriveError::too_many_requests(Some(Duration::from_secs(2))),
            "rateLimitExceeded",
        ),
        (DriveError::backend_error(), "backendError"),
        (DriveError::service_unavailable(), "backendError"),
    ];
    for (error, expected) in cases {
        drive.fail_next(Some(RequestKind::List), error, 1);
        assert_eq!(reason(&list().await.expect_err("injected")), expected);
        list().await.expect("the fault is used up");
    }

    // Quota: an upload past it is refused and nothing is stored.
    drive.set_quota(Some(1000));
    let err = hub
        .files()
        .create(app_file("too-big"))
        .upload(Cursor::new(vec![1u8; 2000]), octet())
        .await
        .expect_err("over quota");
    assert_eq!(reason(&err), "storageQuotaExceeded");
    assert_eq!(drive.counters().objects_stored, 0);
    drive.set_quota(None);

    // A lost answer: the create happened, the client cannot know; its retry makes a duplicate.
    drive.inject(Fault::new(
        Matcher::kind(RequestKind::CreateMultipart),
        FaultAction::LoseAnswer,
        1,
    ));
    let upload = || {
        hub.files()
            .create(app_file("dup"))
            .upload(Cursor::new(b"same".to_vec()), octet())
    };
    assert!(
        matches!(upload().await, Err(DriveClientError::HttpError(_))),
        "the connection was closed"
    );
    upload().await.expect("the retry");
    assert_eq!(
        drive.app_data_named("dup").len(),
        2,
        "Drive keeps both files of one name"
    );

    // Expired access tokens: 401 authError.
    drive.expire_access_tokens();
    assert_eq!(
        reason(&list().await.expect_err("expired token")),
        "authError"
    );
    let unknown = hub_with(&drive, "not-a-token");
    assert_eq!(
        reason(
            &unknown
                .files()
                .list()
                .doit()
                .await
                .expect_err("unknown token")
        ),
        "authError"
    );
}

fn hub_with(drive: &DriveEmulator, token: &str) -> Hub {
    hub(drive, token.to_string())
}
