//! The change-proportional capture checked against the full one: whatever the app does
//! between two captures (commits, every kind of checkpoint, closing the database, leaving
//! WAL mode, VACUUM), the image built from the baseline and the runs read must be the
//! image a full capture reads, byte for byte.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use rusqlite::params;

use super::*;

const RUN: u32 = 16384;

/// A chain of captures, each from the previous one's baseline, keeping runs as the engine
/// keeps chunk ids: a run not read is the previous capture's run, whole.
#[derive(Default)]
struct Chain {
    baseline: Option<Baseline>,
    runs: Vec<Vec<u8>>,
    image: Vec<u8>,
    deltas: u32,
    fulls: BTreeMap<&'static str, u32>,
    pages_read: u64,
}

impl Chain {
    fn capture(&mut self, db: &Path) -> PageImage {
        let mut read = Vec::new();
        let info = capture_pages(
            db,
            RUN,
            self.baseline.as_ref(),
            || {},
            |run, data| {
                read.push((run as usize, data.to_vec()));
                Ok(())
            },
        )
        .expect("capture");
        let runs = (info.page_count * u64::from(info.page_size)).div_ceil(u64::from(RUN));
        match info.reading {
            Reading::Delta { .. } => self.deltas += 1,
            Reading::Full { reason } => {
                *self.fulls.entry(reason).or_default() += 1;
                self.runs.clear();
            }
        }
        self.runs.resize(runs as usize, Vec::new());
        for (run, data) in read {
            self.runs[run] = data;
        }
        self.image = self.runs.concat();
        self.pages_read += info.bytes_read / u64::from(info.page_size);
        self.baseline = info.next.clone();
        info
    }
}

impl Chain {
    /// The app edits one message; the capture reads a few runs and equals a full read.
    fn one_edit(&mut self, app: &Connection, db: &Path, body: &str) -> PageImage {
        app.execute("UPDATE message SET body = ?1 WHERE id = 1500", [body])
            .expect("update");
        let info = self.capture(db);
        assert!(
            matches!(info.reading, Reading::Delta { runs } if runs <= 4),
            "{info:?}"
        );
        assert_eq!(self.image, full_image(db));
        info
    }
}

fn full_image(db: &Path) -> Vec<u8> {
    let mut image = Vec::new();
    capture_pages(
        db,
        RUN,
        None,
        || {},
        |_, data| {
            image.extend_from_slice(data);
            Ok(())
        },
    )
    .expect("full capture");
    image
}

fn open_app(db: &Path) -> Connection {
    let app = Connection::open(db).expect("open");
    app.execute_batch(
        "PRAGMA auto_vacuum=INCREMENTAL; PRAGMA journal_mode=WAL; PRAGMA wal_autocheckpoint=0;
         CREATE TABLE IF NOT EXISTS message(id INTEGER PRIMARY KEY, chat INTEGER, body TEXT);
         CREATE INDEX IF NOT EXISTS by_chat ON message(chat);",
    )
    .expect("schema");
    app
}

/// The app with `rows` messages committed and folded into the file (its WAL emptied).
fn app_with_messages(db: &Path, rows: usize) -> Connection {
    let app = open_app(db);
    let tx = app.unchecked_transaction().expect("begin");
    for i in 0..rows {
        tx.execute(
            "INSERT INTO message(chat, body) VALUES (?1, ?2)",
            params![(i % 20) as i64, "x".repeat(200)],
        )
        .expect("insert");
    }
    tx.commit().expect("commit");
    app.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .expect("checkpoint");
    app
}

fn body(rng: &mut StdRng) -> String {
    let len = rng.gen_range(10..1500);
    (0..len)
        .map(|_| char::from(b'a' + rng.gen_range(0..26)))
        .collect()
}

