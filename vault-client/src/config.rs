//! What the client needs to know about its vault.

use std::path::PathBuf;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use zeroize::Zeroizing;

use crate::VaultError;

/// Where the vault is, which vault it must be, and who we are to it.
pub struct VaultConfig {
    /// The base URLs of the vault's instances, `https://host:port`, tried in order: a request
    /// goes on to the next when one cannot be reached, times out or fails (5xx), and the next
    /// request starts with the one that last answered. All serve the same vault: they hold the
    /// same keys (the key ceremony) and share its records.
    pub urls: Vec<String>,
    /// The vault's OPAQUE public key, pinned: base64 as `sealback-vault init` prints it, or 64
    /// hexadecimal digits. A vault with another key is refused.
    pub server_key: String,
    /// The account name the vault knows us by.
    pub account: String,
    /// The account's credential (`sealback-vault account add NAME` printed it once).
    pub credential: Zeroizing<String>,
    /// A PEM file of the CA certificate(s) that signed the vault's TLS certificate; without
    /// it, the system's trusted CAs.
    pub ca_cert: Option<PathBuf>,
}

impl std::fmt::Debug for VaultConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VaultConfig")
            .field("urls", &self.urls)
            .field("server_key", &self.server_key)
            .field("account", &self.account)
            .field("credential", &"<redacted>")
            .field("ca_cert", &self.ca_cert)
            .finish()
    }
}

/// The length of a Ristretto255 public key.
pub(crate) const SERVER_KEY_LEN: usize = 32;

/// Reads a pinned server key: base64 (standard, padded or not) or 64 hex digits.
pub(crate) fn parse_server_key(text: &str) -> Result<[u8; SERVER_KEY_LEN], VaultError> {
    let text = text.trim();
    let bytes = if text.len() == 2 * SERVER_KEY_LEN && text.chars().all(|c| c.is_ascii_hexdigit()) {
        (0..SERVER_KEY_LEN)
            .map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16))
            .collect::<Result<Vec<u8>, _>>()
            .map_err(|err| VaultError::Config(format!("server_key: {err}")))?
    } else {
        STANDARD
            .decode(text)
            .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(text))
            .map_err(|_| {
                VaultError::Config(format!(
                    "server_key {text:?} is neither base64 nor 64 hexadecimal digits: copy it \
                     as `sealback-vault init` printed it"
                ))
            })?
    };
    bytes.try_into().map_err(|bytes: Vec<u8>| {
        VaultError::Config(format!(
            "server_key is {} bytes long; an OPAQUE server key (Ristretto255) has \
             {SERVER_KEY_LEN}",
            bytes.len()
        ))
    })
}

/// The form `sealback-vault init` prints a key in.
pub fn format_server_key(key: &[u8]) -> String {
    STANDARD.encode(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_keys_in_base64_or_hex() {
        let key = [0xabu8; 32];
        let b64 = format_server_key(&key);
        assert_eq!(parse_server_key(&b64).expect("base64"), key);
        assert_eq!(parse_server_key(&"ab".repeat(32)).expect("hex"), key);
        assert_eq!(
            parse_server_key(b64.trim_end_matches('=')).expect("unpadded"),
            key
        );
        assert!(parse_server_key("AAAA").is_err());
        assert!(parse_server_key("not a key!").is_err());
    }
}
