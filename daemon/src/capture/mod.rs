//! Reading the live message store consistently.
//!
//! - [`database`]: the SQLite database as of one committed transaction, read as pages
//!   inside one short read transaction (WAL commits included; the app is never blocked).
//! - [`beneath`]: the store's directory held open, and every path beneath it resolved
//!   from it without following a link.
//! - [`files`]: media and other files, each read between two identical `stat`s so that a
//!   file changing under us is retried, never recorded half-written.

pub mod beneath;
pub mod database;
pub mod files;
pub mod wal;
