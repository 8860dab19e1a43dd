//! Routes, methods, bodies, errors and streams: the wire protocol as `api` specifies it.

use super::*;

#[tokio::test]
async fn every_route_round_trips_through_the_client() {
    let server = Server::start();
    let client = server.client();

    let status = client.status().await.expect("status");
    assert_eq!(status.key_mode, KeyMode::RecoveryKey);
    assert_eq!(status.targets[0].name, "local");

    let queued = client
        .backup(BackupRequest { wait: false }, |_| {
            panic!("no progress without wait")
        })
        .await
        .expect("backup");
    assert_eq!(queued, None);

    let mut seen = Vec::new();
    let finished = client
        .backup(BackupRequest { wait: true }, |p| seen.push(p))
        .await
        .expect("backup --wait");
    assert_eq!(finished, Some(report()));
    assert_eq!(
        seen.last(),
        Some(&Progress {
            done_bytes: 100,
            total_bytes: 100,
            database_ready_ms: None,
        })
    );

    let snapshots = client.snapshots().await.expect("snapshots");
    assert_eq!(snapshots.snapshots[0].id, "1a2b3c4d5e6f");

    let restored = client
        .restore(
            RestoreRequest {
                snapshot: "latest".into(),
                to: "/restore/here".into(),
                force: true,
                target: Some("local".into()),
                include: Vec::new(),
            },
            |_| {},
        )
        .await
        .expect("restore");
    assert_eq!(restored.to, "/restore/here");

    let verified = client
        .verify(VerifyRequest { target: None }, |_| {})
        .await
        .expect("verify");
    assert_eq!(verified.packs, 2);

    let generated = client
        .key_generate(KeyGenerateRequest { replace: true })
        .await
        .expect("key generate");
    assert_eq!(generated.recovery_key.as_str(), "0123 4567 89ab cdef");

    let imported = client
        .key_import(KeyImportRequest {
            recovery_key: Zeroizing::new("0123 4567 89ab cdef".into()),
            replace: false,
        })
        .await
        .expect("key import");
    assert_eq!(imported.verified_targets, ["local"]);

    assert_eq!(
        server.daemon.calls(),
        [
            "status",
            "backup wait=false",
            "backup wait=true",
            "snapshots",
            "restore latest to=/restore/here force=true target=Some(\"local\")",
            "verify target=None",
            "key_generate replace=true",
            "key_import expected=true replace=false",
        ]
    );
    server.stop().await;
}

#[tokio::test]
async fn handler_errors_reach_the_client_with_code_message_and_hint() {
    let server = Server::start();
    let wrong_key = KeyImportRequest {
        recovery_key: Zeroizing::new("ffff".into()),
        replace: false,
    };
    let error = api_error(server.client().key_import(wrong_key).await);
    assert_eq!(error.code, "wrong-key");

    let response = server
        .client()
        .send_raw(
            "POST",
            "/v1/key/import",
            br#"{"recovery_key":"ffff"}"#.to_vec(),
        )
        .await
        .expect("request");
    expect_error(response, StatusCode::UNPROCESSABLE_ENTITY, "wrong-key").await;
    server.stop().await;
}

#[tokio::test]
async fn unknown_path_is_404_naming_the_path_and_the_routes() {
    let server = Server::start();
    let response = server
        .client()
        .send_raw("GET", "/v2/status", Vec::new())
        .await
        .expect("request");
    let message = expect_error(response, StatusCode::NOT_FOUND, "not-found").await;
    assert!(message.contains("\"/v2/status\""), "{message}");
    assert!(message.contains("POST /v1/restore"), "{message}");
    assert!(message.contains("GET /v1/snapshots"), "{message}");
    server.stop().await;
}

#[tokio::test]
async fn wrong_method_is_405_naming_the_allowed_one() {
    let server = Server::start();
    let response = server
        .client()
        .send_raw("POST", "/v1/status", Vec::new())
        .await
        .expect("request");
    assert_eq!(response.headers()["allow"], "GET");
    let message = expect_error(
        response,
        StatusCode::METHOD_NOT_ALLOWED,
        "method-not-allowed",
    )
    .await;
    assert!(message.contains("use GET /v1/status"), "{message}");
    assert!(server.daemon.calls().is_empty());
    server.stop().await;
}

