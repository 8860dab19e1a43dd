//! Provider faults, through the faulty plugin, under backup and under restore: errors of
//! every kind, transient ones with a retry-after, panics, torn puts, slow calls and calls
//! past the target's timeout. Each case starts from a target holding a good snapshot and
//! asks: did the request do what the fault allows (succeed after retries, or fail naming
//! the target and the operation), is nothing false left (no restored file that looks
//! complete and is not), and once the fault is gone, does `verify` pass and does a backup
//! restore to a committed state, the earlier snapshot still restoring too?

use serde_json::{Value, json};

use sealback_tests::store::check_restored;
use sealback_tests::{Device, MessageStore, Setup, Target};

use crate::fixtures::TARGET;

/// What the request is.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    Backup,
    Restore,
}

/// One fault and what it allows.
struct Case {
    phase: Phase,
    fault: Value,
    /// The target's `timeout`, if not the default.
    timeout: Option<&'static str>,
    /// Whether the request succeeds despite the fault.
    succeeds: bool,
    /// Words its error names, if it fails.
    names: &'static [&'static str],
}

fn cases() -> Vec<Case> {
    use Phase::{Backup, Restore};
    let case = |phase, fault, succeeds, names| Case {
        phase,
        fault,
        timeout: None,
        succeeds,
        names,
    };
    vec![
        case(
            Backup,
            json!({"fail": "put", "kind": "transient", "times": 2, "retry_after_ms": 30}),
            true,
            &[],
        ),
        case(
            Backup,
            json!({"fail": "put", "kind": "transient"}),
            false,
            &["put", "attempts"],
        ),
        case(
            Backup,
            json!({"fail": "put", "kind": "permanent", "times": 1}),
            false,
            &["put"],
        ),
        case(
            Backup,
            json!({"fail": "put", "kind": "quota", "after": 1}),
            false,
            &["put"],
        ),
        case(
            Backup,
            json!({"fail": "put", "kind": "auth"}),
            false,
            &["put"],
        ),
        case(
            Backup,
            json!({"fail": "put", "panic": true, "times": 1}),
            false,
            &["panicked"],
        ),
        case(
            Backup,
            json!({"fail": "put", "kind": "transient", "times": 1, "torn": true}),
            true,
            &[],
        ),
        case(
            Backup,
            json!({"fail": "put", "kind": "permanent", "only": "index/", "torn": true}),
            false,
            &["put"],
        ),
        case(
            Backup,
            json!({"fail": "list", "kind": "transient", "times": 1}),
            true,
            &[],
        ),
        case(
            Backup,
            json!({"fail": "list", "kind": "permanent"}),
            false,
            &["list"],
        ),
        case(
            Backup,
            json!({"fail": "get", "kind": "transient", "times": 2}),
            true,
            &[],
        ),
        case(Backup, json!({"slow_ms": 40}), true, &[]),
        Case {
            timeout: Some("100ms"),
            ..case(
                Backup,
                json!({"slow_ms": 400, "slow_op": "put"}),
                false,
                &["put"],
            )
        },
        case(
            Restore,
            json!({"fail": "get", "kind": "transient", "times": 2, "retry_after_ms": 20}),
            true,
            &[],
        ),
        case(
            Restore,
            json!({"fail": "get", "kind": "permanent", "after": 2}),
            false,
            &["get"],
        ),
        case(
            Restore,
            json!({"fail": "get", "kind": "auth"}),
            false,
            &["get"],
        ),
        case(
            Restore,
            json!({"fail": "get", "panic": true, "after": 1, "times": 1}),
            false,
            &["panicked"],
        ),
        case(
            Restore,
            json!({"fail": "list", "kind": "transient", "times": 1}),
            true,
            &[],
        ),
        case(Restore, json!({"slow_ms": 30, "slow_op": "get"}), true, &[]),
        Case {
            timeout: Some("100ms"),
            ..case(
                Restore,
                json!({"slow_ms": 400, "slow_op": "get"}),
                false,
                &["get"],
            )
        },
    ]
}

