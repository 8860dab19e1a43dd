//! Faults of the device and its targets that a backup must survive without losing or hiding
//! anything: a target whose disk is not mounted, a damaged catalog, a path too long to open,
//! a target that goes away mid-backup, objects torn by a failed put.

use std::fs;

use sealback_tests::store::{Restored, check_restored};
use sealback_tests::{Device, tamper};

use crate::fixtures::{BackedUp, TARGET};

/// Restores the latest snapshot with `device`, which must hold every message committed.
#[track_caller]
fn restores_the_latest(fixture: &BackedUp, device: &Device) -> Restored {
    let to = fixture.path("restored");
    device.restore("latest", &to);
    let restored = check_restored(&to).expect("restored store");
    assert_eq!(restored.messages, fixture.store.committed());
    restored
}

#[test]
fn an_unmounted_target_that_held_a_repository_is_not_given_a_new_one() {
    let mut fixture = BackedUp::new(40, 10);
    fixture.add_and_back_up(10);
    // The disk is unmounted: its mount point is an empty directory again.
    let mounted = fixture.path("mounted-disk");
    fs::rename(&fixture.target, &mounted).expect("unmount");
    fs::create_dir(&fixture.target).expect("bare mount point");

    let failed = fixture.device.ctl_fails(&["backup", "--wait"], 1);
    assert!(
        failed.stderr.contains(TARGET)
            && failed.stderr.contains("repository")
            && failed.stderr.contains("mounted"),
        "the error names neither the target, the missing repository nor a hint: {failed}"
    );
    assert!(
        tamper::objects(&fixture.target, "").is_empty(),
        "something was written into the bare mount point: {:?}",
        tamper::objects(&fixture.target, "")
    );

    // Mounted again: the backups go on into the real repository, every snapshot in view.
    fs::remove_dir(&fixture.target).expect("remove the mount point");
    fs::rename(&mounted, &fixture.target).expect("mount again");
    fixture.add_and_back_up(5);
    assert_eq!(fixture.device.snapshots().len(), 3);
    restores_the_latest(&fixture, &fixture.device);
}

#[test]
fn a_new_repository_on_a_used_target_is_made_once_its_memory_is_removed() {
    let fixture = BackedUp::new(20, 10);
    // The user empties the target on purpose, and follows the hint the backup gives.
    fs::remove_dir_all(&fixture.target).expect("empty the target");
    fs::create_dir(&fixture.target).expect("target directory");
    let failed = fixture.device.ctl_fails(&["backup", "--wait"], 1);
    let remembered = fixture
        .device
        .state_dir()
        .join("targets")
        .join(format!("{TARGET}.repository"));
    assert!(
        failed.stderr.contains(remembered.to_str().expect("UTF-8")),
        "the hint does not name the file to delete: {failed}"
    );
    fs::remove_file(&remembered).expect("forget the repository");
    let report = fixture.device.backup();
    assert_eq!(fixture.device.snapshots().len(), 1, "{report:?}");
}

#[test]
fn a_deleted_catalog_still_lets_a_never_used_target_get_its_repository() {
    let fixture = BackedUp::new(20, 10);
    let state = fixture.device.state_dir();
    fs::remove_dir_all(state.join("catalog")).expect("delete the catalogs");
    fixture.store.append(5);
    fixture.device.backup();
    assert_eq!(fixture.device.snapshots().len(), 2);
}

/// The catalog file of the fixture's target.
fn catalog_file(fixture: &BackedUp) -> std::path::PathBuf {
    fixture
        .device
        .state_dir()
        .join("catalog")
        .join(format!("{TARGET}.db"))
}

/// Whether the daemon of `device` logged a warning that says `words`.
#[track_caller]
fn logged_a_warning(device: &Device, words: &str) {
    let log = fs::read_to_string(device.log_path()).expect("daemon log");
    assert!(
        log.lines().any(|l| l.contains("WARN") && l.contains(words)),
        "no warning says {words:?}: {}",
        device.log_tail()
    );
}

