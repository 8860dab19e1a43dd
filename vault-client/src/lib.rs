//! Client of the sealback Backup Key Vault.
//!
//! The vault (`sealback-vault`, `docs/vault.md`) keeps the backup key K for a user who
//! remembers only a password, the way WhatsApp's encrypted backups do, and lets that password
//! be guessed only a few times: after the limit (10 by default) it erases K for good.
//!
//! # How K goes in
//!
//! ```no_run
//! # use sealback_vault_client::{Password, Vault, VaultConfig, check_password_strength};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let vault = Vault::new(VaultConfig {
//!     urls: vec!["https://vault.example:8443".into()],
//!     // As `sealback-vault init` printed it: the vault is refused if its key differs.
//!     server_key: "4n2i0N7a0v1Ckq3fW8r6FqH5l9c1nC2bO3kT0sV7cU4=".into(),
//!     account: "alice".into(),
//!     // As `sealback-vault account add alice` printed it.
//!     credential: zeroize::Zeroizing::new("sbv1_...".into()),
//!     ca_cert: None,
//! })?;
//! check_password_strength("blue-kettle-42")?;
//! let key = [7u8; 32]; // K, from `sealback_repo::BackupKey::expose_secret`
//! vault.register(&Password::new("blue-kettle-42".into()), &key)?;
//! # Ok(()) }
//! ```
//!
//! [`Vault::register`] runs OPAQUE registration. The password never leaves the device; the
//! vault learns only an OPAQUE record from which the password cannot be tested without the
//! vault's own (HSM-protected) key. OPAQUE also gives the device an *export key* that only
//! the password produces; the device seals K under it ([`protocol::sealed_key`]) and the
//! vault stores that sealed K beside the record, under its HSM key. So the vault never holds
//! K in the clear either.
//!
//! # How K comes back
//!
//! ```no_run
//! # use sealback_vault_client::{Password, Vault, VaultError};
//! # fn f(vault: &Vault) -> Result<(), VaultError> {
//! match vault.recover(&Password::new("blue-kettle-42".into())) {
//!     Ok(key) => { /* K: Zeroizing<[u8; 32]> */ }
//!     Err(VaultError::WrongPassword { attempts_left }) => { /* tell the user */ }
//!     Err(VaultError::KeyDestroyed) => { /* the limit was reached: K is gone */ }
//!     Err(other) => return Err(other),
//! }
//! # Ok(()) }
//! ```
//!
//! [`Vault::recover`] runs an OPAQUE login. The vault counts the guess *before* it answers
//! the first message, so hanging up does not save it. If the password is right, the vault
//! returns the sealed K encrypted under the login's session key
//! ([`protocol::transfer`]); the device opens that, then the sealed K with its export key.
//! A wrong password fails on the device (OPAQUE's envelope does not open) and the error says
//! how many guesses are left.
//!
//! # Trust
//!
//! - The vault's OPAQUE public key is pinned ([`VaultConfig::server_key`]): every answer must
//!   carry a proof that only the holder of that key can make, bound to its request
//!   ([`protocol::vault_proof`]); any other server, even one with a valid TLS certificate, is
//!   refused ([`VaultError::VaultNotProven`]) before the client sends anything further, so it
//!   never receives a registration it could test passwords against.
//! - Every request carries the account's credential, separate from the password, so a
//!   stranger cannot spend the user's guesses; it travels sealed to the pinned key.
//! - The password ([`Password`]), K, the credential and the OPAQUE keys are zeroized after
//!   use and never logged.
//!
//! The methods block: call them from a blocking thread. [`protocol`] is shared with the
//! server.
#![forbid(unsafe_code)]

mod config;
mod error;
mod failover;
mod password;
pub mod protocol;
mod transport;
mod vault;

pub use config::{VaultConfig, format_server_key};
pub use error::VaultError;
pub use password::{MIN_PASSWORD_CHARS, Password, check_password_strength};
pub use vault::{RecordStatus, Vault};
