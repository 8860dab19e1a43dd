//! Drive's error answers, in the shape the v3 API sends them (see Google's "Resolve errors"
//! guide for the Drive API):
//!
//! ```json
//! {"error": {"code": 403,
//!            "message": "User Rate Limit Exceeded",
//!            "errors": [{"domain": "usageLimits", "reason": "userRateLimitExceeded",
//!                        "message": "User Rate Limit Exceeded"}],
//!            "status": "PERMISSION_DENIED"}}
//! ```
//!
//! The OAuth endpoints answer in RFC 6749's shape instead (`{"error": "...",
//! "error_description": "..."}`): [`OAuthError`].

use std::time::Duration;

use serde_json::{Value, json};

/// One Drive API error answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriveError {
    /// The HTTP status, also `error.code`.
    pub status: u16,
    /// `error.status`, the google.rpc code name.
    pub rpc_status: &'static str,
    /// `errors[0].domain`.
    pub domain: &'static str,
    /// `errors[0].reason`.
    pub reason: &'static str,
    /// `error.message` and `errors[0].message`.
    pub message: String,
    /// `errors[0].location` and `locationType` (a parameter or header name), when Drive names one.
    pub location: Option<(&'static str, String)>,
    /// A `Retry-After` header (seconds), which Drive sends with some 429 and 503 answers.
    pub retry_after: Option<Duration>,
}

impl DriveError {
    fn new(
        status: u16,
        rpc_status: &'static str,
        domain: &'static str,
        reason: &'static str,
        message: impl Into<String>,
    ) -> DriveError {
        DriveError {
            status,
            rpc_status,
            domain,
            reason,
            message: message.into(),
            location: None,
            retry_after: None,
        }
    }

    fn at(mut self, location_type: &'static str, location: impl Into<String>) -> DriveError {
        self.location = Some((location_type, location.into()));
        self
    }

    /// 403 `rateLimitExceeded` (the project's request rate).
    pub fn rate_limit_exceeded() -> DriveError {
        DriveError::new(
            403,
            "PERMISSION_DENIED",
            "usageLimits",
            "rateLimitExceeded",
            "Rate Limit Exceeded",
        )
    }

    /// 403 `userRateLimitExceeded` (one user's request rate).
    pub fn user_rate_limit_exceeded() -> DriveError {
        DriveError::new(
            403,
            "PERMISSION_DENIED",
            "usageLimits",
            "userRateLimitExceeded",
            "User Rate Limit Exceeded",
        )
    }

    /// 429 `rateLimitExceeded`, with a Retry-After when given.
    pub fn too_many_requests(retry_after: Option<Duration>) -> DriveError {
        let mut e = DriveError::new(
            429,
            "RESOURCE_EXHAUSTED",
            "usageLimits",
            "rateLimitExceeded",
            "Rate Limit Exceeded",
        );
        e.retry_after = retry_after;
        e
    }

    /// 500 `backendError`.
    pub fn backend_error() -> DriveError {
        DriveError::new(500, "INTERNAL", "global", "backendError", "Backend Error")
    }

    /// 503 `backendError` (Drive's "Service Unavailable").
    pub fn service_unavailable() -> DriveError {
        DriveError::new(
            503,
            "UNAVAILABLE",
            "global",
            "backendError",
            "Service Unavailable",
        )
    }

    /// 403 `storageQuotaExceeded`: the user's Drive is full.
    pub fn storage_quota_exceeded() -> DriveError {
        DriveError::new(
            403,
            "PERMISSION_DENIED",
            "usageLimits",
            "storageQuotaExceeded",
            "The user's Drive storage quota has been exceeded.",
        )
    }

    /// 401 `authError`: no, an unknown or an expired access token.
    pub fn auth_error() -> DriveError {
        DriveError::new(
            401,
            "UNAUTHENTICATED",
            "global",
            "authError",
            "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential.",
        )
        .at("header", "Authorization")
    }

    /// 404 `notFound` for a file id.
    pub fn file_not_found(id: &str) -> DriveError {
        DriveError::new(
            404,
            "NOT_FOUND",
            "global",
            "notFound",
            format!("File not found: {id}."),
        )
        .at("parameter", "fileId")
    }

