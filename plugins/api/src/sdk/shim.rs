//! The `extern "C"` functions behind a plugin's table, generic over its [`Provider`].
//!
//! Each shim checks its pointers, borrows the host's inputs for the duration of the call, runs
//! the provider inside `catch_unwind`, and reports the outcome as ABI v1 says: a status code,
//! an error message and retry-after in the `error` struct, results in buffers allocated here
//! and freed by [`__shim_free_buf`]. These functions are compiled into the plugin, so "allocated here" means
//! the plugin's allocator, whatever the host uses.

use std::any::Any;
use std::ffi::c_void;
use std::mem::ManuallyDrop;
use std::panic::{self, AssertUnwindSafe};
use std::slice;

use super::Provider;
use crate::abi::{self, Buf, PluginMagic, ProviderTableV1};
use crate::error::ProviderError;
use crate::limits;
use crate::listing;
use crate::name::{validate_list_prefix, validate_object_name};

static MAGIC: PluginMagic = PluginMagic {
    magic: abi::MAGIC,
    abi_version: abi::ABI_VERSION,
    reserved: 0,
};

/// The body of `sealback_plugin_magic`.
pub fn __magic() -> *const PluginMagic {
    &MAGIC
}

/// `text` followed by a NUL byte, at compile time; `N` must be `text.len() + 1`.
pub const fn __nul_terminated<const N: usize>(text: &str) -> [u8; N] {
    let bytes = text.as_bytes();
    assert!(
        N == bytes.len() + 1,
        "the array must have room for the text and a NUL byte"
    );
    let mut out = [0; N];
    let mut i = 0;
    while i < bytes.len() {
        assert!(
            bytes[i] != 0,
            "a provider's NAME and VERSION must not contain NUL bytes"
        );
        out[i] = bytes[i];
        i += 1;
    }
    out
}

/// The function table for `T`; `name` and `version` are NUL-terminated.
pub const fn __table<T: Provider>(name: &'static [u8], version: &'static [u8]) -> ProviderTableV1 {
    assert!(
        name.len() > 1 && name[name.len() - 1] == 0,
        "NAME must be non-empty, NUL-terminated"
    );
    assert!(
        version.len() > 1 && version[version.len() - 1] == 0,
        "VERSION: non-empty, NUL-ended"
    );
    ProviderTableV1 {
        size: size_of::<ProviderTableV1>() as u32,
        abi_version: abi::ABI_VERSION,
        name: name.as_ptr().cast(),
        version: version.as_ptr().cast(),
        open: Some(__shim_open::<T>),
        close: Some(__shim_close::<T>),
        put: Some(__shim_put::<T>),
        get: Some(__shim_get::<T>),
        list: Some(__shim_list::<T>),
        remove: Some(__shim_remove::<T>),
        free_buf: Some(__shim_free_buf),
    }
}

/// `open`: parses nothing itself; hands the options to [`Provider::open`] and boxes the result.
///
/// # Safety
/// ABI v1: `options` is readable for `options_len` bytes (or `options_len` is 0); `instance` and
/// `error` are null or valid for writes, and `*error` is zeroed.
pub unsafe extern "C" fn __shim_open<T: Provider>(
    options: *const u8,
    options_len: usize,
    instance: *mut *mut c_void,
    error: *mut abi::Error,
) -> i32 {
    // SAFETY: the host lends `options` and `instance` as this function's contract says.
    let body = || unsafe { open_instance(options, options_len, instance, T::open) };
    // SAFETY: the host lends `error` as this function's contract says.
    unsafe { guarded("open", error, body) }
}

