//! The message store every tool backs up: generated once per parameter set by
//! `gen_store.py` (kept, with a stamp, for the next run), copied for each run, and changed
//! day by day with `gen_store.py --mutate`.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use crate::phase::Mutation;

/// What the store is generated from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StoreParams {
    pub seed: u64,
    pub messages: u64,
    pub media_mb: u64,
    /// BLAKE3 of gen_store.py: a changed generator makes a new store.
    pub generator_blake3: String,
}

/// Runs gen_store.py.
#[derive(Debug, Clone)]
pub(crate) struct Generator {
    pub script: PathBuf,
}

impl Generator {
    pub(crate) fn params(&self, seed: u64, messages: u64, media_mb: u64) -> Result<StoreParams> {
        let script = fs::read(&self.script).with_context(|| {
            format!(
                "cannot read the store generator {} (pass --generator)",
                self.script.display()
            )
        })?;
        Ok(StoreParams {
            seed,
            messages,
            media_mb,
            generator_blake3: blake3::hash(&script).to_hex().to_string(),
        })
    }

    /// Returns the pristine store for `params` under `work`, generating it unless a complete
    /// one (its stamp written after generation) is already there.
    pub(crate) fn pristine(&self, work: &Path, params: &StoreParams) -> Result<PathBuf> {
        let name = format!(
            "store-s{}-m{}-mb{}",
            params.seed, params.messages, params.media_mb
        );
        let dir = work.join(&name);
        let stamp = work.join(format!("{name}.stamp.json"));
        let stamped: Option<StoreParams> = fs::read(&stamp)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok());
        if stamped.as_ref() == Some(params) && dir.is_dir() {
            println!("store: reusing {} (stamp matches)", dir.display());
            return Ok(dir);
        }
        remove_if_exists(&stamp)?;
        remove_dir_if_exists(&dir)?;
        println!(
            "store: generating {} messages and {} MB of media into {} ...",
            params.messages,
            params.media_mb,
            dir.display()
        );
        let mut command = Command::new("python3");
        command
            .arg(&self.script)
            .arg("--dir")
            .arg(&dir)
            .arg("--seed")
            .arg(params.seed.to_string())
            .arg("--messages")
            .arg(params.messages.to_string())
            .arg("--media-mb")
            .arg(params.media_mb.to_string());
        let summary = run_generator(&mut command)?;
        println!("store: generated: {summary}");
        let text = serde_json::to_vec_pretty(params).context("cannot encode the stamp")?;
        fs::write(&stamp, text).with_context(|| format!("cannot write {}", stamp.display()))?;
        Ok(dir)
    }

    /// One simulated day on `store`; returns gen_store.py's summary of it.
    pub(crate) fn mutate(
        &self,
        store: &Path,
        seed: u64,
        mutation: Mutation,
    ) -> Result<serde_json::Value> {
        let mut command = Command::new("python3");
        command
            .arg(&self.script)
            .arg("--dir")
            .arg(store)
            .arg("--seed")
            .arg(seed.to_string())
            .arg("--mutate")
            .arg("--day")
            .arg(mutation.day.to_string());
        if mutation.checkpoint_first {
            command.arg("--checkpoint-first");
        }
        let summary = run_generator(&mut command)?;
        serde_json::from_str(&summary)
            .with_context(|| format!("gen_store.py printed {summary:?}, not one JSON summary"))
    }
}

