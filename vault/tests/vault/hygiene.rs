//! What the vault keeps to itself: its store and audit log are its own (0600), it dumps no
//! core, and it refuses a PIN file others can read.

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

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
    let (client, _) = account(&vault, "alice");
    client
        .register(&password(RIGHT), &[7u8; 32])
        .expect("registers");
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
    let limits = fs::read_to_string(format!("/proc/{pid}/limits")).expect("limits");
    let core = limits
        .lines()
        .find(|line| line.starts_with("Max core file size"))
        .expect("a core limit");
    assert_eq!(
        core.split_whitespace().collect::<Vec<_>>()[4..6],
        ["0", "0"],
        "the vault may dump core: {core}"
    );
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
