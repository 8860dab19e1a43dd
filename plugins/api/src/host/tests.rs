//! The loader's checks and the instance's handling of what a plugin returns, with tables built
//! in this process (well-behaved ones by the SDK, broken ones by hand).

use std::collections::BTreeMap;
use std::ffi::c_void;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use super::*;
use crate::abi::Buf;
use crate::sdk::shim::into_buf;
use crate::sdk::{self, Provider};
use crate::{ErrorKind, ObjectInfo, ProviderError, limits};

struct Memory(Mutex<BTreeMap<String, Vec<u8>>>);

impl Provider for Memory {
    const NAME: &'static str = "memory";
    const VERSION: &'static str = "0.1.0";

    fn open(options_json: &str) -> Result<Self, ProviderError> {
        match options_json {
            "{}" => Ok(Self(Mutex::new(BTreeMap::new()))),
            _ => Err(ProviderError::invalid_config("unknown key \"x\"")),
        }
    }

    fn put(&self, name: &str, data: &[u8]) -> Result<(), ProviderError> {
        self.0
            .lock()
            .expect("lock")
            .insert(name.into(), data.into());
        Ok(())
    }

    fn get(&self, name: &str) -> Result<Vec<u8>, ProviderError> {
        let objects = self.0.lock().expect("lock");
        objects
            .get(name)
            .cloned()
            .ok_or_else(|| ProviderError::not_found(format!("no {name}")))
    }

    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, ProviderError> {
        let objects = self.0.lock().expect("lock");
        let listed = objects.iter().filter(|(name, _)| name.starts_with(prefix));
        Ok(listed
            .map(|(name, data)| ObjectInfo {
                name: name.clone(),
                size: data.len() as u64,
            })
            .collect())
    }

    fn remove(&self, name: &str) -> Result<(), ProviderError> {
        self.0.lock().expect("lock").remove(name);
        Ok(())
    }
}

static GOOD: ProviderTableV1 = sdk::__table::<Memory>(b"memory\0", b"0.1.0\0");

fn plugin(table: &'static ProviderTableV1) -> Result<Plugin, LoadError> {
    // SAFETY: the table and everything it points at are static.
    unsafe {
        Plugin::from_table(
            Path::new("/plugins/libtest.so"),
            crate::abi::ABI_VERSION,
            table,
            None,
        )
    }
}

fn instance(table: &'static ProviderTableV1) -> Instance {
    plugin(table)
        .expect("valid table")
        .open("{}")
        .expect("open")
}

#[test]
fn a_good_table_gives_a_working_instance() {
    let plugin = plugin(&GOOD).expect("valid table");
    assert_eq!((plugin.name(), plugin.version()), ("memory", "0.1.0"));
    assert_eq!(plugin.path(), Path::new("/plugins/libtest.so"));
    let instance = plugin.open("{}").expect("open");
    drop(plugin); // The instance keeps what it needs.
    instance.put("a/b", b"hello").expect("put");
    instance.put("a/c", b"").expect("put");
    assert_eq!(instance.get("a/b").expect("get"), &b"hello"[..]);
    assert_eq!(instance.get("a/c").expect("get"), &b""[..]);
    let listed = instance.list("a/").expect("list");
    assert_eq!(
        listed,
        [
            ObjectInfo {
                name: "a/b".into(),
                size: 5
            },
            ObjectInfo {
                name: "a/c".into(),
                size: 0
            }
        ]
    );
    instance.remove("a/b").expect("remove");
    instance.remove("a/b").expect("remove again");
    let err = instance.get("a/b").expect_err("removed");
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert_eq!(err.message(), "plugin \"memory\" get \"a/b\": no a/b");
}

#[test]
fn open_errors_keep_their_kind() {
    let err = plugin(&GOOD)
        .expect("valid")
        .open("{\"x\": 1}")
        .expect_err("bad options");
    assert_eq!(err.kind(), ErrorKind::InvalidConfig);
    assert_eq!(err.message(), "plugin \"memory\" open: unknown key \"x\"");
}

#[test]
fn the_host_refuses_invalid_names_itself() {
    let instance = instance(&GOOD);
    let err = instance.put("../x", b"").expect_err("invalid");
    assert_eq!(err.kind(), ErrorKind::Permanent);
    assert!(
        err.message().starts_with("invalid object name \"../x\""),
        "{err}"
    );
    assert!(instance.list("/").is_err());
}

