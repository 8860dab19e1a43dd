//! What the vault keeps to itself: its store and audit log are its own (0600), it dumps no
//! core, and it refuses a PIN file others can read.

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use sealback_vault::testing::PinSource;

use crate::{RIGHT, account, password, vault};

fn mode(path: &Path) -> u32 {
    fs::metadata(path)
        .unwrap_or_else(|err| panic!("{}: {err}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

#[test]
fn the_vaults_files_are_its_own_and_it_dumps_no_core() {
    let mut vault = vault();
    let (client, _) = crate::registered(&vault, "alice", [7u8; 32]);
    // Files made before, or under a looser umask, are closed again at start.
    fs::set_permissions(vault.audit_path(), fs::Permissions::from_mode(0o644)).expect("chmod");
    fs::set_permissions(vault.store_path(), fs::Permissions::from_mode(0o644)).expect("chmod");
    vault.restart().expect("restarts");
    client.status().expect("answers");

    let mut checked = 0;
    for entry in fs::read_dir(vault.dir()).expect("list") {
        let path = entry.expect("entry").path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if name.starts_with("records.db") || name == "audit.log" {
            assert_eq!(mode(&path), 0o600, "{} is open to others", path.display());
            checked += 1;
        }
    }
    assert!(checked >= 2, "the store and the audit log were checked");

    let pid = vault.pid().expect("serving");
    sealback_vault::testing::core_dumps_off(pid).unwrap_or_else(|err| panic!("{err}"));
}

#[test]
fn a_pin_file_others_can_read_stops_the_vault_naming_it() {
    let mut vault = vault();
    let pin = vault.dir().join("pin");
    fs::set_permissions(&pin, fs::Permissions::from_mode(0o644)).expect("chmod");
    let err = vault.restart().expect_err("refused");
    let said = format!("{err}\n{}", vault.log());
    assert!(
        said.contains("mode 644") && said.contains(&format!("chmod 600 {}", pin.display())),
        "{said}"
    );
}

#[test]
fn the_pin_comes_from_the_units_credential_by_default_or_from_the_environment() {
    let mut vault = vault();
    let (client, _) = crate::registered(&vault, "alice", [7u8; 32]);
    // No PIN source in the configuration: the credential systemd hands the unit, readable
    // by the vault's user through an ACL (mode 0440).
    vault
        .set_pin_source(PinSource::Credential)
        .unwrap_or_else(|err| panic!("{err}"));
    assert!(
        !fs::read_to_string(vault.config_path())
            .expect("vault.toml")
            .contains("pin"),
        "the configuration names no PIN source"
    );
    assert_eq!(
        *client.recover(&password(RIGHT)).expect("recovers"),
        [7u8; 32]
    );
    vault
        .set_pin_source(PinSource::Env)
        .unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(
        *client.recover(&password(RIGHT)).expect("recovers"),
        [7u8; 32]
    );
}

/// Waits for the server to close `socket`: true if it did within `limit`.
fn closed_by_the_server(socket: &mut std::net::TcpStream, limit: std::time::Duration) -> bool {
    use std::io::Read as _;
    let deadline = std::time::Instant::now() + limit;
    let mut buf = [0u8; 256];
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return false;
        }
        socket.set_read_timeout(Some(left)).expect("timeout");
        match socket.read(&mut buf) {
            Ok(0) => return true,
            // TLS alerts or records before the close.
            Ok(_) => continue,
            Err(err) if err.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

#[test]
fn connections_that_send_nothing_are_closed_by_the_vault() {
    let vault = vault();
    let started = std::time::Instant::now();
    // Half the connections never start TLS; the other half finish the handshake and then
    // send no request.
    let mut sockets: Vec<std::net::TcpStream> = (0..50)
        .map(|_| {
            std::net::TcpStream::connect(vault.url.trim_start_matches("https://"))
                .expect("connects")
        })
        .collect();
    for _ in 0..50 {
        let mut tls = crate::raw::tls_connection(&vault);
        while tls.conn.is_handshaking() {
            tls.conn.complete_io(&mut tls.sock).expect("handshake");
        }
        sockets.push(tls.sock);
    }
    all_closed_then_served(&vault, &mut sockets);
    eprintln!(
        "100 idle connections closed by the vault after {:?}",
        started.elapsed()
    );
}

/// Asserts that the vault closes every one of `sockets` (idle connections) within 30 s, and
/// then still answers.
fn all_closed_then_served(
    vault: &sealback_vault::testing::TestVault,
    sockets: &mut [std::net::TcpStream],
) {
    let limit = std::time::Duration::from_secs(30);
    let open = sockets
        .iter_mut()
        .map(|socket| closed_by_the_server(socket, limit))
        .filter(|closed| !closed)
        .count();
    assert_eq!(
        open, 0,
        "{open} idle connections were still open after {limit:?}"
    );
    let (client, _) = account(vault, "bob");
    client.status().expect("answers");
}

#[test]
fn connections_past_the_bound_are_refused_at_once_and_the_vault_serves_again() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    use sealback_vault::server::MAX_CONNECTIONS;
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("limits");
    let wanted = MAX_CONNECTIONS as u64 + 200;
    assert!(
        hard >= wanted,
        "this test opens {wanted} sockets: raise the hard limit of open files ({hard})"
    );
    // The vault starts as systemd starts a service: a soft limit of 1,024 under a higher
    // hard one (the children of this process inherit its limits while it starts them).
    setrlimit(Resource::RLIMIT_NOFILE, 1024.min(soft), hard).expect("lowers");
    let started = std::panic::catch_unwind(vault);
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard).expect("raises");
    let vault = started.expect("the vault starts");
    let address = vault.url.trim_start_matches("https://").to_string();

    // As many connections as the vault holds, sending nothing, then 50 more: those are
    // closed at once, while the first wait out their handshake's timeout.
    let mut held: Vec<std::net::TcpStream> = (0..MAX_CONNECTIONS)
        .map(|_| std::net::TcpStream::connect(&address).expect("connects"))
        .collect();
    let mut extra: Vec<std::net::TcpStream> = (0..50)
        .map(|_| std::net::TcpStream::connect(&address).expect("connects"))
        .collect();
    let quickly = std::time::Duration::from_secs(5);
    let refused = extra
        .iter_mut()
        .filter_map(|socket| closed_by_the_server(socket, quickly).then_some(()))
        .count();
    assert_eq!(
        refused, 50,
        "connections past the bound were not refused at once"
    );
    assert!(
        vault.log().contains("connections are open"),
        "the refusals are logged: {}",
        vault.log()
    );
    // The held connections time out; then the vault serves again.
    all_closed_then_served(&vault, &mut held);
}

#[test]
fn a_body_that_does_not_arrive_is_refused_in_ten_seconds() {
    use std::io::{Read as _, Write as _};
    let vault = vault();
    let (_, credential) = account(&vault, "alice");
    let mut tls = crate::raw::tls_connection(&vault);
    let head = format!(
        "POST /v1/login/start HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {credential}\r\n\
         Content-Type: application/json\r\nContent-Length: 200\r\n\r\n{{\"account\""
    );
    tls.write_all(head.as_bytes()).expect("sends");
    tls.flush().expect("flushes");
    let started = std::time::Instant::now();
    tls.sock
        .set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .expect("timeout");
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&answer).contains("within") {
        match tls.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
        }
    }
    let answer = String::from_utf8_lossy(&answer);
    let waited = started.elapsed();
    assert!(
        answer.starts_with("HTTP/1.1 400") && answer.contains("did not arrive within 10 s"),
        "{answer}"
    );
    assert!(
        waited >= std::time::Duration::from_secs(9) && waited < std::time::Duration::from_secs(20),
        "answered after {waited:?}"
    );
}
