//! The bodies of the password and rotation routes (`/v1/key/set-password`, `recover`,
//! `change-password`, `disable`, `rotate`). They carry passwords or a recovery key:
//! zeroized when dropped, and without Debug where they hold a secret.

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::KeyMode;

/// Protects the device's backup key with a password, in the Backup Key Vault.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeySetPasswordRequest {
    /// Zeroized when dropped.
    pub password: Zeroizing<String>,
}

/// Fetches the backup key from the vault on a new device.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyRecoverRequest {
    pub password: Zeroizing<String>,
    /// Replace a key this device already has.
    #[serde(default)]
    pub replace: bool,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyChangePasswordRequest {
    pub old_password: Zeroizing<String>,
    pub new_password: Zeroizing<String>,
}

/// Deletes the key's vault record (as turning end-to-end encrypted backup off does).
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyDisableRequest {
    pub password: Zeroizing<String>,
}

/// The answer to every password operation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeyChanged {
    pub key_mode: KeyMode,
    pub message: String,
}

/// `key rotate`: a new key and a new repository generation on every target (DESIGN.md
/// §3.11); with `finish`, the old generation's retirement. Deliberately without Debug.
#[derive(Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyRotateRequest {
    /// In password mode: the vault password, under which the new key is registered.
    #[serde(default)]
    pub password: Option<Zeroizing<String>>,
    /// Retire the old generation (its objects and the old key) instead of rotating.
    #[serde(default)]
    pub finish: bool,
}

/// The answer to `key rotate`. Deliberately without Debug: it may carry the recovery key.
#[derive(Serialize, Deserialize)]
pub struct KeyRotated {
    pub key_mode: KeyMode,
    /// The new recovery key, in recovery-key mode, until the old generation is retired.
    pub recovery_key: Option<Zeroizing<String>>,
    /// The generation the key now backs up to.
    pub generation: String,
    /// Targets with a complete backup under the new key (rotate), or whose old generation
    /// was removed (finish).
    pub targets: Vec<String>,
    /// Objects and bytes of the old generation removed (finish).
    pub removed_objects: u64,
    pub removed_bytes: u64,
    pub message: String,
}
