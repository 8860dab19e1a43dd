//! The sealback storage-provider plugin ABI, v1: its C types, a safe SDK for writing plugins in
//! Rust, and (with the `host` feature) the loader sealbackd uses.
//!
//! A storage provider is a shared library that exports two C functions, so that host and plugin
//! need not be built by the same compiler (no Rust trait objects cross the boundary):
//!
//! * `sealback_plugin_magic()` returns a [`PluginMagic`](abi::PluginMagic): the bytes
//!   `SBPLUGIN` and the ABI version. The host checks it before it looks at anything else, so a
//!   stray library or one built for another ABI is refused with a clear message.
//! * `sealback_plugin_provider()` returns the [`ProviderTableV1`](abi::ProviderTableV1): a
//!   name, a version and seven functions (`open`, `close`, `put`, `get`, `list`, `remove`,
//!   `free_buf`). The table starts with its own size and is only ever appended to.
//!
//! `include/sealback_plugin.h` is the C spelling of the same ABI, for plugins written in C, and
//! `docs/plugin-abi.md` its specification; `docs/plugins.md` is the guide to writing a plugin.
//!
//! # Writing a plugin
//!
//! Implement [`sdk::Provider`], whose documentation is the contract every provider keeps
//! (atomic, idempotent `put`; `NotFound` only for absence; complete `list`; `remove` of a missing
//! object succeeds), and export it with [`export_provider!`] from a `cdylib` crate. Errors are
//! [`ProviderError`]s whose [`ErrorKind`] tells the host what it can do about them; a transient
//! one may carry a [retry-after](ProviderError::with_retry_after).
//!
//! # Loading a plugin
//!
//! With the `host` feature, [`host::Plugin::load`] checks a library and [`host::Plugin::open`]
//! creates an [`host::Instance`], which offers the same four operations as safe methods.

pub mod abi;
mod error;
#[cfg(feature = "host")]
pub mod host;
pub mod limits;
mod listing;
mod name;
pub mod sdk;

pub use error::{ErrorKind, ProviderError};
pub use listing::ObjectInfo;
pub use name::{InvalidObjectName, MAX_NAME_LEN, validate_list_prefix, validate_object_name};
