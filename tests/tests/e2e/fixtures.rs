//! What several tests start from: a store that was backed up, and new devices that restore
//! from its target.

use std::path::{Path, PathBuf};

use sealback_tests::{Device, MessageStore, Setup, Target};
use tempfile::TempDir;

/// The name every test gives its target.
pub const TARGET: &str = "disk";

/// A store backed up (once) by a device to a local target.
pub struct BackedUp {
    pub dir: TempDir,
    pub store: MessageStore,
    pub target: PathBuf,
    pub device: Device,
    pub recovery_key: String,
    /// Snapshot ids, oldest first.
    pub snapshots: Vec<String>,
}

impl BackedUp {
    /// `messages` messages, every `media_every`-th with an image, backed up once.
    pub fn new(messages: i64, media_every: i64) -> BackedUp {
        let dir = tempfile::Builder::new()
            .prefix("sealback-e2e-")
            .tempdir()
            .expect("a temporary directory");
        let store = MessageStore::create(&dir.path().join("store"), media_every);
        store.append(messages);
        let target = dir.path().join("target");
        let device = Device::started(Setup::new(
            store.dir(),
            vec![Target::local(TARGET, &target)],
        ));
        let recovery_key = device.generate_key();
        let report = device.backup();
        BackedUp {
            dir,
            store,
            target,
            device,
            recovery_key,
            snapshots: vec![report.snapshot],
        }
    }

    /// Adds `messages` messages and backs up again.
    pub fn add_and_back_up(&mut self, messages: i64) {
        self.store.append(messages);
        let report = self.device.backup();
        self.snapshots.push(report.snapshot);
    }

    /// A directory of the test's own.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// A store with `messages` messages, and a started device with a key whose targets are
/// `disk` (local, under `dir`) and `flaky` (every put fails): each backup reaches one of two.
pub fn one_target_failing(dir: &Path, messages: i64) -> (MessageStore, Device) {
    let store = MessageStore::create(&dir.join("store"), 5);
    store.append(messages);
    let targets = vec![
        Target::local(TARGET, &dir.join("disk")),
        Target::faulty(
            "flaky",
            &dir.join("flaky"),
            serde_json::json!({ "fail": "put", "kind": "permanent" }),
        ),
    ];
    let device = Device::started(Setup::new(store.dir(), targets));
    device.generate_key();
    (store, device)
}

/// A new device, with nothing but the recovery key, restoring from the local target `target`.
pub fn new_device(target: &Path, recovery_key: &str) -> Device {
    let device = Device::started(Setup::restoring_from(vec![Target::local(TARGET, target)]));
    device.import_key(recovery_key);
    device
}

/// `store` backed up to the fault-injecting provider at `target`, which kills the daemon at
/// its call `crash_after + 1` (a crash point), or never.
pub fn crashing(store: &Path, target: &Path, crash_after: Option<u64>) -> Setup {
    let options = match crash_after {
        Some(calls) => serde_json::json!({ "crash_after": calls }),
        None => serde_json::json!({}),
    };
    Setup::new(store, vec![Target::faulty(TARGET, target, options)])
}

/// A number from the environment variable `name` (a test's seed or size), or `default`.
pub fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name).map_or(default, |v| {
        v.parse()
            .unwrap_or_else(|_| panic!("{name} is a number, not {v:?}"))
    })
}

/// A store of `messages` messages (every `media_every`-th with an image) backed up once to
/// a [`crashing`] target that never crashes yet, its device stopped: where crash tests start.
pub struct CrashRig {
    pub dir: TempDir,
    pub store: MessageStore,
    pub target: PathBuf,
    pub device: Device,
}

impl CrashRig {
    pub fn new(messages: i64, media_every: i64) -> CrashRig {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = MessageStore::create(&dir.path().join("store"), media_every);
        store.append(messages);
        let target = dir.path().join("target");
        let mut device = Device::started(crashing(store.dir(), &target, None));
        device.generate_key();
        device.backup();
        device.stop();
        CrashRig {
            dir,
            store,
            target,
            device,
        }
    }
}
