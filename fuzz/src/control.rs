//! The control socket, both ways: requests as the daemon's server parses them (HTTP head,
//! JSON bodies), and answers as `sealbackctl`'s client parses them (JSON, NDJSON streams).
//! Both run for real on Unix sockets, in one runtime for the whole fuzzing run.

use std::future::Future;
use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use sealback_daemon::control::api::{
    AcknowledgeMissingRequest, AcknowledgedMissing, BackupReport, BackupRequest,
    KeyChangePasswordRequest, KeyChanged, KeyDisableRequest, KeyGenerateRequest, KeyGenerated,
    KeyImportRequest, KeyImported, KeyRecoverRequest, KeySetPasswordRequest, PruneReports,
    PruneRequest, RepairReport, RepairRequest, RestoreReport, RestoreRequest, Route, SnapshotList,
    Status, VerifyReport, VerifyRequest,
};
use sealback_daemon::control::client::{Client, ClientError};
use sealback_daemon::control::{ApiError, Handler, ProgressSink};

/// Longer than any answer takes: past it, the server or the client hangs, which is a bug.
const PATIENCE: Duration = Duration::from_secs(10);
/// The most of an answer read: the server's answers to the fuzzer are small.
const MAX_ANSWER: u64 = 1 << 20;

/// A daemon that is always busy: every request that parses gets an error from it.
struct Busy;

async fn busy<T>() -> Result<T, ApiError> {
    Err(ApiError::new(
        503,
        "busy",
        "the fuzzer's daemon is always busy",
    ))
}

impl Handler for Busy {
    fn status(&self) -> impl Future<Output = Result<Status, ApiError>> + Send {
        busy()
    }
    fn backup(
        &self,
        _: BackupRequest,
        _: ProgressSink,
    ) -> impl Future<Output = Result<Option<BackupReport>, ApiError>> + Send {
        busy()
    }
    fn snapshots(&self) -> impl Future<Output = Result<SnapshotList, ApiError>> + Send {
        busy()
    }
    fn acknowledge_missing(
        &self,
        _: AcknowledgeMissingRequest,
    ) -> impl Future<Output = Result<AcknowledgedMissing, ApiError>> + Send {
        busy()
    }
    fn restore(
        &self,
        _: RestoreRequest,
        _: ProgressSink,
    ) -> impl Future<Output = Result<RestoreReport, ApiError>> + Send {
        busy()
    }
    fn verify(
        &self,
        _: VerifyRequest,
        _: ProgressSink,
    ) -> impl Future<Output = Result<VerifyReport, ApiError>> + Send {
        busy()
    }
    fn repair(
        &self,
        _: RepairRequest,
        _: ProgressSink,
    ) -> impl Future<Output = Result<RepairReport, ApiError>> + Send {
        busy()
    }
    fn key_generate(
        &self,
        _: KeyGenerateRequest,
    ) -> impl Future<Output = Result<KeyGenerated, ApiError>> + Send {
        busy()
    }
    fn key_set_password(
        &self,
        _: KeySetPasswordRequest,
    ) -> impl Future<Output = Result<KeyChanged, ApiError>> + Send {
        busy()
    }
    fn key_recover(
        &self,
        _: KeyRecoverRequest,
    ) -> impl Future<Output = Result<KeyChanged, ApiError>> + Send {
        busy()
    }
    fn key_change_password(
        &self,
        _: KeyChangePasswordRequest,
    ) -> impl Future<Output = Result<KeyChanged, ApiError>> + Send {
        busy()
    }
    fn key_disable(
        &self,
        _: KeyDisableRequest,
    ) -> impl Future<Output = Result<KeyChanged, ApiError>> + Send {
        busy()
    }
    fn key_import(
        &self,
        _: KeyImportRequest,
    ) -> impl Future<Output = Result<KeyImported, ApiError>> + Send {
        busy()
    }
    fn prune(
        &self,
        _: PruneRequest,
        _: ProgressSink,
    ) -> impl Future<Output = Result<PruneReports, ApiError>> + Send {
        busy()
    }
}

struct Sockets {
    runtime: tokio::runtime::Runtime,
    /// Where the daemon's server listens.
    server: PathBuf,
    /// Where the fuzzer answers as a daemon would, for the client.
    daemon: PathBuf,
}

fn sockets() -> &'static Sockets {
    static SOCKETS: OnceLock<Sockets> = OnceLock::new();
    SOCKETS.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("sealback-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a tokio runtime");
        let server = dir.join("control.sock");
        let listener = runtime
            .block_on(async { sealback_daemon::control::server::bind(&server, 0o600) })
            .expect("the control socket binds");
        runtime.spawn(sealback_daemon::control::server::serve(
            listener,
            Arc::new(Busy),
            std::future::pending(),
        ));
        Sockets {
            runtime,
            server,
            daemon: dir.join("daemon.sock"),
        }
    })
}

