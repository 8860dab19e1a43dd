//! What a client cannot make the server do: take large bodies, hold connections by being slow,
//! or open connections without bound.

use super::*;

#[tokio::test]
async fn oversized_body_is_413_by_content_length() {
    let server = Server::start();
    let huge = KeyImportRequest {
        recovery_key: Zeroizing::new("0".repeat(MAX_REQUEST_BYTES)),
        replace: false,
    };
    let error = api_error(server.client().key_import(huge).await);
    assert_eq!(error.code, "too-large");
    assert!(
        error.message.contains("POST /v1/key/import"),
        "{}",
        error.message
    );
    assert!(server.daemon.calls().is_empty());
    server.stop().await;
}

#[tokio::test]
async fn oversized_body_is_413_while_reading_a_chunked_body() {
    let server = Server::start();
    let chunk = vec![b' '; MAX_REQUEST_BYTES + 1];
    let mut request = format!(
        "POST /v1/key/import HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
         Transfer-Encoding: chunked\r\n\r\n{:x}\r\n",
        chunk.len()
    )
    .into_bytes();
    request.extend_from_slice(&chunk);
    request.extend_from_slice(b"\r\n0\r\n\r\n");
    let answer = raw_exchange(&server.socket, &request).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains(r#""code":"too-large""#), "{answer}");
    assert!(server.daemon.calls().is_empty());
    server.stop().await;
}

/// Connects and sends `bytes`, leaving the connection open.
async fn connect_and_send(socket: &Path, bytes: &[u8]) -> tokio::net::UnixStream {
    let mut stream = tokio::net::UnixStream::connect(socket)
        .await
        .expect("connect");
    stream.write_all(bytes).await.expect("write");
    stream
}

/// Reads until the server closes the connection (at most a virtual minute).
async fn read_until_closed(stream: &mut tokio::net::UnixStream) -> String {
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(60), stream.read_to_end(&mut answer))
        .await
        .expect("the server closes the connection")
        .expect("read");
    String::from_utf8_lossy(&answer).into_owned()
}

/// The server gave up at `timeout` after `started`, not sooner, and not much later.
fn assert_waited(started: tokio::time::Instant, timeout: Duration) {
    let waited = started.elapsed();
    assert!(
        (timeout..timeout + Duration::from_secs(1)).contains(&waited),
        "gave up after {waited:?}, not {timeout:?}"
    );
}

// The clock is paused and jumps to the next timer whenever every task waits: the
// connections are cut at the timeouts' exact virtual time.
#[tokio::test(start_paused = true)]
async fn a_client_that_sends_no_headers_or_only_part_is_cut_off_after_the_header_timeout() {
    let server = Server::start();
    let started = tokio::time::Instant::now();
    let mut silent = connect_and_send(&server.socket, b"").await;
    let mut partial =
        connect_and_send(&server.socket, b"GET /v1/status HTTP/1.1\r\nHost: x\r\n").await;
    for stream in [&mut silent, &mut partial] {
        read_until_closed(stream).await;
        assert_waited(started, HEADER_READ_TIMEOUT);
    }
    assert!(server.daemon.calls().is_empty());
    server.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_body_sent_a_byte_at_a_time_is_refused_at_its_deadline() {
    let server = Server::start();
    let started = tokio::time::Instant::now();
    let mut stream = connect_and_send(
        &server.socket,
        b"POST /v1/backup HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n",
    )
    .await;
    let (mut reader, mut writer) = stream.split();
    // A byte every second: a timeout per read, reset by each byte, would never fire.
    let trickle = async {
        for _ in 0..100 {
            tokio::time::sleep(Duration::from_secs(1)).await;
            if writer.write_all(b" ").await.is_err() {
                break;
            }
        }
    };
    let mut answer = Vec::new();
    let read = async {
        let mut buffer = [0u8; 4096];
        while let Ok(n @ 1..) = reader.read(&mut buffer).await {
            answer.extend_from_slice(&buffer[..n]);
            if answer.ends_with(b"}") {
                break;
            }
        }
    };
    tokio::select! {
        () = read => {}
        () = trickle => panic!("the server read a 100-byte body sent over 100 seconds"),
    }
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains(r#""code":"timeout""#), "{answer}");
    assert_waited(started, BODY_READ_TIMEOUT);
    assert!(server.daemon.calls().is_empty());
    server.stop().await;
}

// In real time: a paused clock would jump past the wait below before the third request got
// through even an unbounded server. Unbounded, it is answered within milliseconds.
#[tokio::test]
async fn clients_beyond_the_connection_bound_wait_for_a_free_slot() {
    let server = Server::start_limited(FakeDaemon::default(), 2);
    let first = connect_and_send(&server.socket, b"").await;
    let _second = connect_and_send(&server.socket, b"").await;
    let client = server.client();
    let third = tokio::spawn(async move { client.status().await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !third.is_finished(),
        "a third connection was served while two held both slots"
    );
    assert!(server.daemon.calls().is_empty());

    drop(first);
    tokio::time::timeout(Duration::from_secs(5), third)
        .await
        .expect("served once a slot is free, not after the header timeout")
        .expect("task")
        .expect("status");
    assert_eq!(server.daemon.calls(), ["status"]);
    server.stop().await;
}
