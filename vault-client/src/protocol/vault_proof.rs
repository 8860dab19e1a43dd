//! The vault proof: every answer proves that it comes from the holder of the pinned key, and
//! the credential travels sealed to that key.
//!
//! TLS alone does not stop a man in the middle holding a certificate the client's CA list
//! accepts (a misissued certificate), and OPAQUE registration does not authenticate the
//! server: such a relay could answer a registration with its own OPRF key and receive an
//! envelope and a sealed key it could then test passwords against offline. So each request
//! runs one Diffie-Hellman exchange with the vault's long-term key, the Ristretto255 key of
//! its OPAQUE `ServerSetup` that clients pin (`S = s·B`):
//!
//! ```text
//! client:  x random scalar, X = x·B                  (a fresh x for every request)
//! both:    Z = x·S = s·X                              (refused if the identity)
//!          k_seal || k_mac = HKDF-SHA512(salt = none, IKM = Z, info = KEYS || X || S, L = 64)
//!          D = SHA-256(REQUEST || method || 0x00 || path and query || 0x00 || body)
//! request: Authorization: Sealed base64url(X) "." base64url(AES-256-GCM(k_seal,
//!          nonce = 0^12, credential, AAD = CREDENTIAL || D))
//! answer:  Vault-Proof: base64(HMAC-SHA256(k_mac, PROOF || D || status (u16 BE) ||
//!          SHA-256(answer body)))
//! ```
//!
//! Why it holds. Computing `Z` needs `s` or `x` (the computational Diffie-Hellman problem
//! in Ristretto255, a prime-order group, so no small-subgroup cases beyond the identity,
//! which both sides refuse). A false vault knows neither, so it can neither open the
//! credential nor make a proof that verifies; what it relays from the genuine vault is bound
//! by `D` to the request it answered (method, path, account and the whole body, e.g. the
//! registration request) and by the MAC to the status and the whole answer (e.g. the
//! registration response and the record version), so it cannot swap in its own. The client
//! checks the proof before it reads the answer, so the next step (the registration upload
//! and the sealed key) is sent only after the genuine vault answered. The key pair is the
//! one OPAQUE already uses in its 3DH key exchange; this construction uses it only as a DH
//! key with its own labels, so the two uses cannot be confused. `k_seal` encrypts one
//! message (a fresh `X` per request), so the fixed nonce never repeats under one key. The
//! secret scalars are multiplied by reference (`mul(&scalar)`) so that no copy of them is left
//! behind; their owners zeroize them.
//!
//! What it does not stop: a man in the middle can drop requests, or replay a captured one
//! verbatim to the vault (the same request again, with the same effect; docs/vault.md §5).

use std::ops::Mul as _;

