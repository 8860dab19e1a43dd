//! What every [`GuessCheck`] must do, as a test any implementation runs: the host check
//! (vault/tests/vault/check.rs) and, one day, one that runs inside an HSM.
//!
//! [`run`] drives the check as the vault would, with a real OPAQUE client, and returns the
//! first broken promise. It needs the check's OPAQUE server key (`server_key`, what clients
//! pin) and nothing else of its inside.

use opaque_ke::argon2::Argon2;
use opaque_ke::{
    ClientLogin, ClientLoginFinishParameters, ClientRegistration,
    ClientRegistrationFinishParameters, CredentialResponse, RegistrationResponse,
};
use rand::rngs::OsRng;
use sealback_vault_client::protocol::sealed_key;
use sealback_vault_client::protocol::suite::{CONTEXT, Suite, identifiers, key_stretching_with};
use sealback_vault_client::protocol::transfer;
use sealback_vault_client::protocol::wire::ErrorCode;

use super::{GuessCheck, Spend};
use crate::account::{AccountEntry, Attempt, StoredRecord};

const RIGHT: &[u8] = b"correct horse battery staple";
const WRONG: &[u8] = b"correct horse battery stapler";
const KEY: [u8; 32] = [7; 32];

type Outcome = Result<(), String>;

/// An edit of one field of an entry.
type Edit = (&'static str, fn(&mut AccountEntry));

fn ensure(condition: bool, broken: &str) -> Outcome {
    if condition {
        Ok(())
    } else {
        Err(format!("the guess check broke its contract: {broken}"))
    }
}

/// Runs the whole contract on `check`, whose limit must be at least 2.
pub fn run(check: &dyn GuessCheck) -> Outcome {
    ensure(
        check.limit() >= 2,
        "the contract needs a limit of at least 2",
    )?;
    counting(check)?;
    attempts(check)?;
    tags(check)?;
    passwords(check)?;
    records_are_bound(check)?;
    Ok(())
}

/// A client's registration of `password` for `account`, with key stretching `ksf`: `server`
/// answers the registration request with the OPRF response and the record version. The
/// upload and the sealed key (of `key`) for `register/finish`, and the version.
pub fn client_registration(
    account: &str,
    password: &[u8],
    key: &[u8; 32],
    ksf: &Argon2<'static>,
    server: impl FnOnce(&[u8]) -> Result<(Vec<u8>, u64), String>,
) -> Result<(Vec<u8>, Vec<u8>, u64), String> {
    let start =
        ClientRegistration::<Suite>::start(&mut OsRng, password).map_err(|e| e.to_string())?;
    let (response, version) = server(&start.message.serialize())?;
    let response =
        RegistrationResponse::<Suite>::deserialize(&response).map_err(|e| e.to_string())?;
    let finish = start
        .state
        .finish(
            &mut OsRng,
            password,
            response,
            ClientRegistrationFinishParameters::new(identifiers(account), Some(ksf)),
        )
        .map_err(|e| e.to_string())?;
    let sealed = sealed_key::seal(&finish.export_key, account, version, key);
    Ok((finish.message.serialize().to_vec(), sealed, version))
}

/// Key stretching cheap enough for tests (the check's work does not depend on it).
pub fn cheap() -> Result<Argon2<'static>, String> {
    key_stretching_with(8, 1, 1)
}

/// A fresh account entry holding a record of `account` registered with [`RIGHT`].
fn registered(check: &dyn GuessCheck, account: &str) -> Result<AccountEntry, String> {
    let mut entry = AccountEntry::new(String::new());
    ensure(
        check.reserve_version(&mut entry) == 1 && entry.last_version == 1,
        "the first version reserved is not 1",
    )?;
    let (upload, sealed, _) = client_registration(account, RIGHT, &KEY, &cheap()?, |request| {
        let response = check
            .register(account, 1, request)
            .map_err(|refusal| refusal.message)?;
        Ok((response, 1))
    })?;
    let record = check
        .seal_record(account, 1, &upload, &sealed)
        .map_err(|refusal| refusal.message)?;
    ensure(
        !check.install(&mut entry, record).map_err(|r| r.message)?,
        "installing a first record reported a replaced one",
    )?;
    check
        .seal_entry(account, &mut entry)
        .map_err(|e| e.to_string())?;
    Ok(entry)
}