#[test]
fn instances_are_shared_between_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Instance>();
    assert_send_sync::<Plugin>();
    let instance = instance(&GOOD);
    std::thread::scope(|scope| {
        for t in 0..4 {
            let instance = &instance;
            scope.spawn(move || {
                for i in 0..50 {
                    let name = format!("t{t}/{i}");
                    instance.put(&name, name.as_bytes()).expect("put");
                    assert_eq!(instance.get(&name).expect("get"), name.as_bytes());
                }
            });
        }
    });
    assert_eq!(instance.list("").expect("list").len(), 200);
}

// Broken plugins, written by hand.

unsafe extern "C" fn put_unknown_status(
    _: *mut c_void,
    _: *const u8,
    _: usize,
    _: *const u8,
    _: usize,
    _: *mut abi::Error,
) -> i32 {
    42
}

unsafe extern "C" fn put_transient_with_bad_utf8(
    _: *mut c_void,
    _: *const u8,
    _: usize,
    _: *const u8,
    _: usize,
    error: *mut abi::Error,
) -> i32 {
    // SAFETY: the host passes a valid, zeroed error.
    unsafe {
        (*error).message = into_buf(b"server said \xff".to_vec());
        (*error).retry_after_ms = 1_500;
    }
    abi::STATUS_TRANSIENT
}

unsafe extern "C" fn remove_quota_silently(
    _: *mut c_void,
    _: *const u8,
    _: usize,
    _: *mut abi::Error,
) -> i32 {
    abi::STATUS_QUOTA
}

/// A quota error that (wrongly) advises a retry-after, which the host ignores.
unsafe extern "C" fn get_quota_with_retry_after(
    _: *mut c_void,
    _: *const u8,
    _: usize,
    _: *mut Buf,
    error: *mut abi::Error,
) -> i32 {
    // SAFETY: the host passes a valid, zeroed error.
    unsafe { (*error).retry_after_ms = 5_000 };
    abi::STATUS_QUOTA
}

/// A put that reports the object missing, which only a get may.
unsafe extern "C" fn put_not_found(
    _: *mut c_void,
    _: *const u8,
    _: usize,
    _: *const u8,
    _: usize,
    error: *mut abi::Error,
) -> i32 {
    // SAFETY: the host passes a valid, zeroed error.
    unsafe { (*error).message = into_buf(b"no such bucket".to_vec()) };
    abi::STATUS_NOT_FOUND
}

unsafe extern "C" fn list_malformed(
    _: *mut c_void,
    _: *const u8,
    _: usize,
    entries: *mut Buf,
    _: *mut abi::Error,
) -> i32 {
    // SAFETY: the host passes a valid, empty entries buffer.
    unsafe { entries.write(into_buf(b"a\t1\nb 2\n".to_vec())) };
    abi::STATUS_OK
}

static BROKEN: ProviderTableV1 = ProviderTableV1 {
    put: Some(put_unknown_status),
    remove: Some(remove_quota_silently),
    list: Some(list_malformed),
    ..sdk::__table::<Memory>(b"broken\0", b"0\0")
};

static LOSSY: ProviderTableV1 = ProviderTableV1 {
    put: Some(put_transient_with_bad_utf8),
    get: Some(get_quota_with_retry_after),
    ..sdk::__table::<Memory>(b"lossy\0", b"0\0")
};

static MISSING: ProviderTableV1 = ProviderTableV1 {
    put: Some(put_not_found),
    ..sdk::__table::<Memory>(b"missing\0", b"0\0")
};

#[test]
fn an_unknown_status_is_a_permanent_error() {
    let err = instance(&BROKEN).put("a", b"x").expect_err("status 42");
    assert_eq!(err.kind(), ErrorKind::Permanent);
    assert_eq!(
        err.message(),
        "plugin \"broken\" returned unknown status 42 from put \"a\""
    );
}

#[test]
fn a_malformed_list_is_a_permanent_error() {
    let err = instance(&BROKEN).list("").expect_err("malformed");
    assert_eq!(err.kind(), ErrorKind::Permanent);
    assert!(
        err.message().starts_with(
            "plugin \"broken\" returned a malformed list entry from list \"\": line 2"
        ),
        "{err}"
    );
}

#[test]
fn a_missing_message_is_replaced_by_the_kind() {
    let err = instance(&BROKEN).remove("a").expect_err("quota");
    assert_eq!(err.kind(), ErrorKind::Quota);
    assert_eq!(
        err.message(),
        "plugin \"broken\" remove \"a\": storage full (the plugin gave no message)"
    );
}

#[test]
fn invalid_utf8_in_a_message_is_replaced() {
    let err = instance(&LOSSY).put("a", b"x").expect_err("transient");
    assert!(err.kind().is_transient());
    assert_eq!(
        err.message(),
        "plugin \"lossy\" put \"a\": server said \u{fffd}"
    );
}

