//! The vault's HSM, over PKCS#11 (`cryptoki`).
//!
//! The token holds one key, the **record key**: AES-256, generated inside the token by
//! `sealback-vault init`, `CKA_SENSITIVE` and not `CKA_EXTRACTABLE`, usable only to encrypt
//! and decrypt. Its value never leaves the HSM; the vault asks the HSM to seal and open:
//!
//! ```text
//! sealed = IV (12 random bytes) || CKM_AES_GCM(record key, IV, AAD, plaintext) (128-bit tag)
//! ```
//!
//! What is sealed, and under which additional data, is [`crate::record`]'s business. The IV
//! is random: the key seals only when an account registers (and once for the ServerSetup),
//! so even 2^32 registrations, the bound for random 96-bit IVs under one key, are far away.
//!
//! A second key, the **entry key** (HMAC-SHA256, 256 bits, `CKA_SENSITIVE`, not
//! `CKA_EXTRACTABLE`, sign and verify only), makes the tag on each account entry
//! ([`crate::record::tag_entry`]). Entries are written at every guess, far more often than
//! records, so their tag is a deterministic MAC, not GCM under a random IV. The vault
//! generates it in the token the first time it opens a token without one.
//!
//! With several vault instances, each with its own token, [`crate::ceremony`] generates both
//! keys once and installs them into every token, never in clear (docs/vault.md §10).
//!
//! Keys are found by label ([`RECORD_KEY_LABEL`]) each time the vault starts: object handles
//! are not stable from one run to the next. The module, the token and the PIN source are
//! configuration ([`crate::config::HsmConfig`]), so SoftHSM2 and a real HSM differ only
//! there. The user is logged in once; a session held for the vault's lifetime keeps that
//! login, and operations use a small pool of further sessions (a PKCS#11 session serves one
//! thread at a time).

use std::sync::Mutex;

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as Pkcs11Error, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::{AuthPin, Ulong};
use rand::RngCore;
use zeroize::Zeroizing;

use crate::config::HsmConfig;

/// The label of the record key in the token.
pub const RECORD_KEY_LABEL: &str = "sealback-vault record key";
/// The label of the entry key in the token.
pub const ENTRY_KEY_LABEL: &str = "sealback-vault entry key";

const IV_LEN: usize = 12;
const TAG_BITS: u64 = 128;
/// Sessions kept open for reuse; more are opened under load and closed after use.
const POOLED_SESSIONS: usize = 8;

/// What went wrong with the HSM.
#[derive(Debug, thiserror::Error)]
pub enum HsmError {
    #[error("cannot load the PKCS#11 module {module}: {source}; check `[hsm] module`")]
    Module { module: String, source: Pkcs11Error },
    #[error(
        "no PKCS#11 token {0}: check `[hsm] token_label` / `slot` (softhsm2-util --show-slots)"
    )]
    NoToken(String),
    #[error("PKCS#11 {operation}: {source}")]
    Pkcs11 {
        operation: &'static str,
        source: Pkcs11Error,
    },
    #[error("the token has no key labelled {RECORD_KEY_LABEL:?}: run `sealback-vault init` first")]
    NoRecordKey,
    #[error(
        "the token holds {0} keys labelled {RECORD_KEY_LABEL:?}; exactly one is expected, remove \
         the extra ones"
    )]
    AmbiguousRecordKey(usize),
    #[error(
        "the token holds {1} keys labelled {0:?}; exactly one is expected, remove the extra ones"
    )]
    AmbiguousKey(&'static str, usize),
    #[error(
        "a sealed value does not open under the record key: it was altered, or sealed for \
         another account or record version"
    )]
    Unsealable,
}

pub(crate) fn failed(operation: &'static str) -> impl FnOnce(Pkcs11Error) -> HsmError {
    move |source| HsmError::Pkcs11 { operation, source }
}

