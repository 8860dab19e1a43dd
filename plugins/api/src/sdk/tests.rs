//! The shims, driven through the table that `export_provider!` builds, as a host would.

use std::collections::BTreeMap;
use std::ffi::{CStr, c_void};
use std::ptr;
use std::sync::Mutex;
use std::time::Duration;

use super::Provider;
use crate::abi::{self, Buf, PluginMagic, ProviderTableV1};
use crate::{ErrorKind, ObjectInfo, ProviderError};

/// Objects in memory; the options say whether `open` fails or panics, a put of a name
/// starting with `panic` panics, a get of `busy` is a transient error with a retry-after, and
/// a get of `endless` answers more than any object may hold (a storage that never stops).
struct Memory {
    objects: Mutex<BTreeMap<String, Vec<u8>>>,
}

impl Provider for Memory {
    const NAME: &'static str = "memory";
    const VERSION: &'static str = "1.2.3";

    fn open(options_json: &str) -> Result<Self, ProviderError> {
        match options_json {
            "{}" => Ok(Self {
                objects: Mutex::new(BTreeMap::new()),
            }),
            "panic" => panic!("open was told to panic"),
            other => Err(ProviderError::invalid_config(format!(
                "unknown options {other}"
            ))),
        }
    }

    fn put(&self, name: &str, data: &[u8]) -> Result<(), ProviderError> {
        if name.starts_with("panic") {
            std::panic::panic_any(format!("asked to store {name}"));
        }
        self.objects
            .lock()
            .expect("lock")
            .insert(name.to_owned(), data.to_vec());
        Ok(())
    }

    fn get(&self, name: &str) -> Result<Vec<u8>, ProviderError> {
        if name == "busy" {
            return Err(ProviderError::transient("server busy")
                .with_retry_after(Duration::from_millis(250)));
        }
        if name == "endless" {
            // Zeroed pages are mapped lazily: this costs no memory until read.
            return Ok(vec![0; crate::limits::MAX_OBJECT_BYTES as usize + 1]);
        }
        let objects = self.objects.lock().expect("lock");
        objects
            .get(name)
            .cloned()
            .ok_or_else(|| ProviderError::not_found(format!("no {name}")))
    }

    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, ProviderError> {
        if prefix == "bad" {
            return Ok(vec![ObjectInfo {
                name: "a\tb".into(),
                size: 1,
            }]);
        }
        let objects = self.objects.lock().expect("lock");
        Ok(objects
            .iter()
            .filter(|(name, _)| name.starts_with(prefix))
            .map(|(name, data)| ObjectInfo {
                name: name.clone(),
                size: data.len() as u64,
            })
            .collect())
    }

    fn remove(&self, name: &str) -> Result<(), ProviderError> {
        self.objects.lock().expect("lock").remove(name);
        Ok(())
    }
}

crate::export_provider!(Memory);

// The functions the macro exported, looked up the way a C host would see them.
unsafe extern "C" {
    fn sealback_plugin_magic() -> *const PluginMagic;
    fn sealback_plugin_provider() -> *const ProviderTableV1;
}

fn table() -> &'static ProviderTableV1 {
    // SAFETY: the macro above defines this function; it returns a pointer to a static table.
    unsafe { &*sealback_plugin_provider() }
}

/// A buffer the plugin filled, read and freed through the table.
fn take(buf: &mut Buf) -> Vec<u8> {
    let bytes = if buf.ptr.is_null() {
        Vec::new()
    } else {
        // SAFETY: the plugin filled `buf` with `len` initialised bytes.
        unsafe { std::slice::from_raw_parts(buf.ptr, buf.len) }.to_vec()
    };
    let free = table().free_buf.expect("free_buf");
    // SAFETY: `buf` was filled by this plugin; freeing empties it.
    unsafe { free(buf) };
    assert!(buf.ptr.is_null() && buf.len == 0 && buf.cap == 0);
    bytes
}

fn status_and_message(status: i32, error: &mut abi::Error) -> (i32, String) {
    (
        status,
        String::from_utf8(take(&mut error.message)).expect("UTF-8 message"),
    )
}

fn open(options: &str) -> Result<*mut c_void, (i32, String)> {
    let mut instance = ptr::null_mut();
    let mut error = abi::Error::empty();
    let open = table().open.expect("open");
    // SAFETY: the inputs are borrowed for the call, the outputs are valid and empty.
    let status = unsafe { open(options.as_ptr(), options.len(), &mut instance, &mut error) };
    match status_and_message(status, &mut error) {
        (abi::STATUS_OK, _) => Ok(instance),
        failed => Err(failed),
    }
}

