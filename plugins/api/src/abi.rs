//! The C ABI v1, exactly as `include/sealback_plugin.h` spells it. `docs/plugin-abi.md` is its
//! specification: what each call must do, who frees which buffer, threads, versioning.
//!
//! Everything here is `#[repr(C)]`, and the ABI only grows: a later version appends fields to the
//! end of [`ProviderTableV1`] (whose `size` says how much of the table the plugin filled in),
//! never changes a type, field or signature already here, and keeps every appended field
//! optional. So a v1 host uses the first `size_of::<ProviderTableV1>()` bytes of a newer
//! plugin's table, and a newer host treats the fields a v1 table lacks as absent.
//! `tests/c_header.rs` compiles the header with the system C compiler and checks that it lays
//! every type out as this file does. The types are public so that a plugin can be written
//! without the [`sdk`](crate::sdk), in Rust or in C.

use std::ffi::{c_char, c_void};

/// The plugin ABI version this crate speaks: a host built with it loads plugins of versions
/// [`OLDEST_ABI_VERSION`] to this one, and the SDK builds plugins of this version.
pub const ABI_VERSION: u32 = 2;
/// The oldest plugin ABI version a host loads.
pub const OLDEST_ABI_VERSION: u32 = 1;

/// The first eight bytes of a [`PluginMagic`].
pub const MAGIC: [u8; 8] = *b"SBPLUGIN";

/// The call succeeded.
pub const STATUS_OK: i32 = 0;
/// The object does not exist.
pub const STATUS_NOT_FOUND: i32 = 1;
/// The call failed but retrying it later may succeed (network trouble, a busy server); the
/// plugin may say how long to wait in [`Error::retry_after_ms`].
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
    /// The ABI version the plugin was built for: 1, or a later one (which only appends).
    pub abi_version: u32,
    /// Zero; the host ignores it.
    pub reserved: u32,
}