/// Spending, resetting and erasing: exactly `limit` guesses between two resets.
fn counting(check: &dyn GuessCheck) -> Outcome {
    let limit = check.limit();
    let mut entry = registered(check, "counting")?;
    for spent in 1..=limit {
        let spend = check.spend(&mut entry, None).map_err(|r| r.message)?;
        let Spend::Granted {
            record,
            attempts_left,
            repeated: false,
        } = spend
        else {
            return Err(format!("guess {spent} of {limit} was not granted"));
        };
        ensure(attempts_left == limit - spent, "attempts_left is wrong")?;
        ensure(record.is_some(), "a granted guess lost the record")?;
        ensure(entry.spent == u64::from(spent), "spent does not count")?;
        if spent == limit - 1 {
            ensure(
                check.erase_if_exhausted(&mut entry).is_none(),
                "erased before the limit",
            )?;
        }
    }
    ensure(
        check.reset(&mut entry.clone(), 2).is_err(),
        "reset for a record version the entry does not hold",
    )?;
    let mut reset = entry.clone();
    check.reset(&mut reset, 1).map_err(|r| r.message)?;
    ensure(reset.guesses == 0, "a proven login did not reset the count")?;

    let mut deleted = entry.clone();
    ensure(
        check.delete(&mut deleted, 2).is_err() && deleted.record.is_some(),
        "deleted for a record version the entry does not hold",
    )?;
    check.delete(&mut deleted, 1).map_err(|r| r.message)?;
    ensure(
        deleted.record.is_none() && deleted.guesses == 0 && !deleted.destroyed,
        "a deletion left the record or the count",
    )?;

    let mut erased = entry.clone();
    ensure(
        check.erase_if_exhausted(&mut erased) == Some(Some(1)),
        "did not erase at the limit",
    )?;
    ensure(
        erased.destroyed && erased.record.is_none(),
        "erasing left the record",
    )?;
    ensure(
        check.spend(&mut entry, None).ok() == Some(Spend::Exhausted(Some(1))),
        "a guess past the limit did not erase",
    )?;
    ensure(
        entry.destroyed && entry.record.is_none(),
        "exhausting left the record",
    )?;
    let refused = check.spend(&mut entry, None).err().map(|r| r.code);
    ensure(
        refused == Some(ErrorCode::KeyDestroyed),
        "a destroyed entry granted a guess",
    )
}

/// A login that names its attempt spends one guess however often it is tried, with the same
/// KE1 on the same record; another KE1, another attempt or another record spends again; and
/// the entry remembers a bounded number of attempts.
fn attempts(check: &dyn GuessCheck) -> Outcome {
    let limit = check.limit();
    let mut entry = registered(check, "attempts")?;
    let first = Attempt::new(&"a".repeat(32), b"ke1 of the first attempt")?;
    let granted = |spend: Result<Spend, _>| {
        matches!(
            spend,
            Ok(Spend::Granted {
                repeated: false,
                ..
            })
        )
    };
    ensure(
        granted(check.spend(&mut entry, Some(&first))),
        "an attempt was not granted",
    )?;
    for _ in 0..3 {
        let again = check
            .spend(&mut entry, Some(&first))
            .map_err(|r| r.message)?;
        ensure(
            matches!(again, Spend::Granted { attempts_left, repeated: true, .. } if attempts_left == limit - 1),
            "the same attempt again was not answered as a repeat",
        )?;
    }
    ensure(
        entry.guesses == 1 && entry.spent == 1,
        "a repeated attempt spent a guess",
    )?;
    let other_ke1 = Attempt::new(&"a".repeat(32), b"another password")?;
    ensure(
        granted(check.spend(&mut entry, Some(&other_ke1))),
        "the same attempt id with another KE1 spent nothing",
    )?;
    ensure(entry.guesses == 2, "another KE1 was not counted")?;
    // Up to the limit with new attempts; then the first one is forgotten or the key erased.
    let mut n = 0u32;
    while entry.guesses < limit {
        n += 1;
        let attempt = Attempt::new(&format!("{n:032x}"), b"ke1")?;
        ensure(
            granted(check.spend(&mut entry, Some(&attempt))),
            "a new attempt was refused",
        )?;
    }
    ensure(
        entry.attempts.len() <= crate::account::MAX_COUNTED_ATTEMPTS,
        "the entry keeps attempts without bound",
    )?;
    // At the limit a repeat of the last attempt is still evaluated (it tests no new
    // password); a new attempt erases.
    let last = Attempt::new(&format!("{n:032x}"), b"ke1")?;
    ensure(
        matches!(
            check.spend(&mut entry, Some(&last)),
            Ok(Spend::Granted {
                attempts_left: 0,
                repeated: true,
                ..
            })
        ),
        "the attempt that took the last guess was not repeatable",
    )?;
    let new = Attempt::new(&"f".repeat(32), b"a new password")?;
    ensure(
        matches!(check.spend(&mut entry, Some(&new)), Ok(Spend::Exhausted(_))),
        "a new guess past the limit did not erase",
    )?;
    ensure(
        entry.attempts.is_empty(),
        "an erased entry kept its attempts",
    )?;
    // A new record: attempts of the old one count again.
    let mut fresh = registered(check, "attempts")?;
    ensure(
        granted(check.spend(&mut fresh, Some(&first))),
        "an attempt was not granted",
    )?;
    fresh.record.as_mut().expect("a record").version = 2;
    ensure(
        granted(check.spend(&mut fresh, Some(&first))),
        "an attempt of another record version spent nothing",
    )
}

