//! The parts of the wire protocol google-drive3 does not speak, by hand: a resumable upload
//! cut mid-chunk and resumed from what a status query confirms, Retry-After, and the OAuth
//! device flow.

use std::collections::BTreeSet;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use sealback_tests::drive::{
    APP_DATA_FOLDER, CHUNK_GRANULE, DriveEmulator, DriveError, Options, RequestKind,
};
use serde_json::Value;

use super::{awkward_content, hub};

/// A request by hand: (status, headers, body).
async fn raw(
    method: &str,
    url: &str,
    headers: &[(&str, String)],
    body: Vec<u8>,
) -> Result<(u16, hyper::HeaderMap, Vec<u8>), hyper_util::client::legacy::Error> {
    let client: Client<HttpConnector, Full<bytes::Bytes>> =
        Client::builder(TokioExecutor::new()).build(HttpConnector::new());
    let mut request = hyper::Request::builder().method(method).uri(url);
    for (k, v) in headers {
        request = request.header(*k, v);
    }
    let response = client
        .request(
            request
                .body(Full::new(bytes::Bytes::from(body)))
                .expect("request"),
        )
        .await?;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes().to_vec())
        .unwrap_or_default();
    Ok((status, headers, body))
}

fn header(headers: &hyper::HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumable_upload_cut_mid_chunk_resumes_from_what_the_server_confirms() {
    let drive = DriveEmulator::start(Options::default()).expect("start the emulator");
    let auth = (
        "authorization",
        format!("Bearer {}", drive.issue_access_token()),
    );
    let content = awkward_content(3 * CHUNK_GRANULE as usize + 100);
    let total = content.len() as u64;
    let (status, headers, _) = raw(
        "POST",
        &format!(
            "{}upload/drive/v3/files?uploadType=resumable",
            drive.api_root()
        ),
        &[
            auth.clone(),
            ("content-type", "application/json; charset=UTF-8".into()),
            ("x-upload-content-length", total.to_string()),
        ],
        br#"{"name":"pack-cut","parents":["appDataFolder"]}"#.to_vec(),
    )
    .await
    .expect("start a session");
    assert_eq!(status, 200);
    let session = header(&headers, "location").expect("Location");
    assert!(session.starts_with(&drive.api_root()), "{session}");

    // All of it in one PUT, cut after 600,000 bytes: the server keeps two whole 256 KiB units.
    drive.cut_next_chunk_after(600_000);
    let whole = [("content-range", format!("bytes 0-{}/{total}", total - 1))];
    assert!(
        raw("PUT", &session, &whole, content.clone()).await.is_err(),
        "the connection was cut"
    );

    let status_query = [("content-range", format!("bytes */{total}"))];
    let (status, headers, _) = raw("PUT", &session, &status_query, Vec::new())
        .await
        .expect("status");
    assert_eq!(status, 308);
    let confirmed = 2 * CHUNK_GRANULE;
    assert_eq!(
        header(&headers, "range"),
        Some(format!("bytes=0-{}", confirmed - 1))
    );

    // A chunk that is not a multiple of 256 KiB and not the last is refused.
    let bad = [(
        "content-range",
        format!("bytes {confirmed}-{}/{total}", confirmed + 999),
    )];
    let (status, _, body) = raw(
        "PUT",
        &session,
        &bad,
        content[confirmed as usize..confirmed as usize + 1000].to_vec(),
    )
    .await
    .expect("bad chunk");
    assert_eq!(status, 400, "{}", String::from_utf8_lossy(&body));

    let rest = [(
        "content-range",
        format!("bytes {confirmed}-{}/{total}", total - 1),
    )];
    let (status, _, body) = raw(
        "PUT",
        &session,
        &rest,
        content[confirmed as usize..].to_vec(),
    )
    .await
    .expect("resume");
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let file: Value = serde_json::from_slice(&body).expect("the file");
    assert_eq!(file["name"], "pack-cut");
    assert_eq!(
        drive.app_data_content("pack-cut").as_deref(),
        Some(&content[..])
    );

    let s = drive.upload_sessions().pop().expect("the session");
    // Received twice: the unconfirmed part of the cut chunk, and the refused chunk.
    let resent = s.bytes_received - total;
    assert_eq!(resent, 600_000 - confirmed + 1000);
    assert!(resent < total);
    // A status query once complete answers the file.
    let (status, _, _) = raw("PUT", &session, &status_query, Vec::new())
        .await
        .expect("status");
    assert_eq!(status, 200);

    // 429 with Retry-After.
    drive.fail_next(
        None,
        DriveError::too_many_requests(Some(Duration::from_secs(7))),
        1,
    );
    let (status, headers, body) = raw(
        "GET",
        &format!("{}drive/v3/files?spaces=appDataFolder", drive.api_root()),
        &[auth],
        Vec::new(),
    )
    .await
    .expect("list");
    assert_eq!(status, 429);
    assert_eq!(header(&headers, "retry-after").as_deref(), Some("7"));
    let body: Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(body["error"]["code"], 429);
    assert_eq!(body["error"]["status"], "RESOURCE_EXHAUSTED");
}

fn form(pairs: &[(&str, &str)]) -> Vec<u8> {
    let enc = |s: &str| {
        percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
    };
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
        .into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_device_flow_answers_as_rfc_8628_and_google_say() {
    let options = Options {
        device_poll_interval: Duration::from_secs(3600),
        ..Options::default()
    };
    let drive = DriveEmulator::start(options).expect("start the emulator");
    let (id, secret) = (
        drive.options().client_id.clone(),
        drive.options().client_secret.clone(),
    );
    let form_type = (
        "content-type",
        "application/x-www-form-urlencoded".to_string(),
    );
    let post = |url: String, body: Vec<u8>| {
        let headers = [form_type.clone()];
        async move {
            let (status, _, body) = raw("POST", &url, &headers, body).await.expect("post");
            (
                status,
                serde_json::from_slice::<Value>(&body).expect("json"),
            )
        }
    };
    let scope = sealback_tests::drive::SCOPE_APPDATA;
    let (status, grant) = post(
        drive.device_auth_uri(),
        form(&[("client_id", &id), ("scope", scope)]),
    )
    .await;
    assert_eq!(status, 200, "{grant}");
    for key in [
        "device_code",
        "user_code",
        "verification_url",
        "verification_uri",
        "expires_in",
        "interval",
    ] {
        assert!(grant.get(key).is_some(), "{key} missing from {grant}");
    }
    let device_code = grant["device_code"]
        .as_str()
        .expect("device_code")
        .to_string();
    let user_code = grant["user_code"].as_str().expect("user_code").to_string();
    assert_eq!(drive.pending_user_codes(), vec![user_code.clone()]);
    let poll = |code: &str| {
        form(&[
            ("client_id", &id),
            ("client_secret", &secret),
            ("device_code", code),
            ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
        ])
    };
    let (status, answer) = post(drive.token_uri(), poll(&device_code)).await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (428, Some("authorization_pending"))
    );
    // Polled again within the interval.
    let (status, answer) = post(drive.token_uri(), poll(&device_code)).await;
    assert_eq!((status, answer["error"].as_str()), (403, Some("slow_down")));

    assert!(drive.approve(&user_code));
    // The interval grew by 5 s after slow_down; still too soon, so approve through a second grant
    // polled once (a client that waits its interval sees the tokens).
    let (_, grant2) = post(
        drive.device_auth_uri(),
        form(&[("client_id", &id), ("scope", scope)]),
    )
    .await;
    assert!(drive.approve(grant2["user_code"].as_str().expect("user_code")));
    let (status, tokens) = post(
        drive.token_uri(),
        poll(grant2["device_code"].as_str().expect("code")),
    )
    .await;
    assert_eq!(status, 200, "{tokens}");
    let refresh = tokens["refresh_token"]
        .as_str()
        .expect("refresh_token")
        .to_string();
    assert_eq!(tokens["token_type"], "Bearer");
    let (status, again) = post(
        drive.token_uri(),
        poll(grant2["device_code"].as_str().expect("code")),
    )
    .await;
    assert_eq!(
        (status, again["error"].as_str()),
        (400, Some("invalid_grant")),
        "a device code is used once"
    );

    // Refresh.
    let refresh_form = |client_secret: &str| {
        form(&[
            ("client_id", &id),
            ("client_secret", client_secret),
            ("refresh_token", &refresh),
            ("grant_type", "refresh_token"),
        ])
    };
    let (status, fresh) = post(drive.token_uri(), refresh_form(&secret)).await;
    assert_eq!(status, 200, "{fresh}");
    let access = fresh["access_token"]
        .as_str()
        .expect("access_token")
        .to_string();
    let hub = hub(&drive, access);
    hub.files()
        .list()
        .spaces(APP_DATA_FOLDER)
        .doit()
        .await
        .expect("the refreshed token works");
    let (status, wrong) = post(drive.token_uri(), refresh_form("wrong")).await;
    assert_eq!(
        (status, wrong["error"].as_str()),
        (401, Some("invalid_client"))
    );
    drive.revoke_refresh_token(&refresh);
    let (status, revoked) = post(drive.token_uri(), refresh_form(&secret)).await;
    assert_eq!(
        (status, revoked["error"].as_str()),
        (400, Some("invalid_grant"))
    );

    // Denied and expired grants.
    let (_, g3) = post(
        drive.device_auth_uri(),
        form(&[("client_id", &id), ("scope", scope)]),
    )
    .await;
    assert!(drive.deny(g3["user_code"].as_str().expect("user_code")));
    let (status, denied) = post(
        drive.token_uri(),
        poll(g3["device_code"].as_str().expect("code")),
    )
    .await;
    assert_eq!(
        (status, denied["error"].as_str()),
        (403, Some("access_denied"))
    );
    drive.expire_device_codes();
    let (status, expired) = post(drive.token_uri(), poll(&device_code)).await;
    assert_eq!(
        (status, expired["error"].as_str()),
        (400, Some("expired_token"))
    );
    let kinds: BTreeSet<RequestKind> = drive.counters().requests.keys().copied().collect();
    assert!(kinds.contains(&RequestKind::DeviceCode) && kinds.contains(&RequestKind::Token));
}