fn close(instance: *mut c_void) {
    // SAFETY: `instance` came from `open` and no other call on it is running.
    unsafe { table().close.expect("close")(instance) }
}

fn put(instance: *mut c_void, name: &[u8], data: &[u8]) -> (i32, String) {
    let mut error = abi::Error::empty();
    let put = table().put.expect("put");
    // SAFETY: as for `open`.
    let status = unsafe {
        put(
            instance,
            name.as_ptr(),
            name.len(),
            data.as_ptr(),
            data.len(),
            &mut error,
        )
    };
    status_and_message(status, &mut error)
}

fn get(instance: *mut c_void, name: &str) -> Result<Vec<u8>, (i32, String)> {
    let (mut data, mut error) = (Buf::empty(), abi::Error::empty());
    let get = table().get.expect("get");
    // SAFETY: as for `open`.
    let status = unsafe { get(instance, name.as_ptr(), name.len(), &mut data, &mut error) };
    let data = take(&mut data);
    match status_and_message(status, &mut error) {
        (abi::STATUS_OK, _) => Ok(data),
        failed => Err(failed),
    }
}

fn list(instance: *mut c_void, prefix: &str) -> Result<String, (i32, String)> {
    let (mut entries, mut error) = (Buf::empty(), abi::Error::empty());
    let list = table().list.expect("list");
    // SAFETY: as for `open`.
    let status = unsafe {
        list(
            instance,
            prefix.as_ptr(),
            prefix.len(),
            &mut entries,
            &mut error,
        )
    };
    let entries = String::from_utf8(take(&mut entries)).expect("UTF-8 list");
    match status_and_message(status, &mut error) {
        (abi::STATUS_OK, _) => Ok(entries),
        failed => Err(failed),
    }
}

fn remove(instance: *mut c_void, name: &str) -> (i32, String) {
    let mut error = abi::Error::empty();
    let remove = table().remove.expect("remove");
    // SAFETY: as for `open`.
    let status = unsafe { remove(instance, name.as_ptr(), name.len(), &mut error) };
    status_and_message(status, &mut error)
}

#[test]
fn the_magic_and_the_table_describe_the_provider() {
    // SAFETY: defined by the macro; returns a pointer to a static.
    let magic = unsafe { *sealback_plugin_magic() };
    assert_eq!(
        magic,
        PluginMagic {
            magic: *b"SBPLUGIN",
            abi_version: abi::ABI_VERSION,
            reserved: 0
        }
    );
    let table = table();
    assert_eq!(table.size as usize, size_of::<abi::ProviderTableV2>());
    assert_eq!(table.abi_version, abi::ABI_VERSION);
    // SAFETY: the table's strings are static and NUL-terminated.
    let (name, version) = unsafe { (CStr::from_ptr(table.name), CStr::from_ptr(table.version)) };
    assert_eq!(
        (name.to_str(), version.to_str()),
        (Ok("memory"), Ok("1.2.3"))
    );
}

#[test]
fn objects_round_trip_through_plugin_buffers() {
    let instance = open("{}").expect("open");
    let big: Vec<u8> = (0..3 << 20).map(|i| (i % 251) as u8).collect();
    assert_eq!(put(instance, b"big", &big), (abi::STATUS_OK, String::new()));
    assert_eq!(
        put(instance, b"dir/empty", b""),
        (abi::STATUS_OK, String::new())
    );
    assert_eq!(get(instance, "big"), Ok(big));
    assert_eq!(get(instance, "dir/empty"), Ok(Vec::new()));
    assert_eq!(
        list(instance, ""),
        Ok(format!("big\t{}\ndir/empty\t0\n", 3 << 20))
    );
    assert_eq!(list(instance, "dir/"), Ok("dir/empty\t0\n".into()));
    assert_eq!(remove(instance, "big"), (abi::STATUS_OK, String::new()));
    assert_eq!(remove(instance, "big"), (abi::STATUS_OK, String::new()));
    assert_eq!(
        get(instance, "big"),
        Err((abi::STATUS_NOT_FOUND, "no big".into()))
    );
    close(instance);
}

#[test]
fn an_empty_input_may_be_a_null_pointer() {
    let instance = open("{}").expect("open");
    let mut error = abi::Error::empty();
    let put = table().put.expect("put");
    // SAFETY: a null pointer with length 0 is an empty input.
    let status = unsafe { put(instance, b"n".as_ptr(), 1, ptr::null(), 0, &mut error) };
    assert_eq!(
        status_and_message(status, &mut error),
        (abi::STATUS_OK, String::new())
    );
    assert_eq!(get(instance, "n"), Ok(Vec::new()));
    close(instance);
}

