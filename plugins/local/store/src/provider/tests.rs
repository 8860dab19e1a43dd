use std::collections::HashSet;
use std::path::Path;

use sealback_plugin_api::ErrorKind;
use tempfile::TempDir;

use super::*;

fn open(dir: &Path) -> LocalProvider {
    let options = serde_json::json!({ "path": dir }).to_string();
    LocalProvider::open(&options).expect("open")
}

fn fixture() -> (TempDir, LocalProvider) {
    let dir = tempfile::tempdir().expect("tempdir");
    let provider = open(dir.path());
    (dir, provider)
}

fn names(listed: Vec<ObjectInfo>) -> Vec<String> {
    listed.into_iter().map(|info| info.name).collect()
}

/// Every file under `dir`, relative to it.
fn files_under(dir: &Path) -> Vec<String> {
    under(dir, false)
}

/// Every directory under `dir`, relative to it.
fn dirs_under(dir: &Path) -> Vec<String> {
    under(dir, true)
}

/// The files, or the directories, under `dir`, relative to it and sorted.
fn under(dir: &Path, dirs: bool) -> Vec<String> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(current) = pending.pop() {
        for entry in fs::read_dir(&current).expect("read_dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() == dirs {
                let relative = path.strip_prefix(dir).expect("under dir");
                found.push(relative.to_string_lossy().into_owned());
            }
            if path.is_dir() {
                pending.push(path);
            }
        }
    }
    found.sort();
    found
}

#[test]
fn objects_round_trip_including_empty_and_large_ones() {
    let (dir, provider) = fixture();
    let large: Vec<u8> = (0..5 << 20)
        .map(|i: u32| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    provider.put("empty", b"").expect("put empty");
    provider.put("packs/ab/large", &large).expect("put large");
    assert_eq!(provider.get("empty").expect("get empty"), b"");
    assert_eq!(provider.get("packs/ab/large").expect("get large"), large);
    assert_eq!(
        fs::read(dir.path().join("packs/ab/large")).expect("file"),
        large
    );
    let listed = provider.list("").expect("list");
    assert_eq!(
        listed,
        [
            ObjectInfo {
                name: "empty".into(),
                size: 0
            },
            ObjectInfo {
                name: "packs/ab/large".into(),
                size: 5 << 20
            },
        ]
    );
}

#[test]
fn put_replaces_an_existing_object() {
    let (_dir, provider) = fixture();
    provider
        .put("config", b"first, longer version")
        .expect("put");
    provider.put("config", b"second").expect("put again");
    assert_eq!(provider.get("config").expect("get"), b"second");
    assert_eq!(
        provider.list("").expect("list"),
        [ObjectInfo {
            name: "config".into(),
            size: 6
        }]
    );
}

#[test]
fn list_returns_exactly_the_names_under_the_prefix() {
    let (_dir, provider) = fixture();
    for name in [
        "snap",
        "snapshots/1",
        "snapshots/2",
        "snapshots/old/3",
        "packs/ab/x",
        "packs/cd/y",
        "keys/k",
    ] {
        provider.put(name, name.as_bytes()).expect("put");
    }
    assert_eq!(
        names(provider.list("snap").expect("list")),
        ["snap", "snapshots/1", "snapshots/2", "snapshots/old/3"]
    );
    assert_eq!(
        names(provider.list("snapshots/").expect("list")),
        ["snapshots/1", "snapshots/2", "snapshots/old/3"]
    );
    assert_eq!(
        names(provider.list("packs/a").expect("list")),
        ["packs/ab/x"]
    );
    assert_eq!(
        names(provider.list("packs/ab/x").expect("list")),
        ["packs/ab/x"]
    );
    assert_eq!(provider.list("").expect("list").len(), 7);
    assert!(provider.list("nothing/").expect("list").is_empty());
    assert!(provider.list("keys/k/").expect("list").is_empty());
}

#[test]
fn get_of_a_missing_object_is_not_found() {
    let (_dir, provider) = fixture();
    provider.put("a/b", b"x").expect("put");
    for name in ["missing", "a", "a/b/c", "x/y"] {
        let err = provider.get(name).expect_err(name);
        assert_eq!(err.kind(), ErrorKind::NotFound, "{name}: {err}");
    }
}

#[test]
fn remove_deletes_and_a_missing_object_is_already_removed() {
    let (_dir, provider) = fixture();
    provider.put("a/b", b"x").expect("put");
    provider.remove("a/b").expect("remove");
    assert_eq!(
        provider.get("a/b").expect_err("removed").kind(),
        ErrorKind::NotFound
    );
    provider.remove("a/b").expect("remove again");
    provider.remove("never/was").expect("remove missing");
    provider.remove("a").expect("a directory is no object");
    assert!(provider.list("").expect("list").is_empty());
}

#[test]
fn removing_the_last_object_of_a_directory_removes_the_directories_it_leaves_empty() {
    let (dir, provider) = fixture();
    provider.put("a/b/c/one", b"1").expect("put");
    provider.put("a/b/c/two", b"2").expect("put");
    provider.put("a/kept", b"k").expect("put");
    provider.remove("a/b/c/one").expect("remove");
    assert_eq!(
        dirs_under(dir.path()),
        ["a", "a/b", "a/b/c"],
        "c still holds two"
    );
    provider.remove("a/b/c/two").expect("remove");
    assert_eq!(dirs_under(dir.path()), ["a"], "a still holds kept");
    provider.remove("a/kept").expect("remove");
    assert!(
        dirs_under(dir.path()).is_empty(),
        "{:?}",
        dirs_under(dir.path())
    );
    assert!(dir.path().is_dir(), "the root itself stays");
    // A directory that holds what is no object (a user's note) is not the provider's to remove.
    provider.put("x/y", b"y").expect("put");
    fs::write(dir.path().join("x/README"), b"mine").expect("write");
    provider.remove("x/y").expect("remove");
    assert_eq!(dirs_under(dir.path()), ["x"]);
    // And a directory emptied behind our back is put into again.
    provider.put("p/q/r", b"r").expect("put");
    fs::remove_file(dir.path().join("p/q/r")).expect("remove by hand");
    fs::remove_dir(dir.path().join("p/q")).expect("rmdir by hand");
    provider
        .put("p/q/s", b"s")
        .expect("put into a directory gone since the last put");
    assert_eq!(provider.get("p/q/s").expect("get"), b"s");
}

#[test]
fn a_root_replaced_under_the_provider_is_gone_and_nothing_is_written_there() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("mnt");
    let provider = open(&root);
    provider.put("data/a", b"a").expect("put");
    // A disk unmounted: a different directory (here: a new one) at the root's path.
    fs::rename(&root, dir.path().join("was")).expect("move aside");
    fs::create_dir(&root).expect("mount point");
    for name in ["data/b", "top"] {
        let err = provider.put(name, b"b").expect_err(name);
        assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
        assert!(err.message().contains("is gone or was replaced"), "{err}");
    }
    assert!(files_under(&root).is_empty(), "{:?}", files_under(&root));
}

