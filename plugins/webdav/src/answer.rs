//! What the server's answers mean for the host: each status a caller does not expect, and
//! each request that got no answer, becomes a [`ProviderError`] of the kind sealbackd can act
//! on, with a message that names the request and what to do.
//!
//! | answer | kind |
//! |---|---|
//! | 401, 403 | `Auth` |
//! | 507 Insufficient Storage, 413 Payload Too Large | `Quota` |
//! | 423, 425, 429, 5xx other than 501, 505 and 507; no connection; timeout | `Transient` (with the server's `Retry-After`, if any) |
//! | redirects, other 4xx, 501, 505, a certificate that is not trusted | `Permanent` |
//!
//! `NotFound` is never decided here: only `get` turns a 404 into it (a 404 to a PUT means
//! something else entirely).

use std::error::Error as _;
use std::fmt;
use std::time::{Duration, SystemTime};

use reqwest::header::{HeaderMap, LOCATION, RETRY_AFTER};
use reqwest::{Method, StatusCode, Url};
use sealback_plugin_api::ProviderError;

use crate::password::Credentials;
use crate::server::Answer;

/// A request, as error messages name it: `PUT https://dav.example/sealback/config`.
#[derive(Clone, Copy)]
pub(crate) struct Request<'a> {
    pub(crate) method: &'a Method,
    pub(crate) url: &'a Url,
}

impl fmt::Display for Request<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.method, self.url)
    }
}

/// Whether the provider tries again after this status (see [`crate::server`]).
pub(crate) fn is_retryable(status: StatusCode) -> bool {
    matches!(status.as_u16(), 423 | 425 | 429)
        || (status.is_server_error() && !matches!(status.as_u16(), 501 | 505 | 507))
}

/// The error for a request that got no answer.
pub(crate) fn failure(request: &Request<'_>, err: &reqwest::Error) -> ProviderError {
    if let Some(problem) = tls_problem(err) {
        let host = request.url.host_str().unwrap_or("the server");
        return ProviderError::permanent(format!(
            "{request}: the TLS connection to {host} failed: {problem}; if {host} has a \
             certificate from a private CA, give that CA's certificate in `ca_file`"
        ));
    }
    if err.is_builder() {
        return ProviderError::permanent(format!("{request}: cannot build it: {}", chain(err)));
    }
    if err.is_timeout() {
        return ProviderError::transient(format!(
            "{request}: no complete answer within the timeout ({}); raise `timeout` if the \
             link is slow",
            chain(err)
        ));
    }
    ProviderError::transient(format!("{request}: {}", chain(err)))
}

/// The error for an answer the caller did not expect.
pub(crate) fn unexpected(
    request: &Request<'_>,
    answer: &Answer,
    credentials: Option<&Credentials>,
) -> ProviderError {
    let status = answer.response.status();
    let head = format!("{request}: {}", status_text(status));
    match status.as_u16() {
        401 => ProviderError::auth(match credentials {
            Some(c) => format!(
                "{head}: the server refused user {:?} with {}; check both",
                c.username, c.source
            ),
            None => format!(
                "{head}: the server wants credentials; set `username` and `password_file` \
                 (or `password_env`)"
            ),
        }),
        403 => ProviderError::auth(match credentials {
            Some(c) => format!(
                "{head}: user {:?} may not do this; give it read and write access to the \
                 collection",
                c.username
            ),
            None => format!("{head}: the server forbids it; does it want credentials?"),
        }),
        507 => ProviderError::quota(format!(
            "{head}: the server has no room left; free some space or raise the quota"
        )),
        413 => ProviderError::quota(format!(
            "{head}: the server takes no upload this large; raise its upload limit (Apache: \
             LimitRequestBody) or the account's quota"
        )),
        _ if is_retryable(status) => {
            let error = ProviderError::transient(format!("{head}: the server is busy or failing"));
            match retry_after(answer.response.headers()) {
                Some(delay) => error.with_retry_after(delay),
                None => error,
            }
        }
        _ if status.is_redirection() => {
            let target = answer
                .response
                .headers()
                .get(LOCATION)
                .and_then(|value| value.to_str().ok())
                .unwrap_or("another address");
            ProviderError::permanent(format!(
                "{head}: the server redirects to {target}; set `url` to the address of the \
                 collection itself"
            ))
        }
        404 => ProviderError::permanent(format!(
            "{head}: the server says {} does not exist",
            request.url
        )),
        405 | 501 => ProviderError::permanent(format!(
            "{head}: the server does not allow {} there; is `url` a WebDAV collection?",
            request.method
        )),
        _ => ProviderError::permanent(format!("{head}: the server refused it")),
    }
}

/// `404 Not Found`.
pub(crate) fn status_text(status: StatusCode) -> String {
    match status.canonical_reason() {
        Some(reason) => format!("{} {reason}", status.as_u16()),
        None => status.as_u16().to_string(),
    }
}

