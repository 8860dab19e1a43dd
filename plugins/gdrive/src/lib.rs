//! sealback storage provider `gdrive`, as a plugin: `libsealback_gdrive.so`. It stores objects
//! as files in Google Drive's hidden application-data folder (`appDataFolder`, scope
//! `drive.appdata`), which the user's Drive shows as space used, never as files, through the
//! `google-drive3` crate's `DriveHub`.
//!
//! # Options
//!
//! ```json
//! {
//!   "client_id": "....apps.googleusercontent.com",
//!   "client_secret": "...",
//!   "refresh_token_file": "/var/lib/sealback/drive.token"
//! }
//! ```
//!
//! - `client_id` (required), and `client_secret` or `client_secret_file` (a file holding it):
//!   the OAuth client ("TVs and Limited Input devices") the user created; docs/gdrive.md.
//! - `refresh_token_file` (required, absolute): written by `sealbackctl target auth NAME`
//!   (mode 0600), read at every token refresh. Until it exists every call fails with an
//!   authentication error that says to run that command; the target works as soon as it has.
//! - `api_root` (default `https://www.googleapis.com/`; files at `{api_root}drive/v3/`,
//!   uploads at `{api_root}upload/drive/v3/`), `token_uri` (default
//!   `https://oauth2.googleapis.com/token`), `device_auth_uri` (default
//!   `https://oauth2.googleapis.com/device/code`): for emulators and tests.
//! - `resumable_threshold` (bytes, default 2 MiB, below the 4 MiB packs): larger objects use
//!   resumable uploads.
//! - `chunk_size` (bytes, default 8 MiB, a multiple of 256 KiB): a resumable upload's chunk.
//! - `timeout` (default `2m`): how long one request, or one chunk, may take.
//!
//! Unknown options are refused, and every error names the option.
//!
//! # Errors
//!
//! 403 `rateLimitExceeded`/`userRateLimitExceeded`, 429, 408 and 5xx are transient, with
//! `Retry-After` passed to the host; `storageQuotaExceeded` is the target being full; a 401
//! refreshes the access token once, then is an authentication error. The plugin retries
//! nothing else itself: the daemon's retry policy is the only one.

mod authorize;
mod drive;
mod failure;
mod http;
mod options;
mod provider;
mod resumable;
mod token;

pub use provider::GoogleDrive;

sealback_plugin_api::export_provider!(GoogleDrive);
