//! The OPAQUE configuration of protocol version 1.
//!
//! OPAQUE is an asymmetric password-authenticated key exchange (the CFRG's OPAQUE, as
//! implemented by `opaque-ke` 4): the client proves knowledge of the password without the
//! server ever receiving it or anything from which it could be tested offline. The server
//! holds an OPRF key; a password guess needs the server's help, one online evaluation per
//! guess, and that is what the vault counts.
//!
//! - OPRF and key-exchange group: Ristretto255.
//! - Key exchange: TripleDh with SHA-512.
//! - Key-stretching function: Argon2id, version 0x13, [`ARGON2_MEMORY_KIB`] KiB,
//!   [`ARGON2_ITERATIONS`] passes, [`ARGON2_LANES`] lane. It runs on the client only, at
//!   registration and at every login; `docs/vault.md` says why these numbers for a phone.
//!   The parameters are part of the protocol version: a record registered with one set can
//!   only be opened with the same set.
//! - Identifiers: the client identifier is the account name, the server identifier is the
//!   default (its public key). Binding the account name means a record moved to another
//!   account cannot be opened there, even before the HSM's additional data is checked.
//! - Context: [`CONTEXT`].

use opaque_ke::argon2::{Algorithm, Argon2, Params, Version};
use opaque_ke::{CipherSuite, Identifiers, Ristretto255, TripleDh};

/// The cipher suite both sides instantiate `opaque-ke` with.
pub struct Suite;

impl CipherSuite for Suite {
    type OprfCs = Ristretto255;
    type KeyExchange = TripleDh<Ristretto255, sha2::Sha512>;
    type Ksf = Argon2<'static>;
}

/// Argon2id memory, in KiB (64 MiB).
pub const ARGON2_MEMORY_KIB: u32 = 64 * 1024;
/// Argon2id passes over the memory.
pub const ARGON2_ITERATIONS: u32 = 3;
/// Argon2id lanes (the `argon2` crate computes lanes one after the other, so more lanes
/// would only add work for the phone without a matching cost for an attacker's hardware).
pub const ARGON2_LANES: u32 = 1;

/// The OPAQUE context string: both sides must pass the same, or the login fails.
pub const CONTEXT: &[u8] = b"sealback-vault protocol v1";

/// The key-stretching function with the protocol's parameters.
pub fn key_stretching() -> Argon2<'static> {
    key_stretching_with(ARGON2_MEMORY_KIB, ARGON2_ITERATIONS, ARGON2_LANES)
        .expect("the protocol's Argon2 parameters are valid")
}

/// Argon2id with other parameters. Only for measurements and load tests (`vault-bench`
/// drives the server with cheap clients, since the server's work does not depend on the
/// client's key stretching); a record made with other parameters cannot be opened by
/// [`crate::Vault`].
pub fn key_stretching_with(
    memory_kib: u32,
    iterations: u32,
    lanes: u32,
) -> Result<Argon2<'static>, String> {
    let params = Params::new(memory_kib, iterations, lanes, None)
        .map_err(|err| format!("invalid Argon2 parameters: {err}"))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

/// The OPAQUE identifiers for `account`.
pub fn identifiers(account: &str) -> Identifiers<'_> {
    Identifiers {
        client: Some(account.as_bytes()),
        server: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_stronger_than_the_crate_default() {
        let ours = key_stretching();
        let default = Argon2::default();
        assert_eq!(ours.params().m_cost(), ARGON2_MEMORY_KIB);
        assert!(ours.params().m_cost() > default.params().m_cost());
        assert!(ours.params().t_cost() > default.params().t_cost());
    }
}
