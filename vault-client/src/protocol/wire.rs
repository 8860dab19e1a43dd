//! The HTTP messages of protocol version 1.
//!
//! Every request goes over HTTPS and carries the account's credential (issued by
//! `sealback-vault account add`), sealed to the pinned key: `Authorization: Sealed ...`; every
//! answer to it carries the vault's proof ([`super::vault_proof`]). The vault also accepts
//! `Authorization: Bearer <credential>`, for tools and tests, and answers it without a proof. Bodies are JSON; OPAQUE
//! messages and sealed values are standard base64 with padding. Unknown fields are refused.
//!
//! | request                          | body                  | answer (200)              |
//! |----------------------------------|-----------------------|---------------------------|
//! | `GET /v1/server-key?account=`    |                       | [`ServerKeyAnswer`]       |
//! | `GET /v1/record/status?account=` |                       | [`StatusAnswer`]          |
//! | `POST /v1/register/start`        | [`RegisterStart`]     | [`RegisterStartAnswer`]   |
//! | `POST /v1/register/finish`       | [`RegisterFinish`]    | [`Done`]                  |
//! | `POST /v1/login/start`           | [`LoginStart`]        | [`LoginStartAnswer`]      |
//! | `POST /v1/login/finish`          | [`LoginFinish`]       | [`LoginFinishAnswer`]     |
//! | `DELETE /v1/record`              | [`DeleteRecord`]      | [`Done`]                  |
//!
//! Any other answer is an [`ErrorAnswer`] with the status of its [`ErrorCode`].

use serde::{Deserialize, Serialize};

/// Paths of the requests.
pub mod path {
    pub const SERVER_KEY: &str = "/v1/server-key";
    pub const STATUS: &str = "/v1/record/status";
    pub const REGISTER_START: &str = "/v1/register/start";
    pub const REGISTER_FINISH: &str = "/v1/register/finish";
    pub const LOGIN_START: &str = "/v1/login/start";
    pub const LOGIN_FINISH: &str = "/v1/login/finish";
    pub const RECORD: &str = "/v1/record";
}

/// The vault's OPAQUE public key, as `sealback-vault init` prints it (base64). The client
/// compares it with its pinned key before it sends anything about the password; the answer's
/// proof and OPAQUE authenticate it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerKeyAnswer {
    pub server_key: String,
}

/// Whether the account has a record, and how many guesses are left. Consumes nothing.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusAnswer {
    pub registered: bool,
    pub attempts_left: u32,
    /// The record was erased because the guess limit was reached; a new registration starts
    /// over.
    pub key_destroyed: bool,
}

/// OPAQUE registration, first message.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterStart {
    pub account: String,
    /// `RegistrationRequest`.
    #[serde(with = "b64")]
    pub request: Vec<u8>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterStartAnswer {
    /// `RegistrationResponse` (it carries the server's public key).
    #[serde(with = "b64")]
    pub response: Vec<u8>,
    /// The version the new record will have: reserved for this registration, never reused
    /// for the account. The client binds its sealed key to it.
    pub record_version: u64,
}

/// OPAQUE registration, last message, with K sealed under the export key. Replaces any
/// record the account had (its K is then gone) and sets the guess count to zero.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterFinish {
    pub account: String,
    pub record_version: u64,
    /// `RegistrationUpload`.
    #[serde(with = "b64")]
    pub upload: Vec<u8>,
    /// [`super::sealed_key`].
    #[serde(with = "b64")]
    pub sealed_key: Vec<u8>,
}

/// OPAQUE login, first message. Consumes one guess before anything is answered.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginStart {
    pub account: String,
    /// `CredentialRequest` (KE1).
    #[serde(with = "b64")]
    pub ke1: Vec<u8>,
    /// The client's attempt: 16 random bytes, in hexadecimal, the same for every try of one
    /// login (on any vault instance), with the same KE1. A guess is counted once per attempt:
    /// a try whose attempt the account's entry already holds, with the same KE1, is answered
    /// without spending another guess (docs/vault.md §7.2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt_id: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginStartAnswer {
    /// Names this login in `login/finish` (and `DELETE /v1/record`).
    pub login_id: String,
    /// `CredentialResponse` (KE2).
    #[serde(with = "b64")]
    pub ke2: Vec<u8>,
    /// Guesses left if this one is wrong.
    pub attempts_left: u32,
}

