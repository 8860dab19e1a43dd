//! The password mode of the backup key: the key kept in the Backup Key Vault behind the
//! user's password (OPAQUE, so the vault never learns the password; see docs/vault.md).
//! Every call here is blocking (the vault client speaks HTTPS synchronously); the control
//! handlers run them on tokio's blocking pool.

use sealback_repo::BackupKey;
use sealback_vault_client::{Password, Vault, VaultConfig, VaultError, check_password_strength};
use zeroize::Zeroizing;

use super::{Daemon, internal, lock};
use crate::control::ApiError;
use crate::control::api::{KeyChanged, KeyMode};

pub(super) const MODE_PASSWORD: &str = "password";
pub(super) const MODE_DEVICE_ONLY: &str = "device-only";

impl Daemon {
    /// A client of the configured vault, with the account credential read from its file.
    pub(super) fn vault(&self) -> Result<Vault, ApiError> {
        let settings = self.config.vault.as_ref().ok_or_else(ApiError::no_vault)?;
        let credential = std::fs::read_to_string(&settings.credential_file).map_err(|e| {
            ApiError::new(
                500,
                "vault-credential",
                format!(
                    "cannot read vault.credential_file {}: {e}",
                    settings.credential_file.display()
                ),
            )
        })?;
        Vault::new(VaultConfig {
            urls: settings.urls.clone(),
            server_key: settings.server_key.clone(),
            account: settings.account.clone(),
            credential: Zeroizing::new(credential.trim().to_owned()),
            ca_cert: settings.ca_cert.clone(),
        })
        .map_err(|e| self.vault_error(e))
    }

    /// The vault's answer as the control API reports it; a wrong password is remembered
    /// for `status` (how many attempts are left).
    pub(super) fn vault_error(&self, e: VaultError) -> ApiError {
        let (status, code) = match &e {
            VaultError::WrongPassword { attempts_left } => {
                lock(&self.runtime).vault_attempts_left = Some(*attempts_left);
                (403, "wrong-password")
            }
            VaultError::KeyDestroyed => {
                lock(&self.runtime).vault_attempts_left = Some(0);
                (410, "key-destroyed")
            }
            VaultError::NotRegistered => (404, "not-registered"),
            VaultError::Unauthorized => (403, "vault-credential"),
            VaultError::ServerKeyMismatch { .. } | VaultError::VaultNotProven { .. } => {
                (502, "vault-key-mismatch")
            }
            VaultError::Config(_) => (400, "vault-config"),
            _ => (502, "vault-failed"),
        };
        ApiError::new(status, code, e.to_string())
    }

    fn strong(password: &str) -> Result<Password, ApiError> {
        check_password_strength(password).map_err(|reason| {
            ApiError::new(
                400,
                "weak-password",
                format!("this password is too weak: {reason}"),
            )
        })?;
        Ok(Password::new(password.to_owned()))
    }

    /// `key set-password`: registers this device's key in the vault under a password.
    pub(super) fn set_password(&self, password: &str) -> Result<KeyChanged, ApiError> {
        let key = self.key()?;
        let password = Self::strong(password)?;
        self.vault()?
            .register(&password, key.expose_secret())
            .map_err(|e| self.vault_error(e))?;
        self.keystore.set_mode(MODE_PASSWORD).map_err(internal)?;
        tracing::info!("the backup key is now kept in the vault behind a password");
        Ok(KeyChanged {
            key_mode: KeyMode::Password,
            message: "the backup key is now kept in the vault, protected by your password".into(),
        })
    }

    /// `key recover`: fetches the key from the vault (a new device), checks it against the
    /// targets, and keeps it.
    pub(super) fn recover(&self, password: &str, replace: bool) -> Result<KeyChanged, ApiError> {
        if self.has_key() && !replace {
            return Err(
                ApiError::new(409, "conflict", "this device already has a backup key")
                    .with_hint("pass --replace to replace it with the vault's"),
            );
        }
        let fetched = self
            .vault()?
            .recover(&Password::new(password.to_owned()))
            .map_err(|e| self.vault_error(e))?;
        lock(&self.runtime).vault_attempts_left = None;
        let mut bytes = *fetched;
        let key = BackupKey::from_bytes(&mut bytes);
        let verified = self.check_key(&key)?;
        self.install_key(key, true)?;
        self.keystore.set_mode(MODE_PASSWORD).map_err(internal)?;
        tracing::info!(verified = ?verified, "backup key recovered from the vault");
        Ok(KeyChanged {
            key_mode: KeyMode::Password,
            message: if verified.is_empty() {
                "backup key recovered from the vault".into()
            } else {
                format!(
                    "backup key recovered from the vault; it opened the backups on: {}",
                    verified.join(", ")
                )
            },
        })
    }

    /// `key change-password`: the same key under a new password; stored backups are untouched.
    pub(super) fn change_password(&self, old: &str, new: &str) -> Result<KeyChanged, ApiError> {
        let new = Self::strong(new)?;
        self.vault()?
            .change_password(&Password::new(old.to_owned()), &new)
            .map_err(|e| self.vault_error(e))?;
        lock(&self.runtime).vault_attempts_left = None;
        Ok(KeyChanged {
            key_mode: KeyMode::Password,
            message: "the vault now protects the backup key with the new password".into(),
        })
    }

    /// `key disable`: deletes the vault record; the key stays on this device only.
    pub(super) fn disable(&self, password: &str) -> Result<KeyChanged, ApiError> {
        self.vault()?
            .delete(&Password::new(password.to_owned()))
            .map_err(|e| self.vault_error(e))?;
        self.keystore.set_mode(MODE_DEVICE_ONLY).map_err(internal)?;
        tracing::info!("the vault record was deleted; the backup key is on this device only");
        Ok(KeyChanged {
            key_mode: KeyMode::DeviceOnly,
            message: "the vault no longer holds the backup key: without this device, backups can be read only with a recovery key".into(),
        })
    }
}
