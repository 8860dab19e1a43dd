//! [`Server`]: the WebDAV server behind the base collection, spoken to over HTTP(S) with basic
//! authentication.
//!
//! Each request is sent once. Retrying is sealbackd's alone (its retry layer, with backoff
//! and the target's `retries`): a busy server (423, 425, 429, a transient 5xx) or a failed
//! connection comes back to the host as a transient error carrying the server's
//! `Retry-After`, and the host decides when to call again. A second retry loop here would
//! multiply the host's attempts and the load on a struggling server, and its count would be
//! reported twice. Every request this provider makes may be repeated safely (PUT, GET,
//! PROPFIND, MKCOL, MOVE of a temporary name, DELETE).

use std::sync::{LazyLock, Once};
use std::time::Duration;

use reqwest::blocking::{Client, RequestBuilder, Response};
use reqwest::{Method, Url};
use sealback_plugin_api::ProviderError;

use crate::answer::{self, Request};
use crate::href::BasePath;
use crate::options::{Options, invalid};
use crate::password::Credentials;

/// How long an idle connection stays in the pool: below Apache's default `KeepAliveTimeout`
/// of 5 s, so that the pool seldom hands out a connection the server is closing.
const POOL_IDLE: Duration = Duration::from_secs(4);
/// The longest wait for a TCP and TLS connection, within the request's own timeout.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// The server, its base collection and the credentials to use.
pub(crate) struct Server {
    client: Client,
    base: Url,
    base_path: BasePath,
    credentials: Option<Credentials>,
}

/// An answer.
pub(crate) struct Answer {
    pub(crate) response: Response,
}

impl Server {
    /// The HTTP client for `options`; nothing is sent yet.
    pub(crate) fn new(options: Options) -> Result<Self, ProviderError> {
        install_crypto_provider();
        let mut builder = Client::builder()
            .timeout(options.timeout)
            .connect_timeout(options.timeout.min(CONNECT_TIMEOUT))
            .pool_idle_timeout(POOL_IDLE)
            // A redirect is reported, not followed: a PUT or a MOVE must not land elsewhere,
            // and the fix is to configure the address the server redirects to.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("sealback-webdav/", env!("CARGO_PKG_VERSION")));
        if let Some((path, pem)) = &options.ca_pem {
            let certificates = reqwest::Certificate::from_pem_bundle(pem)
                .ok()
                .filter(|certificates| !certificates.is_empty())
                .ok_or_else(|| {
                    invalid(format!(
                        "`ca_file` {}: no PEM certificate in it (it should hold the CA \
                         certificate, -----BEGIN CERTIFICATE-----)",
                        path.display()
                    ))
                })?;
            builder = builder.tls_certs_only(certificates);
        }
        let client = builder.build().map_err(|err| {
            ProviderError::permanent(format!(
                "the webdav provider cannot set up its HTTP client: {}",
                answer::chain(&err)
            ))
        })?;
        Ok(Server {
            client,
            base_path: BasePath::new(&options.url),
            base: options.url,
            credentials: options.credentials,
        })
    }

    pub(crate) fn base(&self) -> &Url {
        &self.base
    }

    pub(crate) fn base_path(&self) -> &BasePath {
        &self.base_path
    }

    pub(crate) fn credentials(&self) -> Option<&Credentials> {
        self.credentials.as_ref()
    }

    /// The URL of `path` under the base collection: an object name, or a collection's name
    /// ending with `/`, or `""` for the base itself. Object names need no escaping: they are
    /// made of `[A-Za-z0-9._-]` and `/`.
    pub(crate) fn url(&self, path: &str) -> Result<Url, ProviderError> {
        self.base.join(path).map_err(|err| {
            ProviderError::permanent(format!(
                "cannot make a URL of {path:?} under {}: {err}",
                self.base
            ))
        })
    }

    /// Sends `method url` once, with the request `configure` makes (headers, body) and the
    /// credentials. Every status is returned as an answer for the caller to judge; only a
    /// request that got no answer is an error.
    pub(crate) fn send(
        &self,
        method: &Method,
        url: &Url,
        configure: impl Fn(RequestBuilder) -> RequestBuilder,
    ) -> Result<Answer, ProviderError> {
        let request = Request { method, url };
        let mut builder = configure(self.client.request(method.clone(), url.clone()));
        if let Some(credentials) = &self.credentials {
            builder =
                builder.basic_auth(&credentials.username, Some(credentials.password.expose()));
        }
        match builder.send() {
            Ok(response) => Ok(Answer { response }),
            Err(err) => Err(answer::failure(&request, &err)),
        }
    }
}

/// rustls needs one crypto provider. This plugin builds rustls with `ring` only and installs
/// it as the process default of its own copy of rustls (a plugin's statics are its own, so
/// this cannot clash with the host or another plugin). Installing twice is harmless: the
/// second attempt reports that a provider is in place, which is all that matters.
fn install_crypto_provider() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// The WebDAV methods, which `reqwest` has no constants for.
pub(crate) static PROPFIND: LazyLock<Method> = LazyLock::new(|| webdav_method(b"PROPFIND"));
pub(crate) static MKCOL: LazyLock<Method> = LazyLock::new(|| webdav_method(b"MKCOL"));
pub(crate) static MOVE: LazyLock<Method> = LazyLock::new(|| webdav_method(b"MOVE"));

fn webdav_method(name: &'static [u8]) -> Method {
    Method::from_bytes(name).expect("WebDAV method names are valid HTTP tokens")
}