/// The entry's tag covers every field the count depends on, and the account.
fn tags(check: &dyn GuessCheck) -> Outcome {
    let entry = registered(check, "tags")?;
    ensure(
        check.verify_entry("tags", &entry).is_ok(),
        "a sealed entry does not verify",
    )?;
    ensure(
        check.verify_entry("other", &entry).is_err(),
        "an entry verifies for another account",
    )?;
    let edits: [Edit; 6] = [
        ("guesses", |e| e.guesses += 1),
        ("spent", |e| e.spent += 1),
        ("destroyed", |e| e.destroyed = true),
        ("last_version", |e| e.last_version += 1),
        ("record", |e| e.record = None),
        ("attempts", |e| {
            e.attempts
                .push(Attempt::new(&"0".repeat(32), b"ke1").expect("an attempt"))
        }),
    ];
    for (field, edit) in edits {
        let mut edited = entry.clone();
        edit(&mut edited);
        ensure(
            check.verify_entry("tags", &edited).is_err(),
            &format!("an entry with `{field}` edited still verifies"),
        )?;
    }
    Ok(())
}

/// A login with `password` on `record`: the check's proof, and the client's session key.
fn login(
    check: &dyn GuessCheck,
    account: &str,
    record: Option<&StoredRecord>,
    password: &[u8],
    tamper_ke3: bool,
) -> Result<(Option<super::Proof>, Vec<u8>), String> {
    let ksf = cheap()?;
    let start = ClientLogin::<Suite>::start(&mut OsRng, password).map_err(|e| e.to_string())?;
    let opened = check.open(account, record).map_err(|e| e.to_string())?;
    let evaluation = check
        .evaluate(account, opened, &start.message.serialize())
        .map_err(|r| r.message)?;
    let ke2 =
        CredentialResponse::<Suite>::deserialize(&evaluation.ke2).map_err(|e| e.to_string())?;
    let finish = start.state.finish(
        &mut OsRng,
        password,
        ke2,
        ClientLoginFinishParameters::new(Some(CONTEXT), identifiers(account), Some(&ksf)),
    );
    let (ke3, session_key) = match finish {
        Ok(finish) => {
            let mut ke3 = finish.message.serialize().to_vec();
            if tamper_ke3 {
                ke3[0] ^= 1;
            }
            (ke3, finish.session_key.to_vec())
        }
        // The client reports a failed finish with an empty KE3.
        Err(_) => (Vec::new(), Vec::new()),
    };
    let proof = check.prove(account, evaluation.pending, "login-1", &ke3);
    Ok((proof, session_key))
}

/// Only the right password releases the key, and only to the session that proved it.
fn passwords(check: &dyn GuessCheck) -> Outcome {
    let entry = registered(check, "passwords")?;
    let record = entry.record.as_ref();
    let (proof, session_key) = login(check, "passwords", record, RIGHT, false)?;
    let proof = proof.ok_or("the right password was not proven")?;
    ensure(proof.version == 1, "the proof names another record")?;
    ensure(
        transfer::open(&session_key, "login-1", &proof.sealed_for_session).is_some(),
        "the released key does not open with the session key",
    )?;
    ensure(
        transfer::open(&session_key, "login-2", &proof.sealed_for_session).is_none(),
        "the released key is not bound to its login",
    )?;
    let (proof, _) = login(check, "passwords", record, WRONG, false)?;
    ensure(proof.is_none(), "a wrong password was proven")?;
    let (proof, _) = login(check, "passwords", record, RIGHT, true)?;
    ensure(proof.is_none(), "an altered KE3 was proven")?;
    let (proof, _) = login(check, "passwords", None, RIGHT, false)?;
    ensure(proof.is_none(), "a login without a record was proven")
}

/// A record opens only as the account and version it was sealed for, unaltered.
fn records_are_bound(check: &dyn GuessCheck) -> Outcome {
    let entry = registered(check, "bound")?;
    let record = entry.record.clone().ok_or("no record")?;
    ensure(
        check.open("bound", Some(&record)).is_ok(),
        "a record does not open",
    )?;
    ensure(
        check.open("other", Some(&record)).is_err(),
        "a record opens as another account's",
    )?;
    let moved = StoredRecord {
        version: 2,
        ..record.clone()
    };
    ensure(
        check.open("bound", Some(&moved)).is_err(),
        "a record opens as another version",
    )?;
    let mut altered = record;
    let last = altered.sealed.len() - 1;
    altered.sealed[last] ^= 1;
    ensure(
        check.open("bound", Some(&altered)).is_err(),
        "an altered record opens",
    )
}