/// What `open` and `open_v2` share: reads the options, opens the provider with `open`, and
/// hands the host the instance.
///
/// # Safety
/// `options` is readable for `options_len` bytes (or `options_len` is 0); `instance` is null
/// or valid for writes.
pub(super) unsafe fn open_instance<T: Provider>(
    options: *const u8,
    options_len: usize,
    instance: *mut *mut c_void,
    open: impl FnOnce(&str) -> Result<T, ProviderError>,
) -> Result<(), ProviderError> {
    if instance.is_null() {
        return Err(ProviderError::permanent(
            "the host passed a null instance pointer",
        ));
    }
    // SAFETY: the host lends `options_len` readable bytes at `options` for this call.
    let options = unsafe { borrow(options, options_len, "options") }?;
    let options = std::str::from_utf8(options).map_err(|err| {
        ProviderError::invalid_config(format!("the options are not valid UTF-8: {err}"))
    })?;
    let provider = Box::new(open(options)?);
    // SAFETY: `instance` is not null, and the host lends it for writing during this call.
    unsafe { instance.write(Box::into_raw(provider).cast()) };
    Ok(())
}

/// `close`: drops the instance that `__shim_open::<T>` created.
///
/// # Safety
/// `instance` is null or came from `__shim_open::<T>`, and no other call on it is running or
/// will run.
pub unsafe extern "C" fn __shim_close<T: Provider>(instance: *mut c_void) {
    if instance.is_null() {
        return;
    }
    // SAFETY: `instance` came from `Box::into_raw` in `__shim_open::<T>`, and the host closes it
    // once, after every other call on it has returned, so the box is ours to drop.
    let provider = unsafe { Box::from_raw(instance.cast::<T>()) };
    // `close` cannot report anything; the panic hook has already printed the panic.
    let _ = panic::catch_unwind(AssertUnwindSafe(move || drop(provider)));
}

/// `put`: validates the name and calls [`Provider::put`].
///
/// # Safety
/// ABI v1: `instance` came from `__shim_open::<T>` and is not closed; `name` and `data` are
/// readable for their lengths; `error` is null or valid for writes, and `*error` is zeroed.
pub unsafe extern "C" fn __shim_put<T: Provider>(
    instance: *mut c_void,
    name: *const u8,
    name_len: usize,
    data: *const u8,
    data_len: usize,
    error: *mut abi::Error,
) -> i32 {
    let body = || {
        // SAFETY: the host lends a live instance and readable inputs, as the contract says.
        let (provider, name, data) = unsafe {
            (
                provider::<T>(instance)?,
                object_name(name, name_len)?,
                borrow(data, data_len, "data")?,
            )
        };
        provider.put(name, data)
    };
    // SAFETY: the host lends `error` as this function's contract says.
    unsafe { guarded("put", error, body) }
}

/// `get`: validates the name, calls [`Provider::get`] and hands the bytes over in `data`.
///
/// # Safety
/// ABI v1: `instance` came from `__shim_open::<T>` and is not closed; `name` is readable for
/// `name_len` bytes; `data` and `error` are null or valid for writes and zeroed.
pub unsafe extern "C" fn __shim_get<T: Provider>(
    instance: *mut c_void,
    name: *const u8,
    name_len: usize,
    data: *mut Buf,
    error: *mut abi::Error,
) -> i32 {
    let body = || {
        // SAFETY: the host lends a live instance and a readable name, as the contract says.
        let (provider, name) = unsafe { (provider::<T>(instance)?, object_name(name, name_len)?) };
        let bytes = provider.get(name)?;
        if bytes.len() as u64 > limits::MAX_OBJECT_BYTES {
            return Err(ProviderError::permanent(format!(
                "the provider read {} bytes for {name:?}, more than the {} any object may \
                 have; the storage answered with something that is not a sealback object",
                bytes.len(),
                limits::MAX_OBJECT_BYTES
            )));
        }
        // SAFETY: the host lends `data` for writing, as the contract says.
        unsafe { hand_over(data, bytes, "data") }
    };
    // SAFETY: the host lends `error` as this function's contract says.
    unsafe { guarded("get", error, body) }
}