#[test]
fn delta_captures_equal_full_captures_whatever_the_app_does_between() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("msgstore.db");
    let mut app = Some(open_app(&db));
    let mut rng = StdRng::seed_from_u64(5);
    let mut chain = Chain::default();
    let mut next_id = 1i64;
    // A store large enough that an ordinary commit touches a small part of it.
    if let Some(conn) = &app {
        let tx = conn.unchecked_transaction().expect("begin");
        for _ in 0..3000 {
            tx.execute(
                "INSERT INTO message(id, chat, body) VALUES (?1, ?2, ?3)",
                params![next_id, rng.gen_range(0..50), body(&mut rng)],
            )
            .expect("insert");
            next_id += 1;
        }
        tx.commit().expect("commit");
    }
    let mut total_pages = 0u64;
    for step in 0..400 {
        // Several things may happen between two captures: a restart, say, then commits.
        for _ in 0..rng.gen_range(1..4) {
            let conn = app.get_or_insert_with(|| open_app(&db));
            match rng.gen_range(0..100) {
                // Most steps are the app's ordinary writes.
                0..=69 => {
                    let tx = conn.unchecked_transaction().expect("begin");
                    for _ in 0..rng.gen_range(1..20) {
                        match rng.gen_range(0..10) {
                            0..=5 => {
                                tx.execute(
                                    "INSERT INTO message(id, chat, body) VALUES (?1, ?2, ?3)",
                                    params![next_id, rng.gen_range(0..50), body(&mut rng)],
                                )
                                .expect("insert");
                                next_id += 1;
                            }
                            6..=8 => {
                                tx.execute(
                                    "UPDATE message SET body = ?2 WHERE id = ?1",
                                    params![rng.gen_range(1..next_id.max(2)), body(&mut rng)],
                                )
                                .expect("update");
                            }
                            _ => {
                                let from = rng.gen_range(1..next_id.max(2));
                                tx.execute(
                                    "DELETE FROM message WHERE id BETWEEN ?1 AND ?2",
                                    params![from, from + rng.gen_range(0..40)],
                                )
                                .expect("delete");
                            }
                        }
                    }
                    tx.commit().expect("commit");
                }
                70..=81 => {
                    let mode = ["PASSIVE", "FULL", "RESTART", "TRUNCATE"][rng.gen_range(0..4)];
                    conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |_| Ok(()))
                        .expect("checkpoint");
                }
                82..=84 => {
                    // Closing checkpoints and deletes the WAL; the next step opens it again.
                    app = None;
                }
                85..=87 => {
                    conn.execute_batch(
                        "PRAGMA journal_mode=DELETE;
                         UPDATE message SET body = 'rollback mode' WHERE id % 7 = 0;
                         PRAGMA journal_mode=WAL;",
                    )
                    .expect("journal mode switch");
                }
                88 => {
                    conn.execute_batch("VACUUM").expect("vacuum");
                }
                89..=91 => {
                    // Moves pages from the end of the file and truncates it.
                    let pages = rng.gen_range(1..30);
                    conn.execute_batch(&format!("PRAGMA incremental_vacuum({pages})"))
                        .expect("incremental vacuum");
                }
                _ => {
                    // Nothing: an idle app.
                }
            }
        }
        chain.capture(&db);
        let full = full_image(&db);
        assert!(
            chain.image == full,
            "step {step}: the delta image differs from the full one (deltas so far {}, fulls {:?})",
            chain.deltas,
            chain.fulls
        );
        total_pages += full.len() as u64 / 4096;
    }
    // The property is only tested if both kinds of capture happened often.
    assert!(
        chain.deltas > 150,
        "{} deltas, fulls {:?}",
        chain.deltas,
        chain.fulls
    );
    assert!(
        chain.fulls.contains_key(
            "the WAL was restarted since the last capture (a checkpoint we did not see)"
        ),
        "{:?}",
        chain.fulls
    );
    assert!(
        chain.pages_read < total_pages * 3 / 4,
        "read {} of {total_pages} pages; deltas {}, fulls {:?}",
        chain.pages_read,
        chain.deltas,
        chain.fulls
    );
}

