//! The password mode, end to end: a device keeps its backup key in a real Backup Key Vault
//! (a `sealback-vault` process on a fresh SoftHSM2 token), and a new device with only the
//! password gets the key back and restores.

use sealback_tests::binaries;
use sealback_tests::device::Ctl;
use sealback_tests::store::check_restored;
use sealback_tests::{Device, MessageStore, Setup, Target, VaultSection};
use sealback_vault::testing::{Options, TestVault};

const PASSWORD: &str = "correct horse battery staple 42";

/// A vault with account "alice", the `[vault]` section naming it, a store of 40 messages and
/// a local target directory (the secrets suite runs its life cycle in one too).
pub(crate) struct World {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) vault: TestVault,
    pub(crate) section: VaultSection,
    pub(crate) store: MessageStore,
    pub(crate) target: std::path::PathBuf,
}

impl World {
    pub(crate) fn new() -> World {
        World::with_vault(Options::default())
    }

    /// A world whose vault is set up with `options`.
    pub(crate) fn with_vault(options: Options) -> World {
        let dir = tempfile::tempdir().expect("tempdir");
        let vault = TestVault::start_with(&binaries::built("sealback-vault"), options)
            .unwrap_or_else(|e| panic!("cannot start a vault: {e}"));
        let credential = vault.add_account("alice").expect("account");
        let credential_file = dir.path().join("vault-credential");
        std::fs::write(&credential_file, credential.as_bytes()).expect("write the credential");
        let section = VaultSection {
            url: vault.url.clone(),
            more_urls: Vec::new(),
            server_key: vault.server_key.clone(),
            account: "alice".into(),
            credential_file,
            ca_cert: vault.ca_cert(),
        };
        let store = MessageStore::create(&dir.path().join("store"), 4);
        store.append(40);
        let target = dir.path().join("target");
        World {
            dir,
            vault,
            section,
            store,
            target,
        }
    }

    /// The phone the user has now: backs up, and keeps its key behind `PASSWORD`.
    fn first_device(&self) -> Device {
        let device = Device::started(
            Setup::new(self.store.dir(), vec![Target::local("disk", &self.target)])
                .vault(self.section.clone()),
        );
        device.generate_key();
        device.backup();
        let set = device.ctl_stdin(&["key", "set-password"], &format!("{PASSWORD}\n"));
        assert_eq!(set.code, Some(0), "{set}{}", device.log_tail());
        device
    }

    /// A new phone: only the target and the vault account.
    /// `key recover` with the right password on `fresh`, then a restore of the latest
    /// snapshot, which must hold every committed message; stops `fresh`. What `key recover`
    /// answered.
    fn recover_and_restore(&self, fresh: &mut Device) -> Ctl {
        let right = fresh.ctl_stdin(&["key", "recover"], &format!("{PASSWORD}\n"));
        assert_eq!(right.code, Some(0), "{right}{}", fresh.log_tail());
        let to = self.dir.path().join("restored");
        fresh.ctl_ok(&["restore", "latest", "--to", to.to_str().expect("UTF-8")]);
        let restored = check_restored(&to).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(restored.messages, self.store.committed());
        fresh.stop();
        right
    }

    fn new_device(&self) -> Device {
        Device::started(
            Setup::restoring_from(vec![Target::local("disk", &self.target)])
                .vault(self.section.clone()),
        )
    }
}

#[test]
fn the_password_recovers_the_key_on_a_new_device_which_then_restores() {
    let world = World::new();
    let mut phone = world.first_device();
    let status = phone.status();
    assert_eq!(
        serde_json::to_value(&status.key_mode).expect("json"),
        "password",
        "{status:?}"
    );
    phone.stop();

    let mut fresh = world.new_device();
    let wrong = fresh.ctl_stdin(&["key", "recover"], "not the password\n");
    assert_eq!(wrong.code, Some(1), "{wrong}");
    assert!(wrong.stderr.contains("9 attempt"), "{wrong}");
    assert_eq!(fresh.status().vault_attempts_left, Some(9));
    assert!(
        !fresh.state_dir().join("backup.key").exists(),
        "a wrong password wrote a key"
    );

    let right = world.recover_and_restore(&mut fresh);
    assert!(right.stdout.contains("disk"), "{right}");
}