/// Control: `data[0] % 3` says what the rest is. 0: a whole request, sent as it is to the
/// daemon's server. 1: `data[1]` picks a route, the rest is its JSON body, sent in a valid
/// request. 2: `data[1]` picks a client call (odd: a stream), the rest is what the daemon
/// answers it. True if the request parsed (the server answered other than hyper's bare
/// 400), or the answer did (the client read a result or an error the daemon sent).
pub fn control(data: &[u8]) -> bool {
    let [mode, rest @ ..] = data else {
        return false;
    };
    match mode % 3 {
        0 => request(rest),
        1 => {
            let [route, body @ ..] = rest else {
                return false;
            };
            let route = Route::ALL[usize::from(*route) % Route::ALL.len()];
            let mut whole = format!(
                "{} {} HTTP/1.1\r\nHost: sealbackd\r\nContent-Length: {}\r\n\r\n",
                route.method(),
                route.path(),
                body.len()
            )
            .into_bytes();
            whole.extend_from_slice(body);
            request(&whole)
        }
        _ => {
            let [call, answer @ ..] = rest else {
                return false;
            };
            answer_client(*call, answer)
        }
    }
}

/// Sends `bytes` to the daemon's server, ends the request side and reads the answer; true
/// if it parsed.
fn request(bytes: &[u8]) -> bool {
    let sockets = sockets();
    let mut stream = UnixStream::connect(&sockets.server).expect("the server listens");
    stream.set_read_timeout(Some(PATIENCE)).expect("a timeout");
    stream.set_write_timeout(Some(PATIENCE)).expect("a timeout");
    // The server may answer and close before reading all of a bad request.
    let _ = stream.write_all(bytes);
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let mut answer = Vec::new();
    match (&mut stream).take(MAX_ANSWER).read_to_end(&mut answer) {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
            panic!("the control server neither answered nor closed within {PATIENCE:?}")
        }
        _ => answer.starts_with(b"HTTP/1.1 ") && !answer.starts_with(b"HTTP/1.1 400"),
    }
}

/// Runs one client call against a daemon that answers `answer` whatever it is asked; true
/// if the client read a result or the daemon's error from it.
fn answer_client(call: u8, answer: &[u8]) -> bool {
    let sockets = sockets();
    let _ = std::fs::remove_file(&sockets.daemon);
    let listener = UnixListener::bind(&sockets.daemon).expect("the fake daemon's socket binds");
    let answer = answer.to_vec();
    let daemon = std::thread::spawn(move || {
        let Ok((mut stream, _)) = listener.accept() else {
            return;
        };
        let _ = stream.set_read_timeout(Some(PATIENCE));
        // The client takes anything sent before its request for a broken connection.
        if read_request(&mut stream).is_err() {
            return;
        }
        let _ = stream.write_all(&answer);
        let _ = stream.shutdown(std::net::Shutdown::Write);
        // Until the client hangs up.
        let _ = std::io::copy(&mut stream, &mut std::io::sink());
    });
    let client = Client::new(&sockets.daemon);
    let finished = sockets.runtime.block_on(async {
        tokio::time::timeout(PATIENCE, async {
            if call.is_multiple_of(2) {
                read(client.status().await)
            } else {
                let restore = RestoreRequest {
                    snapshot: "latest".into(),
                    to: "/restore".into(),
                    force: false,
                    target: None,
                    include: Vec::new(),
                };
                read(client.restore(restore, |_| {}).await)
            }
        })
        .await
    });
    assert!(
        finished.is_ok(),
        "the client did not finish within {PATIENCE:?} on an answer that ended"
    );
    // Unblocks the fake daemon's accept if the client never connected.
    let _ = UnixStream::connect(&sockets.daemon);
    daemon.join().expect("the fake daemon's thread");
    finished.unwrap_or(false)
}

/// Reads one request, head and `Content-Length` body, as the client sends it.
fn read_request(stream: &mut UnixStream) -> std::io::Result<()> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte)?;
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    let length = head
        .lines()
        .find_map(|line| line.strip_prefix("content-length:"))
        .and_then(|n| n.trim().parse::<u64>().ok())
        .unwrap_or(0);
    std::io::copy(&mut (&mut *stream).take(length), &mut std::io::sink())?;
    Ok(())
}

fn read<T>(outcome: Result<T, ClientError>) -> bool {
    matches!(outcome, Ok(_) | Err(ClientError::Api(_)))
}