/// Damages the catalog with `damage`, then checks that `snapshots`, `restore` and `backup`
/// all work, the damaged file kept aside and the move logged.
fn a_damaged_catalog_is_moved_aside_and_rebuilt(damage: fn(&std::path::Path)) {
    let mut fixture = BackedUp::new(40, 10);
    fixture.add_and_back_up(10);
    let catalog = catalog_file(&fixture);
    damage(&catalog);

    assert_eq!(fixture.device.snapshots().len(), 2);
    restores_the_latest(&fixture, &fixture.device);
    fixture.add_and_back_up(5);
    assert_eq!(fixture.device.snapshots().len(), 3);

    let aside: Vec<String> = fs::read_dir(catalog.parent().expect("catalog dir"))
        .expect("list the catalogs")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with(&format!("{TARGET}.db.corrupt-")))
        .collect();
    assert!(
        aside.iter().any(|name| !name.ends_with("-wal")),
        "the damaged catalog was not kept aside: {aside:?}"
    );
    logged_a_warning(&fixture.device, "moved aside");
}

#[test]
fn a_catalog_overwritten_with_garbage_is_moved_aside_and_rebuilt() {
    a_damaged_catalog_is_moved_aside_and_rebuilt(|catalog| {
        let size = fs::metadata(catalog).expect("catalog").len() as usize;
        let garbage: Vec<u8> = (0..size.max(4096)).map(|i| (i * 7 + 13) as u8).collect();
        fs::write(catalog, garbage).expect("overwrite the catalog");
    });
}

#[test]
fn a_truncated_catalog_is_moved_aside_and_rebuilt() {
    a_damaged_catalog_is_moved_aside_and_rebuilt(|catalog| {
        let size = fs::metadata(catalog).expect("catalog").len();
        assert!(size > 8192, "a catalog of a few pages: {size} bytes");
        fs::OpenOptions::new()
            .write(true)
            .open(catalog)
            .and_then(|f| f.set_len(size / 2))
            .expect("truncate the catalog");
    });
}

/// A folder `levels` deep (`deep/d/d/.../d/file`) under `parent`, its path past PATH_MAX
/// (the test's temporary directory removes it: std removes a tree from directory handles):
/// built by wrapping the tree in a new folder again and again, so no call names a long path.
fn make_deep_tree(parent: &std::path::Path, levels: usize) {
    let (top, wrap) = (parent.join("deep"), parent.join("deep-wrap"));
    fs::create_dir(&top).expect("mkdir");
    fs::write(top.join("file"), b"too deep to open").expect("write");
    for _ in 1..levels {
        fs::create_dir(&wrap).expect("mkdir");
        fs::rename(&top, wrap.join("d")).expect("wrap");
        fs::rename(&wrap, &top).expect("rename");
    }
}

#[test]
fn a_path_past_path_max_is_skipped_with_a_warning_and_the_rest_backed_up() {
    let mut fixture = BackedUp::new(20, 5);
    let media = fixture.store.dir().join("Media");
    make_deep_tree(&media, 2_500);
    fixture.add_and_back_up(10);

    let restored = restores_the_latest(&fixture, &fixture.device);
    assert!(restored.complete_media > 0, "{restored:?}");
    logged_a_warning(&fixture.device, "PATH_MAX");
}

#[test]
fn a_target_gone_during_a_backup_is_said_to_have_gone_away() {
    let fixture = BackedUp::new(20, 5);
    // The disk goes away after the backup opened its repository: only `config` is left
    // where the provider had made its folders.
    for entry in fs::read_dir(&fixture.target).expect("list the target") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            fs::remove_dir_all(&path).expect("remove a folder of the target");
        }
    }
    fixture.store.append(10);
    let failed = fixture.device.ctl_fails(&["backup", "--wait"], 1);
    assert!(
        failed.stderr.contains(&format!("target {TARGET:?}"))
            && failed.stderr.contains("went away")
            && !failed.stderr.contains("which only get may return"),
        "the error does not say the target went away: {failed}"
    );
}