#[test]
fn a_retry_after_crosses_with_a_transient_error_only() {
    let transient = instance(&LOSSY).put("a", b"x").expect_err("transient");
    assert_eq!(transient.retry_after(), Some(Duration::from_millis(1_500)));
    let silent = instance(&BROKEN)
        .remove("a")
        .expect_err("quota, no retry-after");
    assert_eq!(silent.retry_after(), None);
    let quota = instance(&LOSSY).get("a").expect_err("quota");
    assert_eq!(quota.kind(), ErrorKind::Quota);
    assert_eq!(
        quota.retry_after(),
        None,
        "ignored for anything but TRANSIENT"
    );
}

#[test]
fn not_found_from_anything_but_get_is_permanent_and_says_the_target_went_away() {
    let err = instance(&MISSING).put("a", b"x").expect_err("not found");
    assert_eq!(err.kind(), ErrorKind::Permanent);
    assert_eq!(
        err.message(),
        "the target went away during put \"a\": its directory, mount or bucket is gone (plugin \
         \"missing\" answered NOT_FOUND: \"no such bucket\")"
    );
}

// A plugin whose answers claim more than any repository holds. Nothing is allocated: the
// host must refuse an answer by its length, before it reads a byte of it.

static ONE_BYTE: [u8; 1] = [0];

fn claimed(len: usize) -> Buf {
    Buf {
        ptr: ONE_BYTE.as_ptr().cast_mut(),
        len,
        cap: 0,
    }
}

unsafe extern "C" fn get_huge(
    _: *mut c_void,
    _: *const u8,
    _: usize,
    data: *mut Buf,
    _: *mut abi::Error,
) -> i32 {
    // SAFETY: the host passes a valid, empty data buffer.
    unsafe { data.write(claimed(limits::MAX_OBJECT_BYTES as usize + 1)) };
    abi::STATUS_OK
}

unsafe extern "C" fn list_huge(
    _: *mut c_void,
    _: *const u8,
    _: usize,
    entries: *mut Buf,
    _: *mut abi::Error,
) -> i32 {
    // SAFETY: the host passes a valid, empty entries buffer.
    unsafe { entries.write(claimed(limits::MAX_LIST_BYTES as usize + 1)) };
    abi::STATUS_OK
}

unsafe extern "C" fn remove_with_a_long_message(
    _: *mut c_void,
    _: *const u8,
    _: usize,
    error: *mut abi::Error,
) -> i32 {
    // SAFETY: the host passes a valid, zeroed error.
    unsafe { (*error).message = into_buf(vec![b'x'; 1 << 20]) };
    abi::STATUS_PERMANENT
}

/// The claimed buffers point at a static byte: freeing them is a no-op, but the message is
/// the SDK's own and goes back to it.
unsafe extern "C" fn free_claimed(buf: *mut Buf) {
    // SAFETY: the host passes a buffer this plugin filled.
    if unsafe { (*buf).cap } != 0 {
        // SAFETY: as the SDK's `free_buf` requires: a buffer it made.
        unsafe { crate::sdk::__shim_free_buf(buf) }
    }
}

static GREEDY: ProviderTableV1 = ProviderTableV1 {
    get: Some(get_huge),
    list: Some(list_huge),
    remove: Some(remove_with_a_long_message),
    free_buf: Some(free_claimed),
    ..sdk::__table::<Memory>(b"greedy\0", b"0\0")
};

#[test]
fn an_object_larger_than_any_repository_holds_is_refused_unread() {
    let err = instance(&GREEDY).get("data/a").expect_err("too large");
    assert_eq!(err.kind(), ErrorKind::Permanent);
    assert!(
        err.message().starts_with(&format!(
            "plugin \"greedy\" answered get \"data/a\" with {} bytes, more than the {}",
            limits::MAX_OBJECT_BYTES + 1,
            limits::MAX_OBJECT_BYTES
        )),
        "{err}"
    );
}

#[test]
fn a_listing_larger_than_any_repository_has_is_refused_unread() {
    let err = instance(&GREEDY).list("").expect_err("too large");
    assert_eq!(err.kind(), ErrorKind::Permanent);
    assert!(err.message().contains("answered list \"\" with"), "{err}");
}

#[test]
fn a_long_message_is_cut() {
    let err = instance(&GREEDY).remove("a").expect_err("permanent");
    let prefix = "plugin \"greedy\" remove \"a\": ";
    assert_eq!(
        err.message().len(),
        prefix.len() + limits::MAX_MESSAGE_BYTES
    );
}