use aes_gcm::aead::{Aead, Payload};
use aes_gcm::{Aes256Gcm, KeyInit, Nonce};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use curve25519_dalek::constants::RISTRETTO_BASEPOINT_TABLE;
use curve25519_dalek::ristretto::{CompressedRistretto, RistrettoPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::IsIdentity;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::{Digest, Sha256, Sha512};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

/// The `Authorization` scheme of a sealed credential.
pub const SCHEME: &str = "Sealed";
/// The answer header that carries the proof.
pub const PROOF_HEADER: &str = "vault-proof";

const KEYS: &[u8] = b"sealback-vault v1 vault proof keys";
const REQUEST: &[u8] = b"sealback-vault v1 request";
const CREDENTIAL: &[u8] = b"sealback-vault v1 sealed credential";
const PROOF: &[u8] = b"sealback-vault v1 vault proof";
const POINT_LEN: usize = 32;

/// `D`: what binds a credential and a proof to one request.
pub fn request_digest(method: &str, target: &str, body: &[u8]) -> [u8; 32] {
    let mut hash = Sha256::new();
    hash.update(REQUEST);
    hash.update(method.as_bytes());
    hash.update([0]);
    hash.update(target.as_bytes());
    hash.update([0]);
    hash.update(body);
    hash.finalize().into()
}

/// The two keys of one exchange, zeroized on drop.
pub struct Keys {
    seal: Zeroizing<[u8; 32]>,
    mac: Zeroizing<[u8; 32]>,
}

impl Keys {
    fn derive(shared: &RistrettoPoint, ephemeral: &[u8; 32], server: &[u8; 32]) -> Option<Keys> {
        if shared.is_identity() {
            return None;
        }
        let shared = Zeroizing::new(shared.compress().to_bytes());
        let mut okm = Zeroizing::new([0u8; 64]);
        let info = [KEYS, ephemeral, server].concat();
        hkdf::Hkdf::<Sha512>::new(None, shared.as_slice())
            .expand(&info, okm.as_mut_slice())
            .expect("64 bytes is a valid HKDF-SHA512 output length");
        let mut seal = Zeroizing::new([0u8; 32]);
        let mut mac = Zeroizing::new([0u8; 32]);
        seal.copy_from_slice(&okm[..32]);
        mac.copy_from_slice(&okm[32..]);
        Some(Keys { seal, mac })
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new_from_slice(self.seal.as_slice()).expect("the key is 32 bytes")
    }

    fn tag(&self, digest: &[u8; 32], status: u16, answer: &[u8]) -> [u8; 32] {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(self.mac.as_slice())
            .expect("HMAC takes any key length");
        mac.update(PROOF);
        mac.update(digest);
        mac.update(&status.to_be_bytes());
        mac.update(&Sha256::digest(answer));
        mac.finalize().into_bytes().into()
    }

    /// The server's side: the `Vault-Proof` header value for an answer.
    pub fn proof(&self, digest: &[u8; 32], status: u16, answer: &[u8]) -> String {
        STANDARD.encode(self.tag(digest, status, answer))
    }
}

/// The client's side of one request's exchange.
pub struct ClientExchange {
    ephemeral: [u8; 32],
    keys: Keys,
}

impl ClientExchange {
    /// A fresh exchange with the vault whose pinned key is `server_key`; `None` if that is
    /// not a Ristretto255 point.
    pub fn new(server_key: &[u8; 32]) -> Option<ClientExchange> {
        let server = CompressedRistretto(*server_key).decompress()?;
        let mut wide = Zeroizing::new([0u8; 64]);
        rand::rngs::OsRng.fill_bytes(wide.as_mut_slice());
        let secret = Zeroizing::new(Scalar::from_bytes_mod_order_wide(&wide));
        let ephemeral = (RISTRETTO_BASEPOINT_TABLE * &*secret).compress().to_bytes();
        let keys = Keys::derive(&server.mul(&*secret), &ephemeral, server_key)?;
        Some(ClientExchange { ephemeral, keys })
    }

    /// The `Authorization` header value: the credential sealed to the pinned key, bound to
    /// the request `digest`.
    pub fn authorization(&self, credential: &str, digest: &[u8; 32]) -> String {
        let aad = [CREDENTIAL, digest].concat();
        let sealed = self
            .keys
            .cipher()
            .encrypt(
                &Nonce::from([0u8; 12]),
                Payload {
                    msg: credential.as_bytes(),
                    aad: &aad,
                },
            )
            .expect("AES-GCM encrypts a credential");
        format!(
            "{SCHEME} {}.{}",
            URL_SAFE_NO_PAD.encode(self.ephemeral),
            URL_SAFE_NO_PAD.encode(sealed)
        )
    }

    /// Whether `proof` (the `Vault-Proof` header) proves that the holder of the pinned key
    /// gave this answer to this request. Constant time.
    pub fn verify(&self, digest: &[u8; 32], status: u16, answer: &[u8], proof: &str) -> bool {
        let Ok(proof) = STANDARD.decode(proof.trim()) else {
            return false;
        };
        let expected = self.keys.tag(digest, status, answer);
        proof.len() == expected.len() && bool::from(proof.ct_eq(&expected))
    }
}

/// The server's long-term key: the OPAQUE `ServerSetup`'s key pair. Zeroized on drop.
pub struct ServerKey {
    secret: Zeroizing<Scalar>,
    public: [u8; 32],
}

impl ServerKey {
    /// From the serialized private key and public key of an OPAQUE `ServerSetup`'s key pair.
    pub fn new(private: &[u8], public: &[u8]) -> Result<ServerKey, String> {
        let private: [u8; 32] = private
            .try_into()
            .map_err(|_| format!("the private key has {} bytes, not 32", private.len()))?;
        let private = Zeroizing::new(private);
        let secret = Option::<Scalar>::from(Scalar::from_canonical_bytes(*private))
            .map(Zeroizing::new)
            .ok_or("the private key is not a canonical Ristretto255 scalar")?;
        let public: [u8; 32] = public
            .try_into()
            .map_err(|_| format!("the public key has {} bytes, not 32", public.len()))?;
        if (RISTRETTO_BASEPOINT_TABLE * &*secret).compress().to_bytes() != public {
            return Err("the public key is not the private key's".into());
        }
        Ok(ServerKey { secret, public })
    }

    /// Opens a sealed credential (the `Authorization` value after [`SCHEME`]) bound to
    /// `digest`; the credential and the keys that prove the answer. `None` if the value is
    /// malformed or was not sealed to this key for this request.
    pub fn open(&self, sealed: &str, digest: &[u8; 32]) -> Option<(Zeroizing<String>, Keys)> {
        let (ephemeral, ciphertext) = sealed.trim().split_once('.')?;
        let ephemeral: [u8; POINT_LEN] = URL_SAFE_NO_PAD.decode(ephemeral).ok()?.try_into().ok()?;
        let ciphertext = URL_SAFE_NO_PAD.decode(ciphertext).ok()?;
        let point = CompressedRistretto(ephemeral).decompress()?;
        let keys = Keys::derive(&point.mul(&*self.secret), &ephemeral, &self.public)?;
        let aad = [CREDENTIAL, digest].concat();
        let credential = keys
            .cipher()
            .decrypt(
                &Nonce::from([0u8; 12]),
                Payload {
                    msg: &ciphertext,
                    aad: &aad,
                },
            )
            .ok()
            .map(Zeroizing::new)?;
        let credential = Zeroizing::new(String::from_utf8(credential.to_vec()).ok()?);
        Some((credential, keys))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server() -> ServerKey {
        let mut wide = [0u8; 64];
        rand::rngs::OsRng.fill_bytes(&mut wide);
        let secret = Scalar::from_bytes_mod_order_wide(&wide);
        let public = (RISTRETTO_BASEPOINT_TABLE * &secret).compress().to_bytes();
        ServerKey::new(secret.as_bytes(), &public).expect("a key pair")
    }

    #[test]
    fn the_pinned_vault_opens_the_credential_and_proves_its_answer() {
        let vault = server();
        let digest = request_digest("POST", "/v1/register/start", b"{}");
        let client = ClientExchange::new(&vault.public).expect("a point");
        let header = client.authorization("sbv1_secret", &digest);
        let sealed = header.strip_prefix("Sealed ").expect("the scheme");
        assert!(!header.contains("sbv1_secret"));
        let (credential, keys) = vault.open(sealed, &digest).expect("opens");
        assert_eq!(credential.as_str(), "sbv1_secret");
        let proof = keys.proof(&digest, 200, b"answer");
        assert!(client.verify(&digest, 200, b"answer", &proof));
        // Another answer, status or request: the proof does not hold.
        assert!(!client.verify(&digest, 200, b"answe!", &proof));
        assert!(!client.verify(&digest, 409, b"answer", &proof));
        let other = request_digest("POST", "/v1/register/finish", b"{}");
        assert!(!client.verify(&other, 200, b"answer", &proof));
        // The sealed credential is bound to its request.
        assert!(vault.open(sealed, &other).is_none());
    }

    #[test]
    fn another_key_can_neither_open_nor_prove() {
        let pinned = server();
        let impostor = server();
        let digest = request_digest("GET", "/v1/record/status?account=a", b"");
        let client = ClientExchange::new(&pinned.public).expect("a point");
        let header = client.authorization("sbv1_secret", &digest);
        assert!(impostor.open(&header[7..], &digest).is_none());
        // The impostor's own exchange gives keys whose proofs the client refuses.
        let own = ClientExchange::new(&impostor.public).expect("a point");
        let (_, keys) = impostor
            .open(&own.authorization("x", &digest)[7..], &digest)
            .expect("its own");
        assert!(!client.verify(&digest, 200, b"", &keys.proof(&digest, 200, b"")));
        assert!(!client.verify(&digest, 200, b"", "not base64!"));
    }

    #[test]
    fn the_identity_is_refused() {
        let vault = server();
        let identity = URL_SAFE_NO_PAD.encode([0u8; 32]);
        assert!(vault.open(&format!("{identity}.AAAA"), &[0; 32]).is_none());
        assert!(ClientExchange::new(&[0u8; 32]).is_none());
    }
}