    /// 404 for an upload session that does not exist (or was completed and forgotten).
    pub fn upload_session_not_found() -> DriveError {
        DriveError::new(
            404,
            "NOT_FOUND",
            "global",
            "notFound",
            "Upload session not found.",
        )
    }

    /// 404 for a path that is no Drive method.
    pub fn no_such_method(path: &str) -> DriveError {
        DriveError::new(
            404,
            "NOT_FOUND",
            "global",
            "notFound",
            format!("Not Found: {path}"),
        )
    }

    /// 400 `invalid` for a parameter's value (Drive's "Invalid Value").
    pub fn invalid_parameter(parameter: &str, detail: impl Into<String>) -> DriveError {
        let detail = detail.into();
        DriveError::new(
            400,
            "INVALID_ARGUMENT",
            "global",
            "invalid",
            format!("Invalid Value: {detail}"),
        )
        .at("parameter", parameter.to_string())
    }

    /// 400 `badRequest` for a request Drive would refuse.
    pub fn bad_request(detail: impl Into<String>) -> DriveError {
        DriveError::new(400, "INVALID_ARGUMENT", "global", "badRequest", detail)
    }

    /// The answer's body.
    pub fn body(&self) -> Value {
        let mut detail =
            json!({"domain": self.domain, "reason": self.reason, "message": self.message});
        if let Some((location_type, location)) = &self.location {
            detail["locationType"] = json!(location_type);
            detail["location"] = json!(location);
        }
        json!({"error": {"code": self.status, "message": self.message, "errors": [detail], "status": self.rpc_status}})
    }
}

/// An OAuth 2.0 token-endpoint error (RFC 6749 §5.2, RFC 8628 §3.5), with the HTTP status
/// Google's endpoint uses for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OAuthError {
    /// 428: the user has not approved the device yet.
    AuthorizationPending,
    /// 403: polled faster than `interval`; the client must add 5 seconds.
    SlowDown,
    /// 403: the user refused.
    AccessDenied,
    /// 400: the device code expired before the user approved it.
    ExpiredToken,
    /// 400: an unknown or revoked refresh token or device code.
    InvalidGrant,
    /// 401: an unknown client id or a wrong secret.
    InvalidClient,
    /// 400: a grant type the endpoint does not know.
    UnsupportedGrantType,
    /// 400: a parameter is missing.
    InvalidRequest,
}

impl OAuthError {
    pub fn status(self) -> u16 {
        match self {
            OAuthError::AuthorizationPending => 428,
            OAuthError::SlowDown | OAuthError::AccessDenied => 403,
            OAuthError::InvalidClient => 401,
            OAuthError::ExpiredToken
            | OAuthError::InvalidGrant
            | OAuthError::UnsupportedGrantType
            | OAuthError::InvalidRequest => 400,
        }
    }

    pub fn code(self) -> &'static str {
        match self {
            OAuthError::AuthorizationPending => "authorization_pending",
            OAuthError::SlowDown => "slow_down",
            OAuthError::AccessDenied => "access_denied",
            OAuthError::ExpiredToken => "expired_token",
            OAuthError::InvalidGrant => "invalid_grant",
            OAuthError::InvalidClient => "invalid_client",
            OAuthError::UnsupportedGrantType => "unsupported_grant_type",
            OAuthError::InvalidRequest => "invalid_request",
        }
    }

    pub fn body(self, description: &str) -> Value {
        json!({"error": self.code(), "error_description": description})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_bodies_have_drives_shape() {
        let body = DriveError::user_rate_limit_exceeded().body();
        assert_eq!(body["error"]["code"], 403);
        assert_eq!(body["error"]["status"], "PERMISSION_DENIED");
        assert_eq!(
            body["error"]["errors"][0]["reason"],
            "userRateLimitExceeded"
        );
        assert_eq!(body["error"]["errors"][0]["domain"], "usageLimits");
        let body = DriveError::file_not_found("abc").body();
        assert_eq!(body["error"]["message"], "File not found: abc.");
        assert_eq!(body["error"]["errors"][0]["location"], "fileId");
    }
}
