//! Client of the sealback Backup Key Vault.
//!
//! Empty until the vault lands: in this version the backup key is kept as a 64-digit
//! recovery key (see `sealback_repo::keys`).
