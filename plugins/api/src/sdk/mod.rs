//! The plugin author's side: implement [`Provider`] and call
//! [`export_provider!`](crate::export_provider).
//!
//! ```ignore
//! struct Memory { /* ... */ }
//!
//! impl sealback_plugin_api::sdk::Provider for Memory {
//!     const NAME: &'static str = "memory";
//!     const VERSION: &'static str = env!("CARGO_PKG_VERSION");
//!     fn open(options_json: &str) -> Result<Self, ProviderError> { /* ... */ }
//!     // put, get, list, remove
//! }
//!
//! sealback_plugin_api::export_provider!(Memory);
//! ```
//!
//! `docs/plugins.md` walks through a whole provider, and `sealbackctl plugin check` runs the
//! conformance kit against the built library.
//!
//! The macro exports `sealback_plugin_magic` and `sealback_plugin_provider` and a static
//! function table whose entries are the `extern "C"` shims in this module. The shims turn the
//! C arguments into Rust ones, reject invalid object names before the provider sees them, catch
//! panics, and turn results into status codes, error messages and plugin-allocated buffers. A
//! provider therefore never touches a raw pointer, and its crate stays free of `unsafe` apart
//! from the two `#[unsafe(no_mangle)]` attributes the macro writes (which is why a plugin crate
//! must not `#![forbid(unsafe_code)]`: `forbid` cannot be lifted by the macro's `allow`).

mod recycle;
pub(crate) mod shim;
pub mod temp;
mod v2;

pub use recycle::{buffer, filled};
pub use v2::{Authorization, Host, Level};

use crate::error::ProviderError;
use crate::listing::ObjectInfo;

#[doc(hidden)]
pub use shim::{
    __magic, __nul_terminated, __shim_close, __shim_free_buf, __shim_get, __shim_list, __shim_open,
    __shim_put, __shim_remove, __table,
};
#[doc(hidden)]
pub use v2::{__shim_authorize, __shim_open_v2, __table_v2};

