use super::*;
use crate::index::Index;

type Memory = crate::memory::MemoryStore;

fn names(store: &Memory) -> Vec<String> {
    store
        .list("")
        .expect("list")
        .into_iter()
        .map(|(n, _)| n)
        .collect()
}

fn some_index() -> Index {
    Index {
        packs: vec![crate::index::IndexedPack {
            name: format!("data/{}", "d".repeat(64)),
            entries: Vec::new(),
        }],
    }
}

/// A repository at the root under `old` and one in `new`'s generation, each with an index.
fn two_generations() -> (Arc<Memory>, BackupKey, BackupKey, String, String) {
    let store = Arc::new(Memory::default());
    let (old, new) = (BackupKey::generate(), BackupKey::generate());
    let (root, _) = Repository::open_or_init(store.clone(), &old, 0).expect("root");
    let (old_index, _) = root.write_index(&some_index()).expect("index");
    let layout = Layout::of_rotated(&new);
    let (generation, created) =
        Repository::open_or_init(store_for(store.clone(), &layout), &new, 1).expect("gen");
    assert!(created);
    let (new_index, _) = generation.write_index(&some_index()).expect("index");
    (store, old, new, old_index, new_index)
}

#[test]
fn each_key_opens_its_own_generation_and_sees_only_its_objects() {
    let (store, old, new, old_index, new_index) = two_generations();
    let g = name_of(&new);
    assert_eq!(g.len(), 16);
    assert!(names(&store).contains(&format!("generations/{g}")));
    assert!(names(&store).contains(&format!("g/{g}/{new_index}")));

    let (root, layout) = open(store.clone(), &old).expect("old key");
    assert_eq!(layout, Layout::Root);
    assert_eq!(root.list_indexes().expect("list"), vec![old_index.clone()]);
    let (generation, layout) = open(store.clone(), &new).expect("new key");
    assert_eq!(layout, Layout::Generation(g.clone()));
    assert_eq!(
        generation.list_indexes().expect("list"),
        vec![new_index.clone()]
    );
    assert_eq!(
        generation.read_index(&new_index).expect("read"),
        some_index()
    );

    // An object of one generation moved into the other does not authenticate.
    let moved = store.get(&old_index).expect("old index");
    store
        .put(&format!("g/{g}/{old_index}"), &moved)
        .expect("put");
    let err = generation.read_index(&old_index).expect_err("refused");
    assert!(matches!(err, Error::Authentication { .. }), "{err}");

    let stranger = BackupKey::generate();
    let err = open(store, &stranger)
        .err()
        .expect("a third key opens nothing");
    assert!(matches!(err, Error::Authentication { .. }), "{err}");
}

#[test]
fn retiring_a_generation_removes_it_all_and_leaves_the_other() {
    for retired_root in [true, false] {
        let (store, old, new, old_index, new_index) = two_generations();
        let (gone, kept, kept_index) = if retired_root {
            (Layout::Root, &new, &new_index)
        } else {
            (Layout::of_rotated(&new), &old, &old_index)
        };
        let gone_key = if retired_root { &old } else { &new };
        let (gone_repo, _) = open(store.clone(), gone_key).expect("open");
        let retired = retire(store.as_ref(), &gone, &gone_repo).expect("retired");
        assert_eq!(retired.objects, 2, "config and index");
        let (repo, _) = open(store.clone(), kept).expect("the other key still opens");
        assert_eq!(repo.list_indexes().expect("list"), vec![kept_index.clone()]);
        assert_eq!(names(&store).len(), 2, "{:?}", names(&store));
        // The retired key opens nothing, and is told it is the wrong key (not that the
        // store is empty, which would let it start a repository of its own there).
        let err = open(store.clone(), gone_key).err().expect("nothing opens");
        assert!(matches!(err, Error::Authentication { .. }), "{err}");
        // Again, as after an interruption: nothing more to do, nothing else touched.
        assert_eq!(
            retire(store.as_ref(), &gone, &gone_repo).expect("again"),
            Retired::default()
        );
        assert_eq!(names(&store).len(), 2);
    }
}

