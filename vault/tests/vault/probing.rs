//! A probe cannot tell an account without a record from a wrong password.

use sealback_vault::testing::Options;
use serde_json::{Value, json};

use crate::raw::{Raw, b64};
use crate::{RIGHT, account, password, vault_with};

fn shape(value: &Value) -> Vec<(String, String)> {
    let Value::Object(map) = value else {
        panic!("not an object: {value}")
    };
    map.iter()
        .map(|(k, v)| {
            let kind = match v {
                Value::String(s) if k != "login_id" => format!("string of {} chars", s.len()),
                Value::String(s) => format!("id of {} chars", s.len()),
                other => other.to_string(),
            };
            (k.clone(), kind)
        })
        .collect()
}

#[test]
fn an_account_without_a_record_answers_like_a_wrong_password() {
    let vault = vault_with(Options {
        guess_limit: 100,
        ..Options::default()
    });
    let (registered, registered_credential) = account(&vault, "alice");
    registered
        .register(&password(RIGHT), &[1u8; 32])
        .expect("registers");
    let (_, empty_credential) = account(&vault, "bob");
    let raw = Raw::new(&vault);

    let mut times = (Vec::new(), Vec::new());
    for round in 0..30 {
        let a = raw.login_start("alice", Some(&registered_credential));
        let b = raw.login_start("bob", Some(&empty_credential));
        assert_eq!((a.status, b.status), (200, 200));
        assert_eq!(shape(&a.body), shape(&b.body), "the same fields and sizes");
        assert_eq!(a.body["attempts_left"], json!(99 - round));
        assert_eq!(a.body["attempts_left"], b.body["attempts_left"]);
        times.0.push(a.elapsed);
        times.1.push(b.elapsed);
        // Each login then fails its last message the same way.
        let finish = |account: &str, credential: &str, start: &Value| {
            raw.post(
                "/v1/login/finish",
                Some(credential),
                &json!({
                    "account": account,
                    "login_id": start["login_id"],
                    "ke3": b64(&[7u8; 64]),
                }),
            )
        };
        let fa = finish("alice", &registered_credential, &a.body);
        let fb = finish("bob", &empty_credential, &b.body);
        assert_eq!((fa.status, fb.status), (403, 403));
        assert_eq!(fa.body, fb.body, "the same refusal");
        times.0.push(fa.elapsed);
        times.1.push(fb.elapsed);
    }
    times.0.sort();
    times.1.sort();
    let median = |v: &Vec<std::time::Duration>| v[v.len() / 2].as_secs_f64() * 1000.0;
    let (a, b) = (median(&times.0), median(&times.1));
    eprintln!("median request time: registered {a:.2} ms, no record {b:.2} ms");
    assert!(
        (a - b).abs() <= 0.5 * a.max(b) + 1.0,
        "timing differs: {a:.2} ms vs {b:.2} ms"
    );
}

/// `register/start` evaluates the OPRF without spending a guess. If it used the key of the
/// account's current record, its answers plus one KE2 would allow testing passwords offline.
/// The same blinded password sent to both must come back evaluated under different keys.
#[test]
fn registration_is_no_oprf_oracle_for_the_current_record() {
    let vault = crate::vault();
    let (client, credential) = account(&vault, "alice");
    client
        .register(&password(RIGHT), &[1u8; 32])
        .expect("registers");
    let raw = Raw::new(&vault);
    let ke1 = crate::raw::ke1();
    let blinded = &ke1[..32];
    let login = raw.post(
        "/v1/login/start",
        Some(&credential),
        &json!({ "account": "alice", "ke1": b64(&ke1) }),
    );
    let register = raw.post(
        "/v1/register/start",
        Some(&credential),
        &json!({ "account": "alice", "request": b64(blinded) }),
    );
    assert_eq!((login.status, register.status), (200, 200));
    let evaluated = |answer: &Value, field: &str| {
        use base64::Engine as _;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(answer[field].as_str().expect("base64"))
            .expect("base64");
        bytes[..32].to_vec()
    };
    assert_ne!(
        evaluated(&login.body, "ke2"),
        evaluated(&register.body, "response"),
        "registration evaluated the OPRF under the current record's key"
    );
}
