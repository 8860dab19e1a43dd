//! What the vault keeps to itself: its store and audit log are its own (0600), it dumps no
//! core, and it refuses a PIN file others can read.

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use crate::{account, vault};

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
    let limit = std::time::Duration::from_secs(30);
    let open = sockets
        .iter_mut()
        .map(|socket| closed_by_the_server(socket, limit))
        .filter(|closed| !closed)
        .count();
    eprintln!(
        "100 idle connections closed by the vault after {:?}",
        started.elapsed()
    );
    assert_eq!(
        open, 0,
        "{open} idle connections were still open after {limit:?}"
    );
    // The vault still answers.
    let (client, _) = account(&vault, "bob");
    client.status().expect("answers");
}
