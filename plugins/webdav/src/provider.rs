//! [`WebDavProvider`]: objects as resources under one WebDAV collection.

use reqwest::{Method as HttpMethod, StatusCode};
use sealback_plugin_api::sdk::Provider;
use sealback_plugin_api::{ObjectInfo, ProviderError, validate_list_prefix, validate_object_name};

use crate::answer::{self, Request};
use crate::options::Options;
use crate::propfind::{self, Kind};
use crate::replace::Replace;
use crate::server::Server;
use crate::temp;

/// The WebDAV provider: the object `a/b/c` is the resource `<url>a/b/c`.
pub struct WebDavProvider {
    server: Server,
    replace: Replace,
}

impl std::fmt::Debug for WebDavProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebDavProvider")
            .field("url", &self.server.base().as_str())
            .field("replace", &self.replace)
            .finish_non_exhaustive()
    }
}

impl Provider for WebDavProvider {
    const NAME: &'static str = "webdav";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");

    /// Checks the options, reads the password and the CA file, and sets up the HTTP client.
    /// It sends nothing: a server that is down at start-up is a transient error of the first
    /// call, not a configuration error.
    fn open(options_json: &str) -> Result<Self, ProviderError> {
        let options = Options::parse(options_json, |name| std::env::var_os(name))?;
        let replace = Replace::new(options.atomic_replace);
        Ok(Self {
            server: Server::new(options)?,
            replace,
        })
    }

    fn put(&self, name: &str, data: &[u8]) -> Result<(), ProviderError> {
        let (collection, basename) = split(name)?;
        if temp::is_temp_name(basename) {
            return Err(ProviderError::permanent(format!(
                "cannot store {name:?}: the webdav provider reserves names of that shape for \
                 temporary objects"
            )));
        }
        crate::put::put(
            &self.server,
            &self.replace,
            name,
            (collection, basename),
            data,
        )
    }

    fn get(&self, name: &str) -> Result<Vec<u8>, ProviderError> {
        let (_, basename) = split(name)?;
        if temp::is_temp_name(basename) {
            let url = self.server.url(name)?;
            return Err(ProviderError::not_found(format!(
                "GET {url}: no such object (a temporary name)"
            )));
        }
        crate::get::get(&self.server, &self.replace, name, basename)
    }

    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, ProviderError> {
        validate_list_prefix(prefix).map_err(|err| ProviderError::permanent(err.to_string()))?;
        crate::list::list(&self.server, prefix)
    }

    /// Looks first (PROPFIND, Depth 0) and deletes only an object: a DELETE of a collection
    /// removes everything in it, and some servers (rclone) do that even when asked for
    /// `Depth: 0`.
    fn remove(&self, name: &str) -> Result<(), ProviderError> {
        let (_, basename) = split(name)?;
        if temp::is_temp_name(basename) {
            return Ok(());
        }
        match propfind::kind(&self.server, name)? {
            Kind::Missing | Kind::Collection => return Ok(()),
            Kind::Object => {}
        }
        let url = self.server.url(name)?;
        let answer = self.server.send(&HttpMethod::DELETE, &url, |b| b)?;
        match answer.response.status() {
            StatusCode::OK | StatusCode::ACCEPTED | StatusCode::NO_CONTENT => Ok(()),
            StatusCode::NOT_FOUND => Ok(()),
            _ => Err(answer::unexpected(
                &Request {
                    method: &HttpMethod::DELETE,
                    url: &url,
                },
                &answer,
                self.server.credentials(),
            )),
        }
    }
}

/// Checks `name` and splits it into the collection that holds it (`""` or `a/b/`) and its
/// last segment.
///
/// The SDK has validated names that come through the plugin ABI, but this type is also a
/// library: checking again here is what guarantees a name never leaves the base collection.
fn split(name: &str) -> Result<(&str, &str), ProviderError> {
    validate_object_name(name).map_err(|err| ProviderError::permanent(err.to_string()))?;
    Ok(match name.rfind('/') {
        Some(end) => (&name[..=end], &name[end + 1..]),
        None => ("", name),
    })
}
