//! The OAuth 2.0 endpoints: the token endpoint (`grant_type=refresh_token` and RFC 8628's
//! `urn:ietf:params:oauth:grant-type:device_code`) and the device authorization endpoint, in
//! Google's dialect: the device answer names the page `verification_url` (RFC 8628 says
//! `verification_uri`; both are sent), and the token endpoint answers
//! `authorization_pending` with 428, `slow_down` and `access_denied` with 403,
//! `expired_token` and `invalid_grant` with 400, a wrong client with 401 `invalid_client`.

use std::time::Instant;

use serde_json::json;

use super::errors::OAuthError;
use super::server::{Answer, Request};
use super::state::{Decision, DeviceGrant, DevicePoll, State, new_id};

/// What the OAuth side is configured with.
#[derive(Debug, Clone)]
pub(crate) struct OAuthConfig {
    pub client_id: String,
    pub client_secret: String,
    pub device_code_lifetime: std::time::Duration,
    pub interval: std::time::Duration,
    /// The polling interval enforced until the client was told to slow down (at least
    /// `interval`; longer, a client keeping the advertised interval hears `slow_down`).
    pub enforced_interval: std::time::Duration,
    /// The verification page shown to the user.
    pub verification_url: String,
}

const DEVICE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

fn error(e: OAuthError, description: &str) -> Answer {
    Answer::json(e.status(), &e.body(description))
}

/// `POST device_auth_uri` with `client_id` and `scope`.
pub(crate) fn device_code(state: &mut State, config: &OAuthConfig, request: &Request) -> Answer {
    let form = request.form();
    let Some(client_id) = form.get("client_id") else {
        return error(
            OAuthError::InvalidRequest,
            "Missing required parameter: client_id",
        );
    };
    if *client_id != config.client_id {
        return error(OAuthError::InvalidClient, "The OAuth client was not found.");
    }
    let Some(scope) = form.get("scope") else {
        return error(
            OAuthError::InvalidRequest,
            "Missing required parameter: scope",
        );
    };
    let device_code = new_id("AH-1Ng");
    // Google's user codes look like `ABC-DEF-GHI`.
    let letters: String = new_id("")
        .chars()
        .filter(char::is_ascii_alphabetic)
        .take(9)
        .collect::<String>()
        .to_uppercase();
    let user_code = format!("{}-{}-{}", &letters[0..3], &letters[3..6], &letters[6..9]);
    state.device_grants.insert(
        device_code.clone(),
        DeviceGrant {
            user_code: user_code.clone(),
            scope: scope.clone(),
            expires_at: Instant::now() + config.device_code_lifetime,
            interval: config.interval,
            enforced: config.enforced_interval.max(config.interval),
            last_poll: None,
            decision: Decision::Pending,
            polls: Vec::new(),
        },
    );
    Answer::json(
        200,
        &json!({
            "device_code": device_code,
            "user_code": user_code,
            "verification_url": config.verification_url,
            "verification_uri": config.verification_url,
            "expires_in": config.device_code_lifetime.as_secs(),
            "interval": config.interval.as_secs(),
        }),
    )
}

/// `POST token_uri`.
pub(crate) fn token(state: &mut State, config: &OAuthConfig, request: &Request) -> Answer {
    let form = request.form();
    if form.get("client_id") != Some(&config.client_id)
        || form.get("client_secret") != Some(&config.client_secret)
    {
        return error(
            OAuthError::InvalidClient,
            "The OAuth client was not found or its secret is wrong.",
        );
    }
    match form.get("grant_type").map(String::as_str) {
        Some("refresh_token") => {
            let Some(refresh) = form.get("refresh_token") else {
                return error(
                    OAuthError::InvalidRequest,
                    "Missing required parameter: refresh_token",
                );
            };
            let Some(scope) = state.refresh_tokens.get(refresh).cloned() else {
                return error(
                    OAuthError::InvalidGrant,
                    "Token has been expired or revoked.",
                );
            };
            let access = state.issue_access_token();
            Answer::json(
                200,
                &json!({"access_token": access, "expires_in": state.access_token_lifetime.as_secs(),
                        "scope": scope, "token_type": "Bearer"}),
            )
        }
        Some(DEVICE_GRANT) => device_token(state, form.get("device_code").map(String::as_str)),
        Some(other) => error(
            OAuthError::UnsupportedGrantType,
            &format!("Invalid grant_type: {other}"),
        ),
        None => error(
            OAuthError::InvalidRequest,
            "Missing required parameter: grant_type",
        ),
    }
}

fn device_token(state: &mut State, device_code: Option<&str>) -> Answer {
    let Some(code) = device_code else {
        return error(
            OAuthError::InvalidRequest,
            "Missing required parameter: device_code",
        );
    };
    let now = Instant::now();
    let Some(grant) = state.device_grants.get_mut(code) else {
        return error(OAuthError::InvalidGrant, "Malformed auth code.");
    };
    if now >= grant.expires_at {
        return error(OAuthError::ExpiredToken, "The device code has expired.");
    }
    let too_soon = grant
        .last_poll
        .is_some_and(|last| now < last + grant.enforced);
    grant.last_poll = Some(now);
    let (answer, code_answered) = match grant.decision {
        Decision::Denied => (
            error(OAuthError::AccessDenied, "The user denied the request."),
            OAuthError::AccessDenied.code(),
        ),
        Decision::Used => (
            error(
                OAuthError::InvalidGrant,
                "The device code was already used.",
            ),
            OAuthError::InvalidGrant.code(),
        ),
        Decision::Pending if too_soon => {
            // RFC 8628 §3.5: the client must add 5 seconds to its interval from now on; that
            // is what is enforced from now on.
            grant.interval += std::time::Duration::from_secs(5);
            grant.enforced = grant.interval;
            (
                error(OAuthError::SlowDown, "Polling too frequently."),
                OAuthError::SlowDown.code(),
            )
        }
        Decision::Pending => (
            error(OAuthError::AuthorizationPending, "Precondition Required"),
            OAuthError::AuthorizationPending.code(),
        ),
        Decision::Approved => {
            grant.decision = Decision::Used;
            let scope = grant.scope.clone();
            let refresh = new_id("1//emu-");
            state.refresh_tokens.insert(refresh.clone(), scope.clone());
            let access = state.issue_access_token();
            let answer = Answer::json(
                200,
                &json!({"access_token": access, "refresh_token": refresh,
                        "expires_in": state.access_token_lifetime.as_secs(),
                        "scope": scope, "token_type": "Bearer"}),
            );
            (answer, "ok")
        }
    };
    if let Some(grant) = state.device_grants.get_mut(code) {
        grant.polls.push(DevicePoll {
            at: now,
            answer: code_answered,
        });
    }
    answer
}

/// Sets the decision on the pending grant with this user code; false if there is none.
pub(crate) fn decide(state: &mut State, user_code: &str, decision: Decision) -> bool {
    match state
        .device_grants
        .values_mut()
        .find(|g| g.user_code == user_code && g.decision == Decision::Pending)
    {
        Some(grant) => {
            grant.decision = decision;
            true
        }
        None => false,
    }
}
