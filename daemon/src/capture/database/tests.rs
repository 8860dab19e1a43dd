//! The capture of a live database: commits still in the WAL, and an app never blocked.

use super::*;

fn wal_db(dir: &Path) -> Connection {
    let conn = Connection::open(dir.join("msgstore.db")).expect("open");
    conn.execute_batch(
        "PRAGMA journal_mode=WAL; PRAGMA wal_autocheckpoint=0;
         CREATE TABLE message(_id INTEGER PRIMARY KEY, text TEXT);",
    )
    .expect("schema");
    conn
}

#[test]
fn captures_commits_still_in_the_wal_and_restores_to_a_valid_db() {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = wal_db(dir.path());
    for i in 0..2000 {
        app.execute(
            "INSERT INTO message(text) VALUES (?1)",
            [format!("message {i} {}", "x".repeat(i % 300))],
        )
        .expect("insert");
    }
    let mut image = Vec::new();
    let info = capture_pages(
        &dir.path().join("msgstore.db"),
        16384,
        None,
        || {},
        |_, run| {
            assert!(run.len() <= 16384 && run.len() % 4096 == 0);
            image.extend_from_slice(run);
            Ok(())
        },
    )
    .expect("captured");
    assert!(info.wal);
    assert_eq!(
        image.len() as u64,
        info.page_count * u64::from(info.page_size)
    );
    // The app's WAL is untouched: not checkpointed, not deleted.
    assert!(
        dir.path()
            .join("msgstore.db-wal")
            .metadata()
            .expect("wal")
            .len()
            > 0
    );

    let out = tempfile::tempdir().expect("tempdir");
    std::fs::write(out.path().join("restored.db"), &image).expect("write");
    let restored = Connection::open(out.path().join("restored.db")).expect("open");
    let check: String = restored
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .expect("check");
    assert_eq!(check, "ok");
    let n: i64 = restored
        .query_row("SELECT count(*) FROM message", [], |r| r.get(0))
        .expect("count");
    assert_eq!(n, 2000);
}

#[test]
fn the_app_keeps_writing_while_we_hold_the_snapshot() {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = wal_db(dir.path());
    app.execute("INSERT INTO message(text) VALUES ('before')", [])
        .expect("insert");
    app.busy_timeout(Duration::ZERO).expect("no waiting");
    let mut writes_during_capture = 0;
    capture_pages(
        &dir.path().join("msgstore.db"),
        4096,
        None,
        || {},
        |_, _| {
            // With no busy timeout at all, any lock we held against writers would fail here.
            app.execute("INSERT INTO message(text) VALUES ('during')", [])
                .expect("app never gets SQLITE_BUSY");
            writes_during_capture += 1;
            Ok(())
        },
    )
    .expect("captured");
    assert!(writes_during_capture > 0);
}