/// How long the server asks to wait: `Retry-After` as seconds or as an HTTP date.
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(
        when.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

/// A certificate or TLS protocol problem somewhere in the error's causes. The TLS error
/// arrives wrapped in I/O errors (two deep, with reqwest 0.13), whose `source` skips what they
/// wrap, so each is unwrapped by hand.
fn tls_problem(err: &reqwest::Error) -> Option<String> {
    let mut source = err.source();
    while let Some(cause) = source {
        let mut inner: &(dyn std::error::Error + 'static) = cause;
        loop {
            if let Some(tls) = inner.downcast_ref::<rustls::Error>() {
                return Some(tls.to_string());
            }
            match inner
                .downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
            {
                Some(wrapped) => inner = wrapped,
                None => break,
            }
        }
        source = cause.source();
    }
    None
}

/// The error and its causes, `: `-separated, without the URL (messages name it already).
pub(crate) fn chain(err: &reqwest::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut source = err.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if parts.last() != Some(&text) {
            parts.push(text);
        }
        source = cause.source();
    }
    if parts.is_empty() {
        err.to_string()
    } else {
        parts.join(": ")
    }
}

#[cfg(test)]
mod tests {
    use reqwest::header::HeaderValue;
    use sealback_plugin_api::ErrorKind;

    use super::*;
    use crate::password::{Password, PasswordSource};

    /// The error for an answer with `status` and `headers`, to a PUT by user alice.
    fn classify(status: u16, headers: &[(&str, &str)]) -> ProviderError {
        let mut response = http::Response::builder().status(status);
        for (name, value) in headers {
            response = response.header(*name, *value);
        }
        let response = response.body(Vec::new()).expect("response");
        let answer = Answer {
            response: response.into(),
        };
        let url = Url::parse("https://dav.example/sb/config").expect("url");
        let request = Request {
            method: &Method::PUT,
            url: &url,
        };
        let source = PasswordSource::Env("DAV_PASSWORD".into());
        let env = |_: &str| Some(std::ffi::OsString::from("pw"));
        let credentials = Credentials {
            username: "alice".into(),
            password: Password::read(&source, env).expect("password"),
            source,
        };
        unexpected(&request, &answer, Some(&credentials))
    }

    #[test]
    fn statuses_become_the_kinds_the_host_acts_on() {
        for (status, kind) in [
            (401, ErrorKind::Auth),
            (403, ErrorKind::Auth),
            (507, ErrorKind::Quota),
            (413, ErrorKind::Quota),
            (423, ErrorKind::Transient),
            (425, ErrorKind::Transient),
            (429, ErrorKind::Transient),
            (500, ErrorKind::Transient),
            (503, ErrorKind::Transient),
            (400, ErrorKind::Permanent),
            (404, ErrorKind::Permanent),
            (405, ErrorKind::Permanent),
            (409, ErrorKind::Permanent),
            (501, ErrorKind::Permanent),
            (301, ErrorKind::Permanent),
        ] {
            let err = classify(status, &[]);
            assert_eq!(err.kind(), kind, "{status}: {err}");
            assert!(
                err.message()
                    .starts_with(&format!("PUT https://dav.example/sb/config: {status}")),
                "{err}"
            );
        }
    }

    #[test]
    fn messages_say_what_to_fix() {
        let err = classify(401, &[]);
        assert!(
            err.message().contains(
                "refused user \"alice\" with the password in sealbackd's environment \
                 variable DAV_PASSWORD"
            ),
            "{err}"
        );
        let err = classify(301, &[("location", "https://dav.example/other/")]);
        assert!(
            err.message()
                .contains("redirects to https://dav.example/other/"),
            "{err}"
        );
        // The plugin sends each request once and counts no tries: the host's retry layer
        // does, once.
        let err = classify(503, &[]);
        assert!(
            err.message()
                .ends_with("503 Service Unavailable: the server is busy or failing"),
            "{err}"
        );
    }

    #[test]
    fn a_transient_error_carries_the_servers_retry_after() {
        let err = classify(429, &[("retry-after", "30")]);
        assert_eq!(err.retry_after(), Some(Duration::from_secs(30)));
        assert_eq!(classify(503, &[]).retry_after(), None);
        // Only transient errors carry one.
        assert_eq!(classify(507, &[("retry-after", "30")]).retry_after(), None);
    }

    #[test]
    fn the_statuses_retried_are_the_transient_ones() {
        for code in [423, 425, 429, 500, 502, 503, 504, 599] {
            assert!(
                is_retryable(StatusCode::from_u16(code).expect("status")),
                "{code}"
            );
        }
        for code in [
            200, 207, 301, 400, 401, 403, 404, 405, 409, 413, 501, 505, 507,
        ] {
            assert!(
                !is_retryable(StatusCode::from_u16(code).expect("status")),
                "{code}"
            );
        }
    }

    #[test]
    fn retry_after_is_read_as_seconds_or_as_a_date() {
        let mut headers = HeaderMap::new();
        assert_eq!(retry_after(&headers), None);
        headers.insert(RETRY_AFTER, HeaderValue::from_static("120"));
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(120)));
        headers.insert(
            RETRY_AFTER,
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(retry_after(&headers), Some(Duration::ZERO));
        let later = SystemTime::now() + Duration::from_secs(3600);
        let value = HeaderValue::from_str(&httpdate::fmt_http_date(later)).expect("header");
        headers.insert(RETRY_AFTER, value);
        let delay = retry_after(&headers).expect("a date");
        assert!(delay > Duration::from_secs(3500) && delay <= Duration::from_secs(3600));
        headers.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&headers), None);
    }
}
