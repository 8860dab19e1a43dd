//! The provider: objects as files in Drive's hidden app folder, one file per object name.
//!
//! Drive lets several files share a name, and never replaces one by name, so:
//! - `put` lists the files already named so (a retried put finds its own earlier attempt
//!   there), keeps one whose size and SHA-256 already match, or else creates a new file, and
//!   then deletes the files of that name it saw that are older than the one it kept. A put that
//!   fails after its create leaves the old file in place, and readers keep choosing it (the
//!   oldest, see [`Entry::precedes`]) until a put succeeds.
//! - `get` reads the oldest file of the name (then the smallest id), found through a cache of
//!   name → file that is refreshed when the file it names is gone.
//! - `list` pages through the whole folder and reports each name once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use sealback_plugin_api::sdk::{Authorization, Host, Level, Provider};
use sealback_plugin_api::{ObjectInfo, ProviderError};
use sha2::{Digest, Sha256};
use tokio::runtime::Runtime;

use crate::drive::{Drive, Entry};
use crate::http::{self, Client};
use crate::options::Options;
use crate::resumable::Uploads;
use crate::token::{OAuthClient, Tokens};

/// A Drive target.
pub struct GoogleDrive {
    pub(crate) runtime: Runtime,
    pub(crate) client: Client,
    pub(crate) drive: Drive,
    uploads: Uploads,
    /// The chosen file for each name seen; refreshed on a miss.
    names: Mutex<HashMap<String, Entry>>,
    resumable_threshold: u64,
    pub(crate) device_auth_uri: String,
    /// The daemon's log (ABI v2).
    pub(crate) host: Host,
}