#[test]
fn a_settled_database_without_wal_is_read_only_where_a_new_wal_says() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("msgstore.db");
    // A clean close then deletes the WAL.
    drop(app_with_messages(&db, 3000));
    let mut chain = Chain::default();
    // Written a moment ago: the capture waits out the margin, then can be a baseline.
    let info = chain.capture(&db);
    assert!(matches!(
        info.next.as_ref().map(|b| &b.since),
        Some(Since::File { .. })
    ));

    // Nothing changed: nothing but the stat and the absent WAL is read.
    let info = chain.capture(&db);
    assert_eq!(info.reading, Reading::Delta { runs: 0 });
    assert_eq!(chain.image, full_image(&db));

    // The app opens the database again and writes in a new WAL: only its pages are read.
    let app = open_app(&db);
    let info = chain.one_edit(&app, &db, "edited");
    assert!(matches!(
        info.next.as_ref().map(|b| &b.since),
        Some(Since::Wal { .. })
    ));

    // The app checkpoints, closes (deleting the WAL), opens and writes again: the file was
    // written behind a WAL we never saw, so the capture is full.
    app.execute("UPDATE message SET body = 'again' WHERE id = 10", [])
        .expect("update");
    drop(app);
    let app = open_app(&db);
    app.execute("UPDATE message SET body = 'third' WHERE id = 20", [])
        .expect("update");
    let info = chain.capture(&db);
    assert!(matches!(info.reading, Reading::Full { .. }), "{info:?}");
    assert_eq!(chain.image, full_image(&db));
}

#[test]
fn a_capture_reads_the_pages_of_the_frames_committed_since_the_last_one_not_the_whole_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("msgstore.db");
    let app = app_with_messages(&db, 3000);
    let mut chain = Chain::default();
    chain.capture(&db);
    // A day of scattered edits in one WAL generation, captured: a baseline inside it.
    for id in (1..3000).step_by(400) {
        app.execute("UPDATE message SET body = 'day' WHERE id = ?1", [id])
            .expect("update");
    }
    let info = chain.capture(&db);
    let Reading::Delta { runs: day } = info.reading else {
        panic!("{info:?}");
    };
    assert!(day > 4, "the day's edits touched many runs: {day}");
    assert!(matches!(
        info.next.as_ref().map(|b| &b.since),
        Some(Since::Wal { frames, .. }) if *frames > 0
    ));
    // One more edit in the same generation: its runs are read, not the day's again.
    chain.one_edit(&app, &db, "later");
    // Nothing since: nothing read.
    let info = chain.capture(&db);
    assert_eq!(info.reading, Reading::Delta { runs: 0 });
    assert_eq!(chain.image, full_image(&db));
}

/// The payload of row `id` as last written by transaction `txn`.
fn payload(id: i64, txn: i64) -> String {
    format!(
        "{id}:{txn}:{}",
        "p".repeat(((id * 31 + txn * 17) % 700) as usize)
    )
}

/// The rows after transaction `n` of the writer below.
fn expected_rows(n: i64) -> BTreeMap<i64, String> {
    let mut rows = BTreeMap::new();
    for txn in 1..=n {
        rows.insert(txn, payload(txn, txn));
        let older = (txn * 7919) % txn + 1;
        rows.insert(older, payload(older, txn));
    }
    rows
}