#[test]
fn an_interrupted_retirement_keeps_the_config_until_the_end() {
    let (store, old, _, _, _) = two_generations();
    // Interrupted after the index went: the generation is still found, and finished later.
    let (root, _) = open(store.clone(), &old).expect("open");
    for name in root.list_indexes().expect("list") {
        store.remove(&name).expect("remove");
    }
    assert!(open(store.clone(), &old).is_ok());
    assert_eq!(
        retire(store.as_ref(), &Layout::Root, &root)
            .expect("rest")
            .objects,
        1
    );
    assert!(open(store.clone(), &old).is_err());
}

#[test]
fn a_retiring_mark_is_kept_once_sealed_under_its_generation_and_removed_last() {
    for retired_root in [true, false] {
        let (store, old, new, _, _) = two_generations();
        let (key, other) = if retired_root {
            (&old, &new)
        } else {
            (&new, &old)
        };
        let (repo, layout) = open(store.clone(), key).expect("open");
        assert_eq!(retiring_since(&repo).expect("read"), None);
        assert_eq!(mark_retiring(&repo, 1_000).expect("mark"), 1_000);
        // Marked again later (a second run), the first time stands.
        assert_eq!(mark_retiring(&repo, 9_000).expect("again"), 1_000);
        assert_eq!(retiring_since(&repo).expect("read"), Some(1_000));
        // The other generation is not marked, and its key cannot read this mark.
        let (other_repo, _) = open(store.clone(), other).expect("open");
        assert_eq!(retiring_since(&other_repo).expect("read"), None);
        let inner = match &layout {
            Layout::Root => RETIRING_NAME.to_owned(),
            Layout::Generation(g) => format!("g/{g}/{RETIRING_NAME}"),
        };
        let sealed = store.get(&inner).expect("the mark");
        other_repo
            .store()
            .put(RETIRING_NAME, &sealed)
            .expect("planted");
        assert!(
            retiring_since(&other_repo).is_err(),
            "a mark under another key"
        );
        other_repo.store().remove(RETIRING_NAME).expect("remove");
        // Retirement removes the mark after everything but the config.
        let removed = std::sync::Mutex::new(Vec::new());
        struct Recording<'a>(Arc<Memory>, &'a std::sync::Mutex<Vec<String>>);
        impl ObjectStore for Recording<'_> {
            fn put(&self, name: &str, data: &[u8]) -> Result<(), StoreError> {
                self.0.put(name, data)
            }
            fn get(&self, name: &str) -> Result<Bytes, StoreError> {
                self.0.get(name)
            }
            fn list(&self, prefix: &str) -> Result<Vec<(String, u64)>, StoreError> {
                self.0.list(prefix)
            }
            fn remove(&self, name: &str) -> Result<(), StoreError> {
                self.1.lock().expect("lock").push(name.to_owned());
                self.0.remove(name)
            }
        }
        retire(&Recording(store.clone(), &removed), &layout, &repo).expect("retired");
        let removed = removed.into_inner().expect("lock");
        assert_eq!(removed[removed.len() - 2], inner, "{removed:?}");
        let last = &removed[removed.len() - 1];
        assert!(
            last == "config" || last.starts_with("generations/"),
            "{removed:?}"
        );
    }
}

#[test]
fn a_previous_key_opens_only_under_the_key_that_sealed_it() {
    let (current, previous) = (BackupKey::generate(), BackupKey::generate());
    let sealed = seal_previous(&current, &previous);
    let opened = open_previous(&current, &sealed).expect("opens");
    assert_eq!(opened.expose_secret(), previous.expose_secret());
    assert!(open_previous(&previous, &sealed).is_none());
    let mut flipped = sealed.clone();
    flipped[20] ^= 1;
    assert!(open_previous(&current, &flipped).is_none());
    assert!(
        !sealed
            .windows(32)
            .any(|w| w == previous.expose_secret().as_slice())
    );
}