#[test]
fn invalid_names_are_refused_before_the_provider_sees_them() {
    let instance = open("{}").expect("open");
    for name in [&b"../etc/passwd"[..], b"", b"a//b", b"a\tb", b"\xff"] {
        let (status, message) = put(instance, name, b"x");
        assert_eq!(status, abi::STATUS_PERMANENT, "{message}");
        assert!(message.contains("name"), "{message}");
    }
    // The provider stores any name it is given, so nothing stored means it saw none of them.
    assert_eq!(list(instance, ""), Ok(String::new()));
    assert_eq!(
        list(instance, "../").map_err(|e| e.0),
        Err(abi::STATUS_PERMANENT)
    );
    close(instance);
}

#[test]
fn a_provider_that_lists_an_invalid_name_is_reported() {
    let instance = open("{}").expect("open");
    let (status, message) = list(instance, "bad").expect_err("invalid name listed");
    assert_eq!(status, abi::STATUS_PERMANENT);
    assert!(
        message.contains("the provider listed an invalid object name"),
        "{message}"
    );
    close(instance);
}

#[test]
fn panics_become_permanent_errors_naming_the_operation() {
    let instance = open("{}").expect("open");
    let (status, message) = put(instance, b"panic/now", b"x");
    assert_eq!(status, abi::STATUS_PERMANENT);
    assert_eq!(
        message,
        "provider panicked in put: asked to store panic/now"
    );
    // The instance still works.
    assert_eq!(
        put(instance, b"after", b"y"),
        (abi::STATUS_OK, String::new())
    );
    close(instance);

    let (status, message) = open("panic").expect_err("open panics");
    assert_eq!(status, abi::STATUS_PERMANENT);
    assert_eq!(message, "provider panicked in open: open was told to panic");
}

#[test]
fn open_reports_invalid_config() {
    assert_eq!(
        open("{\"x\": 1}"),
        Err((
            abi::STATUS_INVALID_CONFIG,
            "unknown options {\"x\": 1}".into()
        ))
    );
    let error = open("\u{0}bad").expect_err("bad options");
    assert_eq!(error.0, abi::STATUS_INVALID_CONFIG);
}

#[test]
fn a_retry_after_reaches_the_error_struct() {
    let instance = open("{}").expect("open");
    let (mut data, mut error) = (Buf::empty(), abi::Error::empty());
    let get = table().get.expect("get");
    // SAFETY: as for `open`.
    let status = unsafe { get(instance, b"busy".as_ptr(), 4, &mut data, &mut error) };
    assert_eq!(error.retry_after_ms, 250);
    assert_eq!(
        status_and_message(status, &mut error),
        (abi::STATUS_TRANSIENT, "server busy".into())
    );
    assert!(take(&mut data).is_empty());
    // Other errors leave it zero.
    let mut error = abi::Error::empty();
    let remove = table().remove.expect("remove");
    // SAFETY: as for `open`.
    let status = unsafe { remove(instance, b"a//b".as_ptr(), 4, &mut error) };
    assert_eq!((status, error.retry_after_ms), (abi::STATUS_PERMANENT, 0));
    take(&mut error.message);
    close(instance);
}

#[test]
fn errors_map_to_their_status_codes() {
    for (error, status) in [
        (ProviderError::not_found("x"), abi::STATUS_NOT_FOUND),
        (ProviderError::transient("x"), abi::STATUS_TRANSIENT),
        (ProviderError::auth("x"), abi::STATUS_AUTH),
        (ProviderError::quota("x"), abi::STATUS_QUOTA),
        (ProviderError::permanent("x"), abi::STATUS_PERMANENT),
        (
            ProviderError::invalid_config("x"),
            abi::STATUS_INVALID_CONFIG,
        ),
    ] {
        assert_eq!(error.kind().status(), status);
    }
    assert!(ErrorKind::Transient.is_transient());
}

#[test]
fn freeing_an_empty_or_null_buffer_is_harmless() {
    let free = table().free_buf.expect("free_buf");
    let mut empty = Buf::empty();
    // SAFETY: an empty buffer and a null pointer are both allowed.
    unsafe {
        free(&mut empty);
        free(ptr::null_mut());
    }
}

#[test]
fn an_answer_larger_than_any_object_is_not_handed_over() {
    let instance = open("{}").expect("open");
    let (status, message) = get(instance, "endless").expect_err("too large");
    assert_eq!(status, abi::STATUS_PERMANENT);
    assert!(
        message.starts_with(&format!(
            "the provider read {} bytes for \"endless\", more than the {} any object may have",
            crate::limits::MAX_OBJECT_BYTES + 1,
            crate::limits::MAX_OBJECT_BYTES
        )),
        "{message}"
    );
    close(instance);
}
