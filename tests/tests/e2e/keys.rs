//! The backup key: generated once, imported from the recovery key as typed, checked against
//! the target before it is kept, and kept owner-only.

use std::os::unix::fs::PermissionsExt;

use rand::Rng;
use sealback_tests::{Device, Setup, Target};

use crate::fixtures::{BackedUp, TARGET};

const KEY_FILE: &str = "backup.key";

/// A well-formed recovery key no backup was made with.
fn random_recovery_key() -> String {
    let digits: Vec<String> = (0..16)
        .map(|_| format!("{:04x}", rand::thread_rng().r#gen::<u16>()))
        .collect();
    digits.join(" ")
}

/// Imports `key` on `device`, which must refuse it saying `why`, and keep no key.
#[track_caller]
fn import_refused(device: &Device, key: &str, why: &[&str]) {
    let ctl = device.ctl_stdin(&["key", "import"], key);
    assert_eq!(ctl.code, Some(1), "{ctl}{}", device.log_tail());
    for part in why {
        assert!(
            ctl.stderr.contains(part),
            "the refusal does not say {part:?}: {ctl}"
        );
    }
    assert!(
        !ctl.stderr.contains(key.trim()),
        "the error repeats the recovery key: {ctl}"
    );
    let file = device.state_dir().join(KEY_FILE);
    assert!(
        !file.exists(),
        "{} was written for a refused key",
        file.display()
    );
}

#[test]
fn a_mistyped_recovery_key_is_refused_and_nothing_is_kept() {
    let fixture = BackedUp::new(10, 0);
    let device = Device::started(Setup::restoring_from(vec![Target::local(
        TARGET,
        &fixture.target,
    )]));
    let key = fixture.recovery_key.as_str();

    let typo = format!("o{}", &key[1..]);
    import_refused(&device, &typo, &["'o'", "not a recovery-key digit"]);

    let digits: String = key.chars().filter(char::is_ascii_hexdigit).collect();
    import_refused(&device, &digits[..63], &["64 digits", "63"]);

    import_refused(
        &device,
        &random_recovery_key(),
        &["does not open", &format!("{TARGET:?}")],
    );

    // The right key, typed with dashes and in capitals, is taken.
    let typed = key.to_uppercase().replace(' ', "-");
    device.import_key(&typed);
    let restored = device.root().join("restored");
    device.restore("latest", &restored);
}

#[test]
fn key_generate_twice_needs_replace_and_the_key_file_is_owner_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let device = Device::started(Setup::restoring_from(vec![Target::local(
        TARGET,
        &dir.path().join("target"),
    )]));
    let first = device.generate_key();
    let file = device.state_dir().join(KEY_FILE);
    let mode = std::fs::metadata(&file)
        .unwrap_or_else(|e| panic!("{}: {e}", file.display()))
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "{} is mode {mode:o}", file.display());

    let again = device.ctl_fails(&["key", "generate"], 1);
    assert!(
        again.stderr.contains("already has a backup key") && again.stderr.contains("--replace"),
        "{again}"
    );
    assert!(!again.stdout.contains(&first), "{again}");

    let replaced = device.ctl_ok(&["--json", "key", "generate", "--replace"]);
    assert!(
        !replaced.stdout.contains(&first),
        "--replace made the same key: {replaced}"
    );
}

#[test]
fn a_backup_without_a_key_says_how_to_get_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = sealback_tests::MessageStore::create(&dir.path().join("store"), 0);
    let device = Device::started(Setup::new(
        store.dir(),
        vec![Target::local(TARGET, &dir.path().join("target"))],
    ));
    let ctl = device.ctl_fails(&["backup", "--wait"], 1);
    assert!(
        ctl.stderr.contains("no backup key")
            && ctl.stderr.contains("key generate")
            && ctl.stderr.contains("key import"),
        "{ctl}"
    );
    assert!(
        !dir.path().join("target").join("config").exists(),
        "a repository was created without a key"
    );
}
