//! The host side of ABI v2: opening an instance with a log sink (`open_v2`), and running a
//! plugin's interactive authorization step (`authorize`).

use std::ffi::c_void;
use std::ptr::{self, NonNull};
use std::sync::Arc;

use super::Plugin;
use super::instance::{Instance, Op};
use crate::abi::{AuthIo, HostV2};
use crate::error::ProviderError;

/// Where an instance's log lines go: `(level, message)`, `level` one of `abi::LOG_*`. Called
/// from the plugin's threads, concurrently.
pub type LogSink = Box<dyn Fn(u32, &str) + Send + Sync>;

/// What an instance opened with `open_v2` was lent, kept until after its `close`.
pub(super) struct Services {
    host: HostV2,
    _sink: Box<LogSink>,
}

/// The `log` the host gives plugins: hands the message to the sink in `ctx`.
///
/// # Safety
/// `ctx` is the `LogSink` box of a live `Services`; `message` is readable for `len` bytes.
unsafe extern "C" fn log_trampoline(ctx: *mut c_void, level: u32, message: *const u8, len: usize) {
    if ctx.is_null() || (message.is_null() && len > 0) {
        return;
    }
    // SAFETY: `ctx` points at the sink, alive until the instance's `close` has returned.
    let sink = unsafe { &*ctx.cast::<LogSink>() };
    let bytes = if len == 0 {
        &[][..]
    } else {
        // SAFETY: the plugin lends `len` readable bytes for this call.
        unsafe { std::slice::from_raw_parts(message, len.min(crate::limits::MAX_MESSAGE_BYTES)) }
    };
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        sink(level, &String::from_utf8_lossy(bytes));
    }));
}

impl Plugin {
    /// Opens an instance whose log lines go to `log` (ABI v2). A plugin without `open_v2` (a v1
    /// plugin) is opened with `open`, and `log` never hears from it.
    pub fn open_with_log(
        &self,
        options_json: &str,
        log: LogSink,
    ) -> Result<Instance, ProviderError> {
        let loaded = &self.loaded;
        let Some(open_v2) = loaded.functions.open_v2 else {
            return self.open(options_json);
        };
        let mut sink = Box::new(log);
        let mut services = Box::new(Services {
            host: HostV2 {
                size: size_of::<HostV2>() as u32,
                reserved: 0,
                ctx: (&raw mut *sink).cast(),
                log: Some(log_trampoline),
            },
            _sink: sink,
        });
        let mut raw = ptr::null_mut();
        loaded.call(Op::Open, |error| {
            // SAFETY: ABI v2's open_v2: borrowed options, a host struct (boxed, kept until after
            // close), zeroed outputs.
            unsafe {
                open_v2(
                    options_json.as_ptr(),
                    options_json.len(),
                    &raw mut services.host,
                    &mut raw,
                    error,
                )
            }
        })?;
        let raw = NonNull::new(raw).ok_or_else(|| {
            ProviderError::permanent(format!(
                "plugin {:?} returned OK from open_v2 but no instance",
                loaded.name
            ))
        })?;
        Ok(Instance::from_parts(
            Arc::clone(loaded),
            raw,
            Some(services),
        ))
    }

    /// Whether the plugin has an interactive authorization step (ABI v2 `authorize`).
    pub fn can_authorize(&self) -> bool {
        self.loaded.functions.authorize.is_some()
    }
}

/// The context of one `authorize` call's callbacks.
struct AuthContext<'a> {
    prompt: &'a mut dyn FnMut(&str),
    cancelled: &'a dyn Fn() -> bool,
}

/// # Safety
/// `ctx` is the `AuthContext` of a running `authorize`; `text` is readable for `len` bytes.
unsafe extern "C" fn prompt_trampoline(ctx: *mut c_void, text: *const u8, len: usize) {
    if ctx.is_null() || (text.is_null() && len > 0) {
        return;
    }
    // SAFETY: `ctx` is the context `Instance::authorize` lends for the call, used from the
    // plugin's calling thread or one it synchronises with (one callback at a time).
    let context = unsafe { &mut *ctx.cast::<AuthContext<'_>>() };
    let bytes = if len == 0 {
        &[][..]
    } else {
        // SAFETY: the plugin lends `len` readable bytes for this call.
        unsafe { std::slice::from_raw_parts(text, len.min(crate::limits::MAX_MESSAGE_BYTES)) }
    };
    let text = String::from_utf8_lossy(bytes);
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (context.prompt)(&text)));
}

/// # Safety
/// `ctx` is the `AuthContext` of a running `authorize`.
unsafe extern "C" fn cancelled_trampoline(ctx: *mut c_void) -> i32 {
    if ctx.is_null() {
        return 1;
    }
    // SAFETY: as in `prompt_trampoline`; only a shared borrow of the `cancelled` closure.
    let context = unsafe { &*ctx.cast::<AuthContext<'_>>() };
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (context.cancelled)()))
        .map_or(1, i32::from)
}

impl Instance {
    /// Runs the plugin's interactive authorization step: `prompt` shows the person what to do,
    /// `cancelled` is polled while the plugin waits. A plugin without one is a permanent error.
    pub fn authorize(
        &self,
        prompt: &mut dyn FnMut(&str),
        cancelled: &dyn Fn() -> bool,
    ) -> Result<(), ProviderError> {
        let loaded = self.loaded();
        let Some(authorize) = loaded.functions.authorize else {
            return Err(ProviderError::permanent(format!(
                "plugin {:?} has no authorization step: its target needs none",
                loaded.name
            )));
        };
        let mut context = AuthContext { prompt, cancelled };
        let io = AuthIo {
            size: size_of::<AuthIo>() as u32,
            reserved: 0,
            ctx: (&raw mut context).cast(),
            prompt: Some(prompt_trampoline),
            cancelled: Some(cancelled_trampoline),
        };
        loaded.call(Op::Authorize, |error| {
            // SAFETY: ABI v2's authorize: a live instance, `io` and its context valid until the
            // call returns, a zeroed error.
            unsafe { authorize(self.raw_ptr(), &io, error) }
        })
    }
}

#[cfg(test)]
mod tests;
