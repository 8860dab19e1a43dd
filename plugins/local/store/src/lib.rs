//! The local-disk storage provider, [`LocalProvider`]: a directory on local disk (or on anything
//! mounted there).
//!
//! This crate is the provider without the plugin exports; `sealback-local` (plugins/local) wraps
//! it into `libsealback_local.so`. Another plugin that reuses the provider (the fault-injecting
//! test provider) depends on this crate, not on `sealback-local`: each plugin defines the
//! C symbols `sealback_plugin_magic` and `sealback_plugin_provider`, and linking one plugin's
//! rlib into another defines them twice (a duplicate-symbol link error whenever the linker pulls
//! in the object that holds them, as it does in release builds).
//!
//! Options: `{"path": "/mnt/backup/sealback"}`. `path` is required and must be absolute; the
//! directory is created if it does not exist. Unknown options are refused.
//!
//! The object `a/b/c` is the file `<path>/a/b/c`. A put writes `<path>/a/b/.c.tmp-<random hex>`,
//! fsyncs it, renames it over `c` and fsyncs the directory (and, the first time, the directories
//! above it), so a reader sees the old object or the new one, and an acknowledged put survives a
//! crash. Temporary files a crash leaves behind are never listed, and names of that shape are
//! reserved.

#![forbid(unsafe_code)]

mod direct;
mod list;
mod options;
mod provider;
mod temp;

pub use provider::LocalProvider;
