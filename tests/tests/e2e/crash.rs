//! Crash points: `sealbackd` killed with SIGKILL at a provider call chosen by a seed (in a
//! pack's put, between an index and a snapshot, during a restore or a verify) while the app
//! writes; after each: restart, `verify`, a backup, and that backup restores to a
//! committed state. At the end every snapshot taken is restored and checked.
//!
//! `SEALBACK_CRASH_POINTS` sets how many (the README's test command runs the default; the
//! README's reliability section gives a longer run), `SEALBACK_CRASH_SEED` the first seed.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use sealback_tests::store::check_restored;
use sealback_tests::writer::{Pace, Writer};

use crate::fixtures::{CrashRig, crashing, env_number};

/// Crash points of one run, by default.
const POINTS: u64 = 100;

/// What the daemon is doing when it is killed.
#[derive(Debug, Clone, Copy)]
enum Phase {
    Backup,
    Restore,
    Verify,
}

#[test]
fn killed_at_any_provider_call_the_daemon_restarts_and_every_snapshot_restores() {
    let points = env_number("SEALBACK_CRASH_POINTS", POINTS);
    let seed = env_number("SEALBACK_CRASH_SEED", 1);
    let rig = CrashRig::new(400, 25);
    let (dir, store, target, mut device) = (&rig.dir, &rig.store, &rig.target, rig.device);
    let setup = |crash_after: Option<u64>| crashing(store.dir(), target, crash_after);

    let mut writer = Writer::start(
        store,
        Pace {
            per_second: Some(40),
            media_pause_ms: 5,
        },
    );
    let mut kills = 0;
    let mut snapshots = Vec::new();
    let mut history = String::new();
    for point in 0..points {
        writer.assert_running();
        let mut rng = StdRng::seed_from_u64(seed.wrapping_mul(1_000_003) + point);
        let phase = match rng.gen_range(0..10) {
            0..=5 => Phase::Backup,
            6..=7 => Phase::Restore,
            _ => Phase::Verify,
        };
        // A small backup makes a dozen calls or so (lists, a few packs, an index, the
        // snapshot); some points fall past its end, and the request completes.
        let calls = rng.gen_range(0..16);
        device.reconfigure(setup(Some(calls)));
        device.start();
        let restored_to = dir.path().join(format!("interrupted-{point}"));
        let request: Vec<String> = match phase {
            Phase::Backup => vec!["backup".into(), "--wait".into()],
            Phase::Restore => vec![
                "restore".into(),
                "latest".into(),
                "--to".into(),
                restored_to.display().to_string(),
            ],
            Phase::Verify => vec!["verify".into()],
        };
        let args: Vec<&str> = request.iter().map(String::as_str).collect();
        let answer = device.ctl(&args);
        let killed = device.stop_or_reap_killed();
        kills += u64::from(killed);
        history.push_str(&format!(
            "  point {point}: {phase:?}, killed at call {} ({})\n",
            calls + 1,
            if killed { "killed" } else { "completed" }
        ));
        if !killed {
            assert!(
                answer.code == Some(0),
                "{phase:?} without a crash failed:\n{answer}{}\n{history}",
                device.log_tail()
            );
        }

        device.reconfigure(setup(None));
        device.start();
        let verify = device.ctl(&["verify"]);
        assert!(
            verify.code == Some(0),
            "verify after the crash:\n{verify}{}\n{history}",
            device.log_tail()
        );
        let report = device.backup();
        let to = dir.path().join(format!("restored-{point}"));
        device.restore(&report.snapshot, &to);
        check_restored(&to).unwrap_or_else(|e| {
            panic!(
                "snapshot {} after point {point}: {e}\n{history}",
                report.snapshot
            )
        });
        let _ = std::fs::remove_dir_all(&to);
        let _ = std::fs::remove_dir_all(&restored_to);
        snapshots.push(report.snapshot);
        device.stop();
    }
    writer.stop();

    device.reconfigure(setup(None));
    device.start();
    let listed = device.snapshots();
    let mut restored = 0;
    for snapshot in &listed {
        let to = dir.path().join("final");
        device.restore(&snapshot.id, &to);
        check_restored(&to).unwrap_or_else(|e| panic!("snapshot {}: {e}\n{history}", snapshot.id));
        let _ = std::fs::remove_dir_all(&to);
        restored += 1;
    }
    assert!(
        snapshots.iter().all(|s| listed.iter().any(|l| &l.id == s)),
        "a snapshot reported done is no longer listed\n{history}"
    );
    println!(
        "crash points: {points} tried, {kills} kill -9, {restored} snapshots restored and checked (seed {seed})"
    );
    assert!(
        kills * 2 > points,
        "too few points were reached: {kills} of {points}\n{history}"
    );
}
