//! The key ceremony: the same record key and entry key in several HSM tokens (one per vault
//! instance), without any of them, or anyone, ever seeing a key in clear (docs/vault.md §10).
//!
//! 1. `key ceremony generate`, once, on the first token: both keys are generated inside it,
//!    sensitive, and extractable only under a *trusted* wrapping key
//!    (`CKA_WRAP_WITH_TRUSTED`): only the token's security officer can mark a key trusted
//!    (`CKA_TRUSTED`), so the user PIN alone cannot wrap them under a key of its choosing.
//! 2. `key ceremony transport-key` on each receiving token: an RSA-3072 key pair generated
//!    inside it; the private half (sensitive, not extractable, unwrap only) stays, the public
//!    half is written to a file, and its fingerprint printed.
//! 3. `key ceremony wrap --for FILE --fingerprint HEX` on the first token: the fingerprint,
//!    read out by the receiver's operator, must match the file's key; the security officer
//!    (`--so-pin-file`) imports it as a trusted session key, and the user wraps both keys under
//!    it (`CKM_RSA_PKCS_OAEP`, SHA-1 and MGF1-SHA-1, the only OAEP parameters SoftHSM2 2.6
//!    takes). Prints the key check value.
//! 4. `key ceremony unwrap FILE --check VALUE` on the receiver: refuses a file made for another
//!    transport key, unwraps both keys into the token as sensitive and not extractable,
//!    compares their check values with the file's and with `--check` (read out by the first
//!    token's operator), keeps them only if all agree, and destroys the transport key.
//!
//! The key check value names a set of keys without revealing them: for the record key the
//! GCM tag of an empty message under a fixed IV of zeros and the AAD [`CHECK_LABEL`] (not the
//! usual encryption of a zero block: under GCM that block is the hash key `H`), for the entry
//! key an HMAC of [`CHECK_LABEL`]; eight bytes of each, in hexadecimal.

use cryptoki::error::{Error as Pkcs11Error, RvError};
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::mechanism::rsa::{PkcsMgfType, PkcsOaepParams, PkcsOaepSource};
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::types::{AuthPin, Ulong};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::HsmConfig;
use crate::hsm::{
    ENTRY_KEY_LABEL, HsmError, RECORD_KEY_LABEL, connect, failed, find_entry_key, find_record_key,
    open_token,
};

/// The label of a receiving token's transport key pair.
pub const TRANSPORT_KEY_LABEL: &str = "sealback-vault transport key";
/// What the key check values are computed over.
pub const CHECK_LABEL: &[u8] = b"sealback-vault v1 key check value";
const TRANSPORT_FORMAT: &str = "sealback-vault transport key v1";
const WRAPPED_FORMAT: &str = "sealback-vault wrapped keys v1";
const TRANSPORT_BITS: u64 = 3072;
const CHECK_LEN: usize = 8;

/// What went wrong in a ceremony step.
#[derive(Debug, thiserror::Error)]
pub enum CeremonyError {
    #[error(transparent)]
    Hsm(#[from] HsmError),
    #[error("{0}")]
    Refused(String),
}

fn refused<T>(message: impl Into<String>) -> Result<T, CeremonyError> {
    Err(CeremonyError::Refused(message.into()))
}

/// The public half of a receiving token's transport key, as `transport-key` writes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransportKey {
    pub format: String,
    /// The receiving token's label, for the operators' eyes.
    pub token: String,
    #[serde(with = "sealback_vault_client::protocol::wire::b64")]
    pub modulus: Vec<u8>,
    #[serde(with = "sealback_vault_client::protocol::wire::b64")]
    pub public_exponent: Vec<u8>,
}

impl TransportKey {
    /// SHA-256 of the key, in hexadecimal: what the operators compare.
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.modulus, &self.public_exponent)
    }
}

fn fingerprint(modulus: &[u8], exponent: &[u8]) -> String {
    let mut hash = Sha256::new();
    hash.update(TRANSPORT_FORMAT.as_bytes());
    hash.update((modulus.len() as u32).to_be_bytes());
    hash.update(modulus);
    hash.update(exponent);
    hex(&hash.finalize())
}

