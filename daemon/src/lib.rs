//! sealbackd: watches a messaging app's message store and keeps end-to-end encrypted,
//! incremental backups of it on storage providers loaded as plugins.
//!
//! The modules follow the data: `config` says what to do, `capture` reads the live store
//! consistently, `engine` turns it into repository objects (and back), `providers` hosts the
//! plugins that store them, `catalog` remembers what is stored, `keystore` keeps the backup
//! key, `scheduler` decides when, `daemon` holds it together, and `control` is the API
//! `sealbackctl` drives.
#![forbid(unsafe_code)]

pub mod capture;
pub mod catalog;
pub mod config;
pub mod control;
pub mod daemon;
pub mod engine;
pub mod hardening;
pub mod keystore;
pub mod notify;
pub mod providers;
pub mod retention;
pub mod scheduler;
pub mod state_lock;
#[cfg(test)]
mod test_store;