impl GoogleDrive {
    /// Opens a target from checked options; talks to nobody yet.
    pub(crate) fn from_options(options: Options, host: Host) -> Result<Self, ProviderError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("sealback-gdrive")
            .enable_all()
            .build()
            .map_err(|err| {
                ProviderError::permanent(format!("starting the plugin's runtime: {err}"))
            })?;
        let client = {
            let _guard = runtime.enter();
            http::client(options.timeout)?
        };
        let tokens = Tokens::new(Arc::new(OAuthClient {
            client: client.clone(),
            client_id: options.client_id,
            client_secret: options.client_secret,
            token_uri: options.token_uri,
            refresh_token_file: options.refresh_token_file,
            timeout: options.timeout,
        }));
        let drive = Drive::new(client.clone(), tokens, &options.api_root, options.timeout);
        Ok(Self {
            runtime,
            client,
            drive,
            uploads: Uploads::new(&options.api_root, options.chunk_size),
            names: Mutex::new(HashMap::new()),
            resumable_threshold: options.resumable_threshold,
            device_auth_uri: options.device_auth_uri,
            host,
        })
    }

    fn cached(&self, name: &str) -> Option<Entry> {
        self.names
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
    }

    fn remember(&self, entry: Option<Entry>, name: &str) {
        let mut names = self.names.lock().unwrap_or_else(|p| p.into_inner());
        match entry {
            Some(entry) => names.insert(name.to_owned(), entry),
            None => names.remove(name),
        };
    }

    async fn put_async(&self, name: &str, data: &[u8]) -> Result<(), ProviderError> {
        let digest: [u8; 32] = Sha256::digest(data).into();
        let hex = to_hex(&digest);
        let before = self.drive.find(name).await?;
        let same = before
            .iter()
            .filter(|e| e.size == data.len() as u64 && e.sha256.as_deref() == Some(hex.as_str()))
            .cloned()
            .reduce(|a, b| if a.precedes(&b) { b } else { a });
        let kept = match same {
            Some(entry) => entry,
            None if data.len() as u64 > self.resumable_threshold => {
                let upload = self
                    .uploads
                    .upload(&self.drive, &self.client, name, data, digest);
                upload.await.inspect_err(|err| {
                    if err.kind().is_transient() {
                        self.host.log(
                            Level::Info,
                            &format!("{err}; a retried put resumes the upload"),
                        );
                    }
                })?
            }
            None => self.drive.create_multipart(name, data).await?,
        };
        // Only files older than the one kept go: the newest file of the name is never deleted,
        // so concurrent puts of one name (each keeping or creating its own) cannot between them
        // delete every copy. A file this put created is newer than all it saw.
        for old in before
            .iter()
            .filter(|e| e.id != kept.id && e.precedes(&kept))
        {
            self.drive.delete(name, &old.id).await?;
        }
        self.remember(Some(kept), name);
        Ok(())
    }

    async fn get_async(&self, name: &str) -> Result<Vec<u8>, ProviderError> {
        if let Some(entry) = self.cached(name)
            && let Some(bytes) = self.drive.download(name, &entry.id).await?
        {
            return Ok(bytes);
        }
        // Not cached, or the cached file is gone: ask Drive which files carry the name now. A
        // put replacing the object deletes the file found here while it is read: then the name
        // is looked up again (a new file holds it by then), a bounded number of times.
        let mut gone = Vec::new();
        for _ in 0..RESOLVE_ROUNDS {
            let chosen = oldest(self.drive.find(name).await?);
            self.remember(chosen.clone(), name);
            let Some(entry) = chosen else {
                return Err(ProviderError::not_found(format!(
                    "{name}: no such object in Drive's app folder"
                )));
            };
            if let Some(bytes) = self.drive.download(name, &entry.id).await? {
                return Ok(bytes);
            }
            self.remember(None, name);
            gone.push(entry.id);
        }
        Err(ProviderError::transient(format!(
            "files.get {name}: each file found under the name was deleted before it could be              read ({}): puts keep replacing it",
            gone.join(", ")
        )))
    }

    async fn list_async(&self, prefix: &str) -> Result<Vec<ObjectInfo>, ProviderError> {
        let mut chosen: HashMap<String, Entry> = HashMap::new();
        for entry in self.drive.list("").await? {
            if !entry.name.starts_with(prefix)
                || sealback_plugin_api::validate_object_name(&entry.name).is_err()
            {
                continue;
            }
            match chosen.get(&entry.name) {
                Some(current) if current.precedes(&entry) => {}
                _ => {
                    chosen.insert(entry.name.clone(), entry);
                }
            }
        }
        let mut names = self.names.lock().unwrap_or_else(|p| p.into_inner());
        Ok(chosen
            .into_values()
            .map(|entry| {
                let info = ObjectInfo {
                    name: entry.name.clone(),
                    size: entry.size,
                };
                names.insert(entry.name.clone(), entry);
                info
            })
            .collect())
    }

    async fn remove_async(&self, name: &str) -> Result<(), ProviderError> {
        for entry in self.drive.find(name).await? {
            self.drive.delete(name, &entry.id).await?;
        }
        self.remember(None, name);
        Ok(())
    }
}

/// How often `get` looks a name up again when the file it found is deleted under it.
const RESOLVE_ROUNDS: usize = 8;

/// The file readers choose among several of one name.
fn oldest(entries: Vec<Entry>) -> Option<Entry> {
    entries
        .into_iter()
        .reduce(|a, b| if b.precedes(&a) { b } else { a })
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Provider for GoogleDrive {
    const NAME: &'static str = "gdrive";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");

    fn open(options_json: &str) -> Result<Self, ProviderError> {
        Self::from_options(Options::parse(options_json)?, Host::none())
    }

    fn open_with_host(options_json: &str, host: Host) -> Result<Self, ProviderError> {
        Self::from_options(Options::parse(options_json)?, host)
    }

    const AUTHORIZES: bool = true;

    fn authorize(&self, authorization: &Authorization<'_>) -> Result<(), ProviderError> {
        self.run_device_flow(&mut |text| authorization.prompt(text), &|| {
            authorization.cancelled()
        })
    }

    fn put(&self, name: &str, data: &[u8]) -> Result<(), ProviderError> {
        self.runtime.block_on(self.put_async(name, data))
    }

    fn get(&self, name: &str) -> Result<Vec<u8>, ProviderError> {
        self.runtime.block_on(self.get_async(name))
    }

    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, ProviderError> {
        self.runtime.block_on(self.list_async(prefix))
    }

    fn remove(&self, name: &str) -> Result<(), ProviderError> {
        self.runtime.block_on(self.remove_async(name))
    }
}