/// Both keys wrapped for one transport key, as `wrap` writes them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WrappedKeys {
    pub format: String,
    /// The fingerprint of the transport key they are wrapped for.
    #[serde(rename = "for")]
    pub for_key: String,
    #[serde(with = "sealback_vault_client::protocol::wire::b64")]
    pub record_key: Vec<u8>,
    #[serde(with = "sealback_vault_client::protocol::wire::b64")]
    pub entry_key: Vec<u8>,
    /// The key check value of the keys inside.
    pub check: String,
}

/// The two halves of a key check value.
fn check_value(record: &[u8], entry: &[u8]) -> String {
    format!("{}-{}", hex(&record[..CHECK_LEN]), hex(&entry[..CHECK_LEN]))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The key check value of the token's record and entry keys.
fn key_check(
    session: &Session,
    record: ObjectHandle,
    entry: ObjectHandle,
) -> Result<String, HsmError> {
    let mut iv = [0u8; 12];
    let params =
        GcmParams::new(&mut iv, CHECK_LABEL, Ulong::new(128)).map_err(failed("GCM parameters"))?;
    let record_check = session
        .encrypt(&Mechanism::AesGcm(params), record, &[])
        .map_err(failed("compute the record key's check value"))?;
    let entry_check = session
        .sign(&Mechanism::Sha256Hmac, entry, CHECK_LABEL)
        .map_err(failed("compute the entry key's check value"))?;
    Ok(check_value(&record_check, &entry_check))
}

/// Both keys, or an error naming what is missing.
fn both_keys(session: &Session) -> Result<(ObjectHandle, ObjectHandle), CeremonyError> {
    match (find_record_key(session)?, find_entry_key(session)?) {
        (Some(record), Some(entry)) => Ok((record, entry)),
        _ => refused(
            "the token does not hold both the record key and the entry key: run `key ceremony \
             generate` on the first token, or `key ceremony unwrap` on one that receives them",
        ),
    }
}

fn no_keys_yet(session: &Session) -> Result<(), CeremonyError> {
    if find_record_key(session)?.is_some() || find_entry_key(session)?.is_some() {
        return refused(
            "the token already holds a vault key: the ceremony installs keys only into a token \
             without them (retire the token's keys with the HSM's tools first)",
        );
    }
    Ok(())
}

/// `key ceremony generate`: both keys, generated inside the first token, wrappable only under
/// a trusted key. Their check value.
pub fn generate(config: &HsmConfig, pin: &AuthPin) -> Result<String, CeremonyError> {
    let (_pkcs11, _slot, session) = connect(config, pin)?;
    no_keys_yet(&session)?;
    let common = |label: &str| {
        vec![
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(true),
            Attribute::WrapWithTrusted(true),
            Attribute::Wrap(false),
            Attribute::Unwrap(false),
            Attribute::Derive(false),
            Attribute::ValueLen(Ulong::new(32)),
            Attribute::Label(label.as_bytes().to_vec()),
        ]
    };
    let mut record = common(RECORD_KEY_LABEL);
    record.extend([
        Attribute::Encrypt(true),
        Attribute::Decrypt(true),
        Attribute::Sign(false),
        Attribute::Verify(false),
    ]);
    let mut entry = common(ENTRY_KEY_LABEL);
    entry.extend([
        Attribute::Sign(true),
        Attribute::Verify(true),
        Attribute::Encrypt(false),
        Attribute::Decrypt(false),
    ]);
    let record = session
        .generate_key(&Mechanism::AesKeyGen, &record)
        .map_err(failed("generate the record key"))?;
    let entry = session
        .generate_key(&Mechanism::GenericSecretKeyGen, &entry)
        .map_err(failed("generate the entry key"))?;
    Ok(key_check(&session, record, entry)?)
}

/// `key ceremony check`: the check value of the token's keys.
pub fn check(config: &HsmConfig, pin: &AuthPin) -> Result<String, CeremonyError> {
    let (_pkcs11, _slot, session) = connect(config, pin)?;
    let (record, entry) = both_keys(&session)?;
    Ok(key_check(&session, record, entry)?)
}

fn find_label(
    session: &Session,
    class: ObjectClass,
    label: &str,
) -> Result<Vec<ObjectHandle>, HsmError> {
    session
        .find_objects(&[
            Attribute::Class(class),
            Attribute::Label(label.as_bytes().to_vec()),
        ])
        .map_err(failed("look up the transport key"))
}

/// `key ceremony transport-key`: a new transport key pair in the receiving token (replacing
/// any earlier one, whose wrapped files then no longer open); its public half.
pub fn transport_key(config: &HsmConfig, pin: &AuthPin) -> Result<TransportKey, CeremonyError> {
    let (pkcs11, slot, session) = connect(config, pin)?;
    no_keys_yet(&session)?;
    for class in [ObjectClass::PRIVATE_KEY, ObjectClass::PUBLIC_KEY] {
        for old in find_label(&session, class, TRANSPORT_KEY_LABEL)? {
            session
                .destroy_object(old)
                .map_err(failed("destroy the old transport key"))?;
        }
    }
    let label = Attribute::Label(TRANSPORT_KEY_LABEL.as_bytes().to_vec());
    let public = [
        Attribute::Token(true),
        Attribute::Private(false),
        Attribute::ModulusBits(Ulong::new(TRANSPORT_BITS)),
        Attribute::PublicExponent(vec![1, 0, 1]),
        Attribute::Encrypt(false),
        Attribute::Wrap(false),
        Attribute::Verify(false),
        label.clone(),
    ];
    let private = [
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::Unwrap(true),
        Attribute::Decrypt(false),
        Attribute::Sign(false),
        Attribute::Derive(false),
        label,
    ];
    let (public, _private) = session
        .generate_key_pair(&Mechanism::RsaPkcsKeyPairGen, &public, &private)
        .map_err(failed("generate the transport key"))?;
    let (modulus, public_exponent) = rsa_public(&session, public)?;
    let token = pkcs11
        .get_token_info(slot)
        .map_err(failed("read the token's information"))?
        .label()
        .trim_end()
        .to_string();
    Ok(TransportKey {
        format: TRANSPORT_FORMAT.into(),
        token,
        modulus,
        public_exponent,
    })
}

fn rsa_public(session: &Session, key: ObjectHandle) -> Result<(Vec<u8>, Vec<u8>), HsmError> {
    let (mut modulus, mut exponent) = (Vec::new(), Vec::new());
    for attribute in session
        .get_attributes(
            key,
            &[AttributeType::Modulus, AttributeType::PublicExponent],
        )
        .map_err(failed("read the transport key"))?
    {
        match attribute {
            Attribute::Modulus(v) => modulus = v,
            Attribute::PublicExponent(v) => exponent = v,
            _ => {}
        }
    }
    Ok((modulus, exponent))
}

fn oaep() -> Mechanism<'static> {
    Mechanism::RsaPkcsOaep(PkcsOaepParams::new(
        MechanismType::SHA1,
        PkcsMgfType::MGF1_SHA1,
        PkcsOaepSource::empty(),
    ))
}

