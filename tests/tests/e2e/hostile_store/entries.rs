//! What a hostile store holds besides files that change: special files, links that dangle,
//! loop or lead out of the store (a root daemon must never follow them), a file swapped for
//! such a link while it is read, 100,000 files, and a path longer than PATH_MAX.

use std::fs;
use std::os::unix::fs::symlink;
use std::process::Command;
use std::time::Instant;

use sealback_tests::store::{check_restored, walk};

use super::{
    BACKUPS_UNDER_MUTATION, Bench, HOSTILE_DIR, Mutator, check_mutated_file, install, jitter,
    version_bytes,
};

/// What the file outside the store holds: no restored file may contain it.
pub(super) const SECRET: &[u8] = b"a secret outside the store, readable by root alone\n";

/// Whether `found` holds the secret, or the system's `/etc/shadow`.
pub(super) fn leaks_a_secret(found: &[u8]) -> bool {
    let shadow = fs::read("/etc/shadow").unwrap_or_default();
    found.windows(SECRET.len()).any(|w| w == SECRET) || (!shadow.is_empty() && found == shadow)
}

#[test]
fn fifos_dangling_links_loops_and_links_out_of_the_store_are_skipped_never_followed() {
    let bench = Bench::new(50, 10);
    let outside = bench.path("outside");
    fs::create_dir_all(&outside).expect("create a directory outside the store");
    fs::write(outside.join("secret.txt"), SECRET.repeat(100)).expect("write the secret");
    let hostile = bench.store.dir().join(HOSTILE_DIR);
    fs::create_dir_all(&hostile).expect("create the hostile directory");
    let status = Command::new("mkfifo")
        .arg(hostile.join("fifo"))
        .status()
        .expect("run mkfifo");
    assert!(status.success(), "mkfifo failed");
    let links = [
        ("dangling", outside.join("nothing-here")),
        ("loop-a", hostile.join("loop-b")),
        ("loop-b", hostile.join("loop-a")),
        ("up", bench.store.dir().to_path_buf()),
        ("shadow", "/etc/shadow".into()),
        ("secret", outside.join("secret.txt")),
        ("outside-dir", outside.clone()),
    ];
    for (name, to) in &links {
        symlink(to, hostile.join(name)).expect("make a link");
    }

    let report = bench.device.backup();
    let to = bench.path("restored");
    bench.device.restore(&report.snapshot, &to);
    let restored = walk(&to).expect("list the restored store");
    for file in &restored {
        let found = fs::read(to.join(file)).expect("read a restored file");
        assert!(
            !leaks_a_secret(&found),
            "{file} holds a file from outside the store: a link was followed"
        );
    }
    let hostile_restored: Vec<_> = fs::read_dir(to.join(HOSTILE_DIR))
        .map(|entries| entries.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(
        hostile_restored.is_empty(),
        "a FIFO or a link was restored: {hostile_restored:?}"
    );
    let _ = fs::remove_dir(to.join(HOSTILE_DIR));
    check_restored(&to).unwrap_or_else(|e| panic!("the store beside them restored wrong: {e}"));
    bench.device.ctl_ok(&["verify"]);
    println!(
        "hostile store (special entries): 1 FIFO and {} links (dangling, loops, out of the \
         store) skipped, nothing outside the store backed up",
        links.len()
    );
}

/// As many as the daemon has reader threads at most.
const PADDING_FILES: usize = 8;

#[test]
fn a_file_swapped_for_a_link_out_of_the_store_while_read_is_never_followed() {
    let bench = Bench::new(50, 10);
    let secret = bench.path("secret.bin");
    fs::write(&secret, SECRET.repeat(5000)).expect("write the secret");
    let hostile = bench.store.dir().join(HOSTILE_DIR);
    fs::create_dir_all(&hostile).expect("create the hostile directory");
    let staging = bench.path("staging");
    let swapped = hostile.join("replaced.bin");
    install(&staging, &swapped, &version_bytes("replaced.bin", 0));
    let mutator = Mutator::start(move |i| {
        if i % 2 == 0 {
            install(&staging, &swapped, &version_bytes("replaced.bin", i));
        } else {
            let link = staging.join("link");
            let _ = fs::remove_file(&link);
            symlink(&secret, &link).expect("make a link to the secret");
            fs::rename(&link, &swapped).expect("rename the link over the file");
        }
        // Each state lasts a few milliseconds, long enough to be read whole.
        jitter(i);
    });
    let mut snapshots = Vec::new();
    for backup in 0..BACKUPS_UNDER_MUTATION {
        // Files read before it (in path order, one per reader thread), new each backup: the
        // swapped file is opened well after the scan saw it, while it keeps changing.
        for k in 0..PADDING_FILES {
            let name = format!("0-padding-{k}.bin");
            let bytes = version_bytes(&name, backup as u64).repeat(8);
            fs::write(bench.store.dir().join(HOSTILE_DIR).join(name), bytes)
                .expect("write a padding file");
        }
        if let Some(snapshot) = bench.backup_or_clear_failure(&[HOSTILE_DIR]) {
            snapshots.push(snapshot);
        }
    }
    let steps = mutator.stop();
    let no_secret = |name: &str, found: &[u8]| {
        if leaks_a_secret(found) {
            return Err("it holds the file its link pointed to, outside the store".into());
        }
        if name.starts_with("0-padding-") {
            return Ok(());
        }
        check_mutated_file(name, found)
    };
    let mut captured = 0;
    for snapshot in &snapshots {
        captured += bench.restore_and_check(snapshot, &no_secret).1 - PADDING_FILES;
    }
    bench.every_snapshot_restores(&no_secret);
    println!(
        "hostile store (file swapped for a link): {} backups under {steps} swaps, {captured} \
         versions captured, the link never followed",
        snapshots.len()
    );
}

const DIRECTORIES: usize = 100;
const FILES_PER_DIRECTORY: usize = 1000;

fn small_file(d: usize, f: usize) -> String {
    format!("small file {d}/{f}\n")
}

#[test]
fn a_hundred_thousand_small_files_back_up_and_restore() {
    let bench = Bench::new(20, 10);
    let hostile = bench.store.dir().join(HOSTILE_DIR);
    let began = Instant::now();
    for d in 0..DIRECTORIES {
        let dir = hostile.join(format!("d{d:03}"));
        fs::create_dir_all(&dir).expect("create a directory");
        for f in 0..FILES_PER_DIRECTORY {
            fs::write(dir.join(format!("f{f:04}")), small_file(d, f)).expect("write a file");
        }
    }
    let created = began.elapsed();
    let began = Instant::now();
    bench.device.backup();
    let full = began.elapsed();
    let began = Instant::now();
    let second = bench.device.backup();
    let again = began.elapsed();
    let began = Instant::now();
    let check = |name: &str, found: &[u8]| {
        let (d, f) = name
            .strip_prefix('d')
            .and_then(|n| n.split_once("/f"))
            .and_then(|(d, f)| Some((d.parse().ok()?, f.parse().ok()?)))
            .ok_or_else(|| format!("{name} is not a file the test made"))?;
        if found == small_file(d, f).as_bytes() {
            Ok(())
        } else {
            Err(format!("holds {found:?}"))
        }
    };
    let (_, files) = bench.restore_and_check(&second.snapshot, &check);
    let restored = began.elapsed();
    assert_eq!(
        files,
        DIRECTORIES * FILES_PER_DIRECTORY,
        "every small file is restored"
    );
    println!(
        "hostile store (100,000 files): created in {created:.1?}, first backup {full:.1?}, \
         second backup {again:.1?}, restore and check {restored:.1?}"
    );
}

/// Directory levels of the deep path: 2,100 levels of `dd/` are 6,300 bytes, past
/// PATH_MAX (4,096).
const LEVELS: usize = 2100;

#[test]
fn a_path_longer_than_path_max_is_skipped_and_the_rest_backed_up() {
    let bench = Bench::new(50, 10);
    let hostile = bench.store.dir().join(HOSTILE_DIR);
    fs::create_dir_all(&hostile).expect("create the hostile directory");
    // Five steps of 420 levels: no path given to the kernel is longer than one step.
    let step = vec!["dd"; LEVELS / 5].join("/");
    let status = Command::new("sh")
        .arg("-c")
        .arg(
            "cd -P \"$1\" && for k in 1 2 3 4 5; do mkdir -p \"$2\" && cd -P \"$2\" || exit 1; \
             done && echo deep > deep.txt",
        )
        .arg("sh")
        .arg(&hostile)
        .arg(&step)
        .status()
        .expect("run sh");
    assert!(status.success(), "could not make the deep path");
    bench.store.append(10);

    let report = bench.device.backup();
    let to = bench.path("restored");
    bench.device.restore(&report.snapshot, &to);
    // Whatever became of the deep file, the rest is checked.
    let _ = fs::remove_dir_all(to.join(HOSTILE_DIR));
    let restored = check_restored(&to).unwrap_or_else(|e| panic!("restored wrong: {e}"));
    assert_eq!(
        restored.messages,
        bench.store.committed(),
        "the database was backed up beside the deep path"
    );
    println!("hostile store (path past PATH_MAX): {LEVELS} levels skipped, the rest backed up");
}
