//! The sealback Backup Key Vault.
//!
//! A phone's backup key K (32 bytes, `sealback_repo::BackupKey`) protects every backup; lose
//! it and the backups are noise. The vault keeps K for a user who remembers only a password,
//! in the manner of WhatsApp's encrypted backups, and lets that password be guessed only a
//! few times. `docs/vault.md` is the specification; this is the tour.
//!
//! # Setting up
//!
//! ```text
//! sealback-vault init --config vault.toml          # record key in the HSM, OPAQUE setup;
//!                                                  # prints server_key = "..." to pin
//! sealback-vault account add alice --config ...    # prints alice's credential, once
//! sealback-vault serve --config vault.toml         # HTTPS
//! ```
//!
//! [`config`] names the PKCS#11 module, the token and where the PIN comes from: SoftHSM2 by
//! default, a real HSM by changing those lines. [`hsm`] generates the *record key* inside
//! the token (AES-256, sensitive, never extractable) and asks the token to seal and open
//! with it; the key never leaves.
//!
//! # Registration
//!
//! The client (`sealback_vault_client::Vault::register`) runs OPAQUE registration
//! ([`keyvault`]'s `register_start` / `register_finish`). The vault receives an OPAQUE
//! record, from which the password cannot be tested without the vault's OPRF key, and K
//! sealed by the client under its OPAQUE export key, which the vault never learns. It seals
//! both with the HSM, bound to the account and the record version ([`record`]), and keeps
//! them in the [`store`] as the account's entry ([`account`]).
//!
//! # Login, and the guess limit
//!
//! `login_start` first consumes one of the account's guesses with a durable
//! compare-and-swap, and only then opens the record and answers (the algorithm, and why it
//! holds under any concurrency: [`keyvault`]'s `guesses`). `login_finish` checks the
//! client's proof; if it holds, the count goes back to zero and the sealed K goes to the
//! client under the login's session key. When the count reaches the limit the record is
//! erased, and the store's history with it; later logins get `key-destroyed`. Logins in
//! progress live in memory for a minute ([`logins`]).
//!
//! # Accountability
//!
//! Every request carries the account's credential, issued by `account add` and stored only
//! as a hash: without it nothing is read or counted. Registrations, login attempts, erasures
//! and deletions go to a hash-chained [`audit`] log that `sealback-vault audit verify`
//! checks.
//!
//! [`server`] puts [`keyvault::KeyVault`] behind HTTPS. With the `testing` feature,
//! `testing` starts a real vault process on a fresh SoftHSM2 token.
#![forbid(unsafe_code)]

pub mod account;
pub mod audit;
pub mod ceremony;
pub mod config;
pub mod hsm;
pub mod keyvault;
pub mod logins;
pub mod record;
pub mod server;
pub mod store;
#[cfg(feature = "testing")]
pub mod testing;

pub use config::Config;
pub use keyvault::{KeyVault, Refusal, StartError};
