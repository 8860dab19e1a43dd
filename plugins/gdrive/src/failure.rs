//! What a failed Drive request means for the host: the delegate that records each HTTP failure
//! (google-drive3's default delegate gives up without saying why, and its error drops the
//! status and `Retry-After`), and the mapping of Drive's answers onto the ABI's error kinds.
//!
//! The delegate never asks google-drive3 to retry: retrying is the daemon's policy alone, so a
//! transient error goes back to it at once, with the wait Drive asked for.

use std::time::Duration;

use google_drive3::common::{self, Delegate, Retry};
use sealback_plugin_api::ProviderError;
use serde_json::Value;

/// One failed HTTP answer: its status, Drive's `reason`, its message and `Retry-After`.
#[derive(Debug, Clone, Default)]
pub(crate) struct HttpFailure {
    pub(crate) status: u16,
    pub(crate) reason: Option<String>,
    pub(crate) message: Option<String>,
    pub(crate) retry_after: Option<Duration>,
}

impl HttpFailure {
    /// Reads Drive's error body: `{"error": {"code", "message", "errors": [{"reason"}]}}`.
    pub(crate) fn new(
        status: u16,
        retry_after: Option<&hyper::header::HeaderValue>,
        body: Option<&Value>,
    ) -> Self {
        let error = body.and_then(|b| b.get("error"));
        let reason = error
            .and_then(|e| e.get("errors"))
            .and_then(|e| e.get(0))
            .and_then(|e| e.get("reason"))
            .and_then(Value::as_str)
            .map(str::to_owned);
        let message = error
            .and_then(|e| e.get("message"))
            .and_then(Value::as_str)
            .map(|m| m.chars().take(300).collect());
        Self {
            status,
            reason,
            message,
            retry_after: retry_after
                .and_then(|v| v.to_str().ok())
                .and_then(parse_retry_after),
        }
    }
}

/// Records the last HTTP failure of one call, and never retries.
#[derive(Debug, Default)]
pub(crate) struct Recorder {
    pub(crate) failure: Option<HttpFailure>,
}

impl Delegate for Recorder {
    fn http_failure(&mut self, response: &common::Response, err: Option<&Value>) -> Retry {
        self.failure = Some(HttpFailure::new(
            response.status().as_u16(),
            response.headers().get(hyper::header::RETRY_AFTER),
            err,
        ));
        Retry::Abort
    }
}

/// How a Drive call failed, as the provider acts on it.
#[derive(Debug)]
pub(crate) enum Failure {
    /// 401: the access token was refused; refresh it once and try again.
    Unauthorized,
    /// 404: no such file (id).
    NotFound,
    /// Anything else, ready for the host.
    Error(ProviderError),
}

impl Failure {
    /// The error for the host, `what` naming the request ("files.list in appDataFolder").
    pub(crate) fn into_error(self, what: &str) -> ProviderError {
        match self {
            Self::Error(err) => err,
            Self::NotFound => ProviderError::permanent(format!("{what}: 404 not found")),
            Self::Unauthorized => ProviderError::auth(format!(
                "{what}: Google refused the access token even after refreshing it (401): \
                 authorize the target again with `sealbackctl target auth`"
            )),
        }
    }
}

/// Maps an HTTP failure of `what` onto what the host does about it.
pub(crate) fn classify(what: &str, failure: &HttpFailure) -> Failure {
    let reason = failure.reason.as_deref().unwrap_or("");
    let detail = match (&failure.message, reason) {
        (Some(message), "") => format!("{what}: {} {message}", failure.status),
        (Some(message), reason) => format!("{what}: {} {reason}: {message}", failure.status),
        (None, _) => format!("{what}: HTTP {} {reason}", failure.status),
    };
    match (failure.status, reason) {
        (401, _) => Failure::Unauthorized,
        (404, _) => Failure::NotFound,
        (403, "storageQuotaExceeded") | (413, _) => Failure::Error(ProviderError::quota(format!(
            "{detail}: the Google Drive account is full: free space in Drive or buy more"
        ))),
        (403, "rateLimitExceeded" | "userRateLimitExceeded") | (429 | 408, _) | (500..=599, _) => {
            let err = ProviderError::transient(detail);
            Failure::Error(match failure.retry_after {
                Some(delay) => err.with_retry_after(delay),
                None => err,
            })
        }
        (403, "insufficientPermissions" | "appNotAuthorizedToFile" | "forbidden") => {
            Failure::Error(ProviderError::auth(format!(
                "{detail}: the authorization does not cover Drive's appDataFolder: run \
                 `sealbackctl target auth` again"
            )))
        }
        _ => Failure::Error(ProviderError::permanent(detail)),
    }
}

