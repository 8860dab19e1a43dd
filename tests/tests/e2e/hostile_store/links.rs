//! Links the store's owner plants for the root daemon to follow: a database that is a link
//! to a database only root can read, and a directory of the store flipped, while backups
//! run, between itself and a link to a directory outside the store holding root's secrets.

use std::fs;
use std::os::unix::fs::{PermissionsExt as _, symlink};

use sealback_tests::store::DATABASE;

use super::entries::{SECRET, leaks_a_secret};
use super::{Bench, HOSTILE_DIR, Mutator};

/// Writes `bytes` to `path`, readable by root alone.
fn root_only(path: &std::path::Path, bytes: &[u8]) {
    fs::write(path, bytes).expect("write a root-only file");
    fs::set_permissions(path, fs::Permissions::from_mode(0o600)).expect("chmod 0600");
}

#[test]
fn a_database_that_is_a_link_out_of_the_store_is_refused_with_an_error_naming_it() {
    let bench = Bench::new(20, 5);
    let store = bench.store.dir();
    // A database only root can read, outside the store, holding a secret.
    let outside = bench.path("root-only.db");
    {
        let conn = rusqlite::Connection::open(&outside).expect("create the outside database");
        conn.execute_batch("CREATE TABLE secret(v BLOB)")
            .expect("create a table");
        conn.execute("INSERT INTO secret(v) VALUES (?1)", [SECRET.repeat(50)])
            .expect("insert the secret");
    }
    fs::set_permissions(&outside, fs::Permissions::from_mode(0o600)).expect("chmod 0600");
    let database = store.join(DATABASE);
    let aside = bench.path("the-app-database");
    fs::rename(&database, &aside).expect("move the database aside");
    symlink(&outside, &database).expect("plant a link as the database");

    let refused = |what: &str, advice: &str| {
        let ctl = bench.device.ctl(&["backup", "--wait"]);
        let said = format!("{}{}", ctl.stdout, ctl.stderr);
        assert_ne!(
            ctl.code,
            Some(0),
            "a backup read {what} through a link:\n{ctl}"
        );
        let named = store.join(what).display().to_string();
        assert!(
            said.contains(&named) && said.contains("symbolic link") && said.contains(advice),
            "the backup's error does not name {named} as a link, nor say to {advice}:\n{said}"
        );
        let status = bench.device.status();
        let last = status.targets[0].last_error.clone().unwrap_or_default();
        assert!(
            last.contains(&named),
            "status does not name {named}: {status:?}"
        );
        said
    };
    let said = refused(DATABASE, "put the app's database itself at this path");
    assert!(said.contains(&outside.display().to_string()), "{said}");

    // The database back, and its WAL a link to a root-only file.
    fs::remove_file(&database).expect("remove the link");
    fs::rename(&aside, &database).expect("put the database back");
    let secret = bench.path("secret.bin");
    root_only(&secret, &SECRET.repeat(50));
    let wal = format!("{DATABASE}-wal");
    let _ = fs::remove_file(store.join(&wal));
    symlink(&secret, store.join(&wal)).expect("plant a link as the WAL");
    refused(&wal, "remove it");

    fs::remove_file(store.join(&wal)).expect("remove the link");
    let report = bench.device.backup();
    let to = bench.path("restored");
    bench.device.restore(&report.snapshot, &to);
    for file in sealback_tests::store::walk(&to).expect("list the restored store") {
        let found = fs::read(to.join(&file)).expect("read a restored file");
        assert!(!leaks_a_secret(&found), "{file} holds the secret");
    }
    sealback_tests::store::check_restored(&to).expect("the store restores");
    println!(
        "hostile store (database links): a database and a WAL that are links out of the \
         store refused, each named; the store backed up once they were gone"
    );
}

/// Flips of the directory to make, at least, while backups run.
const FLIPS: u64 = 1000;
/// Backups to take, at least, while the directory flips.
const FLIP_BACKUPS: usize = 30;
/// Files in the flipped directory, and root's files in the directory outside.
const FLIPPED_FILES: usize = 8;
/// Directories beside the flipped one (many: some come after it in any listing order, and
/// a walk goes through those before it opens the flipped one), and empty ones in each.
const FILLER_DIRS: usize = 32;
const FILLER_SUBDIRS: usize = 20;

fn flipped_bytes(k: usize) -> Vec<u8> {
    format!("photo {k} of the store's own directory\n")
        .into_bytes()
        .repeat(64)
}