/// `key ceremony wrap`: both keys of this token wrapped for `transport`, whose fingerprint
/// the receiver's operator read out as `fingerprint`. The security officer's PIN marks the
/// transport key trusted, for this session only.
pub fn wrap(
    config: &HsmConfig,
    pin: &AuthPin,
    so_pin: &AuthPin,
    transport: &TransportKey,
    fingerprint: &str,
) -> Result<WrappedKeys, CeremonyError> {
    if transport.format != TRANSPORT_FORMAT {
        return refused(format!("not a transport key file ({:?})", transport.format));
    }
    let actual = transport.fingerprint();
    if !actual.eq_ignore_ascii_case(fingerprint.trim()) {
        return refused(format!(
            "the transport key's fingerprint is {actual}, not {fingerprint} as its token's \
             operator read it out: this file is not the receiving token's key; nothing was \
             wrapped"
        ));
    }
    if transport.modulus.len() * 8 < TRANSPORT_BITS as usize {
        return refused("the transport key is shorter than 3072 bits");
    }
    let (_pkcs11, _slot, session) = open_token(config)?;
    session
        .login(UserType::So, Some(so_pin))
        .map_err(failed("log in as security officer (check the SO PIN)"))?;
    let trusted = session.create_object(&[
        Attribute::Class(ObjectClass::PUBLIC_KEY),
        Attribute::KeyType(KeyType::RSA),
        Attribute::Token(false),
        Attribute::Private(false),
        Attribute::Trusted(true),
        Attribute::Wrap(true),
        Attribute::Encrypt(false),
        Attribute::Verify(false),
        Attribute::Modulus(transport.modulus.clone()),
        Attribute::PublicExponent(transport.public_exponent.clone()),
    ]);
    let logout = session
        .logout()
        .map_err(failed("log the security officer out"));
    let trusted = trusted.map_err(failed("import the transport key as trusted"))?;
    logout?;
    session
        .login(UserType::User, Some(pin))
        .map_err(failed("log in (check the PIN)"))?;
    let (record, entry) = both_keys(&session)?;
    let wrap = |key| match session.wrap_key(&oaep(), trusted, key) {
        Err(Pkcs11Error::Pkcs11(RvError::KeyUnextractable | RvError::KeyNotWrappable, _)) => {
            refused(
                "this token's keys cannot be wrapped: they were made by `init` (never \
                 extractable), not by `key ceremony generate`",
            )
        }
        other => other.map_err(|err| failed("wrap a key")(err).into()),
    };
    let wrapped = WrappedKeys {
        format: WRAPPED_FORMAT.into(),
        for_key: actual,
        record_key: wrap(record)?,
        entry_key: wrap(entry)?,
        check: key_check(&session, record, entry)?,
    };
    session
        .destroy_object(trusted)
        .map_err(failed("destroy the imported transport key"))?;
    Ok(wrapped)
}