/// Maps the error of a google-drive3 call, with what its delegate recorded.
pub(crate) fn from_hub(what: &str, err: common::Error, recorder: &Recorder) -> Failure {
    if let Some(failure) = &recorder.failure {
        return classify(what, failure);
    }
    match err {
        common::Error::HttpError(err) => Failure::Error(ProviderError::transient(format!(
            "{what}: {}",
            error_chain(&err)
        ))),
        common::Error::MissingToken(err) => match err.downcast::<ProviderError>() {
            Ok(err) => Failure::Error(*err),
            Err(err) => Failure::Error(ProviderError::auth(format!(
                "{what}: no access token: {err}"
            ))),
        },
        common::Error::Io(err) => {
            Failure::Error(ProviderError::transient(format!("{what}: {err}")))
        }
        common::Error::Failure(response) => classify(
            what,
            &HttpFailure::new(response.status().as_u16(), None, None),
        ),
        other => Failure::Error(ProviderError::permanent(format!("{what}: {other}"))),
    }
}

/// A request that took longer than the `timeout` option.
pub(crate) fn timed_out(what: &str, timeout: Duration) -> Failure {
    Failure::Error(ProviderError::transient(format!(
        "{what}: no answer within {} (the `timeout` option)",
        humantime::format_duration(timeout)
    )))
}

/// An error with its sources ("client error (Connect): connection refused").
pub(crate) fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// `Retry-After`: a number of seconds or an HTTP date.
fn parse_retry_after(value: &str) -> Option<Duration> {
    if let Ok(seconds) = value.trim().parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value.trim()).ok()?;
    Some(
        at.duration_since(std::time::SystemTime::now())
            .unwrap_or(Duration::from_secs(1)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use sealback_plugin_api::ErrorKind;

    fn failure(status: u16, reason: &str, retry_after: Option<u64>) -> HttpFailure {
        HttpFailure {
            status,
            reason: Some(reason.to_owned()),
            message: Some("m".to_owned()),
            retry_after: retry_after.map(Duration::from_secs),
        }
    }

    fn kind(f: Failure) -> ErrorKind {
        f.into_error("x").kind()
    }

    #[test]
    fn drive_answers_map_onto_the_abi_kinds() {
        assert_eq!(
            kind(classify("x", &failure(403, "rateLimitExceeded", None))),
            ErrorKind::Transient
        );
        assert_eq!(
            kind(classify("x", &failure(403, "userRateLimitExceeded", None))),
            ErrorKind::Transient
        );
        assert_eq!(
            kind(classify("x", &failure(429, "", None))),
            ErrorKind::Transient
        );
        assert_eq!(
            kind(classify("x", &failure(503, "backendError", None))),
            ErrorKind::Transient
        );
        assert_eq!(
            kind(classify("x", &failure(403, "storageQuotaExceeded", None))),
            ErrorKind::Quota
        );
        assert_eq!(
            kind(classify(
                "x",
                &failure(403, "insufficientPermissions", None)
            )),
            ErrorKind::Auth
        );
        assert_eq!(
            kind(classify("x", &failure(400, "invalid", None))),
            ErrorKind::Permanent
        );
        assert!(matches!(
            classify("x", &failure(401, "authError", None)),
            Failure::Unauthorized
        ));
        assert!(matches!(
            classify("x", &failure(404, "notFound", None)),
            Failure::NotFound
        ));
    }

    #[test]
    fn retry_after_reaches_the_host() {
        let err = classify("x", &failure(429, "", Some(7))).into_error("x");
        assert_eq!(err.retry_after(), Some(Duration::from_secs(7)));
        let body = serde_json::json!({"error": {"code": 403, "message": "Rate Limit Exceeded",
            "errors": [{"domain": "usageLimits", "reason": "rateLimitExceeded", "message": "m"}]}});
        let header = hyper::header::HeaderValue::from_static("3");
        let parsed = HttpFailure::new(403, Some(&header), Some(&body));
        assert_eq!(parsed.reason.as_deref(), Some("rateLimitExceeded"));
        assert_eq!(parsed.retry_after, Some(Duration::from_secs(3)));
    }
}
