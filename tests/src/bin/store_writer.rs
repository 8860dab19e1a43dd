//! `store_writer --store DIR [--rate N] [--count N] [--media-pause-ms MS]`: plays the
//! messaging app against a store made by `sealback_tests::MessageStore::create`.
//!
//! One transaction per message, on its own connection in WAL mode with SQLite's default
//! auto-checkpoint: insert the message, set `progress.n` to its id, commit. A message that
//! carries an image gets it written first, in two halves with a pause between (so backups
//! meet it half-written, and being written while they read it); every third image is
//! written under a temporary name and renamed into place, as downloads often are. Each half
//! is one `write(2)`, which a reader may still see part-way (the kernel grows the file a
//! folio at a time): an image caught before its message commits may be any prefix.
//!
//! Writes until its standard input closes (or `--count` messages), at `--rate` messages a
//! second or as fast as it can, then prints the id of its last committed message.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use sealback_tests::store::{
    MessageStore, has_media, insert_message, media_bytes, media_path, media_temp_path,
};

struct Args {
    store: PathBuf,
    rate: Option<f64>,
    count: Option<i64>,
    media_pause: Duration,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut args = Args {
        store: PathBuf::new(),
        rate: None,
        count: None,
        media_pause: Duration::from_millis(20),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--store" => args.store = value()?.into(),
            "--rate" => args.rate = Some(value()?.parse().context("--rate")?),
            "--count" => args.count = Some(value()?.parse().context("--count")?),
            "--media-pause-ms" => {
                args.media_pause =
                    Duration::from_millis(value()?.parse().context("--media-pause-ms")?);
            }
            other => bail!("unknown argument {other:?}"),
        }
    }
    if args.store.as_os_str().is_empty() {
        bail!("usage: store_writer --store DIR [--rate N] [--count N] [--media-pause-ms MS]");
    }
    Ok(args)
}

fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        std::thread::spawn(move || {
            // Whatever arrives, the end of input is the signal.
            let _ = std::io::stdin().read_to_end(&mut Vec::new());
            stop.store(true, Ordering::SeqCst);
        });
    }
    let store = MessageStore::open(&args.store);
    let mut conn = store.connect();
    let (mut n, media_every) = MessageStore::progress(&conn);
    let started = Instant::now();
    let mut written = 0i64;
    while !stop.load(Ordering::SeqCst) && args.count.is_none_or(|c| written < c) {
        let id = n + 1;
        if has_media(id, media_every) {
            write_image(&args.store, id, id / media_every % 3 == 0, args.media_pause)?;
        }
        let tx = conn.transaction().context("begin")?;
        insert_message(&tx, id, media_every);
        tx.commit().context("commit")?;
        n = id;
        written += 1;
        if let Some(rate) = args.rate {
            let due = started + Duration::from_secs_f64(written as f64 / rate);
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
        }
    }
    drop(conn);
    println!("{n}");
    Ok(())
}

/// Writes the image of message `id` in two halves, in place or under a temporary name.
fn write_image(store: &Path, id: i64, via_temp: bool, pause: Duration) -> anyhow::Result<()> {
    let path = media_path(id);
    let bytes = media_bytes(&path);
    let written_as = store.join(if via_temp {
        media_temp_path(id)
    } else {
        path.clone()
    });
    let mut file = File::create(&written_as).with_context(|| format!("create {path}"))?;
    let (first, second) = bytes.split_at(bytes.len() / 2);
    file.write_all(first).context("write the first half")?;
    std::thread::sleep(pause);
    file.write_all(second).context("write the second half")?;
    drop(file);
    if via_temp {
        fs::rename(&written_as, store.join(&path)).context("rename into place")?;
    }
    Ok(())
}
