//! Access tokens: refreshed from the refresh token that `sealbackctl target auth` wrote, cached
//! until shortly before they expire, dropped when Drive refuses one (401), and handed to
//! google-drive3 through its `GetToken` trait.
//!
//! The refresh-token file is read at every refresh, not once at `open`: a target whose file does
//! not exist yet opens fine, reports "not authorized" on every call, and starts working as soon
//! as the file appears, without a restart. Tokens never reach a message or a log.

use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use std::future::Future;
use std::pin::Pin;

use google_drive3::common::GetToken;
use hyper::header::CONTENT_TYPE;
use sealback_plugin_api::ProviderError;
use serde::Deserialize;
use zeroize::Zeroizing;

use crate::http::{self, Client};

/// A cached access token is refreshed this long before Google says it expires.
const EXPIRY_MARGIN: Duration = Duration::from_secs(60);
/// Token answers and refresh-token files are small; anything bigger is refused.
pub(crate) const TOKEN_ANSWER_LIMIT: u64 = 64 << 10;

/// The OAuth client and where its tokens come from.
pub(crate) struct OAuthClient {
    pub(crate) client: Client,
    pub(crate) client_id: String,
    pub(crate) client_secret: Zeroizing<String>,
    pub(crate) token_uri: String,
    pub(crate) refresh_token_file: PathBuf,
    pub(crate) timeout: Duration,
}

struct Access {
    token: Zeroizing<String>,
    expires: Instant,
}

/// The access-token source shared by every request of one instance.
#[derive(Clone)]
pub(crate) struct Tokens {
    oauth: Arc<OAuthClient>,
    cached: Arc<tokio::sync::Mutex<Option<Access>>>,
}

/// A token endpoint's answer (RFC 6749 §5.1 and §5.2).
#[derive(Deserialize)]
pub(crate) struct TokenAnswer {
    pub(crate) access_token: Option<Zeroizing<String>>,
    pub(crate) refresh_token: Option<Zeroizing<String>>,
    pub(crate) expires_in: Option<u64>,
    pub(crate) error: Option<String>,
    pub(crate) interval: Option<u64>,
}

impl Tokens {
    pub(crate) fn new(oauth: Arc<OAuthClient>) -> Self {
        Self {
            oauth,
            cached: Arc::new(tokio::sync::Mutex::new(None)),
        }
    }

    pub(crate) fn oauth(&self) -> &Arc<OAuthClient> {
        &self.oauth
    }

    /// A valid access token: the cached one, or a fresh one from the refresh token.
    pub(crate) async fn access(&self) -> Result<Zeroizing<String>, ProviderError> {
        let mut cached = self.cached.lock().await;
        if let Some(access) = cached.as_ref()
            && access.expires > Instant::now()
        {
            return Ok(access.token.clone());
        }
        let access = self.refresh().await?;
        let token = access.token.clone();
        *cached = Some(access);
        Ok(token)
    }

    /// Forgets the cached access token (Drive answered 401 with it).
    pub(crate) async fn invalidate(&self) {
        *self.cached.lock().await = None;
    }

    /// Caches an access token the device flow obtained.
    pub(crate) async fn set(&self, token: Zeroizing<String>, expires_in: Option<u64>) {
        *self.cached.lock().await = Some(Access {
            token,
            expires: expiry(expires_in),
        });
    }

    async fn refresh(&self) -> Result<Access, ProviderError> {
        let oauth = &self.oauth;
        let refresh_token = read_refresh_token(&oauth.refresh_token_file)?;
        let body = Zeroizing::new(http::form(&[
            ("grant_type", "refresh_token"),
            ("client_id", &oauth.client_id),
            ("client_secret", &oauth.client_secret),
            ("refresh_token", &refresh_token),
        ]));
        let what = format!("refreshing the access token at {}", oauth.token_uri);
        let answer = post_form(oauth, &what, &oauth.token_uri, body).await?;
        let parsed: Option<TokenAnswer> = serde_json::from_slice(&answer.body).ok();
        match (answer.status, parsed) {
            (
                200,
                Some(TokenAnswer {
                    access_token: Some(token),
                    expires_in,
                    ..
                }),
            ) => Ok(Access {
                token,
                expires: expiry(expires_in),
            }),
            (
                400 | 401,
                Some(TokenAnswer {
                    error: Some(error), ..
                }),
            ) => Err(ProviderError::auth(format!(
                "{what}: Google refused the refresh token in {} ({error}): access was revoked \
                     or has expired; run `sealbackctl target auth` for this target again",
                oauth.refresh_token_file.display()
            ))),
            (429 | 500..=599, _) => Err(ProviderError::transient(format!(
                "{what}: HTTP {}",
                answer.status
            ))),
            (status, _) => Err(ProviderError::permanent(format!(
                "{what}: unexpected answer, HTTP {status}"
            ))),
        }
    }
}

/// What `GetToken::get_token` returns (the crate does not export its alias).
type TokenFuture<'a> = Pin<
    Box<
        dyn Future<Output = Result<Option<String>, Box<dyn std::error::Error + Send + Sync>>>
            + Send
            + 'a,
    >,
>;

impl GetToken for Tokens {
    fn get_token<'a>(&'a self, _scopes: &'a [&str]) -> TokenFuture<'a> {
        Box::pin(async move {
            match self.access().await {
                Ok(token) => Ok(Some(token.to_string())),
                Err(err) => Err(Box::new(err) as Box<dyn std::error::Error + Send + Sync>),
            }
        })
    }
}

/// POSTs a form to an OAuth endpoint.
pub(crate) async fn post_form(
    oauth: &OAuthClient,
    what: &str,
    uri: &str,
    body: Zeroizing<String>,
) -> Result<http::Answer, ProviderError> {
    let request = hyper::Request::post(uri)
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(http::body(body.as_bytes().to_vec()))
        .map_err(|err| ProviderError::permanent(format!("{what}: {err}")))?;
    http::send(
        &oauth.client,
        what,
        request,
        oauth.timeout,
        TOKEN_ANSWER_LIMIT,
    )
    .await
}

fn expiry(expires_in: Option<u64>) -> Instant {
    let lifetime = Duration::from_secs(expires_in.unwrap_or(3600));
    Instant::now() + lifetime.saturating_sub(EXPIRY_MARGIN)
}

/// The refresh token, or the "not authorized yet" error that names what to run.
fn read_refresh_token(path: &PathBuf) -> Result<Zeroizing<String>, ProviderError> {
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            return Err(ProviderError::auth(format!(
                "not authorized yet: no refresh token in {}: run `sealbackctl target auth` for \
                 this target",
                path.display()
            )));
        }
        Err(err) => {
            return Err(ProviderError::auth(format!(
                "`refresh_token_file` {}: cannot read it: {err}",
                path.display()
            )));
        }
    };
    let mut text = Zeroizing::new(String::new());
    file.take(TOKEN_ANSWER_LIMIT)
        .read_to_string(&mut text)
        .map_err(|err| {
            ProviderError::auth(format!("`refresh_token_file` {}: {err}", path.display()))
        })?;
    let token = text.trim();
    if token.is_empty() {
        return Err(ProviderError::auth(format!(
            "`refresh_token_file` {} is empty: run `sealbackctl target auth` for this target",
            path.display()
        )));
    }
    Ok(Zeroizing::new(token.to_owned()))
}
