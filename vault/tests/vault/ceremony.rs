//! The key ceremony (docs/vault.md §10): the first token's keys installed into a second token
//! without leaving either in clear; a record sealed through one instance opens through the
//! other; a wrapped file altered, or made for another token, is refused.

use sealback_vault::testing::{Options, TestVault};

use crate::{RIGHT, binary, password, registered};

fn first() -> TestVault {
    TestVault::start_with(
        binary(),
        Options {
            transportable_keys: true,
            ..Options::default()
        },
    )
    .unwrap_or_else(|err| panic!("{err}"))
}

/// `key ceremony check`'s report of the token's keys, as `(check, lines)`.
fn check(vault: &TestVault) -> (String, Vec<String>) {
    let output = vault
        .run(&["key", "ceremony", "check"])
        .unwrap_or_else(|err| panic!("{err}"));
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let check = text
        .lines()
        .find_map(|line| line.strip_prefix("check = \""))
        .and_then(|rest| rest.strip_suffix('"'))
        .unwrap_or_else(|| panic!("no check value in {text}"))
        .to_string();
    (check, text.lines().map(|l| l.trim().to_string()).collect())
}

fn count(lines: &[String], line: &str) -> usize {
    lines.iter().filter(|l| *l == line).count()
}

#[test]
fn keys_travel_wrapped_into_a_second_token_that_cannot_give_them_out() {
    let a = first();
    let (check_a, lines_a) = check(&a);
    // The first token's keys leave only under a key its security officer trusts.
    assert_eq!(
        count(&lines_a, "wrap_with_trusted = true"),
        2,
        "{lines_a:?}"
    );
    assert_eq!(count(&lines_a, "sensitive = true"), 2, "{lines_a:?}");
    assert_eq!(count(&lines_a, "value_readable = false"), 2, "{lines_a:?}");

    let (_alice, credential) = registered(&a, "alice", [7; 32]);
    let b = a.start_peer().unwrap_or_else(|err| panic!("{err}"));
    let (check_b, lines_b) = check(&b);
    assert_eq!(check_a, check_b, "both tokens hold the same keys");
    for line in [
        "sensitive = true",
        "extractable = false",
        "value_readable = false",
    ] {
        assert_eq!(
            count(&lines_b, line),
            2,
            "{line} for both keys: {lines_b:?}"
        );
    }
    // The second token cannot pass them on: its keys are not extractable at all.
    let c = a.new_peer().unwrap_or_else(|err| panic!("{err}"));
    let err = c.receive_keys(&b).expect_err("b's keys cannot be wrapped");
    assert!(err.contains("cannot be wrapped"), "{err}");

    // A record sealed (and its entry tagged) through a's token opens through b's.
    let through_b =
        sealback_vault_client::Vault::new(b.client_config("alice", &credential)).expect("client");
    let key = through_b.recover(&password(RIGHT)).expect("recovers on b");
    assert_eq!(*key, [7; 32]);
}

#[test]
fn a_wrapped_file_altered_or_meant_for_another_token_is_refused() {
    let a = first();
    let b = a.new_peer().unwrap_or_else(|err| panic!("{err}"));
    let c = a.new_peer().unwrap_or_else(|err| panic!("{err}"));
    let (for_b, check) = b
        .wrapped_keys_from(&a)
        .unwrap_or_else(|err| panic!("{err}"));
    let _ = c
        .wrapped_keys_from(&a)
        .unwrap_or_else(|err| panic!("{err}"));
    let unwrap = |vault: &TestVault, file: &std::path::Path, check: &str| {
        vault.run(&[
            "key",
            "ceremony",
            "unwrap",
            &file.to_string_lossy(),
            "--check",
            check,
        ])
    };
    let text = std::fs::read_to_string(&for_b).expect("wrapped file");
    let mut file: serde_json::Value = serde_json::from_str(&text).expect("json");

    // b's keys, given to c: refused by name.
    let err = unwrap(&c, &for_b, &check).expect_err("meant for b");
    assert!(err.contains("meant for another token"), "{err}");
    // ... and, relabelled for c's transport key, by c's token itself.
    let c_file: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(c.dir().join("wrapped-keys.json")).expect("c's file"),
    )
    .expect("json");
    let mut relabelled = file.clone();
    relabelled["for"] = c_file["for"].clone();
    let path = c.dir().join("relabelled.json");
    std::fs::write(&path, relabelled.to_string()).expect("writes");
    let err = unwrap(&c, &path, &check).expect_err("b's key does not unwrap in c");
    assert!(
        err.contains("does not unwrap under this token's transport key"),
        "{err}"
    );

    // A flipped byte in a wrapped key.
    let wrapped = file["record_key"].as_str().expect("b64").to_string();
    let mut bytes: Vec<char> = wrapped.chars().collect();
    bytes[10] = if bytes[10] == 'A' { 'B' } else { 'A' };
    file["record_key"] = bytes.into_iter().collect::<String>().into();
    let path = b.dir().join("altered.json");
    std::fs::write(&path, file.to_string()).expect("writes");
    let err = unwrap(&b, &path, &check).expect_err("altered");
    assert!(err.contains("does not unwrap"), "{err}");

    // The two keys swapped: each unwraps, but the check value differs.
    let mut swapped: serde_json::Value = serde_json::from_str(&text).expect("json");
    let record = swapped["record_key"].clone();
    swapped["record_key"] = swapped["entry_key"].clone();
    swapped["entry_key"] = record;
    let path = b.dir().join("swapped.json");
    std::fs::write(&path, swapped.to_string()).expect("writes");
    let err = unwrap(&b, &path, &check).expect_err("swapped");
    assert!(err.contains("check value"), "{err}");

    // A check value other than the one the first token's operator read out.
    let err = unwrap(&b, &for_b, "0000000000000000-0000000000000000").expect_err("other check");
    assert!(err.contains("check value"), "{err}");

    // Nothing was left behind by the refusals: the genuine file still installs.
    let output = unwrap(&b, &for_b, &check).expect("installs");
    assert!(String::from_utf8_lossy(&output.stdout).contains(&check));
    // Once: the transport key is gone.
    let err = unwrap(&b, &for_b, &check).expect_err("twice");
    assert!(err.contains("already holds a vault key"), "{err}");
}

