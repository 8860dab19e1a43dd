//! Issue 20, "restore what you need, messages first": `sealbackctl ls`, `diff`, `restore
//! --include`, and the restore that says when the messages are back.

use sealback_daemon::control::api::{Listing, RestoreReport, SnapshotDiff};
use sealback_tests::store::{check_restored, media_path, walk};

use crate::fixtures::{BackedUp, new_device};

/// Two snapshots: 40 messages (an image every 4th) and a document; then 20 more messages,
/// the document changed, one image deleted and a voice note added.
fn two_snapshots() -> BackedUp {
    let mut backed = BackedUp::new(0, 4);
    backed.store.append(40);
    backed
        .store
        .put_file("Media/Documents/plan.pdf", b"version 1");
    backed.snapshots[0] = backed.device.backup().snapshot;
    backed
        .store
        .put_file("Media/Documents/plan.pdf", b"version 2, longer");
    backed.store.put_file("Media/Voice/note.opus", b"voice");
    std::fs::remove_file(backed.store.dir().join(media_path(8))).expect("remove an image");
    backed.add_and_back_up(20);
    backed
}

#[test]
fn ls_and_diff_show_what_a_snapshot_holds_and_what_changed() {
    let backed = two_snapshots();
    let device = &backed.device;
    let (first, second) = (&backed.snapshots[0], &backed.snapshots[1]);
    let all: Listing = device.ctl_json(&["ls", first]);
    assert_eq!(&all.snapshot, first);
    let db = all
        .files
        .iter()
        .find(|f| f.database)
        .expect("the database is listed");
    assert_eq!(db.path, "msgstore.db");
    assert_eq!(
        all.files.len(),
        1 + 10 + 1,
        "the database, 10 images, the document"
    );
    let docs: Listing = device.ctl_json(&["ls", "latest", "Media/Documents"]);
    assert_eq!(docs.files.len(), 1);
    assert_eq!(
        (docs.files[0].path.as_str(), docs.files[0].size),
        ("Media/Documents/plan.pdf", 17)
    );
    let missing = device.ctl_fails(&["ls", "latest", "Media/Nothing"], 1);
    assert!(missing.stderr.contains("\"Media/Nothing\""), "{missing}");
    // The text counts the database apart from the files, as `snapshots` and `restore` do.
    let latest: Listing = device.ctl_json(&["ls", "latest"]);
    let whole = device.ctl_ok(&["ls", "latest"]).stdout;
    let counted = format!("the database and {} files", latest.files.len() - 1);
    assert!(
        whole.lines().next().unwrap_or("").ends_with(&counted),
        "{whole}"
    );
    let text = device.ctl_ok(&["ls", "latest", "Media/Voice"]).stdout;
    assert!(
        text.contains("-rw-") && text.contains("Media/Voice/note.opus"),
        "{text}"
    );

    let diff: SnapshotDiff = device.ctl_json(&["diff", first, second]);
    let paths = |files: Vec<String>| files;
    let added = paths(diff.added.iter().map(|f| f.path.clone()).collect());
    let removed = paths(diff.removed.iter().map(|f| f.path.clone()).collect());
    let changed: Vec<&str> = diff.changed.iter().map(|f| f.path.as_str()).collect();
    assert!(
        added.contains(&"Media/Voice/note.opus".to_owned()),
        "{added:?}"
    );
    assert_eq!(
        added.len(),
        1 + 5,
        "the voice note and the images of 5 new messages: {added:?}"
    );
    assert_eq!(removed, [media_path(8)]);
    assert_eq!(changed, ["Media/Documents/plan.pdf"]);
    assert_eq!(
        (diff.changed[0].size_before, diff.changed[0].size_after),
        (9, 17)
    );
    let db = diff.database.expect("the database's change");
    assert!(db.changed);
    assert_eq!(
        db.size_change,
        db.size_after.expect("after") as i64 - db.size_before.expect("before") as i64
    );
    let text = device.ctl_ok(&["diff", first, "latest"]).stdout;
    for line in [
        "+ Media/Voice/note.opus",
        "- Media/Images/IMG-8.jpg",
        "M Media/Documents/plan.pdf",
        "database msgstore.db:",
        "6 added, 1 removed, 1 changed",
    ] {
        assert!(text.contains(line), "no {line:?} in:\n{text}");
    }
}