/// OPAQUE login, last message.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginFinish {
    pub account: String,
    pub login_id: String,
    /// `CredentialFinalization` (KE3).
    #[serde(with = "b64")]
    pub ke3: Vec<u8>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginFinishAnswer {
    /// The sealed key, under the login's session key ([`super::transfer`]).
    #[serde(with = "b64")]
    pub sealed_key: Vec<u8>,
    /// The record version the sealed key is bound to.
    pub record_version: u64,
}

/// Erases the account's record. Needs a login of the same account that finished with the
/// right password less than a minute ago: a credential alone cannot delete.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeleteRecord {
    pub account: String,
    pub login_id: String,
}

/// A request that succeeded with nothing to say.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Done {
    pub ok: bool,
}

/// What went wrong, for every answer that is not a 200.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorAnswer {
    pub error: ErrorCode,
    /// For a person: what is wrong and what to do. Never holds a secret.
    pub message: String,
    /// With `wrong-password`: guesses left.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempts_left: Option<u32>,
}

/// The kinds of refusal, each with its HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorCode {
    /// 401: no credential, or not this account's. Nothing was consumed.
    Unauthorized,
    /// 403: the login did not prove the password.
    WrongPassword,
    /// 404: the account has no record.
    NotRegistered,
    /// 410: the guess limit was reached and the record erased.
    KeyDestroyed,
    /// 400: a malformed request.
    BadRequest,
    /// 409: the request lost a race or refers to a stale login or record version.
    Conflict,
    /// 503: too many logins in progress; try again shortly.
    Busy,
    /// 500: the account's stored record failed its integrity check in the HSM (it was altered
    /// or moved in the vault's store) and was not used.
    RecordRefused,
    /// 500: the vault failed (its store, its HSM); see its log.
    Internal,
}

impl ErrorCode {
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::Unauthorized => 401,
            ErrorCode::WrongPassword => 403,
            ErrorCode::NotRegistered => 404,
            ErrorCode::KeyDestroyed => 410,
            ErrorCode::BadRequest => 400,
            ErrorCode::Conflict => 409,
            ErrorCode::Busy => 503,
            ErrorCode::RecordRefused => 500,
            ErrorCode::Internal => 500,
        }
    }
}

/// Standard base64 (with padding) for byte fields.
pub mod b64 {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(deserializer)?;
        STANDARD.decode(text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_and_refuse_unknown_fields() {
        let start = LoginStart {
            account: "a".into(),
            ke1: vec![1, 2, 3],
            attempt_id: None,
        };
        let json = serde_json::to_string(&start).expect("serializes");
        assert_eq!(json, r#"{"account":"a","ke1":"AQID"}"#);
        let with_attempt = r#"{"account":"a","ke1":"AQID","attempt_id":"00ff"}"#;
        let back: LoginStart = serde_json::from_str(with_attempt).expect("parses");
        assert_eq!(back.attempt_id.as_deref(), Some("00ff"));
        let back: LoginStart = serde_json::from_str(&json).expect("parses");
        assert_eq!(back.ke1, vec![1, 2, 3]);
        assert!(serde_json::from_str::<LoginStart>(r#"{"account":"a","ke1":"","x":1}"#).is_err());
        let err: ErrorAnswer =
            serde_json::from_str(r#"{"error":"wrong-password","message":"m","attempts_left":3}"#)
                .expect("parses");
        assert_eq!(err.error, ErrorCode::WrongPassword);
        assert_eq!(err.attempts_left, Some(3));
    }
}
