//! The C ABI v1, exactly as `include/sealback_plugin.h` spells it.
//!
//! Everything here is `#[repr(C)]` and only ever appended to: a later ABI version adds fields at
//! the end of [`ProviderTableV1`] (the table's `size` field tells the host how much of it the
//! plugin knows about) and never changes or reorders the fields that are already here. The types
//! are public so that a plugin can be written without the [`sdk`](crate::sdk), in Rust or in C.

use std::ffi::{c_char, c_void};

/// The plugin ABI version this crate speaks.
pub const ABI_VERSION: u32 = 1;

/// The first eight bytes of a [`PluginMagic`].
pub const MAGIC: [u8; 8] = *b"SBPLUGIN";

/// The call succeeded.
pub const STATUS_OK: i32 = 0;
/// The object does not exist.
pub const STATUS_NOT_FOUND: i32 = 1;
/// The call failed but retrying it later may succeed (network trouble, a busy server).
pub const STATUS_TRANSIENT: i32 = 2;
/// The storage refused the credentials.
pub const STATUS_AUTH: i32 = 3;
/// The storage is full or over its quota.
pub const STATUS_QUOTA: i32 = 4;
/// The call failed and retrying it will not help.
pub const STATUS_PERMANENT: i32 = 5;
/// The options given to `open` are wrong.
pub const STATUS_INVALID_CONFIG: i32 = 6;

/// What `sealback_plugin_magic()` returns; the host checks it before it looks at anything else.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PluginMagic {
    /// Always [`MAGIC`].
    pub magic: [u8; 8],
    /// The ABI version the plugin was built for.
    pub abi_version: u32,
    /// Zero; the host ignores it.
    pub reserved: u32,
}

/// A byte buffer allocated by the plugin and handed to the host, which gives it back to the
/// table's `free_buf` (never to its own allocator). `ptr` may be null when `len` is 0.
#[repr(C)]
#[derive(Debug)]
pub struct Buf {
    /// The first byte, or null for an empty buffer.
    pub ptr: *mut u8,
    /// How many bytes are initialised.
    pub len: usize,
    /// How many bytes the plugin allocated; only `free_buf` needs it.
    pub cap: usize,
}

impl Buf {
    /// The buffer a caller passes in before the call: null, nothing allocated.
    pub const fn empty() -> Self {
        Self {
            ptr: std::ptr::null_mut(),
            len: 0,
            cap: 0,
        }
    }
}

/// `open(options_json, len, &instance, &error)`.
pub type OpenFn = unsafe extern "C" fn(*const u8, usize, *mut *mut c_void, *mut Buf) -> i32;
/// `close(instance)`.
pub type CloseFn = unsafe extern "C" fn(*mut c_void);
/// `put(instance, name, name_len, data, data_len, &error)`.
pub type PutFn =
    unsafe extern "C" fn(*mut c_void, *const u8, usize, *const u8, usize, *mut Buf) -> i32;
/// `get(instance, name, name_len, &data, &error)`.
pub type GetFn = unsafe extern "C" fn(*mut c_void, *const u8, usize, *mut Buf, *mut Buf) -> i32;
/// `list(instance, prefix, prefix_len, &entries, &error)`.
pub type ListFn = unsafe extern "C" fn(*mut c_void, *const u8, usize, *mut Buf, *mut Buf) -> i32;
/// `remove(instance, name, name_len, &error)`.
pub type RemoveFn = unsafe extern "C" fn(*mut c_void, *const u8, usize, *mut Buf) -> i32;
/// `free_buf(&buf)`.
pub type FreeBufFn = unsafe extern "C" fn(*mut Buf);

/// What `sealback_plugin_provider()` returns: the provider's function table, v1.
///
/// The function pointers are `Option`s so that the host can see a null one (the layout of
/// `Option<extern "C" fn>` is that of a nullable C function pointer); a valid table has none.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ProviderTableV1 {
    /// `size_of` the table as the plugin was built; at least `size_of::<ProviderTableV1>()`.
    pub size: u32,
    /// The ABI version the table follows; the same as the magic's.
    pub abi_version: u32,
    /// The provider's name, NUL-terminated and static (e.g. `"local"`).
    pub name: *const c_char,
    /// The provider's version, NUL-terminated and static.
    pub version: *const c_char,
    /// Creates an instance from JSON options.
    pub open: Option<OpenFn>,
    /// Destroys an instance; called once, after every other call on it has returned.
    pub close: Option<CloseFn>,
    /// Stores an object.
    pub put: Option<PutFn>,
    /// Reads an object.
    pub get: Option<GetFn>,
    /// Lists the objects under a prefix as `<name>\t<size>\n` lines.
    pub list: Option<ListFn>,
    /// Deletes an object.
    pub remove: Option<RemoveFn>,
    /// Frees a buffer the plugin handed out.
    pub free_buf: Option<FreeBufFn>,
}

// SAFETY: a table is immutable once built, and its two pointers point at static, immutable,
// NUL-terminated strings, so sharing a reference to it between threads cannot race. This is what
// lets a plugin keep its table in a `static`.
unsafe impl Sync for ProviderTableV1 {}

#[cfg(test)]
mod tests {
    use std::mem::offset_of;

    use super::*;

    /// The layout `include/sealback_plugin.h` gives a C compiler on a 64-bit target (checked
    /// with `offsetof` in C when the header was written).
    #[test]
    #[cfg(target_pointer_width = "64")]
    fn the_layout_matches_the_c_header() {
        assert_eq!(size_of::<PluginMagic>(), 16);
        assert_eq!(size_of::<Buf>(), 24);
        assert_eq!(size_of::<ProviderTableV1>(), 80);
        let offsets = [
            offset_of!(ProviderTableV1, size),
            offset_of!(ProviderTableV1, abi_version),
            offset_of!(ProviderTableV1, name),
            offset_of!(ProviderTableV1, version),
            offset_of!(ProviderTableV1, open),
            offset_of!(ProviderTableV1, close),
            offset_of!(ProviderTableV1, put),
            offset_of!(ProviderTableV1, get),
            offset_of!(ProviderTableV1, list),
            offset_of!(ProviderTableV1, remove),
            offset_of!(ProviderTableV1, free_buf),
        ];
        assert_eq!(offsets, [0, 4, 8, 16, 24, 32, 40, 48, 56, 64, 72]);
        assert_eq!(size_of::<Option<PutFn>>(), size_of::<PutFn>());
    }
}
