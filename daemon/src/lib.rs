//! sealbackd: watches a messaging app's message store and keeps end-to-end encrypted,
//! incremental backups of it on storage providers loaded as plugins.
//!
//! The modules follow the data: `config` says what to do, `capture` reads the live store
//! consistently, `engine` turns it into repository objects, `providers` hosts the plugins
//! that store them, `catalog` remembers what is stored, `scheduler` decides when, and
//! `control` is the API `sealbackctl` drives.
#![forbid(unsafe_code)]

pub mod control;
