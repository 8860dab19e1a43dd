//! An open provider instance: the four operations as safe methods.

use std::ffi::c_void;
use std::fmt;
use std::ptr::{self, NonNull};
use std::sync::Arc;

use bytes::Bytes;

use super::{Loaded, Plugin};
use crate::abi::{self, Buf, FreeBufFn};
use crate::error::{ErrorKind, ProviderError, duration_from_ms};
use crate::limits;
use crate::listing::{self, ObjectInfo};
use crate::name::{validate_list_prefix, validate_object_name};

/// An open instance of a plugin's provider. Closed when dropped.
///
/// Its methods keep the contract of [`Provider`](crate::sdk::Provider) (which they call through
/// the ABI), may be called from several threads at once, and name the plugin, the operation and
/// the object in their errors.
pub struct Instance {
    loaded: Arc<Loaded>,
    raw: NonNull<c_void>,
    /// What `open_v2` was lent (the log sink); dropped after `close` (see `Drop`).
    pub(super) _services: Option<Box<super::v2::Services>>,
}

// SAFETY: ABI v1 requires a plugin to accept calls on one instance from any thread, and `close`
// from whichever thread drops the instance.
unsafe impl Send for Instance {}
// SAFETY: ABI v1 requires a plugin to accept put/get/list/remove on one instance from several
// threads at once; `close` takes `&mut self` (through `Drop`), so it never overlaps them.
unsafe impl Sync for Instance {}

/// The call being made, for error messages.
#[derive(Clone, Copy)]
pub(super) enum Op<'a> {
    Open,
    Put(&'a str),
    Get(&'a str),
    List(&'a str),
    Remove(&'a str),
    Authorize,
}

impl fmt::Display for Op<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Open => f.write_str("open"),
            Self::Put(name) => write!(f, "put {name:?}"),
            Self::Get(name) => write!(f, "get {name:?}"),
            Self::List(prefix) => write!(f, "list {prefix:?}"),
            Self::Remove(name) => write!(f, "remove {name:?}"),
            Self::Authorize => f.write_str("authorize"),
        }
    }
}

impl Plugin {
    /// Opens an instance of the provider with its options, a JSON document.
    pub fn open(&self, options_json: &str) -> Result<Instance, ProviderError> {
        if self.loaded.functions.open_v2.is_some() {
            return self.open_with_log(options_json, Box::new(|_, _| {}));
        }
        let loaded = &self.loaded;
        let mut raw = ptr::null_mut();
        loaded.call(Op::Open, |error| {
            // SAFETY: the options are borrowed for the call; `raw` and `error` are valid for
            // writes and zeroed, as ABI v1 requires.
            unsafe {
                (loaded.functions.open)(options_json.as_ptr(), options_json.len(), &mut raw, error)
            }
        })?;
        let raw = NonNull::new(raw).ok_or_else(|| {
            ProviderError::permanent(format!(
                "plugin {:?} returned OK from open but no instance",
                loaded.name
            ))
        })?;
        Ok(Instance {
            loaded: Arc::clone(loaded),
            raw,
            _services: None,
        })
    }
}

impl Instance {
    pub(super) fn from_parts(
        loaded: Arc<Loaded>,
        raw: NonNull<c_void>,
        services: Option<Box<super::v2::Services>>,
    ) -> Self {
        Self {
            loaded,
            raw,
            _services: services,
        }
    }

    pub(super) fn loaded(&self) -> &Loaded {
        &self.loaded
    }

    pub(super) fn raw_ptr(&self) -> *mut c_void {
        self.raw.as_ptr()
    }

    /// Stores `data` as the object `name`, atomically; replaces an existing object.
    pub fn put(&self, name: &str, data: &[u8]) -> Result<(), ProviderError> {
        validate_object_name(name).map_err(|err| ProviderError::permanent(err.to_string()))?;
        let put = self.loaded.functions.put;
        self.loaded.call(Op::Put(name), |error| {
            // SAFETY: the instance is open; the inputs are borrowed for the call; `error` is
            // valid for writes and zeroed.
            unsafe {
                put(
                    self.raw.as_ptr(),
                    name.as_ptr(),
                    name.len(),
                    data.as_ptr(),
                    data.len(),
                    error,
                )
            }
        })
    }