/// A byte buffer allocated by the plugin and handed to the host, which gives it back to the
/// table's `free_buf` (never to its own allocator): `sealback_buf_t`. `ptr` may be null when
/// `len` is 0. The host may keep a buffer after the call that filled it and free it later,
/// from any thread, while the library is loaded: `free_buf` must allow that.
#[repr(C)]
#[derive(Debug)]
pub struct Buf {
    /// The first byte, or null for an empty buffer.
    pub ptr: *mut u8,
    /// How many bytes are initialised.
    pub len: usize,
    /// The plugin's own bookkeeping (for the SDK: the allocated capacity); the host only keeps
    /// it unchanged for `free_buf`.
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

/// How a call failed, beyond its status: `sealback_error_t`.
///
/// The host passes it zeroed (no message, no retry-after). On a failing status the plugin may
/// fill `message`, which the host gives back to `free_buf` like any other buffer, and, with
/// [`STATUS_TRANSIENT`] only, may set `retry_after_ms`.
#[repr(C)]
#[derive(Debug)]
pub struct Error {
    /// A UTF-8 message for people, allocated by the plugin; empty when it has none.
    pub message: Buf,
    /// With [`STATUS_TRANSIENT`]: how many milliseconds the host should wait before it retries.
    /// 0 means the plugin has no advice; the host ignores it with any other status.
    pub retry_after_ms: u64,
}

impl Error {
    /// What the host passes in before the call: no message, no retry-after.
    pub const fn empty() -> Self {
        Self {
            message: Buf::empty(),
            retry_after_ms: 0,
        }
    }
}

/// `open(options_json, options_len, &instance, &error)`.
pub type OpenFn = unsafe extern "C" fn(*const u8, usize, *mut *mut c_void, *mut Error) -> i32;
/// `close(instance)`.
pub type CloseFn = unsafe extern "C" fn(*mut c_void);
/// `put(instance, name, name_len, data, data_len, &error)`.
pub type PutFn =
    unsafe extern "C" fn(*mut c_void, *const u8, usize, *const u8, usize, *mut Error) -> i32;
/// `get(instance, name, name_len, &data, &error)`.
pub type GetFn = unsafe extern "C" fn(*mut c_void, *const u8, usize, *mut Buf, *mut Error) -> i32;
/// `list(instance, prefix, prefix_len, &entries, &error)`.
pub type ListFn = unsafe extern "C" fn(*mut c_void, *const u8, usize, *mut Buf, *mut Error) -> i32;
/// `remove(instance, name, name_len, &error)`.
pub type RemoveFn = unsafe extern "C" fn(*mut c_void, *const u8, usize, *mut Error) -> i32;
/// `free_buf(&buf)`.
pub type FreeBufFn = unsafe extern "C" fn(*mut Buf);

/// What `sealback_plugin_provider()` returns: the provider's function table, v1
/// (`sealback_provider_v1_t`).
///
/// The function pointers are `Option`s so that the host can see a null one (the layout of
/// `Option<extern "C" fn>` is that of a nullable C function pointer); a valid table has none.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ProviderTableV1 {
    /// `size_of` the table as the plugin was built: `size_of::<ProviderTableV1>()` for v1, more
    /// for a later version's table.
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

// ---- ABI v2: appended, every field optional (docs/plugin-abi.md §10) ----

/// Log levels of [`LogFn`]: how much the message matters to the operator.
pub const LOG_ERROR: u32 = 1;
/// A warning: something the operator may want to look at.
pub const LOG_WARN: u32 = 2;
/// What the plugin did that an operator reading the daemon's log wants to know.
pub const LOG_INFO: u32 = 3;
/// Detail for debugging.
pub const LOG_DEBUG: u32 = 4;

/// `log(ctx, level, message, len)`: the host's log channel (`message`: UTF-8, no secrets).
pub type LogFn = unsafe extern "C" fn(*mut c_void, u32, *const u8, usize);
/// `prompt(ctx, text, len)`: shows UTF-8 text to the person authorizing the target.
pub type PromptFn = unsafe extern "C" fn(*mut c_void, *const u8, usize);
/// `cancelled(ctx)`: non-zero once the host wants the running call to stop.
pub type CancelledFn = unsafe extern "C" fn(*mut c_void) -> i32;
/// `open_v2(options_json, options_len, host, &instance, &error)`: `open` with the host's services.
pub type OpenV2Fn =
    unsafe extern "C" fn(*const u8, usize, *const HostV2, *mut *mut c_void, *mut Error) -> i32;
/// `authorize(instance, io, &error)`: the interactive authorization step.
pub type AuthorizeFn = unsafe extern "C" fn(*mut c_void, *const AuthIo, *mut Error) -> i32;

/// What the host offers an instance for its whole life (`sealback_host_v2_t`), passed to
/// `open_v2`: valid from the call until `close` returns.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct HostV2 {
    /// `size_of::<HostV2>()` as the host was built; fields past it are absent.
    pub size: u32,
    /// Zero.
    pub reserved: u32,
    /// Passed back to `log`.
    pub ctx: *mut c_void,
    /// The host's log channel: callable from any thread, concurrently; null = no log.
    pub log: Option<LogFn>,
}

/// What the host lends one `authorize` call (`sealback_auth_io_t`): valid until it returns.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct AuthIo {
    /// `size_of::<AuthIo>()` as the host was built.
    pub size: u32,
    /// Zero.
    pub reserved: u32,
    /// Passed back to `prompt` and `cancelled`.
    pub ctx: *mut c_void,
    /// Shows text to the person (a URL and a code to enter); null = nobody to show it to.
    pub prompt: Option<PromptFn>,
    /// Polled while the call waits; non-zero = stop now and return `TRANSIENT`.
    pub cancelled: Option<CancelledFn>,
}

/// The v2 function table (`sealback_provider_v2_t`): the v1 table, then the v2 fields.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ProviderTableV2 {
    /// The v1 table; its `size` is `size_of::<ProviderTableV2>()`, its `abi_version` 2.
    pub v1: ProviderTableV1,
    /// `open` with a [`HostV2`]; null = the plugin uses none of the host's services.
    pub open_v2: Option<OpenV2Fn>,
    /// The interactive authorization step; null = the plugin needs none.
    pub authorize: Option<AuthorizeFn>,
}

// SAFETY: as for ProviderTableV1: immutable, pointing at static data only.
unsafe impl Sync for ProviderTableV2 {}