#[test]
fn puts_racing_removes_that_empty_their_directory_all_land() {
    let (_dir, provider) = fixture();
    std::thread::scope(|scope| {
        for thread in 0..4 {
            let provider = &provider;
            scope.spawn(move || {
                for round in 0..200 {
                    let name = format!("shared/dir/{thread}-{round}");
                    provider.put(&name, b"data").expect("put");
                    assert_eq!(provider.get(&name).expect("get"), b"data", "{name}");
                    provider.remove(&name).expect("remove");
                }
            });
        }
    });
    assert!(provider.list("").expect("list").is_empty());
}

#[test]
fn puts_leave_no_temporary_files() {
    let (dir, provider) = fixture();
    for i in 0..20 {
        provider
            .put(&format!("d{}/o{i}", i % 3), b"data")
            .expect("put");
    }
    provider.put("d0/o0", b"replaced").expect("put");
    let files = files_under(dir.path());
    assert_eq!(files.len(), 20);
    assert!(
        files.iter().all(|file| !file.contains(".tmp-")),
        "{files:?}"
    );
}

#[test]
fn temporary_files_left_by_a_crash_are_not_objects() {
    let (dir, provider) = fixture();
    provider.put("a/b", b"x").expect("put");
    let leftover = dir.path().join("a/.b.tmp-0123456789abcdef");
    fs::write(&leftover, b"half").expect("write leftover");
    assert_eq!(names(provider.list("").expect("list")), ["a/b"]);
    let reserved = ".b.tmp-0123456789abcdef";
    assert_eq!(
        provider
            .get(&format!("a/{reserved}"))
            .expect_err("hidden")
            .kind(),
        ErrorKind::NotFound
    );
    let err = provider.put(reserved, b"y").expect_err("reserved");
    assert_eq!(err.kind(), ErrorKind::Permanent);
    assert!(
        err.message().contains("reserves names of that shape"),
        "{err}"
    );
    provider
        .remove(&format!("a/{reserved}"))
        .expect("remove is a no-op");
    assert!(leftover.exists());
}