/// `list`: validates the prefix, calls [`Provider::list`], checks and encodes the entries.
///
/// # Safety
/// ABI v1: `instance` came from `__shim_open::<T>` and is not closed; `prefix` is readable for
/// `prefix_len` bytes; `entries` and `error` are null or valid for writes and zeroed.
pub unsafe extern "C" fn __shim_list<T: Provider>(
    instance: *mut c_void,
    prefix: *const u8,
    prefix_len: usize,
    entries: *mut Buf,
    error: *mut abi::Error,
) -> i32 {
    let body = || {
        // SAFETY: the host lends a live instance and a readable prefix, as the contract says.
        let (provider, prefix) = unsafe {
            (
                provider::<T>(instance)?,
                borrow(prefix, prefix_len, "prefix")?,
            )
        };
        let prefix = std::str::from_utf8(prefix)
            .map_err(|_| ProviderError::permanent("the list prefix is not valid UTF-8"))?;
        validate_list_prefix(prefix).map_err(|err| ProviderError::permanent(err.to_string()))?;
        let listed = provider.list(prefix)?;
        if listed.len() > limits::MAX_LIST_ENTRIES {
            return Err(ProviderError::permanent(format!(
                "the provider listed {} objects under {prefix:?}, more than the {} a \
                 repository may hold; the storage answered with something that is not a \
                 sealback repository",
                listed.len(),
                limits::MAX_LIST_ENTRIES
            )));
        }
        for entry in &listed {
            validate_object_name(&entry.name)
                .map_err(|err| ProviderError::permanent(format!("the provider listed an {err}")))?;
            if !entry.name.starts_with(prefix) {
                return Err(ProviderError::permanent(format!(
                    "the provider listed {:?}, which does not start with the prefix {prefix:?}",
                    entry.name
                )));
            }
        }
        // SAFETY: the host lends `entries` for writing, as the contract says.
        unsafe { hand_over(entries, listing::encode(&listed), "entries") }
    };
    // SAFETY: the host lends `error` as this function's contract says.
    unsafe { guarded("list", error, body) }
}

/// `remove`: validates the name and calls [`Provider::remove`].
///
/// # Safety
/// ABI v1: `instance` came from `__shim_open::<T>` and is not closed; `name` is readable for
/// `name_len` bytes; `error` is null or valid for writes, and `*error` is zeroed.
pub unsafe extern "C" fn __shim_remove<T: Provider>(
    instance: *mut c_void,
    name: *const u8,
    name_len: usize,
    error: *mut abi::Error,
) -> i32 {
    let body = || {
        // SAFETY: the host lends a live instance and a readable name, as the contract says.
        let (provider, name) = unsafe { (provider::<T>(instance)?, object_name(name, name_len)?) };
        provider.remove(name)
    };
    // SAFETY: the host lends `error` as this function's contract says.
    unsafe { guarded("remove", error, body) }
}

/// `free_buf`: gives a buffer this plugin handed out back to its allocator and empties it, so
/// freeing it twice is harmless.
///
/// # Safety
/// `buf` is null, or points at an empty buffer or one this plugin's shims filled.
pub unsafe extern "C" fn __shim_free_buf(buf: *mut Buf) {
    if buf.is_null() {
        return;
    }
    // SAFETY: `buf` is not null and the host lends it for this call.
    let buf = unsafe { std::mem::replace(&mut *buf, Buf::empty()) };
    if !buf.ptr.is_null() {
        // SAFETY: a non-null buffer was made by `into_buf` from a `Vec<u8>` this plugin
        // allocated, with its pointer, length and capacity unchanged; the host's copy has been
        // emptied above, so the allocation is freed once.
        super::recycle::give_back(unsafe { Vec::from_raw_parts(buf.ptr, buf.len, buf.cap) });
    }
}