/// `key ceremony unwrap`: installs the keys of `wrapped` into this token, sensitive and not
/// extractable, if they were wrapped for its transport key and their check value is both the
/// file's and `expected`; then destroys the transport key. Their check value.
pub fn unwrap(
    config: &HsmConfig,
    pin: &AuthPin,
    wrapped: &WrappedKeys,
    expected: &str,
) -> Result<String, CeremonyError> {
    if wrapped.format != WRAPPED_FORMAT {
        return refused(format!("not a wrapped keys file ({:?})", wrapped.format));
    }
    let (_pkcs11, _slot, session) = connect(config, pin)?;
    no_keys_yet(&session)?;
    let publics = find_label(&session, ObjectClass::PUBLIC_KEY, TRANSPORT_KEY_LABEL)?;
    let privates = find_label(&session, ObjectClass::PRIVATE_KEY, TRANSPORT_KEY_LABEL)?;
    let (public, private) = match (&publics[..], &privates[..]) {
        ([public], [private]) => (*public, *private),
        _ => {
            return refused(
                "this token has no transport key: run `key ceremony transport-key` on it, and \
                 have the keys wrapped for the key it writes",
            );
        }
    };
    let (modulus, exponent) = rsa_public(&session, public)?;
    let ours = fingerprint(&modulus, &exponent);
    if !wrapped.for_key.eq_ignore_ascii_case(&ours) {
        return refused(format!(
            "these keys were wrapped for the transport key {}, not this token's ({ours}): they \
             are meant for another token; nothing was installed",
            wrapped.for_key
        ));
    }
    let installed = install(&session, private, wrapped);
    let (record, entry) = match installed {
        Ok(keys) => keys,
        Err(err) => {
            remove_keys(&session);
            return Err(err);
        }
    };
    let check = key_check(&session, record, entry)?;
    if check != wrapped.check || check != expected.trim().to_ascii_lowercase() {
        remove_keys(&session);
        return refused(format!(
            "the unwrapped keys' check value is {check}; the file says {} and the first \
             token's operator read out {expected}: they are not the vault's keys, and were \
             removed",
            wrapped.check
        ));
    }
    for key in [private, public] {
        session
            .destroy_object(key)
            .map_err(failed("destroy the transport key"))?;
    }
    Ok(check)
}