/// A storage provider: somewhere objects can be stored, read back, listed and removed.
///
/// This is the contract every provider keeps; the host relies on it and wraps providers in
/// retries and limits that only work if it holds. Names given to `put`, `get` and `remove` have
/// passed [`validate_object_name`](crate::validate_object_name), and prefixes given to `list`
/// have passed [`validate_list_prefix`](crate::validate_list_prefix), before the provider sees
/// them.
///
/// The host may call `put`, `get`, `list` and `remove` on one instance from several threads at
/// once. The instance is dropped once, after every other call has returned. A panic in any
/// method is caught and reported as a [`Permanent`](crate::ErrorKind::Permanent) error; the
/// instance may still be used afterwards, so a provider that can be left inconsistent by a
/// panic should poison itself. Calls may block; a provider that talks to a network bounds each
/// request with its own timeouts, because the host cannot interrupt a call.
///
/// # Errors
///
/// Every error is a [`ProviderError`] whose [`ErrorKind`](crate::ErrorKind) tells the host what
/// to do, without parsing the message: `NotFound` (only `get`, only for absence), `Transient`
/// (retry later; add [`with_retry_after`](ProviderError::with_retry_after) when the storage
/// says how long to wait), `Auth`, `Quota`, `Permanent`, and `InvalidConfig` (from `open`). The
/// message names the object or path and what is wrong; it is logged and shown, so it never
/// holds a secret.
pub trait Provider: Send + Sync + 'static {
    /// The provider's name, e.g. `"local"`: what the configuration calls it. No NUL bytes.
    const NAME: &'static str;
    /// The provider's version, usually `env!("CARGO_PKG_VERSION")`. No NUL bytes.
    const VERSION: &'static str;

    /// Creates an instance from its options, a JSON document.
    ///
    /// Options that are missing, of the wrong type or unknown are
    /// [`InvalidConfig`](crate::ErrorKind::InvalidConfig) errors whose message names the option
    /// (with serde: `#[serde(deny_unknown_fields)]`). Options are not secret: a password or
    /// token comes from a file or an environment variable that an option names, read here.
    /// `open` may check that the storage is reachable, but it must not modify any object.
    fn open(options_json: &str) -> Result<Self, ProviderError>
    where
        Self: Sized;

    /// [`open`](Provider::open) with the host's services (ABI v2): the daemon's log. A host of
    /// ABI v2 or later opens instances through this; the default ignores `host`.
    fn open_with_host(options_json: &str, host: Host) -> Result<Self, ProviderError>
    where
        Self: Sized,
    {
        let _ = host;
        Self::open(options_json)
    }

    /// Whether the provider has an interactive authorization step, [`authorize`](Provider::authorize)
    /// (ABI v2): `sealbackctl target auth NAME` runs it.
    const AUTHORIZES: bool = false;

    /// Signs the instance's storage account in: shows the person what to do through
    /// [`Authorization::prompt`], waits (returning a transient error once
    /// [`Authorization::cancelled`] says so), and stores the credentials where the options say,
    /// so that this instance and every later one can use them. Only called when
    /// [`AUTHORIZES`](Provider::AUTHORIZES) is true; it may run while other calls do.
    fn authorize(&self, authorization: &Authorization<'_>) -> Result<(), ProviderError> {
        let _ = authorization;
        Err(ProviderError::permanent(
            "this provider has no authorization step",
        ))
    }

    /// Stores `data` as the object `name`.
    ///
    /// Atomic: a concurrent or later reader sees the old object, the new one, or none, never a
    /// part of one; a failed or interrupted put leaves the old object (or none) in place.
    /// Idempotent: putting the same name again replaces the object, so the host may retry a put
    /// whose outcome it does not know. When it returns `Ok`, the object is durable.
    fn put(&self, name: &str, data: &[u8]) -> Result<(), ProviderError>;

    /// Reads the whole object `name`.
    ///
    /// An object that does not exist is a [`NotFound`](crate::ErrorKind::NotFound) error; any
    /// other failure must not be reported as `NotFound`, because the host may act on absence.
    fn get(&self, name: &str) -> Result<Vec<u8>, ProviderError>;

    /// Lists every object whose name starts with `prefix` (`""` lists everything).
    ///
    /// Complete: the provider pages through its storage itself, and returns every object that
    /// existed for the whole call. Objects put or removed during the call may or may not appear.
    /// The order does not matter. Every returned name must start with `prefix` and be valid.
    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, ProviderError>;

    /// Deletes the object `name`.
    ///
    /// Removing an object that does not exist succeeds, so the host may retry a remove whose
    /// outcome it does not know. When it returns `Ok`, the removal is durable.
    fn remove(&self, name: &str) -> Result<(), ProviderError>;
}

/// Exports a [`Provider`] as a sealback plugin (ABI v2: the v1 table and the v2 fields).
///
/// Use it once, at the root of a `cdylib` crate: `export_provider!(MyProvider);`. It emits the
/// two C entry points, `sealback_plugin_magic` and `sealback_plugin_provider`, and the static
/// function table; everything else lives in this crate.
#[macro_export]
macro_rules! export_provider {
    ($provider:ty) => {
        const _: () = {
            static NAME: [u8; <$provider as $crate::sdk::Provider>::NAME.len() + 1] =
                $crate::sdk::__nul_terminated(<$provider as $crate::sdk::Provider>::NAME);
            static VERSION: [u8; <$provider as $crate::sdk::Provider>::VERSION.len() + 1] =
                $crate::sdk::__nul_terminated(<$provider as $crate::sdk::Provider>::VERSION);
            static TABLE: $crate::abi::ProviderTableV2 = $crate::sdk::__table_v2::<$provider>(
                $crate::sdk::__table::<$provider>(&NAME, &VERSION),
            );

            #[allow(unsafe_code)]
            #[unsafe(no_mangle)]
            extern "C" fn sealback_plugin_magic() -> *const $crate::abi::PluginMagic {
                $crate::sdk::__magic()
            }

            #[allow(unsafe_code)]
            #[unsafe(no_mangle)]
            extern "C" fn sealback_plugin_provider() -> *const $crate::abi::ProviderTableV1 {
                // The v2 table starts with the v1 table; its `size` tells the host how far to read.
                (&raw const TABLE).cast()
            }
        };
    };
}

#[cfg(test)]
mod tests;