#[test]
fn a_directory_flipped_to_a_link_out_of_the_store_during_backups_is_never_followed() {
    let bench = Bench::new(40, 10);
    let hostile = bench.store.dir().join(HOSTILE_DIR);
    let flipped = hostile.join("sub");
    fs::create_dir_all(&flipped).expect("create the directory to flip");
    // The same names inside and outside: a read through the link finds a file to read.
    let outside = bench.path("root-only");
    fs::create_dir(&outside).expect("create the outside directory");
    fs::set_permissions(&outside, fs::Permissions::from_mode(0o700)).expect("chmod 0700");
    for k in 0..FLIPPED_FILES {
        fs::write(flipped.join(format!("photo-{k}.jpg")), flipped_bytes(k)).expect("write");
        root_only(&outside.join(format!("photo-{k}.jpg")), &SECRET.repeat(40));
    }
    // Empty directories beside it (a snapshot holds none, so restores stay quick): a walk
    // lists the flipped directory, then may pass milliseconds in them before it opens the
    // directory, long enough for a flip in between.
    for d in 0..FILLER_DIRS {
        for f in 0..FILLER_SUBDIRS {
            fs::create_dir_all(hostile.join(format!("filler-{d}/{f}"))).expect("mkdir");
        }
    }
    let real = bench.path("staging").join("sub-real");
    let (from, link_to) = (flipped.clone(), outside.clone());
    let mutator = Mutator::start(move |i| {
        if i % 2 == 0 {
            fs::rename(&from, &real).expect("move the directory away");
            symlink(&link_to, &from).expect("put a link in its place");
        } else {
            fs::remove_file(&from).expect("remove the link");
            fs::rename(&real, &from).expect("put the directory back");
        }
        // Each state lasts 0 to 0.5 ms: some reads land inside one, some across a flip.
        std::thread::sleep(std::time::Duration::from_micros((i * 7919) % 500));
    });
    let mut snapshots = Vec::new();
    let mut backups = 0;
    let began = std::time::Instant::now();
    while backups < FLIP_BACKUPS || mutator.steps() < FLIPS {
        if mutator.finished() {
            break;
        }
        // New padding each time: the backup reads files while the directory flips.
        bench.store.put_file(
            &format!("{HOSTILE_DIR}/padding.bin"),
            &flipped_bytes(backups).repeat(16),
        );
        if let Some(snapshot) = bench.backup_or_clear_failure(&[HOSTILE_DIR]) {
            snapshots.push(snapshot);
        }
        backups += 1;
    }
    let flips = mutator.stop();
    assert!(
        flips >= FLIPS && backups >= FLIP_BACKUPS,
        "only {flips} flips during {backups} backups"
    );
    let check = |name: &str, found: &[u8]| {
        if leaks_a_secret(found) {
            return Err("it holds a root-only file from outside the store".into());
        }
        match name.strip_prefix("sub/photo-") {
            Some(k) => {
                let k: usize = k
                    .trim_end_matches(".jpg")
                    .parse()
                    .map_err(|_| "a name".to_string())?;
                (found == flipped_bytes(k))
                    .then_some(())
                    .ok_or_else(|| "not the store's photo".to_string())
            }
            None => Ok(()),
        }
    };
    let backed_up = began.elapsed();
    let mut photos = 0;
    for snapshot in &snapshots {
        // The padding and filler files are the other hostile files each snapshot holds.
        // The padding file is the other hostile file each snapshot holds.
        photos += bench.restore_and_check(snapshot, &check).1 - 1;
    }
    bench.every_snapshot_restores(&check);
    println!(
        "hostile store (directory flipped to a link): {flips} flips during {backups} backups, \
         {} snapshots holding {photos} files of the flipped directory, none from outside \
         (backups {backed_up:.1?}, restores {:.1?})",
        snapshots.len(),
        began.elapsed() - backed_up
    );
}

/// The integrator may configure the store's path as a link (to another partition, say):
/// that link is resolved once, and the store behind it backs up and restores whole.
#[test]
fn a_store_configured_through_the_integrators_link_backs_up() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store = sealback_tests::MessageStore::create(&dir.path().join("store"), 5);
    store.append(30);
    let configured = dir.path().join("store-link");
    symlink(store.dir(), &configured).expect("link to the store");
    let device = sealback_tests::Device::started(sealback_tests::Setup::new(
        &configured,
        vec![sealback_tests::Target::local(
            crate::fixtures::TARGET,
            &dir.path().join("target"),
        )],
    ));
    device.generate_key();
    let report = device.backup();
    let to = dir.path().join("restored");
    device.restore(&report.snapshot, &to);
    let restored = sealback_tests::store::check_restored(&to).expect("the store restores");
    assert_eq!(restored.messages, 30, "{restored:?}");
    assert!(restored.complete_media > 0, "{restored:?}");
}