    /// Reads the object `name`; [`ErrorKind::NotFound`] if it does not exist. The bytes
    /// stay in the plugin's buffer, uncopied, until the last reference to them is dropped.
    pub fn get(&self, name: &str) -> Result<Bytes, ProviderError> {
        validate_object_name(name).map_err(|err| ProviderError::permanent(err.to_string()))?;
        let get = self.loaded.functions.get;
        let mut data = self.loaded.buf();
        self.loaded.call(Op::Get(name), |error| {
            // SAFETY: as for `put`; `data` is valid for writes and empty.
            unsafe {
                get(
                    self.raw.as_ptr(),
                    name.as_ptr(),
                    name.len(),
                    data.as_mut_ptr(),
                    error,
                )
            }
        })?;
        self.loaded
            .within(Op::Get(name), data.buf.len as u64, limits::MAX_OBJECT_BYTES)?;
        Ok(Bytes::from_owner(PluginBytes {
            buf: data,
            _loaded: self.loaded.clone(),
        }))
    }

    /// Lists every object whose name starts with `prefix`.
    pub fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, ProviderError> {
        validate_list_prefix(prefix).map_err(|err| ProviderError::permanent(err.to_string()))?;
        let list = self.loaded.functions.list;
        let mut entries = self.loaded.buf();
        let op = Op::List(prefix);
        self.loaded.call(op, |error| {
            // SAFETY: as for `put`; `entries` is valid for writes and empty.
            unsafe {
                list(
                    self.raw.as_ptr(),
                    prefix.as_ptr(),
                    prefix.len(),
                    entries.as_mut_ptr(),
                    error,
                )
            }
        })?;
        self.loaded
            .within(op, entries.buf.len as u64, limits::MAX_LIST_BYTES)?;
        let listed = listing::parse(entries.bytes(), prefix).map_err(|err| {
            ProviderError::permanent(format!(
                "plugin {:?} returned a malformed list entry from {op}: {err}",
                self.loaded.name
            ))
        })?;
        if listed.len() > limits::MAX_LIST_ENTRIES {
            return Err(self.loaded.too_large(
                op,
                "entries",
                listed.len() as u64,
                limits::MAX_LIST_ENTRIES as u64,
            ));
        }
        Ok(listed)
    }

    /// Deletes the object `name`; succeeds if it does not exist.
    pub fn remove(&self, name: &str) -> Result<(), ProviderError> {
        validate_object_name(name).map_err(|err| ProviderError::permanent(err.to_string()))?;
        let remove = self.loaded.functions.remove;
        self.loaded.call(Op::Remove(name), |error| {
            // SAFETY: as for `put`.
            unsafe { remove(self.raw.as_ptr(), name.as_ptr(), name.len(), error) }
        })
    }

    /// The name of the provider this is an instance of.
    pub fn provider_name(&self) -> &str {
        &self.loaded.name
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        // SAFETY: the instance came from `open` and is closed once, here; `&mut self` means no
        // other call on it is running.
        unsafe { (self.loaded.functions.close)(self.raw.as_ptr()) }
    }
}

impl fmt::Debug for Instance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Instance")
            .field("provider", &self.loaded.name)
            .finish_non_exhaustive()
    }
}

impl Loaded {
    /// Makes one call that reports failure as a status and a `sealback_error_t`.
    ///
    /// An unknown status is a permanent error, and so is `NOT_FOUND` from anything but `get`:
    /// only an object can be missing, and the host acts on absence; from anything else it
    /// means the place the provider works in is gone.
    pub(super) fn call(
        &self,
        op: Op<'_>,
        f: impl FnOnce(*mut abi::Error) -> i32,
    ) -> Result<(), ProviderError> {
        let mut error = PluginError {
            error: abi::Error::empty(),
            free: self.functions.free_buf,
        };
        let status = f(&mut error.error);
        if status == abi::STATUS_OK {
            return Ok(());
        }
        let message = error.message();
        let message =
            String::from_utf8_lossy(&message[..message.len().min(limits::MAX_MESSAGE_BYTES)]);
        let kind = match ErrorKind::from_status(status) {
            // What a put, list or remove works in is gone: a directory removed, a disk
            // unmounted, a bucket deleted.
            Some(ErrorKind::NotFound) if !matches!(op, Op::Get(_)) => {
                return Err(ProviderError::permanent(format!(
                    "the target went away during {op}: its directory, mount or bucket is gone \
                     (plugin {:?} answered NOT_FOUND: {message:?})",
                    self.name
                )));
            }
            Some(kind) => kind,
            None => {
                return Err(ProviderError::permanent(format!(
                    "plugin {:?} returned unknown status {status} from {op}",
                    self.name
                )));
            }
        };
        let message = if message.is_empty() {
            format!(
                "plugin {:?} {op}: {kind} (the plugin gave no message)",
                self.name
            )
        } else {
            format!("plugin {:?} {op}: {message}", self.name)
        };
        let mut err = ProviderError::new(kind, message);
        if let Some(delay) = duration_from_ms(error.error.retry_after_ms) {
            // `with_retry_after` ignores it unless the error is transient, as ABI v1 says.
            err = err.with_retry_after(delay);
        }
        Err(err)
    }

