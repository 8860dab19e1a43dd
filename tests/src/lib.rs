//! The harness of sealback's end-to-end tests. The tests drive the real programs, as a user
//! would: `sealbackd` as a process with a configuration file, `sealbackctl` for every request,
//! the plugins as the `.so` files cargo built, and a separate writer process (`store_writer`)
//! playing the messaging app.
//!
//! - [`binaries`]: where cargo put the programs (`cargo build --workspace` first).
//! - [`device`]: a [`Device`] is one installation: a state directory, a control socket, a
//!   configuration, and the daemon started on them.
//! - [`setup`]: what a device's configuration says.
//! - [`store`]: the message store the tests back up, whose every byte is a function of its
//!   message ids, so that a restored store can be checked exactly ([`store::check_restored`]).
//! - [`writer`]: the app writing while backups run.
//! - [`raw_http`]: requests spoken by hand on the control socket.
//! - [`wait`]: polling with a deadline; a test never sleeps to assert.
//! - [`tamper`]: damaging a target's objects on disk.
//! - [`drive`]: a Google Drive v3 emulator (OAuth device flow, files.list/get/delete,
//!   multipart and resumable uploads, fault injection) for the `gdrive` provider.
//! - [`webdav_servers`]: real WebDAV servers (rclone, Apache httpd) on loopback ports.
#![forbid(unsafe_code)]

pub mod binaries;
pub mod device;
pub mod drive;
pub mod raw_http;
pub mod setup;
pub mod store;
pub mod tamper;
pub mod wait;
pub mod webdav_servers;
pub mod writer;

pub use device::{Ctl, Device};
pub use setup::{Schedule, Setup, Target, VaultSection};
pub use store::MessageStore;
pub use writer::Writer;
