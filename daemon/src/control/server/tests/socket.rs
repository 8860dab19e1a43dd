//! The socket itself: its file and mode, a stale or live one in the way, garbage on it, and
//! stopping.

use super::*;

#[tokio::test]
async fn garbage_on_the_socket_is_refused_and_the_server_keeps_serving() {
    let server = Server::start();
    let answer = raw_exchange(&server.socket, b"\x00\x16\x03\x01 not http at all\r\n\r\n").await;
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 400"),
        "{answer}"
    );
    let answer = raw_exchange(
        &server.socket,
        b"GET /v1/status HTTP/1.1\r\nHost: \xff\r\nContent-Length: x\r\n\r\n",
    )
    .await;
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 400"),
        "{answer}"
    );

    server
        .client()
        .status()
        .await
        .expect("status after garbage");
    server.stop().await;
}

#[tokio::test]
async fn socket_is_created_with_the_requested_mode() {
    let server = Server::start();
    let mode = std::fs::metadata(&server.socket)
        .expect("socket")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let parent = server.socket.parent().expect("parent");
    let parent_mode = std::fs::metadata(parent).expect("dir").permissions().mode();
    assert_eq!(parent_mode & 0o777, 0o700);
    server.stop().await;

    let dir = tempfile::tempdir().expect("temporary directory");
    let socket = dir.path().join("group.sock");
    let _listener = bind(&socket, 0o660).expect("bind");
    let mode = std::fs::metadata(&socket)
        .expect("socket")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o660);
}

#[tokio::test]
async fn stale_socket_is_replaced() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let socket = dir.path().join("control.sock");
    // A daemon that died: its socket file stays, nobody listens on it.
    drop(std::os::unix::net::UnixListener::bind(&socket).expect("stale socket"));
    assert!(socket.exists());

    let listener = bind(&socket, 0o600).expect("bind over a stale socket");
    let server = Server::serve(dir, socket, listener, FakeDaemon::default(), Limits::DAEMON);
    server.client().status().await.expect("status");
    server.stop().await;
}

#[tokio::test]
async fn second_bind_fails_while_a_daemon_serves() {
    let server = Server::start();
    let error = bind(&server.socket, 0o600).expect_err("a second daemon on the same socket");
    assert_eq!(error.kind(), std::io::ErrorKind::AddrInUse);
    let message = error.to_string();
    assert!(
        message.contains("another sealbackd is running on"),
        "{message}"
    );
    assert!(
        message.contains(&server.socket.display().to_string()),
        "{message}"
    );
    server
        .client()
        .status()
        .await
        .expect("the first daemon still serves");
    server.stop().await;
}

#[tokio::test]
async fn bind_refuses_to_replace_a_file_that_is_not_a_socket() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("control.sock");
    std::fs::write(&path, "precious").expect("write");
    let error = bind(&path, 0o600).expect_err("not a socket");
    assert!(error.to_string().contains("is not a socket"), "{error}");
    assert_eq!(std::fs::read_to_string(&path).expect("read"), "precious");
}

// The clock is paused (only this test's `advance` moves it): the request is held until
// shutdown has begun and almost the whole grace period has passed.
#[tokio::test(start_paused = true)]
async fn shutdown_lets_requests_in_flight_finish_then_stops() {
    let grace = Duration::from_secs(5);
    let (daemon, held) = FakeDaemon::holding();
    let mut server = Server::start_with(daemon, grace);
    let client = server.client();
    let in_flight = tokio::spawn(async move { client.status().await });
    held.started.await.expect("status reaches the handler");
    server.begin_stop().await;
    tokio::time::advance(grace - Duration::from_millis(1)).await;
    assert!(
        !in_flight.is_finished(),
        "the request in flight was cut off"
    );
    held.release.send(()).expect("the handler still waits");
    let socket = server.socket.clone();
    server.stop().await;

    in_flight
        .await
        .expect("task")
        .expect("the request in flight is answered");
    assert!(!socket.exists(), "the socket file is removed");
    match Client::new(&socket).status().await {
        Err(error @ ClientError::Connect { .. }) => {
            let message = error.to_string();
            assert!(message.contains("cannot reach sealbackd at"), "{message}");
            assert!(message.contains("Is the daemon running?"), "{message}");
        }
        other => panic!(
            "expected a connect error, got {other:?}",
            other = other.map(|_| ())
        ),
    }
}

#[tokio::test]
async fn shutdown_cuts_off_streams_that_outlast_the_grace_period() {
    let (daemon, held) = FakeDaemon::holding();
    let server = Server::start_with(daemon, Duration::from_millis(200));
    let client = server.client();
    let forever = RestoreRequest {
        snapshot: "held".into(),
        to: "/restore".into(),
        force: false,
        target: None,
        include: Vec::new(),
    };
    let in_flight = tokio::spawn(async move { client.restore(forever, |_| {}).await });
    held.started.await.expect("the restore reaches the handler");
    // Never released: the restore outlasts the grace period.
    let _release = held.release;
    server.stop().await;
    match in_flight.await.expect("task") {
        Err(ClientError::Protocol(message)) => {
            assert!(
                message.contains("without reporting a result") || message.contains("broke"),
                "{message}"
            );
        }
        other => panic!("expected the stream to be cut, got {:?}", other.map(|_| ())),
    }
}