/// Runs gen_store.py and returns the JSON line it prints last.
fn run_generator(command: &mut Command) -> Result<String> {
    let output = command
        .output()
        .context("cannot run python3 (the store generator needs it)")?;
    if !output.status.success() {
        bail!(
            "the store generator failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    Ok(stdout.lines().last().unwrap_or_default().to_owned())
}

/// Copies the pristine store to `to` (replaced), keeping modes and times.
pub(crate) fn copy(pristine: &Path, to: &Path) -> Result<()> {
    remove_dir_if_exists(to)?;
    let status = Command::new("cp")
        .arg("-a")
        .arg("--reflink=auto")
        .arg(pristine)
        .arg(to)
        .status()
        .context("cannot run cp")?;
    if !status.success() {
        bail!(
            "cp -a {} {} failed ({status})",
            pristine.display(),
            to.display()
        );
    }
    Ok(())
}

/// Reads every file of `dir` once, so that every tool finds it in the page cache; returns
/// the bytes read.
pub(crate) fn warm(dir: &Path) -> Result<u64> {
    let mut total = 0;
    for (relative, _) in scan(dir)?.files {
        let path = dir.join(&relative);
        let mut file =
            fs::File::open(&path).with_context(|| format!("cannot open {}", path.display()))?;
        total += io::copy(&mut file, &mut io::sink())
            .with_context(|| format!("cannot read {}", path.display()))?;
    }
    Ok(total)
}

/// Drops every file under `dir` from the page cache (`POSIX_FADV_DONTNEED`; clean pages
/// only, so a `sync` comes first), as if the machine had just started: what a restore on a
/// new device finds of its repository. Needs no privileges, unlike `drop_caches`.
pub(crate) fn evict(dir: &Path) -> Result<u64> {
    let mut files = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(at) = stack.pop() {
        for entry in fs::read_dir(&at).with_context(|| format!("cannot list {}", at.display()))? {
            let entry = entry.with_context(|| format!("cannot list {}", at.display()))?;
            let kind = entry.file_type()?;
            if kind.is_dir() {
                stack.push(entry.path());
            } else if kind.is_file() {
                let file = fs::File::open(entry.path())
                    .with_context(|| format!("cannot open {}", entry.path().display()))?;
                nix::fcntl::posix_fadvise(
                    &file,
                    0,
                    0,
                    nix::fcntl::PosixFadviseAdvice::POSIX_FADV_DONTNEED,
                )
                .with_context(|| format!("cannot evict {}", entry.path().display()))?;
                files += 1;
            }
        }
    }
    Ok(files)
}

/// A listing of a store: every regular file but SQLite's `-shm` (its shared-memory index,
/// rewritten by every reader and holding no data), with size and modification time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Listing {
    pub files: BTreeMap<String, FileStamp>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FileStamp {
    pub size: u64,
    pub mtime_ns: i128,
}

impl Listing {
    pub(crate) fn bytes(&self) -> u64 {
        self.files.values().map(|f| f.size).sum()
    }

    /// What differs from `before` in content, one line per file.
    pub(crate) fn changes_since(&self, before: &Listing) -> Vec<String> {
        let mut changes = Vec::new();
        for (name, old) in &before.files {
            match self.files.get(name) {
                None => changes.push(format!("{name}: removed")),
                Some(new) if new != old => changes.push(format!(
                    "{name}: {} -> {} bytes, mtime {} -> {}",
                    old.size, new.size, old.mtime_ns, new.mtime_ns
                )),
                Some(_) => {}
            }
        }
        for (name, new) in &self.files {
            // SQLite creates an empty -wal when it opens a database in WAL mode: no data.
            let empty_wal = name.ends_with("-wal") && new.size == 0;
            if !before.files.contains_key(name) && !empty_wal {
                changes.push(format!("{name}: created ({} bytes)", new.size));
            }
        }
        changes
    }
}

/// Lists `dir` (see `Listing`); paths are relative and use `/`.
pub(crate) fn scan(dir: &Path) -> Result<Listing> {
    let mut files = BTreeMap::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        let entries =
            fs::read_dir(&current).with_context(|| format!("cannot list {}", current.display()))?;
        for entry in entries {
            let entry = entry.with_context(|| format!("cannot list {}", current.display()))?;
            let path = entry.path();
            let meta = fs::symlink_metadata(&path)
                .with_context(|| format!("cannot stat {}", path.display()))?;
            if meta.is_dir() {
                pending.push(path);
                continue;
            }
            if !meta.is_file() || path.to_string_lossy().ends_with("-shm") {
                continue;
            }
            let relative = path
                .strip_prefix(dir)
                .with_context(|| format!("{} is outside {}", path.display(), dir.display()))?;
            let stamp = FileStamp {
                size: meta.len(),
                mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
            };
            files.insert(relative.to_string_lossy().into_owned(), stamp);
        }
    }
    Ok(Listing { files })
}

pub(crate) fn remove_dir_if_exists(dir: &Path) -> Result<()> {
    match fs::remove_dir_all(dir) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("cannot remove {}", dir.display()))
        }
        _ => Ok(()),
    }
}

fn remove_if_exists(file: &Path) -> Result<()> {
    match fs::remove_file(file) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("cannot remove {}", file.display()))
        }
        _ => Ok(()),
    }
}