#[test]
fn files_that_are_not_objects_are_not_listed() {
    let (dir, provider) = fixture();
    provider.put("ok", b"x").expect("put");
    fs::create_dir(dir.path().join("lost+found")).expect("mkdir");
    fs::write(dir.path().join("lost+found/x"), b"").expect("write");
    fs::write(dir.path().join("with space"), b"").expect("write");
    assert_eq!(names(provider.list("").expect("list")), ["ok"]);
}

#[test]
fn a_file_in_the_way_of_a_directory_is_a_permanent_error() {
    let (_dir, provider) = fixture();
    provider.put("a", b"x").expect("put");
    let err = provider.put("a/b", b"y").expect_err("a is a file");
    assert_eq!(err.kind(), ErrorKind::Permanent);
    assert!(
        err.message().contains("is a file, not a directory"),
        "{err}"
    );
}

#[test]
fn concurrent_puts_from_several_threads_all_land_whole() {
    let (_dir, provider) = fixture();
    let value = |thread: usize, round: usize| vec![thread as u8; 64 * 1024 + round];
    std::thread::scope(|scope| {
        for thread in 0..8 {
            let provider = &provider;
            scope.spawn(move || {
                for round in 0..10 {
                    provider
                        .put(&format!("own/{thread}/{round}"), &value(thread, round))
                        .expect("put");
                    provider
                        .put(&format!("shared/{round}"), &value(thread, round))
                        .expect("put");
                }
            });
        }
    });
    for thread in 0..8 {
        for round in 0..10 {
            let got = provider.get(&format!("own/{thread}/{round}")).expect("get");
            assert_eq!(got, value(thread, round));
        }
    }
    for round in 0..10 {
        let got = provider.get(&format!("shared/{round}")).expect("get");
        let whole: HashSet<Vec<u8>> = (0..8).map(|thread| value(thread, round)).collect();
        assert!(whole.contains(&got), "shared/{round} is a mix of puts");
    }
    assert_eq!(provider.list("").expect("list").len(), 90);
}

#[test]
fn open_creates_the_directory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("a/b/sealback");
    let provider = open(&root);
    provider.put("x", b"1").expect("put");
    assert!(root.join("x").is_file());
}

#[test]
fn bad_options_are_invalid_config_naming_the_problem() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().display().to_string();
    for (options, problem) in [
        (
            serde_json::json!({ "path": path, "colour": "red" }),
            "unknown field `colour`",
        ),
        (serde_json::json!({}), "missing field `path`"),
        (serde_json::json!({ "path": 3 }), "invalid type"),
        (
            serde_json::json!({ "path": "relative/dir" }),
            "\"relative/dir\" is not absolute",
        ),
    ] {
        let err = LocalProvider::open(&options.to_string()).expect_err(problem);
        assert_eq!(err.kind(), ErrorKind::InvalidConfig, "{err}");
        assert!(err.message().contains(problem), "{err}");
    }
    assert_eq!(
        LocalProvider::open("not json").expect_err("json").kind(),
        ErrorKind::InvalidConfig
    );
}

#[test]
fn a_path_that_is_a_file_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("file");
    fs::write(&file, b"").expect("write");
    let options = serde_json::json!({ "path": file }).to_string();
    assert!(LocalProvider::open(&options).is_err());
}

#[test]
fn names_that_would_leave_the_root_are_refused_even_without_the_sdk() {
    let (dir, provider) = fixture();
    for name in ["../escape", "/etc/passwd", "a/../../b", ""] {
        let err = provider.put(name, b"x").expect_err(name);
        assert_eq!(err.kind(), ErrorKind::Permanent, "{name}: {err}");
        assert!(
            provider.get(name).is_err() && provider.remove(name).is_err(),
            "{name}"
        );
    }
    assert!(provider.list("../").is_err());
    assert!(files_under(dir.path()).is_empty());
    assert!(!dir.path().parent().expect("parent").join("escape").exists());
}