/// Unwraps both keys into the token.
fn install(
    session: &Session,
    private: ObjectHandle,
    wrapped: &WrappedKeys,
) -> Result<(ObjectHandle, ObjectHandle), CeremonyError> {
    let template = |label: &str, key_type, encrypt: bool| {
        vec![
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(key_type),
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Encrypt(encrypt),
            Attribute::Decrypt(encrypt),
            Attribute::Sign(!encrypt),
            Attribute::Verify(!encrypt),
            Attribute::Wrap(false),
            Attribute::Unwrap(false),
            Attribute::Derive(false),
            Attribute::Label(label.as_bytes().to_vec()),
        ]
    };
    let unwrap = |blob: &[u8], template: Vec<Attribute>, what: &str| {
        session
            .unwrap_key(&oaep(), private, blob, &template)
            .or_else(|err| {
                refused(format!(
                    "the {what} does not unwrap under this token's transport key ({err}): the \
                     file was altered, or made for another token; nothing was installed"
                ))
            })
    };
    let record = unwrap(
        &wrapped.record_key,
        template(RECORD_KEY_LABEL, KeyType::AES, true),
        "record key",
    )?;
    let entry = unwrap(
        &wrapped.entry_key,
        template(ENTRY_KEY_LABEL, KeyType::GENERIC_SECRET, false),
        "entry key",
    )?;
    Ok((record, entry))
}

/// Removes whatever vault keys an unwrap that failed left in the token.
fn remove_keys(session: &Session) {
    for label in [RECORD_KEY_LABEL, ENTRY_KEY_LABEL] {
        if let Ok(found) = find_label(session, ObjectClass::SECRET_KEY, label) {
            for key in found {
                let _ = session.destroy_object(key);
            }
        }
    }
}

/// A vault key's security attributes, as the token reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyFlags {
    pub sensitive: bool,
    pub extractable: bool,
    pub wrap_with_trusted: bool,
    /// Whether `C_GetAttributeValue(CKA_VALUE)` gave out the key's value.
    pub value_readable: bool,
}

/// The security attributes of the token's two vault keys, with their labels.
pub fn key_flags(
    config: &HsmConfig,
    pin: &AuthPin,
) -> Result<Vec<(&'static str, KeyFlags)>, CeremonyError> {
    let (_pkcs11, _slot, session) = connect(config, pin)?;
    let (record, entry) = both_keys(&session)?;
    let mut out = Vec::new();
    for (label, key) in [(RECORD_KEY_LABEL, record), (ENTRY_KEY_LABEL, entry)] {
        let mut flags = KeyFlags {
            sensitive: false,
            extractable: true,
            wrap_with_trusted: false,
            value_readable: false,
        };
        for attribute in session
            .get_attributes(
                key,
                &[
                    AttributeType::Sensitive,
                    AttributeType::Extractable,
                    AttributeType::WrapWithTrusted,
                ],
            )
            .map_err(failed("read a key's attributes"))?
        {
            match attribute {
                Attribute::Sensitive(v) => flags.sensitive = v,
                Attribute::Extractable(v) => flags.extractable = v,
                Attribute::WrapWithTrusted(v) => flags.wrap_with_trusted = v,
                _ => {}
            }
        }
        flags.value_readable = matches!(
            session.get_attributes(key, &[AttributeType::Value]),
            Ok(values) if values.iter().any(|a| matches!(a, Attribute::Value(v) if !v.is_empty()))
        );
        out.push((label, flags));
    }
    Ok(out)
}
