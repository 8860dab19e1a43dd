//! The sealed key handed back after a successful login, under the login's session key.
//!
//! ```text
//! key      = HKDF-SHA512(salt = none, IKM = OPAQUE session key, info = LABEL, L = 32)
//! transfer = nonce (12 random bytes) || AES-256-GCM(key, nonce, AAD, sealed key)
//! AAD      = LABEL || login id (the UTF-8 string)
//! LABEL    = "sealback-vault v1 transfer"
//! ```
//!
//! The session key is fresh for every login and known only to the two ends that completed
//! it, so each key encrypts one message: the random nonce is not needed for safety. The
//! layer means that only the client that finished this login gets even the sealed key (which
//! it then opens with its export key, [`super::sealed_key`]).

use aes_gcm::aead::{Aead, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use rand::RngCore;
use zeroize::Zeroizing;

const LABEL: &[u8] = b"sealback-vault v1 transfer";
const NONCE_LEN: usize = 12;

/// The server's side: `sealed_key` for the client of login `login_id`.
pub fn seal(session_key: &[u8], login_id: &str, sealed_key: &[u8]) -> Vec<u8> {
    let mut nonce = [0u8; NONCE_LEN];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    let aad = aad(login_id);
    let ciphertext = cipher(session_key)
        .encrypt(
            &Nonce::from(nonce),
            Payload {
                msg: sealed_key,
                aad: &aad,
            },
        )
        .expect("AES-GCM encrypts a sealed key");
    let mut out = Vec::with_capacity(NONCE_LEN + ciphertext.len());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ciphertext);
    out
}

/// The client's side; `None` if the transfer was not made with this session key and login.
pub fn open(session_key: &[u8], login_id: &str, transfer: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
    let (nonce, ciphertext) = transfer.split_first_chunk::<NONCE_LEN>()?;
    let aad = aad(login_id);
    cipher(session_key)
        .decrypt(
            &Nonce::from(*nonce),
            Payload {
                msg: ciphertext,
                aad: &aad,
            },
        )
        .ok()
        .map(Zeroizing::new)
}

fn aad(login_id: &str) -> Vec<u8> {
    [LABEL, login_id.as_bytes()].concat()
}

fn cipher(session_key: &[u8]) -> Aes256Gcm {
    super::derive_cipher(session_key, LABEL)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_only_with_its_session_key_and_login() {
        let session = [3u8; 64];
        let t = seal(&session, "L1", b"sealed");
        assert_eq!(
            open(&session, "L1", &t).expect("opens").as_slice(),
            b"sealed"
        );
        assert!(open(&session, "L2", &t).is_none());
        assert!(open(&[4u8; 64], "L1", &t).is_none());
        assert!(open(&session, "L1", &t[..5]).is_none());
    }
}