static SHORT: ProviderTableV1 = ProviderTableV1 { size: 8, ..GOOD };
static V2_TABLE: ProviderTableV1 = ProviderTableV1 {
    abi_version: 1,
    ..GOOD
};
static NO_GET: ProviderTableV1 = ProviderTableV1 { get: None, ..GOOD };
static NO_NAME: ProviderTableV1 = ProviderTableV1 {
    name: std::ptr::null(),
    ..GOOD
};

#[test]
fn broken_tables_are_refused_with_the_reason() {
    for (table, problem) in [
        (&SHORT, "it is 8 bytes long, but a v1 table is"),
        (&V2_TABLE, "it says ABI v1, but the magic said v2"),
        (&NO_GET, "its get function is null"),
        (&NO_NAME, "its name is null"),
    ] {
        let err = plugin(table).expect_err(problem).to_string();
        assert!(
            err.starts_with("plugin /plugins/libtest.so has an invalid provider table: "),
            "{err}"
        );
        assert!(err.contains(problem), "{err}");
    }
}

#[test]
fn the_magic_is_checked_first() {
    let path = Path::new("/x/libfoo.so");
    let good = PluginMagic {
        magic: abi::MAGIC,
        abi_version: 1,
        reserved: 0,
    };
    assert!(check_magic(path, &good).is_ok());
    let v2 = PluginMagic {
        abi_version: 2,
        ..good
    };
    assert!(check_magic(path, &v2).is_ok(), "this host speaks v1 and v2");
    let v3 = PluginMagic {
        abi_version: 3,
        ..good
    };
    assert_eq!(
        check_magic(path, &v3).expect_err("v3").to_string(),
        "plugin /x/libfoo.so was built for plugin ABI v3, but this sealbackd speaks v2: \
         rebuild the plugin against sealback-plugin-api v2 (or upgrade sealbackd)"
    );
    let v0 = PluginMagic {
        abi_version: 0,
        ..good
    };
    assert_eq!(
        check_magic(path, &v0).expect_err("v0").to_string(),
        "plugin /x/libfoo.so was built for plugin ABI v0, but this sealbackd speaks v2: \
         rebuild the plugin against sealback-plugin-api v2 (or upgrade sealbackd)"
    );
    let other = PluginMagic {
        magic: *b"NOTMAGIC",
        ..good
    };
    let err = check_magic(path, &other)
        .expect_err("bad magic")
        .to_string();
    assert!(err.starts_with("/x/libfoo.so is not a sealback plugin: its sealback_plugin_magic starts with \"NOTMAGIC\""), "{err}");
    assert!(check_magic(path, std::ptr::null()).is_err());
}

/// A table as a later ABI version might spell it: v1's fields, then one more.
#[repr(C)]
struct TableV2 {
    v1: ProviderTableV1,
    flush: Option<unsafe extern "C" fn(*mut c_void) -> i32>,
}

static V2: TableV2 = TableV2 {
    v1: ProviderTableV1 {
        size: size_of::<TableV2>() as u32,
        abi_version: 2,
        ..GOOD
    },
    flush: None,
};

#[test]
fn a_table_bigger_than_v1s_is_read_only_up_to_its_v1_fields() {
    // SAFETY: the table and everything it points at are static, and `size` covers all of it.
    let plugin = unsafe { Plugin::from_table(Path::new("/p/libv2.so"), 2, &V2.v1, None) };
    let plugin = plugin.expect("a v1 host uses the v1 part");
    assert_eq!(plugin.abi_version(), 2);
    let instance = plugin.open("{}").expect("open");
    instance
        .put("a", b"1")
        .expect("put through the v1 function");
    assert_eq!(instance.get("a").expect("get"), &b"1"[..]);
}

#[test]
fn a_missing_file_is_reported_with_its_path() {
    let err = Plugin::load(Path::new("/nonexistent/libnothing.so")).expect_err("missing");
    assert!(matches!(err, LoadError::Open { .. }));
    assert!(
        err.to_string()
            .starts_with("cannot load plugin /nonexistent/libnothing.so: "),
        "{err}"
    );
}

#[test]
#[cfg(target_os = "linux")]
fn a_library_without_the_magic_is_not_a_plugin() {
    let err = Plugin::load(Path::new("libc.so.6")).expect_err("libc is no plugin");
    assert_eq!(
        err.to_string(),
        "libc.so.6 is not a sealback plugin: it does not export sealback_plugin_magic; check \
         the plugin path in the configuration"
    );
}