#[test]
fn a_weak_password_is_refused_with_a_reason_and_nothing_changes() {
    let world = World::new();
    let device = Device::started(
        Setup::new(
            world.store.dir(),
            vec![Target::local("disk", &world.target)],
        )
        .vault(world.section.clone()),
    );
    device.generate_key();
    let weak = device.ctl_stdin(&["key", "set-password"], "1234\n");
    assert_eq!(weak.code, Some(1), "{weak}");
    assert!(weak.stderr.contains("too weak"), "{weak}");
    let status = device.status();
    assert_eq!(
        serde_json::to_value(&status.key_mode).expect("json"),
        "recovery-key"
    );
    drop(world.vault);
}

#[test]
fn a_changed_password_replaces_the_old_one_and_disable_deletes_the_record() {
    let world = World::new();
    let mut phone = world.first_device();
    let new_password = "a different, longer passphrase 7";
    let changed = phone.ctl_stdin(
        &["key", "change-password"],
        &format!("{PASSWORD}\n{new_password}\n"),
    );
    assert_eq!(changed.code, Some(0), "{changed}{}", phone.log_tail());

    let fresh = world.new_device();
    let old = fresh.ctl_stdin(&["key", "recover"], &format!("{PASSWORD}\n"));
    assert_eq!(old.code, Some(1), "the old password still works: {old}");
    let new = fresh.ctl_stdin(&["key", "recover"], &format!("{new_password}\n"));
    assert_eq!(new.code, Some(0), "{new}");

    let disabled = phone.ctl_stdin(&["key", "disable"], &format!("{new_password}\n"));
    assert_eq!(disabled.code, Some(0), "{disabled}{}", phone.log_tail());
    assert_eq!(
        serde_json::to_value(&phone.status().key_mode).expect("json"),
        "device-only"
    );
    // The phone still backs up with its key.
    world.store.append(5);
    phone.backup();
    phone.stop();

    let gone = fresh.ctl_stdin(
        &["key", "recover", "--replace"],
        &format!("{new_password}\n"),
    );
    assert_eq!(gone.code, Some(1), "{gone}");
    assert!(gone.stderr.contains("no backup key"), "{gone}");
}

#[test]
fn a_device_whose_first_vault_instance_is_down_recovers_through_the_second() {
    let mut world = World::with_vault(Options {
        transportable_keys: true,
        ..Options::default()
    });
    let second = world
        .vault
        .start_peer()
        .unwrap_or_else(|e| panic!("a second instance: {e}"));
    let mut phone = world.first_device();
    phone.stop();
    world.vault.kill();
    world.section.more_urls = vec![second.url.clone()];

    let mut fresh = world.new_device();
    world.recover_and_restore(&mut fresh);
}

#[test]
fn a_rotation_in_password_mode_gives_the_vault_the_new_key() {
    let world = World::new();
    let phone = world.first_device();
    let wrong = phone.ctl_stdin(&["key", "rotate"], "not the password\n");
    assert_eq!(wrong.code, Some(1), "{wrong}");
    assert!(wrong.stderr.contains("9 attempt"), "{wrong}");
    assert!(
        !phone.state_dir().join("previous.key").exists(),
        "a wrong password committed a rotation"
    );
    let rotated = phone.ctl_stdin(&["--json", "key", "rotate"], &format!("{PASSWORD}\n"));
    assert_eq!(rotated.code, Some(0), "{rotated}{}", phone.log_tail());
    let answer: sealback_daemon::control::api::KeyRotated =
        serde_json::from_str(&rotated.stdout).expect("json");
    assert!(
        answer.recovery_key.is_none(),
        "password mode shows no recovery key"
    );

    // The vault now holds the new key: a new device recovers it and restores the new
    // generation (the one snapshot the rotation made), even before the old one is retired.
    let fresh = world.new_device();
    let right = fresh.ctl_stdin(&["key", "recover"], &format!("{PASSWORD}\n"));
    assert_eq!(right.code, Some(0), "{right}{}", fresh.log_tail());
    assert_eq!(fresh.snapshots().len(), 1);
    phone.ctl_ok(&["key", "rotate", "--finish"]);
    let to = world.dir.path().join("restored");
    fresh.ctl_ok(&["restore", "latest", "--to", to.to_str().expect("UTF-8")]);
    let restored = check_restored(&to).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(restored.messages, world.store.committed());
}
