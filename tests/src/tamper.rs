//! A local target's repository as files, and ways to damage it: what a failing disk, a
//! careless sync tool or an attacker with access to the storage could do.
//!
//! The local provider stores the object `data/<id>` as the file `<dir>/data/<id>`.

use std::fs;
use std::path::{Path, PathBuf};

/// The object names under `prefix` (`data`, `index`, `snapshots`), sorted.
pub fn objects(target: &Path, prefix: &str) -> Vec<String> {
    let mut names: Vec<String> = match fs::read_dir(target.join(prefix)) {
        Ok(entries) => entries
            .map(|e| {
                let name = e.expect("list the target").file_name();
                format!("{prefix}/{}", name.to_string_lossy())
            })
            .collect(),
        Err(_) => Vec::new(),
    };
    names.sort();
    names
}

/// The file holding `object`.
pub fn file(target: &Path, object: &str) -> PathBuf {
    target.join(object)
}

/// Inverts the bits of the byte in the middle of `object` (inside its encrypted payload,
/// clear of the header at the start and, for a pack, of its table at the end).
pub fn flip_middle_byte(target: &Path, object: &str) {
    let path = file(target, object);
    let mut bytes = fs::read(&path).expect("read the object");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    fs::write(&path, bytes).expect("write the damaged object");
}

pub fn delete(target: &Path, object: &str) {
    fs::remove_file(file(target, object)).expect("delete the object");
}

/// Exchanges the contents of two objects, as a rename A to B and B to A would.
pub fn swap(target: &Path, a: &str, b: &str) {
    let (a, b) = (file(target, a), file(target, b));
    let parked = a.with_extension("parked");
    fs::rename(&a, &parked).expect("park A");
    fs::rename(&b, &a).expect("move B to A");
    fs::rename(&parked, &b).expect("move A to B");
}

/// Copies a directory tree (a target, to damage the copy).
pub fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).expect("create the copy");
    for entry in fs::read_dir(from).expect("list the directory") {
        let entry = entry.expect("list the directory");
        let dest = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_tree(&entry.path(), &dest);
        } else {
            fs::copy(entry.path(), &dest).expect("copy a file");
        }
    }
}

/// The bytes of the file `path`, or of all files under it.
pub fn tree_size(path: &Path) -> u64 {
    let Ok(meta) = fs::metadata(path) else {
        return 0;
    };
    if !meta.is_dir() {
        return meta.len();
    }
    fs::read_dir(path)
        .expect("list the directory")
        .map(|e| tree_size(&e.expect("list the directory").path()))
        .sum()
}
