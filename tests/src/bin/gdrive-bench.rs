//! `gdrive-bench`: a full backup of one message store through the `gdrive` provider to the Drive
//! v3 emulator on loopback, side by side with the same backup to a local disk (the `local`
//! provider), in one run: wall times, their ratio, and the Drive requests the backup made, by
//! kind. Build in release (`cargo build --release -p sealback-daemon -p sealback-local
//! -p sealback-faulty -p sealback-gdrive -p sealback-webdav -p sealback-tests`: the helpers
//! check that every plugin is fresh) and run
//! `target/release/gdrive-bench --store DIR`, DIR a store `bench/gen_store.py` made (the medium
//! store: `--seed 42 --messages 300000 --media-mb 1024`).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use sealback_tests::drive::{DriveEmulator, Options, SCOPE_APPDATA};
use sealback_tests::{Device, Setup, Target};

fn main() {
    let mut args = std::env::args().skip(1);
    let store = match (args.next().as_deref(), args.next()) {
        (Some("--store"), Some(dir)) => {
            std::path::absolute(PathBuf::from(dir)).expect("the store's path")
        }
        _ => {
            eprintln!(
                "usage: gdrive-bench --store DIR   (a message store made by bench/gen_store.py)"
            );
            std::process::exit(2);
        }
    };
    let work = tempfile::tempdir().expect("work directory");

    // The local disk.
    let disk = work.path().join("disk");
    let (local, local_bytes) = full_backup(Setup::new(&store, vec![Target::local("disk", &disk)]));
    std::fs::remove_dir_all(&disk).ok();

    // Google Drive, through the emulator on loopback.
    let drive = DriveEmulator::start(Options::default()).expect("start the emulator");
    let token_file = work.path().join("drive.token");
    std::fs::write(&token_file, drive.issue_refresh_token(SCOPE_APPDATA)).expect("token file");
    let options = drive.provider_options(&token_file);
    drive.reset_counters();
    let (gdrive, gdrive_bytes) = full_backup(Setup::new(
        &store,
        vec![Target::new("drive", "gdrive", options)],
    ));
    let counters = drive.counters();
    let requests: u64 = counters.requests.values().sum();

    println!("full backup of {}", store.display());
    println!(
        "  local disk:          {:>8.2} s, {} bytes written",
        local.as_secs_f64(),
        local_bytes
    );
    println!(
        "  gdrive -> emulator:  {:>8.2} s, {} bytes written",
        gdrive.as_secs_f64(),
        gdrive_bytes
    );
    println!(
        "  ratio gdrive/local:  {:>8.2}",
        gdrive.as_secs_f64() / local.as_secs_f64()
    );
    println!(
        "  Drive requests:      {requests} ({} objects stored)",
        counters.objects_stored
    );
    for (kind, count) in &counters.requests {
        println!("    {kind:?}: {count}");
    }
    println!("  bytes uploaded:      {}", counters.bytes_uploaded);
}

/// A fresh device with `setup`, a key, and one full backup: its wall time (as `sealbackctl
/// backup --wait` sees it) and the bytes it wrote.
fn full_backup(setup: Setup) -> (Duration, u64) {
    let device = Device::started(setup);
    device.generate_key();
    let started = Instant::now();
    let report = device.backup();
    (started.elapsed(), report.bytes_written)
}