#[tokio::test]
async fn invalid_bodies_are_400_with_serdes_message() {
    let server = Server::start();
    let client = server.client();
    let cases: [(&str, &[u8], &str); 4] = [
        (
            "/v1/restore",
            br#"{"snapshot":"latest"}"#,
            "invalid request body for POST /v1/restore: missing field `to` at line 1 column 21",
        ),
        (
            "/v1/restore",
            b"{not json",
            "invalid request body for POST /v1/restore: key must be a string",
        ),
        (
            "/v1/backup",
            br#"{"wiat":true}"#,
            "unknown field `wiat`, expected `wait`",
        ),
        (
            "/v1/key/generate",
            br#"{"replace":"yes"}"#,
            "invalid type: string \"yes\", expected a boolean",
        ),
    ];
    for (path, body, expected) in cases {
        let response = client
            .send_raw("POST", path, body.to_vec())
            .await
            .expect("request");
        let message = expect_error(response, StatusCode::BAD_REQUEST, "bad-request").await;
        assert!(message.contains(expected), "{path}: {message}");
    }
    assert!(server.daemon.calls().is_empty());
    server.stop().await;
}

#[tokio::test]
async fn empty_post_body_means_an_empty_object_and_get_bodies_are_ignored() {
    let server = Server::start();
    let client = server.client();
    let response = client
        .send_raw("POST", "/v1/backup", Vec::new())
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    assert!(body_text(response).await.contains(r#""accepted":true"#));

    let response = client
        .send_raw("GET", "/v1/snapshots", b"this is not JSON".to_vec())
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(server.daemon.calls(), ["backup wait=false", "snapshots"]);
    server.stop().await;
}

#[tokio::test]
async fn stream_sends_progress_in_order_then_exactly_one_final_line() {
    let server = Server::start();
    let response = server
        .client()
        .send_raw("POST", "/v1/backup", br#"{"wait":true}"#.to_vec())
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "application/x-ndjson");
    let text = body_text(response).await;
    let events: Vec<serde_json::Value> = text
        .lines()
        .map(|line| serde_json::from_str(line).expect("each line is one JSON event"))
        .collect();
    let (last, progress) = events.split_last().expect("at least one line");
    assert_eq!(last["event"], "done", "{text}");
    assert_eq!(last["result"]["snapshot"], "1a2b3c4d5e6f");
    let done: Vec<u64> = progress
        .iter()
        .map(|event| {
            assert_eq!(event["event"], "progress", "{text}");
            event["done_bytes"].as_u64().expect("done_bytes")
        })
        .collect();
    // Values set less than 250 ms apart may be merged, never reordered or lost at the end.
    assert!(done.windows(2).all(|pair| pair[0] < pair[1]), "{text}");
    assert_eq!(done.last(), Some(&100), "{text}");
    server.stop().await;
}

#[tokio::test]
async fn stream_reports_a_handler_error_as_its_final_line() {
    let server = Server::start();
    let missing = RestoreRequest {
        snapshot: "missing".into(),
        to: "/restore".into(),
        force: false,
        target: None,
        include: Vec::new(),
    };
    let response = server
        .client()
        .send_raw(
            "POST",
            "/v1/restore",
            serde_json::to_vec(&missing).expect("encode"),
        )
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::OK);
    let text = body_text(response).await;
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(text.contains(r#""event":"error""#), "{text}");

    let error = api_error(server.client().restore(missing, |_| {}).await);
    assert_eq!(error.code, "not-found");
    assert_eq!(
        error.hint.as_deref(),
        Some("sealbackctl snapshots lists them")
    );
    server.stop().await;
}

#[tokio::test]
async fn a_panicking_handler_is_an_internal_error_not_a_dead_server() {
    let server = Server::start();
    let panics = RestoreRequest {
        snapshot: "panic".into(),
        to: "/restore".into(),
        force: false,
        target: None,
        include: Vec::new(),
    };
    let error = api_error(server.client().restore(panics, |_| {}).await);
    assert_eq!(error.code, "internal");
    server.client().status().await.expect("still serving");
    server.stop().await;
}

#[tokio::test]
async fn every_route_of_the_table_is_served_at_its_path_and_only_with_its_method() {
    let server = Server::start();
    let client = server.client();
    for route in Route::ALL {
        let response = client
            .send_raw(route.method(), route.path(), Vec::new())
            .await
            .expect("request");
        let status = response.status();
        let text = body_text(response).await;
        assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{route}: {text}");
        assert!(!text.contains("no route"), "{route} is not routed: {text}");

        let wrong: &[&str] = if route.method() == "GET" {
            // HEAD too: the protocol serves each route with its one method.
            &["POST", "HEAD"]
        } else {
            &["GET", "PUT"]
        };
        for method in wrong {
            let response = client
                .send_raw(method, route.path(), Vec::new())
                .await
                .expect("request");
            assert_eq!(
                response.status(),
                StatusCode::METHOD_NOT_ALLOWED,
                "{method} {}",
                route.path()
            );
            assert_eq!(response.headers()["allow"], route.method());
            if *method != "HEAD" {
                let message = expect_error(
                    response,
                    StatusCode::METHOD_NOT_ALLOWED,
                    "method-not-allowed",
                )
                .await;
                assert!(message.contains(&format!("use {route}")), "{message}");
            }
        }
    }
    server.stop().await;
}