/// An open, logged-in token and its record key.
pub struct Hsm {
    pkcs11: Pkcs11,
    slot: Slot,
    record_key: ObjectHandle,
    entry_key: ObjectHandle,
    /// Keeps the user logged in for as long as the vault runs (closing a token's last
    /// session logs the user out).
    _login: Mutex<Session>,
    pool: Mutex<Vec<Session>>,
}

/// The record key's security attributes, as the token reports them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordKeyReport {
    pub sensitive: bool,
    pub extractable: bool,
    pub always_sensitive: bool,
    pub never_extractable: bool,
    pub token: bool,
    pub value_len: u64,
    /// Whether `C_GetAttributeValue(CKA_VALUE)` gave out the key's value.
    pub value_readable: bool,
}

impl Hsm {
    /// Loads the module, finds the token, logs in and finds the record key.
    pub fn open(config: &HsmConfig, pin: &AuthPin) -> Result<Hsm, HsmError> {
        let (pkcs11, slot, login) = connect(config, pin)?;
        let record_key = find_record_key(&login)?.ok_or(HsmError::NoRecordKey)?;
        let entry_key = entry_key(&login)?;
        Ok(Hsm {
            pkcs11,
            slot,
            record_key,
            entry_key,
            _login: Mutex::new(login),
            pool: Mutex::new(Vec::new()),
        })
    }

    /// Opens the token as [`Hsm::open`] does, first generating the record key inside it if
    /// it has none (`sealback-vault init`). Whether the key was generated.
    pub fn open_or_create(config: &HsmConfig, pin: &AuthPin) -> Result<(Hsm, bool), HsmError> {
        let (pkcs11, slot, login) = connect(config, pin)?;
        let (record_key, created) = match find_record_key(&login)? {
            Some(key) => (key, false),
            None => (generate_record_key(&login)?, true),
        };
        let entry_key = entry_key(&login)?;
        let hsm = Hsm {
            pkcs11,
            slot,
            record_key,
            entry_key,
            _login: Mutex::new(login),
            pool: Mutex::new(Vec::new()),
        };
        Ok((hsm, created))
    }

    /// Seals `plaintext` under the record key, with `aad` as additional data.
    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, HsmError> {
        let mut iv = [0u8; IV_LEN];
        rand::rngs::OsRng.fill_bytes(&mut iv);
        let mut iv_param = iv;
        let ciphertext = self.with_session(|session| {
            let params = GcmParams::new(&mut iv_param, aad, Ulong::new(TAG_BITS))
                .map_err(failed("GCM parameters"))?;
            session
                .encrypt(&Mechanism::AesGcm(params), self.record_key, plaintext)
                .map_err(failed("encrypt"))
        })?;
        let mut sealed = Vec::with_capacity(IV_LEN + ciphertext.len());
        sealed.extend_from_slice(&iv);
        sealed.extend_from_slice(&ciphertext);
        Ok(sealed)
    }

