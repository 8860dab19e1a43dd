//! sealback storage provider `webdav`, as a plugin: `libsealback_webdav.so`. It stores objects
//! in a WebDAV collection: Apache httpd with mod_dav, `rclone serve webdav`, Nextcloud, a NAS.
//!
//! # Options
//!
//! ```json
//! {
//!   "url": "https://dav.example.org/sealback/",
//!   "username": "alice",
//!   "password_file": "/etc/sealback/dav-password",
//!   "ca_file": "/etc/sealback/dav-ca.pem",
//!   "timeout": "2m",
//!   "atomic_replace": "auto"
//! }
//! ```
//!
//! - `url` (required): the base collection, `https://` (or `http://`). It is created if
//!   missing; the collections above it are not.
//! - `username`, with exactly one of `password_file` (a file holding the password; one
//!   trailing newline is not part of it) or `password_env` (the name of an environment
//!   variable of sealbackd's process): HTTP basic authentication. The password itself is never
//!   an option, so it is never in the configuration file or on a command line.
//! - `allow_http` (default `false`): with credentials, plain `http://` is refused except to
//!   loopback, since basic authentication would send the password in clear.
//! - `ca_file`: PEM certificates, the only roots trusted for https (a private CA). Without
//!   it, the system's roots are.
//! - `timeout` (default `2m`): how long one request may take, from connecting to the last
//!   byte of the answer.
//! - `atomic_replace`: `auto` (default), `move` or `direct`; see below.
//!
//! Unknown options are refused, and every error names the option.
//!
//! # How objects are stored
//!
//! The object `a/b/c` is the resource `<url>a/b/c`; object names need no escaping in a URL.
//!
//! - `put` stores the object so that no reader sees part of it. How depends on the server
//!   (see `replace.rs` for what each server does): with `atomic_replace: "auto"`, an OPTIONS
//!   request before the first put tells Apache's mod_dav_fs (whose PUT writes a temporary file
//!   and renames it into place) from other servers. mod_dav_fs gets direct PUTs; the others
//!   get a PUT to a temporary name in the same collection, `.<basename>.tmp-<16 hex digits>`,
//!   then a MOVE over the name with `Overwrite: T`, and direct PUTs after refusing a MOVE
//!   (405 or 501). `"move"` and `"direct"` force one way. Collections that do not exist yet
//!   are created with MKCOL when a PUT says a parent is missing (409; rclone says 404). A put
//!   is as durable as the server makes a completed request.
//! - `get` is a GET; 404 (and a collection of that name) is `NotFound`. When the answer has
//!   an `ETag`, a HEAD after it must show the same one, or the GET is made again: neither
//!   Apache nor rclone makes a GET atomic against a concurrent replacement (see `get.rs`).
//!   While puts may use MOVE, a 404 is asked again (after 50 and 200 ms) before it is
//!   reported: servers MOVE over an object by deleting it first.
//! - `list` walks the collections under the prefix with PROPFIND, Depth 1 (never infinity,
//!   which Apache refuses by default), one collection at a time; PROPFIND Depth 0 tells an
//!   object in the way of a prefix (Apache answers 400 for `object/`) from a real failure.
//! - `remove` looks first with PROPFIND, Depth 0, and DELETEs only an object, never a
//!   collection (rclone deletes a whole collection on any DELETE). 404 is success.
//!
//! Temporary names are reserved: `put` refuses them, `get` does not find them, `list` skips
//! them and `remove` leaves them alone. A put interrupted between its PUT and its MOVE leaves
//! one behind.
//!
//! # Errors and retries
//!
//! 401 and 403 are `Auth`; 507 and 413 `Quota`; 423, 425, 429, 5xx (but 501, 505, 507), a
//! failed connection and a timeout `Transient`, carrying the server's `Retry-After`;
//! everything else `Permanent`. Each request is sent once: retrying transient errors is
//! sealbackd's alone (see `server.rs`).
//!
//! # Threads and runtimes
//!
//! The host calls one instance from several threads at once; they share one connection pool.
//! The HTTP client is `reqwest`'s blocking client, which runs its own single-threaded tokio
//! runtime on a thread of its own. Inside the plugin that runtime is private (the plugin's
//! copy of tokio has its own thread-locals), so sealbackd calling from its tokio threads does
//! not disturb it. TLS is rustls with the `ring` crypto provider, installed by the plugin for
//! its own copy of rustls.

mod answer;
mod get;
mod href;
mod list;
mod multistatus;
mod options;
mod password;
mod propfind;
mod provider;
mod put;
mod replace;
mod server;
mod temp;

pub use provider::WebDavProvider;

/// What a server's answers reach before any check, for the fuzz targets in `fuzz/` only (the
/// `fuzzing` feature): not an API.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing {
    pub use reqwest::Url;
    use reqwest::header::{HeaderMap, HeaderValue, RETRY_AFTER};

    /// Reads a PROPFIND answer as a listing of `request` (inside the collection `base`) does:
    /// the multistatus document, then each href as a name. The names that are inside.
    pub fn listing(xml: &str, base: &Url, request: &Url) -> Result<Vec<String>, String> {
        let base = crate::href::BasePath::new(base);
        let entries = crate::multistatus::parse(xml)?;
        Ok(entries
            .iter()
            .filter_map(|e| crate::href::relative_name(request, &base, &e.href).ok())
            .collect())
    }

    /// How long a `Retry-After` header of this value asks to wait.
    pub fn retry_after(value: &[u8]) -> Option<std::time::Duration> {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, HeaderValue::from_bytes(value).ok()?);
        crate::answer::retry_after(&headers)
    }
}

sealback_plugin_api::export_provider!(WebDavProvider);