#[test]
fn delta_captures_stay_exact_while_the_app_commits_and_checkpoints_concurrently() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("msgstore.db");
    {
        let app = Connection::open(&db).expect("open");
        app.execute_batch(
            "PRAGMA journal_mode=WAL;
             CREATE TABLE row(id INTEGER PRIMARY KEY, v TEXT NOT NULL);
             CREATE TABLE progress(n INTEGER NOT NULL); INSERT INTO progress VALUES (0);",
        )
        .expect("schema");
    }
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (db, stop) = (db.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut rng = StdRng::seed_from_u64(9);
            let mut conn = Connection::open(&db).expect("open");
            conn.busy_timeout(Duration::from_secs(5)).expect("busy");
            let mut n = 0i64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let tx = conn.transaction().expect("begin");
                tx.execute(
                    "INSERT INTO row(id, v) VALUES (?1, ?2)",
                    params![n, payload(n, n)],
                )
                .expect("insert");
                let older = (n * 7919) % n + 1;
                tx.execute(
                    "UPDATE row SET v = ?2 WHERE id = ?1",
                    params![older, payload(older, n)],
                )
                .expect("update");
                tx.execute("UPDATE progress SET n = ?1", [n])
                    .expect("progress");
                tx.commit().expect("commit");
                match rng.gen_range(0..40) {
                    0 => {
                        let mode = ["PASSIVE", "RESTART", "TRUNCATE"][rng.gen_range(0..3)];
                        // A checkpoint may find us reading: SQLITE_BUSY is part of the game.
                        let _ =
                            conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |_| {
                                Ok(())
                            });
                    }
                    1 => {
                        drop(conn);
                        conn = Connection::open(&db).expect("reopen");
                        conn.busy_timeout(Duration::from_secs(5)).expect("busy");
                    }
                    _ => {}
                }
            }
            n
        })
    };

    let mut chain = Chain::default();
    let out = tempfile::tempdir().expect("tempdir");
    for round in 0..150 {
        chain.capture(&db);
        let copy = out.path().join(format!("{round}.db"));
        std::fs::write(&copy, &chain.image).expect("write image");
        let restored = Connection::open(&copy).expect("open image");
        let check: String = restored
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .expect("integrity");
        assert_eq!(check, "ok", "round {round}");
        let n: i64 = restored
            .query_row("SELECT n FROM progress", [], |r| r.get(0))
            .expect("progress");
        let rows: BTreeMap<i64, String> = restored
            .prepare("SELECT id, v FROM row")
            .and_then(|mut s| {
                s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect::<rusqlite::Result<_>>()
            })
            .expect("rows");
        assert!(
            rows == expected_rows(n),
            "round {round}: the image is not the state after transaction {n}"
        );
        drop(restored);
        std::fs::remove_file(&copy).expect("remove image");
        std::thread::sleep(Duration::from_millis(rng_pause(round)));
    }
    stop.store(true, Ordering::Relaxed);
    let commits = writer.join().expect("writer");
    assert!(commits > 150, "the writer only committed {commits} times");
    assert!(
        chain.deltas > 30,
        "{} deltas, fulls {:?}",
        chain.deltas,
        chain.fulls
    );
}

fn rng_pause(round: u32) -> u64 {
    u64::from(round % 7)
}

/// The store's owner may put a link to a database only root can read where the database
/// is, or a link where its WAL goes: the capture refuses either, naming it.
#[test]
fn a_database_or_a_wal_that_is_a_link_is_refused_and_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("root-only.db");
    let _app = app_with_messages(&db, 200);
    let link = dir.path().join("msgstore.db");
    std::os::unix::fs::symlink(&db, &link).expect("symlink");
    let refused = |path: &Path| {
        capture_pages(path, 65536, None, || {}, |_, _| Ok(())).expect_err("a link was followed")
    };
    let e = refused(&link);
    let said = e.to_string();
    assert!(
        matches!(&e, DatabaseCaptureError::NotInStore { path, found, .. }
            if *path == link.display().to_string()
                && *found == format!("a symbolic link to {}", db.display())),
        "{said}"
    );
    assert!(said.contains("point `store`"), "{said}");

    let other = dir.path().join("other");
    std::fs::create_dir(&other).expect("mkdir");
    let db = other.join("msgstore.db");
    drop(app_with_messages(&db, 10));
    let wal = other.join("msgstore.db-wal");
    let _ = std::fs::remove_file(&wal);
    std::os::unix::fs::symlink("/etc/shadow", &wal).expect("symlink");
    let e = refused(&db);
    let said = e.to_string();
    assert!(
        said.starts_with(&format!(
            "the database's WAL {} is a symbolic link to /etc/shadow",
            wal.display()
        )) && said.contains("remove it"),
        "{said}"
    );
    std::fs::remove_file(&wal).expect("remove the link");
    capture_pages(&db, 65536, None, || {}, |_, _| Ok(())).expect("the database itself");
}

#[test]
fn a_baseline_from_before_a_restart_is_not_trusted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("msgstore.db");
    let app = app_with_messages(&db, 2000);
    let mut chain = Chain::default();
    chain.capture(&db);
    app.execute("UPDATE message SET body = 'y' WHERE id = 5", [])
        .expect("update");
    let info = chain.capture(&db);
    assert!(matches!(info.reading, Reading::Delta { .. }), "{info:?}");
    if let Some(baseline) = chain.baseline.as_mut() {
        baseline.boot = Some("an earlier boot".into());
    }
    let info = chain.capture(&db);
    assert_eq!(
        info.reading,
        Reading::Full {
            reason: "the device restarted since the last capture"
        }
    );
}