    /// Refuses an answer of `len` bytes to `op` if it passes `limit`, before anything reads
    /// it: the plugin, or the storage behind it, sent more than any repository holds.
    fn within(&self, op: Op<'_>, len: u64, limit: u64) -> Result<(), ProviderError> {
        if len > limit {
            return Err(self.too_large(op, "bytes", len, limit));
        }
        Ok(())
    }

    fn too_large(&self, op: Op<'_>, unit: &str, len: u64, limit: u64) -> ProviderError {
        ProviderError::permanent(format!(
            "plugin {:?} answered {op} with {len} {unit}, more than the {limit} a sealback \
             repository ever needs; refused (is the target's storage answering with something \
             else than the repository, or is the plugin broken?)",
            self.name
        ))
    }

    /// An empty buffer for the plugin to fill; freed by the plugin when dropped.
    fn buf(&self) -> PluginBuf {
        PluginBuf {
            buf: Buf::empty(),
            free: self.functions.free_buf,
        }
    }
}

/// The `sealback_error_t` of one call; its message goes back to the plugin's `free_buf` on drop.
struct PluginError {
    error: abi::Error,
    free: FreeBufFn,
}

impl PluginError {
    fn message(&self) -> &[u8] {
        // SAFETY: the message is empty or was filled by the plugin, as for `PluginBuf::bytes`.
        unsafe { filled(&self.error.message) }
    }
}

impl Drop for PluginError {
    fn drop(&mut self) {
        // SAFETY: as for `PluginBuf`'s drop.
        unsafe { free(self.free, &mut self.error.message) }
    }
}

/// A buffer the plugin may fill, handed back to its `free_buf` on drop.
struct PluginBuf {
    buf: Buf,
    free: FreeBufFn,
}

impl PluginBuf {
    fn as_mut_ptr(&mut self) -> *mut Buf {
        &mut self.buf
    }

    fn bytes(&self) -> &[u8] {
        // SAFETY: the buffer is empty or was filled by the plugin and not yet freed.
        unsafe { filled(&self.buf) }
    }
}

impl Drop for PluginBuf {
    fn drop(&mut self) {
        // SAFETY: the buffer is empty or was filled by this plugin, whose `free_buf` is the one
        // allowed to free it; the library is loaded while its `Loaded` lives.
        unsafe { free(self.free, &mut self.buf) }
    }
}

/// A filled buffer handed out as [`Bytes`]: it goes back to the plugin's `free_buf` when
/// the last reference is dropped, and keeps the library loaded until then (fields drop in
/// order: the buffer first).
struct PluginBytes {
    buf: PluginBuf,
    _loaded: Arc<Loaded>,
}

// SAFETY: the buffer is owned by this value alone, and ABI v1 lets `free_buf` be called from
// any thread while the library is loaded, which `_loaded` ensures.
unsafe impl Send for PluginBytes {}

impl AsRef<[u8]> for PluginBytes {
    fn as_ref(&self) -> &[u8] {
        self.buf.bytes()
    }
}

/// The bytes a plugin put in a buffer.
///
/// # Safety
/// `buf` is empty, or the plugin filled it (ABI v1: `len` initialised bytes at `ptr`, untouched
/// until `free_buf`) and it has not been freed for as long as the slice lives.
unsafe fn filled(buf: &Buf) -> &[u8] {
    if buf.ptr.is_null() || buf.len == 0 {
        return &[];
    }
    // SAFETY: as the caller guarantees.
    unsafe { std::slice::from_raw_parts(buf.ptr, buf.len) }
}

/// Gives a buffer back to the plugin's `free_buf`, unless it is null.
///
/// # Safety
/// `buf` is empty or was filled by the plugin whose `free_buf` is `free`, which is loaded.
unsafe fn free(free: FreeBufFn, buf: &mut Buf) {
    if !buf.ptr.is_null() {
        // SAFETY: as the caller guarantees.
        unsafe { free(buf) }
    }
}