#[test]
fn wrapping_needs_the_transport_key_the_receiver_read_out() {
    let a = first();
    let b = a.new_peer().unwrap_or_else(|err| panic!("{err}"));
    let transport = b.dir().join("transport.json");
    b.run(&[
        "key",
        "ceremony",
        "transport-key",
        "--out",
        &transport.to_string_lossy(),
    ])
    .expect("transport key");
    let err = a
        .run(&[
            "key",
            "ceremony",
            "wrap",
            "--for",
            &transport.to_string_lossy(),
            "--fingerprint",
            &"ab".repeat(32),
            "--so-pin-file",
            &a.dir().join("so-pin").to_string_lossy(),
            "--out",
            &b.dir().join("out.json").to_string_lossy(),
        ])
        .expect_err("wrong fingerprint");
    assert!(err.contains("not the receiving token's key"), "{err}");
    assert!(!b.dir().join("out.json").exists());
}

/// The user PIN alone, which the vault runs with, cannot take the source token's keys out:
/// not under a public key it imports, not under an AES key whose value it chose, and it cannot
/// mark a key trusted. (In a child process, on the first token: see `check::in_child_with`.)
#[test]
fn the_user_pin_alone_cannot_wrap_the_source_tokens_keys() {
    use cryptoki::mechanism::Mechanism;
    use cryptoki::object::{Attribute, KeyType, ObjectClass};
    use sealback_vault::hsm::RECORD_KEY_LABEL;

    let Some(path) = crate::check::in_child_with(
        "ceremony::the_user_pin_alone_cannot_wrap_the_source_tokens_keys",
        first,
    ) else {
        return;
    };
    let config = sealback_vault::Config::load(&path).expect("configuration");
    let pkcs11 = cryptoki::context::Pkcs11::new(&config.hsm.module).expect("module");
    pkcs11
        .initialize(cryptoki::context::CInitializeArgs::new(
            cryptoki::context::CInitializeFlags::OS_LOCKING_OK,
        ))
        .expect("initialize");
    let slot = pkcs11.get_slots_with_token().expect("slots")[0];
    let session = pkcs11.open_rw_session(slot).expect("session");
    let pin = config.hsm.pin().expect("PIN");
    session
        .login(cryptoki::session::UserType::User, Some(&pin))
        .expect("login");
    let record = session
        .find_objects(&[
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::Label(RECORD_KEY_LABEL.as_bytes().to_vec()),
        ])
        .expect("find")[0];
    // An AES key of the user's choosing, allowed to wrap.
    let chosen = session
        .create_object(&[
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(KeyType::AES),
            Attribute::Token(false),
            Attribute::Value(vec![1; 32]),
            Attribute::Wrap(true),
        ])
        .expect("a wrapping key of known value");
    let wrapped = session.wrap_key(&Mechanism::AesKeyWrapPad, chosen, record);
    assert!(wrapped.is_err(), "wrapped under a known key: {wrapped:?}");
    // An RSA key of the user's, imported to wrap.
    let (public, _) = session
        .generate_key_pair(
            &Mechanism::RsaPkcsKeyPairGen,
            &[
                Attribute::Token(false),
                Attribute::ModulusBits(2048.into()),
                Attribute::Wrap(true),
            ],
            &[Attribute::Token(false), Attribute::Unwrap(true)],
        )
        .expect("an RSA pair");
    let oaep = Mechanism::RsaPkcsOaep(cryptoki::mechanism::rsa::PkcsOaepParams::new(
        cryptoki::mechanism::MechanismType::SHA1,
        cryptoki::mechanism::rsa::PkcsMgfType::MGF1_SHA1,
        cryptoki::mechanism::rsa::PkcsOaepSource::empty(),
    ));
    let wrapped = session.wrap_key(&oaep, public, record);
    assert!(
        wrapped.is_err(),
        "wrapped under the user's RSA key: {wrapped:?}"
    );
    // Trust is the security officer's to give.
    let trusted = session.update_attributes(public, &[Attribute::Trusted(true)]);
    assert!(trusted.is_err(), "the user marked a key trusted");
    let trusted = session.wrap_key(&oaep, public, record);
    assert!(trusted.is_err(), "wrapped after all: {trusted:?}");
}
