//! Drive v3 requests through google-drive3's `DriveHub`, all in the `appDataFolder` space:
//! listing (every page), finding a name, downloading, deleting, and multipart creates.
//!
//! Each request is bounded by the `timeout` option. A 401 drops the cached access token and
//! makes the request once more with a fresh one; a second 401 is an authentication error.
//! Nothing else is retried here: the daemon decides about transient errors.

use std::time::Duration;

use google_drive3::DriveHub;
use google_drive3::api::{File, Scope};
use sealback_plugin_api::ProviderError;
use sealback_plugin_api::limits::MAX_OBJECT_BYTES;

use crate::failure::{self, Failure, Recorder};
use crate::http::{self, Connector};
use crate::token::Tokens;

/// The space and parent every object lives in: hidden from the user's Drive.
pub(crate) const APP_DATA: &str = "appDataFolder";
/// What a listing asks for about each file.
const LIST_FIELDS: &str = "nextPageToken,files(id,name,size,createdTime,sha256Checksum)";
const FILE_FIELDS: &str = "id,name,size,createdTime,sha256Checksum";
/// Drive's largest page; it may answer with fewer, and says so only by a `nextPageToken`.
const PAGE_SIZE: i32 = 1000;

/// One Drive file in the app folder, as far as the provider cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) size: u64,
    /// RFC 3339, as Drive wrote it; sorts as text within Drive's one format.
    pub(crate) created: String,
    pub(crate) sha256: Option<String>,
}

impl Entry {
    pub(crate) fn from_file(file: File) -> Option<Self> {
        Some(Self {
            id: file.id?,
            name: file.name?,
            size: file.size.and_then(|s| u64::try_from(s).ok()).unwrap_or(0),
            created: file
                .created_time
                .map(|t| t.to_rfc3339())
                .unwrap_or_default(),
            sha256: file.sha256_checksum,
        })
    }

    /// The order that picks one of several files with the same name: the oldest, then the
    /// smallest id. A put creates its file before it deletes the older ones, so until it is
    /// done readers keep seeing the old object (never a half-replaced one).
    pub(crate) fn precedes(&self, other: &Self) -> bool {
        (&self.created, &self.id) < (&other.created, &other.id)
    }
}

/// The hub and what every request needs.
pub(crate) struct Drive {
    pub(crate) hub: DriveHub<Connector>,
    pub(crate) tokens: Tokens,
    pub(crate) timeout: Duration,
}

/// Runs one hub request (`$call`, built with `.delegate(&mut $rec)`), with the timeout and
/// the single retry after a 401.
macro_rules! request {
    ($drive:expr, $what:expr, |$rec:ident| $call:expr) => {{
        let mut refreshed = false;
        loop {
            let mut $rec = Recorder::default();
            let outcome = match tokio::time::timeout($drive.timeout, $call).await {
                Err(_) => Err(failure::timed_out(&$what, $drive.timeout)),
                Ok(Ok(value)) => Ok(value),
                Ok(Err(err)) => Err(failure::from_hub(&$what, err, &$rec)),
            };
            match outcome {
                Err(Failure::Unauthorized) if !refreshed => {
                    refreshed = true;
                    $drive.tokens.invalidate().await;
                }
                other => break other,
            }
        }
    }};
}

impl Drive {
    pub(crate) fn new(
        client: http::Client,
        tokens: Tokens,
        api_root: &str,
        timeout: Duration,
    ) -> Self {
        let mut hub = DriveHub::new(client, tokens.clone());
        hub.root_url(api_root.to_owned());
        hub.base_url(format!("{api_root}drive/v3/"));
        hub.user_agent(format!("sealback-gdrive/{}", env!("CARGO_PKG_VERSION")));
        Self {
            hub,
            tokens,
            timeout,
        }
    }