/// Runs a shim's body, catching a panic, and reports its outcome: the status is returned, the
/// message and retry-after of an error go to `error`.
///
/// # Safety
/// `error` is null or valid for writes and holds no allocation (it is overwritten).
pub(super) unsafe fn guarded(
    op: &str,
    error: *mut abi::Error,
    body: impl FnOnce() -> Result<(), ProviderError>,
) -> i32 {
    // A panic may leave the provider half-way through a call; the trait's contract tells
    // providers to poison themselves if that matters, so asserting unwind safety is sound.
    let err = match panic::catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => return abi::STATUS_OK,
        Ok(Err(err)) => err,
        Err(payload) => ProviderError::permanent(format!(
            "provider panicked in {op}: {}",
            panic_message(payload.as_ref())
        )),
    };
    if !error.is_null() {
        // SAFETY: the caller guarantees `error` is valid for writes and holds nothing to leak.
        unsafe {
            error.write(abi::Error {
                message: into_buf(err.message().as_bytes().to_vec()),
                retry_after_ms: err.retry_after_ms(),
            })
        };
    }
    err.kind().status()
}

fn panic_message(payload: &(dyn Any + Send)) -> &str {
    if let Some(text) = payload.downcast_ref::<&str>() {
        text
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text
    } else {
        "(a panic payload that is not a string)"
    }
}

/// The provider behind an instance pointer.
///
/// # Safety
/// `instance` is null or came from `__shim_open::<T>` and has not been closed.
pub(super) unsafe fn provider<'a, T: Provider>(
    instance: *mut c_void,
) -> Result<&'a T, ProviderError> {
    if instance.is_null() {
        return Err(ProviderError::permanent("the host passed a null instance"));
    }
    // SAFETY: a non-null instance points at the `T` boxed by `__shim_open::<T>`, alive until
    // `close`, which the host calls only after this call has returned.
    Ok(unsafe { &*instance.cast::<T>() })
}

/// The host's `(ptr, len)` input as a slice; null is allowed for an empty input.
///
/// # Safety
/// `ptr` is readable for `len` bytes, which stay unchanged for `'a`.
pub(super) unsafe fn borrow<'a>(
    ptr: *const u8,
    len: usize,
    what: &str,
) -> Result<&'a [u8], ProviderError> {
    if len == 0 {
        return Ok(&[]);
    }
    if ptr.is_null() {
        return Err(ProviderError::permanent(format!(
            "the host passed a null {what} pointer with length {len}"
        )));
    }
    // SAFETY: `ptr` is not null and the caller guarantees `len` readable, unchanging bytes.
    Ok(unsafe { slice::from_raw_parts(ptr, len) })
}

/// The host's object name as a validated `&str`.
///
/// # Safety
/// As for [`borrow`].
unsafe fn object_name<'a>(ptr: *const u8, len: usize) -> Result<&'a str, ProviderError> {
    // SAFETY: passed on from the caller.
    let bytes = unsafe { borrow(ptr, len, "name") }?;
    let name = std::str::from_utf8(bytes)
        .map_err(|_| ProviderError::permanent("the object name is not valid UTF-8"))?;
    validate_object_name(name).map_err(|err| ProviderError::permanent(err.to_string()))?;
    Ok(name)
}

/// Writes `bytes` to the host's out-buffer `out`; the host frees it with `free_buf`.
///
/// # Safety
/// `out` is null or valid for writes and holds no allocation (it is overwritten).
unsafe fn hand_over(out: *mut Buf, bytes: Vec<u8>, what: &str) -> Result<(), ProviderError> {
    if out.is_null() {
        return Err(ProviderError::permanent(format!(
            "the host passed a null {what} buffer"
        )));
    }
    // SAFETY: `out` is not null and the caller guarantees it is valid for writes.
    unsafe { out.write(into_buf(bytes)) };
    Ok(())
}

/// Takes a vector apart into a [`Buf`]; only [`__shim_free_buf`] puts it back together.
pub(crate) fn into_buf(bytes: Vec<u8>) -> Buf {
    if bytes.capacity() == 0 {
        return Buf::empty();
    }
    let mut bytes = ManuallyDrop::new(bytes);
    Buf {
        ptr: bytes.as_mut_ptr(),
        len: bytes.len(),
        cap: bytes.capacity(),
    }
}