/// A restore left nothing that looks complete and is not: either nothing, or files that
/// are all either finished and right (check_restored) or still under their partial name.
fn nothing_false_in(dir: &std::path::Path) -> Result<(), String> {
    if !dir.join("msgstore.db").exists() {
        let files = sealback_tests::store::walk(dir).unwrap_or_default();
        return match files.iter().find(|f| !f.ends_with(".sealback-partial")) {
            // Media restored before the failure are whole (renamed only once complete).
            Some(_) if files.iter().all(|f| !f.contains("msgstore.db")) => Ok(()),
            Some(f) => Err(format!("{f} is in a failed restore")),
            None => Ok(()),
        };
    }
    check_restored(dir).map(drop)
}

#[test]
fn every_provider_fault_under_backup_and_restore_leaves_every_snapshot_restorable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = MessageStore::create(&dir.path().join("store"), 10);
    store.append(300);
    let mut injected = 0;
    let cases = cases();
    for (n, case) in cases.iter().enumerate() {
        let target = dir.path().join(format!("target-{n}"));
        let setup = |fault: Value| {
            let mut t = Target::faulty(TARGET, &target, fault);
            if let Some(timeout) = case.timeout {
                t = t.with("timeout", json!(timeout)).with("retries", json!(1));
            } else {
                t = t.with("retries", json!(3));
            }
            Setup::new(store.dir(), vec![t])
        };
        let mut device = Device::started(setup(json!({})));
        device.generate_key();
        let first = device.backup();
        device.stop();
        store.append(20);

        device.reconfigure(setup(case.fault.clone()));
        device.start();
        injected += 1;
        let what = format!("case {n}: {:?} with {}", case.phase, case.fault);
        let to = dir.path().join(format!("restored-{n}"));
        let answer = match case.phase {
            Phase::Backup => device.ctl(&["backup", "--wait"]),
            Phase::Restore => device.ctl(&[
                "restore",
                &first.snapshot,
                "--to",
                to.to_str().expect("UTF-8"),
            ]),
        };
        if case.succeeds {
            assert_eq!(
                answer.code,
                Some(0),
                "{what} should succeed:\n{answer}{}",
                device.log_tail()
            );
        } else {
            assert_eq!(
                answer.code,
                Some(1),
                "{what} should fail:\n{answer}{}",
                device.log_tail()
            );
            for word in [TARGET].iter().chain(case.names) {
                assert!(
                    answer.stderr.contains(word),
                    "{what}: the error names {word:?}:\n{answer}"
                );
            }
        }
        if case.phase == Phase::Restore {
            nothing_false_in(&to).unwrap_or_else(|e| panic!("{what}: {e}"));
        }
        device.stop();

        device.reconfigure(setup(json!({})));
        device.start();
        let mut verify = device.ctl(&["verify"]);
        // A torn put that was never retried leaves a damaged object (a pack no index
        // names is ignored; an index is not): `verify` names it, and `repair` removes it.
        let torn = case.fault.get("torn") == Some(&json!(true));
        if torn && verify.code != Some(0) {
            assert!(
                verify.stdout.contains("failed authentication"),
                "{what}: only a torn object may be damaged:\n{verify}"
            );
            device.ctl_ok(&["repair"]);
            verify = device.ctl(&["verify"]);
        }
        assert_eq!(
            verify.code,
            Some(0),
            "{what}: verify once the fault is gone:\n{verify}"
        );
        let after = device.backup();
        for snapshot in [&first.snapshot, &after.snapshot] {
            let to = dir.path().join(format!("check-{n}"));
            device.restore(snapshot, &to);
            check_restored(&to).unwrap_or_else(|e| panic!("{what}: snapshot {snapshot}: {e}"));
            std::fs::remove_dir_all(&to).expect("clean up");
        }
        device.stop();
    }
    println!(
        "provider faults: {injected} faults injected, {} cases, every snapshot restored",
        cases.len()
    );
}