#[test]
fn restore_include_brings_back_only_what_it_takes() {
    let backed = two_snapshots();
    let fresh = new_device(&backed.target, &backed.recovery_key);
    let restore = |name: &str, include: &[&str]| -> RestoreReport {
        let to = fresh.root().join(name);
        let mut args = vec!["restore", "latest", "--to", to.to_str().expect("utf-8")];
        for glob in include {
            args.extend(["--include", glob]);
        }
        fresh.ctl_json(&args)
    };
    let report = restore("docs", &["Media/Documents", "**/*.opus"]);
    assert_eq!(report.files, 2);
    assert!(report.database.is_none(), "the database was not asked for");
    let files = walk(&fresh.root().join("docs")).expect("walk");
    let mut files: Vec<&str> = files.iter().map(String::as_str).collect();
    files.sort();
    assert_eq!(files, ["Media/Documents/plan.pdf", "Media/Voice/note.opus"]);

    let report = restore("messages", &["msgstore.db"]);
    assert_eq!(report.files, 0, "files other than the database");
    assert!(report.database.is_some());
    let db = rusqlite::Connection::open(fresh.root().join("messages/msgstore.db")).expect("open");
    let n: i64 = db
        .query_row("SELECT n FROM progress", [], |r| r.get(0))
        .expect("the messages are there");
    assert_eq!(n, 60);

    let to = fresh.root().join("none");
    let to = to.to_str().expect("utf-8");
    let none = fresh.ctl_fails(
        &[
            "restore",
            "latest",
            "--to",
            to,
            "--include",
            "Media/Audio/**",
        ],
        1,
    );
    assert!(
        none.stderr.contains("--include Media/Audio/**") && none.stderr.contains("sealbackctl ls"),
        "{none}"
    );
    let bad = fresh.ctl_fails(&["restore", "latest", "--to", to, "--include", "/Media"], 1);
    assert!(
        bad.stderr.contains("--include[0]") && bad.stderr.contains("relative"),
        "{bad}"
    );
}

/// The database comes first, and the restore says when it can be opened: in the JSON
/// report, in the progress stream, and in a line of the text output before the summary.
#[test]
fn restore_says_when_the_messages_are_ready() {
    let backed = BackedUp::new(60, 4);
    let fresh = new_device(&backed.target, &backed.recovery_key);
    let to = fresh.root().join("restored");
    let report = fresh.restore("latest", &to);
    let db = report
        .database
        .clone()
        .expect("the report says when the database was ready");
    assert_eq!(db.path, "msgstore.db");
    assert!(db.ready_ms <= report.duration_ms, "{report:?}");
    check_restored(&to).expect("the whole store restores");

    let to = fresh.root().join("text");
    let text = fresh
        .ctl_ok(&["restore", "latest", "--to", to.to_str().expect("utf-8")])
        .stdout;
    let ready = text.find("messages ready: the database is restored and passes integrity_check");
    let summary = text.find("restored snapshot");
    assert!(
        matches!((ready, summary), (Some(r), Some(s)) if r < s),
        "{text}"
    );
    // `--quiet`: no report and no progress, the messages' line included.
    let to = fresh.root().join("quiet");
    let quiet = fresh.ctl_ok(&[
        "-q",
        "restore",
        "latest",
        "--to",
        to.to_str().expect("utf-8"),
    ]);
    assert_eq!(quiet.stdout, "", "{quiet}");
    check_restored(&to).expect("the quiet restore restores");
}
