//! ABI v2 in the SDK: the host's services a provider may use ([`Host`]: the daemon's log), the
//! interactive authorization step ([`Authorization`]), and the shims behind `open_v2` and
//! `authorize`.

use std::ffi::c_void;

use super::Provider;
use super::shim::{guarded, open_instance, provider};
use crate::abi::{self, AuthIo, HostV2, ProviderTableV1, ProviderTableV2};

/// How much a log message matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Something failed.
    Error,
    /// Something an operator may want to look at.
    Warn,
    /// What the provider did that an operator wants to know.
    Info,
    /// Detail for debugging.
    Debug,
}

impl Level {
    fn code(self) -> u32 {
        match self {
            Self::Error => abi::LOG_ERROR,
            Self::Warn => abi::LOG_WARN,
            Self::Info => abi::LOG_INFO,
            Self::Debug => abi::LOG_DEBUG,
        }
    }
}

/// The host's services for one instance (ABI v2): a log channel into the daemon's log.
/// [`Host::none`] when the host is older than v2 or offers nothing; logging then does nothing.
#[derive(Debug, Clone, Copy)]
pub struct Host {
    ctx: *mut c_void,
    log: Option<abi::LogFn>,
}

// SAFETY: ABI v2 makes the host's `log` callable from any thread, concurrently, with its `ctx`,
// from `open_v2` until `close` returns, and an instance (which owns its `Host`) does not outlive
// its `close`.
unsafe impl Send for Host {}
// SAFETY: as above; `Host` itself is immutable.
unsafe impl Sync for Host {}

impl Host {
    /// No services: what a provider opened through v1's `open` gets.
    pub const fn none() -> Self {
        Self {
            ctx: std::ptr::null_mut(),
            log: None,
        }
    }

    /// Writes `message` (no secrets: it goes to the daemon's log) at `level`.
    pub fn log(&self, level: Level, message: &str) {
        if let Some(log) = self.log {
            // SAFETY: see the Send/Sync impls: the host keeps `log` and `ctx` valid while the
            // instance lives, and lends `message` only for the call.
            unsafe { log(self.ctx, level.code(), message.as_ptr(), message.len()) };
        }
    }
}

/// What the host lends one authorization: a way to show the person what to do, and whether
/// the host has given up waiting.
#[derive(Debug)]
pub struct Authorization<'a> {
    io: &'a AuthIo,
}

impl Authorization<'_> {
    /// Shows `text` to the person authorizing the target.
    pub fn prompt(&self, text: &str) {
        if let Some(prompt) = self.io.prompt {
            // SAFETY: the host lends `io` (and its ctx) for this call; `text` is borrowed only
            // during the callback.
            unsafe { prompt(self.io.ctx, text.as_ptr(), text.len()) };
        }
    }

    /// Whether the host wants the authorization to stop now (then return a transient error).
    pub fn cancelled(&self) -> bool {
        match self.io.cancelled {
            // SAFETY: as for `prompt`.
            Some(cancelled) => unsafe { cancelled(self.io.ctx) != 0 },
            None => false,
        }
    }
}

/// The v2 table for `T`: the v1 table, `open_v2`, and `authorize` when `T` has one.
pub const fn __table_v2<T: Provider>(v1: ProviderTableV1) -> ProviderTableV2 {
    let mut v1 = v1;
    v1.size = size_of::<ProviderTableV2>() as u32;
    ProviderTableV2 {
        v1,
        open_v2: Some(__shim_open_v2::<T>),
        authorize: if T::AUTHORIZES {
            Some(__shim_authorize::<T>)
        } else {
            None
        },
    }
}

/// `open_v2`: [`Provider::open_with_host`] with the host's services.
///
/// # Safety
/// ABI v2: as `open`, and `host` is null or valid until `close` returns.
pub unsafe extern "C" fn __shim_open_v2<T: Provider>(
    options: *const u8,
    options_len: usize,
    host: *const HostV2,
    instance: *mut *mut c_void,
    error: *mut abi::Error,
) -> i32 {
    let body = || {
        let services = if host.is_null() {
            Host::none()
        } else {
            // SAFETY: a non-null `host` is valid for reads; only the fields its size covers
            // are read.
            let raw = unsafe { host.read() };
            let has_log = raw.size as usize
                >= std::mem::offset_of!(HostV2, log) + size_of::<Option<abi::LogFn>>();
            Host {
                ctx: raw.ctx,
                log: if has_log { raw.log } else { None },
            }
        };
        // SAFETY: the host lends `options` and `instance` as this function's contract says.
        unsafe {
            open_instance(options, options_len, instance, |options| {
                T::open_with_host(options, services)
            })
        }
    };
    // SAFETY: the host lends `error` as this function's contract says.
    unsafe { guarded("open", error, body) }
}

/// `authorize`: [`Provider::authorize`].
///
/// # Safety
/// ABI v2: `instance` came from this plugin's `open`/`open_v2` and is not closed; `io` is
/// valid for reads until the call returns; `error` is null or valid for writes and zeroed.
pub unsafe extern "C" fn __shim_authorize<T: Provider>(
    instance: *mut c_void,
    io: *const AuthIo,
    error: *mut abi::Error,
) -> i32 {
    let body = || {
        // SAFETY: the host lends a live instance.
        let provider = unsafe { provider::<T>(instance)? };
        let empty = AuthIo {
            size: size_of::<AuthIo>() as u32,
            reserved: 0,
            ctx: std::ptr::null_mut(),
            prompt: None,
            cancelled: None,
        };
        let io = if io.is_null() {
            empty
        } else {
            // SAFETY: a non-null `io` is valid for reads until this call returns.
            unsafe { io.read() }
        };
        provider.authorize(&Authorization { io: &io })
    };
    // SAFETY: the host lends `error` as this function's contract says.
    unsafe { guarded("authorize", error, body) }
}
