//! What can go wrong talking to the vault, as kinds a caller can act on.

/// An operation on the vault failed. Only [`VaultError::Transport`] and
/// [`VaultError::Server`] are worth retrying ([`VaultError::is_transient`]). Every attempt at
/// `recover`, `change_password` or `delete` that reaches the vault's login spends a guess,
/// so retry those only when the user asks (never a [`VaultError::WrongPassword`]).
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error(
        "wrong vault password: {attempts_left} attempt(s) left; when none are left the vault \
         erases the backup key for good"
    )]
    WrongPassword { attempts_left: u32 },
    #[error(
        "the vault erased the backup key after too many wrong passwords and nobody can recover \
         it now: restore with the 64-digit recovery key if it was written down, or register a \
         new key"
    )]
    KeyDestroyed,
    #[error("the vault holds no backup key for this account: register one first")]
    NotRegistered,
    #[error(
        "the vault refused the account credential: check the configured account and \
         credential; a lost credential is replaced with `sealback-vault account reissue NAME` \
         on the vault"
    )]
    Unauthorized,
    #[error(
        "the vault's OPAQUE public key is {found}, not the pinned {expected}: this is not the \
         configured vault (or it was initialised again), so it was refused; check the vault \
         URL and the pinned `server_key`"
    )]
    ServerKeyMismatch { expected: String, found: String },
    #[error(
        "{url} did not prove that it holds the vault's pinned key {pinned}, so it is not the \
         configured vault (a server with a valid TLS certificate relaying or impersonating \
         it, or a vault initialised again) and was refused: it received nothing it could test \
         passwords against, and the credential only sealed to the pinned key; check the vault \
         URL, its TLS certificate and the pinned `server_key`"
    )]
    VaultNotProven { url: String, pinned: String },
    #[error("cannot reach the vault: {0}; check its URL, that it runs, and its TLS certificate")]
    Transport(String),
    #[error("the vault's answer breaks the protocol: {0}")]
    Protocol(String),
    #[error("the vault failed: {0}; its own log says more")]
    Server(String),
    #[error(
        "the vault refused its own copy of this account's key: {0}; the vault's operator must \
         restore the record (retrying spends no guesses, but does not help either)"
    )]
    RecordRefused(String),
    #[error("invalid vault configuration: {0}")]
    Config(String),
}

impl VaultError {
    /// Whether the same request may succeed later unchanged (the vault was unreachable,
    /// busy, or failed internally).
    pub fn is_transient(&self) -> bool {
        matches!(self, VaultError::Transport(_) | VaultError::Server(_))
    }
}