    /// Opens what [`Hsm::seal`] sealed with the same `aad`; [`HsmError::Unsealable`] if it
    /// was altered or sealed under other additional data.
    pub fn open_sealed(&self, aad: &[u8], sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, HsmError> {
        if sealed.len() < IV_LEN + (TAG_BITS as usize) / 8 {
            return Err(HsmError::Unsealable);
        }
        let (iv, ciphertext) = sealed.split_at(IV_LEN);
        let mut iv = <[u8; IV_LEN]>::try_from(iv).map_err(|_| HsmError::Unsealable)?;
        self.with_session(|session| {
            let params = GcmParams::new(&mut iv, aad, Ulong::new(TAG_BITS))
                .map_err(failed("GCM parameters"))?;
            match session.decrypt(&Mechanism::AesGcm(params), self.record_key, ciphertext) {
                Ok(plain) => Ok(Zeroizing::new(plain)),
                Err(Pkcs11Error::Pkcs11(
                    RvError::EncryptedDataInvalid | RvError::EncryptedDataLenRange,
                    _,
                )) => Err(HsmError::Unsealable),
                Err(err) => Err(failed("decrypt")(err)),
            }
        })
    }

    /// HMAC-SHA256 of `data` under the entry key (32 bytes).
    pub fn mac(&self, data: &[u8]) -> Result<Vec<u8>, HsmError> {
        self.with_session(|session| {
            session
                .sign(&Mechanism::Sha256Hmac, self.entry_key, data)
                .map_err(failed("sign"))
        })
    }

    /// Checks `mac` over `data` under the entry key, inside the HSM; [`HsmError::Unsealable`]
    /// if it does not match.
    pub fn check_mac(&self, data: &[u8], mac: &[u8]) -> Result<(), HsmError> {
        self.with_session(|session| {
            match session.verify(&Mechanism::Sha256Hmac, self.entry_key, data, mac) {
                Ok(()) => Ok(()),
                Err(Pkcs11Error::Pkcs11(
                    RvError::SignatureInvalid | RvError::SignatureLenRange,
                    _,
                )) => Err(HsmError::Unsealable),
                Err(err) => Err(failed("verify")(err)),
            }
        })
    }

    /// The record key's attributes (`sealback-vault hsm`, and the tests).
    pub fn record_key_report(&self) -> Result<RecordKeyReport, HsmError> {
        self.with_session(|session| {
            let attributes = session
                .get_attributes(
                    self.record_key,
                    &[
                        AttributeType::Sensitive,
                        AttributeType::Extractable,
                        AttributeType::AlwaysSensitive,
                        AttributeType::NeverExtractable,
                        AttributeType::Token,
                        AttributeType::ValueLen,
                    ],
                )
                .map_err(failed("read the record key's attributes"))?;
            let mut report = RecordKeyReport {
                sensitive: false,
                extractable: true,
                always_sensitive: false,
                never_extractable: false,
                token: false,
                value_len: 0,
                value_readable: false,
            };
            for attribute in attributes {
                match attribute {
                    Attribute::Sensitive(v) => report.sensitive = v,
                    Attribute::Extractable(v) => report.extractable = v,
                    Attribute::AlwaysSensitive(v) => report.always_sensitive = v,
                    Attribute::NeverExtractable(v) => report.never_extractable = v,
                    Attribute::Token(v) => report.token = v,
                    Attribute::ValueLen(v) => report.value_len = *v,
                    _ => {}
                }
            }
            report.value_readable = matches!(
                session.get_attributes(self.record_key, &[AttributeType::Value]),
                Ok(values) if values.iter().any(|a| matches!(a, Attribute::Value(v) if !v.is_empty()))
            );
            Ok(report)
        })
    }

    /// Runs `f` on a session from the pool (or a new one), and puts it back.
    fn with_session<T>(
        &self,
        f: impl FnOnce(&Session) -> Result<T, HsmError>,
    ) -> Result<T, HsmError> {
        let pooled = self.pool.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let session = match pooled {
            Some(session) => session,
            None => self
                .pkcs11
                .open_rw_session(self.slot)
                .map_err(failed("open a session"))?,
        };
        let result = f(&session);
        // A session whose handle went bad is dropped rather than reused.
        let broken = matches!(
            &result,
            Err(HsmError::Pkcs11 {
                source: Pkcs11Error::Pkcs11(
                    RvError::SessionHandleInvalid | RvError::SessionClosed | RvError::DeviceError,
                    _
                ),
                ..
            })
        );
        let mut pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
        if !broken && pool.len() < POOLED_SESSIONS {
            pool.push(session);
        }
        result
    }
}

/// Loads the module, finds the slot, opens a session and logs the user in.
pub(crate) fn connect(
    config: &HsmConfig,
    pin: &AuthPin,
) -> Result<(Pkcs11, Slot, Session), HsmError> {
    let (pkcs11, slot, session) = open_token(config)?;
    match session.login(UserType::User, Some(pin)) {
        Ok(()) | Err(Pkcs11Error::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {}
        Err(err) => return Err(failed("log in (check the PIN)")(err)),
    }
    Ok((pkcs11, slot, session))
}

/// Loads the module, finds the slot and opens a read-write session, logged in as nobody.
pub(crate) fn open_token(config: &HsmConfig) -> Result<(Pkcs11, Slot, Session), HsmError> {
    let module = config.module.display().to_string();
    let pkcs11 = Pkcs11::new(&config.module).map_err(|source| HsmError::Module {
        module: module.clone(),
        source,
    })?;
    match pkcs11.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) | Err(Pkcs11Error::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(source) => return Err(HsmError::Module { module, source }),
    }
    let slot = find_slot(&pkcs11, config)?;
    let session = pkcs11
        .open_rw_session(slot)
        .map_err(failed("open a session"))?;
    Ok((pkcs11, slot, session))
}

/// Generates the record key: AES-256, in the token, sensitive, never extractable, for
/// encryption and decryption only.
fn generate_record_key(session: &Session) -> Result<ObjectHandle, HsmError> {
    let template = [
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::Encrypt(true),
        Attribute::Decrypt(true),
        Attribute::Wrap(false),
        Attribute::Unwrap(false),
        Attribute::Sign(false),
        Attribute::Verify(false),
        Attribute::Derive(false),
        Attribute::ValueLen(Ulong::new(32)),
        Attribute::Label(RECORD_KEY_LABEL.as_bytes().to_vec()),
    ];
    session
        .generate_key(&Mechanism::AesKeyGen, &template)
        .map_err(failed("generate the record key"))
}

/// Finds the entry key, or generates it in the token: HMAC, 256 bits, sensitive, never
/// extractable, for signing and verifying only.
fn entry_key(session: &Session) -> Result<ObjectHandle, HsmError> {
    if let Some(key) = find_entry_key(session)? {
        return Ok(key);
    }
    let template = [
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::Sign(true),
        Attribute::Verify(true),
        Attribute::Encrypt(false),
        Attribute::Decrypt(false),
        Attribute::Wrap(false),
        Attribute::Unwrap(false),
        Attribute::Derive(false),
        Attribute::ValueLen(Ulong::new(32)),
        Attribute::Label(ENTRY_KEY_LABEL.as_bytes().to_vec()),
    ];
    session
        .generate_key(&Mechanism::GenericSecretKeyGen, &template)
        .map_err(failed("generate the entry key"))
}

/// The entry key, if the token has one.
pub(crate) fn find_entry_key(session: &Session) -> Result<Option<ObjectHandle>, HsmError> {
    let found = session
        .find_objects(&[
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(KeyType::GENERIC_SECRET),
            Attribute::Label(ENTRY_KEY_LABEL.as_bytes().to_vec()),
        ])
        .map_err(failed("look up the entry key"))?;
    match found.len() {
        0 => Ok(None),
        1 => Ok(Some(found[0])),
        n => Err(HsmError::AmbiguousKey(ENTRY_KEY_LABEL, n)),
    }
}

fn find_slot(pkcs11: &Pkcs11, config: &HsmConfig) -> Result<Slot, HsmError> {
    let slots = pkcs11
        .get_slots_with_token()
        .map_err(failed("list the slots"))?;
    if let Some(id) = config.slot {
        return slots
            .into_iter()
            .find(|slot| slot.id() == id)
            .ok_or_else(|| HsmError::NoToken(format!("in slot {id}")));
    }
    let label = config.token_label.as_deref().unwrap_or_default();
    for slot in slots {
        let info = pkcs11
            .get_token_info(slot)
            .map_err(failed("read a token's information"))?;
        if info.label().trim_end() == label {
            return Ok(slot);
        }
    }
    Err(HsmError::NoToken(format!("labelled {label:?}")))
}

pub(crate) fn find_record_key(session: &Session) -> Result<Option<ObjectHandle>, HsmError> {
    let found = session
        .find_objects(&[
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(KeyType::AES),
            Attribute::Label(RECORD_KEY_LABEL.as_bytes().to_vec()),
        ])
        .map_err(failed("look up the record key"))?;
    match found.len() {
        0 => Ok(None),
        1 => Ok(Some(found[0])),
        n => Err(HsmError::AmbiguousRecordKey(n)),
    }
}