    /// Every file in the app folder whose query `q` matches, page after page.
    pub(crate) async fn list(&self, q: &str) -> Result<Vec<Entry>, ProviderError> {
        let what = format!("files.list in {APP_DATA}");
        let query = format!("'{APP_DATA}' in parents and trashed = false{q}");
        let mut entries = Vec::new();
        let mut page_token: Option<String> = None;
        loop {
            let page = request!(self, what, |rec| {
                let mut call = self
                    .hub
                    .files()
                    .list()
                    .spaces(APP_DATA)
                    .q(&query)
                    .page_size(PAGE_SIZE)
                    .param("fields", LIST_FIELDS)
                    .add_scope(Scope::Appdata)
                    .delegate(&mut rec);
                if let Some(token) = &page_token {
                    call = call.page_token(token);
                }
                call.doit()
            })
            .map_err(|f| f.into_error(&what))?
            .1;
            entries.extend(
                page.files
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(Entry::from_file),
            );
            if entries.len() > sealback_plugin_api::limits::MAX_LIST_ENTRIES {
                return Err(ProviderError::permanent(format!(
                    "{what}: more than {} files",
                    sealback_plugin_api::limits::MAX_LIST_ENTRIES
                )));
            }
            match page.next_page_token.filter(|t| !t.is_empty()) {
                Some(token) => page_token = Some(token),
                None => return Ok(entries),
            }
        }
    }

    /// Every file named `name` (valid object names need no quoting in a query).
    pub(crate) async fn find(&self, name: &str) -> Result<Vec<Entry>, ProviderError> {
        self.list(&format!(" and name = '{name}'")).await
    }

    /// The content of file `id` (`None`: Drive has no such file).
    pub(crate) async fn download(
        &self,
        name: &str,
        id: &str,
    ) -> Result<Option<Vec<u8>>, ProviderError> {
        let what = format!("files.get {name} (id {id}, alt=media)");
        let response = request!(self, what, |rec| self
            .hub
            .files()
            .get(id)
            .param("alt", "media")
            .add_scope(Scope::Appdata)
            .delegate(&mut rec)
            .doit());
        let response = match response {
            Ok((response, _)) => response,
            Err(Failure::NotFound) => return Ok(None),
            Err(other) => return Err(other.into_error(&what)),
        };
        let read = http::read_limited(&what, response.into_body(), MAX_OBJECT_BYTES);
        match tokio::time::timeout(self.timeout, read).await {
            Ok(bytes) => bytes.map(Some),
            Err(_) => Err(failure::timed_out(&what, self.timeout).into_error(&what)),
        }
    }

    /// Deletes file `id`; a file already gone is fine.
    pub(crate) async fn delete(&self, name: &str, id: &str) -> Result<(), ProviderError> {
        let what = format!("files.delete {name} (id {id})");
        match request!(self, what, |rec| self
            .hub
            .files()
            .delete(id)
            .add_scope(Scope::Appdata)
            .delegate(&mut rec)
            .doit())
        {
            Ok(_) | Err(Failure::NotFound) => Ok(()),
            Err(other) => Err(other.into_error(&what)),
        }
    }

    /// Creates `name` in the app folder with `data`, in one multipart request.
    pub(crate) async fn create_multipart(
        &self,
        name: &str,
        data: &[u8],
    ) -> Result<Entry, ProviderError> {
        let what = format!("files.create {name} (multipart, {} bytes)", data.len());
        let (_, file) = request!(self, what, |rec| self
            .hub
            .files()
            .create(new_file(name))
            .param("fields", FILE_FIELDS)
            .add_scope(Scope::Appdata)
            .delegate(&mut rec)
            .upload(std::io::Cursor::new(data), octet_stream()))
        .map_err(|f| f.into_error(&what))?;
        Entry::from_file(file).ok_or_else(|| {
            ProviderError::permanent(format!("{what}: Drive's answer has no id or name"))
        })
    }
}

/// The metadata of a new object: its name, in the app folder.
pub(crate) fn new_file(name: &str) -> File {
    File {
        name: Some(name.to_owned()),
        parents: Some(vec![APP_DATA.to_owned()]),
        ..File::default()
    }
}

/// Objects are opaque (encrypted) bytes.
fn octet_stream() -> mime::Mime {
    mime::APPLICATION_OCTET_STREAM
}
