//! `scripts/vault-trial` sets up a vault for a trial in one step; what it prints is all a
//! device needs: the vault it starts keeps a device's key behind a password, and a new device
//! gets it back.

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};

use sealback_tests::binaries;
use sealback_tests::{Device, MessageStore, Setup, Target, VaultSection};

const PASSWORD: &str = "a trial of the vault 7781";

/// The value of `key = "value"` in the script's output.
fn printed(output: &str, key: &str) -> String {
    output
        .lines()
        .find_map(|line| line.strip_prefix(&format!("{key} = \"")))
        .and_then(|rest| rest.strip_suffix('"'))
        .unwrap_or_else(|| panic!("the script printed no {key}: {output}"))
        .to_string()
}

/// The vault the script told us to start; killed on drop.
struct Serving(Child);

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_trial_script_sets_up_a_vault_a_device_keeps_its_key_in() {
    let dir = tempfile::tempdir().expect("tempdir");
    let trial = dir.path().join("vault");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let vault_binary = binaries::built("sealback-vault");
    let setup = Command::new(binaries::workspace_root().join("scripts/vault-trial"))
        .arg(&trial)
        .arg("phone")
        .arg(format!("127.0.0.1:{port}"))
        .env("SEALBACK_VAULT", &vault_binary)
        .output()
        .expect("runs the script");
    let output = String::from_utf8_lossy(&setup.stdout).into_owned();
    assert!(
        setup.status.success(),
        "{output}{}",
        String::from_utf8_lossy(&setup.stderr)
    );
    // Everything it made is the vault's alone.
    for entry in walkdir(&trial) {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&entry)
            .expect("stat")
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "{} has mode {mode:o}", entry.display());
    }
    // A second run never overwrites it.
    let again = Command::new(binaries::workspace_root().join("scripts/vault-trial"))
        .arg(&trial)
        .env("SEALBACK_VAULT", &vault_binary)
        .output()
        .expect("runs the script");
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("is not empty"));

    // Started as the script says.
    let mut child = Command::new(&vault_binary)
        .args([
            "--config",
            trial.join("vault.toml").to_str().expect("UTF-8"),
            "serve",
        ])
        .env("SOFTHSM2_CONF", trial.join("softhsm2.conf"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("starts the vault");
    let mut first = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut first)
        .expect("reads its first line");
    let _serving = Serving(child);
    assert!(first.starts_with("listening on https://"), "{first:?}");

    let section = VaultSection {
        url: printed(&output, "url"),
        more_urls: Vec::new(),
        server_key: printed(&output, "server_key"),
        account: printed(&output, "account"),
        credential_file: trial.join("phone.credential"),
        ca_cert: trial.join("tls/ca.pem"),
    };
    let store = MessageStore::create(&dir.path().join("store"), 4);
    store.append(10);
    let target = dir.path().join("target");
    let mut phone = Device::started(
        Setup::new(store.dir(), vec![Target::local("disk", &target)]).vault(section.clone()),
    );
    phone.generate_key();
    phone.backup();
    let set = phone.ctl_stdin(&["key", "set-password"], &format!("{PASSWORD}\n"));
    assert_eq!(set.code, Some(0), "{set}{}", phone.log_tail());
    phone.stop();

    let mut fresh =
        Device::started(Setup::restoring_from(vec![Target::local("disk", &target)]).vault(section));
    let recovered = fresh.ctl_stdin(&["key", "recover"], &format!("{PASSWORD}\n"));
    assert_eq!(recovered.code, Some(0), "{recovered}{}", fresh.log_tail());
    fresh.stop();
}

/// Every file and directory under `root`, `root` included.
fn walkdir(root: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut all = vec![root.to_path_buf()];
    let mut i = 0;
    while i < all.len() {
        if all[i].is_dir() {
            let children: Vec<_> = std::fs::read_dir(&all[i])
                .expect("list")
                .map(|e| e.expect("entry").path())
                .collect();
            all.extend(children);
        }
        i += 1;
    }
    all
}
