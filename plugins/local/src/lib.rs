//! sealback storage provider `local`, as a plugin: `libsealback_local.so`.
//!
//! The provider itself, its options and its on-disk layout are in `sealback-local-store`
//! ([`LocalProvider`]); this crate only exports it through the plugin ABI. To reuse the provider
//! in another plugin, depend on `sealback-local-store`: this crate's rlib carries the plugin
//! symbols, which would clash with the other plugin's own.

pub use sealback_local_store::LocalProvider;

sealback_plugin_api::export_provider!(LocalProvider);
