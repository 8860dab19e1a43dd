//! End-to-end tests: the built `sealbackd`, `sealbackctl` and plugins, driven as a user
//! would, one module per capability. Run `cargo build --workspace` first; every test makes
//! its own temporary devices, stores and targets, so they run in parallel.

mod backup_restore;
mod cli;
mod config;
mod crash;
mod drive_emulator;
mod faults;
mod fixtures;
mod full_disk;
mod gdrive;
mod gdrive_daemon;
mod hidden_snapshots;
mod hostile_store;
mod incremental;
mod keys;
mod lifecycle;
mod object_sizes;
mod observability;
mod partial_restore;
mod plugins;
mod provider_faults;
mod prune;
mod restore_security;
mod rotation;
mod secrets;
mod selection;
mod socket;
mod systemd;
mod tampering;
mod target_schedules;
mod targets;
mod unprivileged;
mod vault;
mod vault_trial;
mod webdav;
