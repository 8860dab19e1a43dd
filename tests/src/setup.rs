//! What a device's configuration file says: [`Setup`] and its [`Target`]s, written out as
//! the TOML `sealbackd --config` reads (`config/sealback.toml` documents every key).

use std::path::{Path, PathBuf};

use crate::binaries;

/// The paths a device owns, which its configuration names.
pub(crate) struct DevicePaths {
    pub(crate) state_dir: PathBuf,
    pub(crate) socket: PathBuf,
    /// The store of a device that only restores: an empty directory.
    pub(crate) own_store: PathBuf,
}

/// When the daemon backs up on its own.
#[derive(Debug, Clone)]
pub enum Schedule {
    /// Only on request: tests that count bytes want no backup they did not ask for.
    Manual,
    /// Shortly after each change of the store, as a phone would.
    OnChange { debounce: &'static str },
}

/// A `[[targets]]` entry.
#[derive(Debug, Clone)]
pub struct Target {
    pub name: String,
    pub plugin: String,
    pub options: serde_json::Map<String, serde_json::Value>,
    /// Target keys beside `name` and `plugin` (`retries`, `timeout`, `concurrency`).
    pub settings: serde_json::Map<String, serde_json::Value>,
}

impl Target {
    /// A target of plugin `plugin` with the given options (a JSON object).
    pub fn new(name: &str, plugin: &str, options: serde_json::Value) -> Target {
        let serde_json::Value::Object(options) = options else {
            panic!("target options must be a JSON object, not {options}");
        };
        Target {
            name: name.to_owned(),
            plugin: plugin.to_owned(),
            options,
            settings: serde_json::Map::new(),
        }
    }

    /// Sets a target key such as `retries` (a JSON scalar is also a TOML value).
    pub fn with(mut self, key: &str, value: serde_json::Value) -> Target {
        self.settings.insert(key.to_owned(), value);
        self
    }

    /// The local-disk provider storing into `dir`.
    pub fn local(name: &str, dir: &Path) -> Target {
        Target::new(name, "local", serde_json::json!({ "path": dir }))
    }

    /// The fault-injecting provider storing into `dir`, with the fault options `fault`
    /// (`{"fail": "put", ...}`, see plugins/faulty).
    pub fn faulty(name: &str, dir: &Path, fault: serde_json::Value) -> Target {
        let mut target = Target::new(name, "faulty", fault);
        target.options.insert("path".into(), serde_json::json!(dir));
        target
    }
}

/// What a device's configuration file says.
#[derive(Debug, Clone)]
pub struct Setup {
    /// The message store; `None`: an empty directory of the device's own (a device that only
    /// restores).
    pub store: Option<PathBuf>,
    pub schedule: Schedule,
    pub plugins_dir: PathBuf,
    pub targets: Vec<Target>,
    /// The `[vault]` section, for a device whose key may be kept behind a password.
    pub vault: Option<VaultSection>,
    /// The `[retention]` section's lines, if any.
    pub retention: Option<String>,
    /// The `[backup]` section's lines (`exclude = [...]`), if any.
    pub backup: Option<String>,
    /// Variables the daemon is started with (the tests' hooks, `SEALBACK_TEST_*`).
    pub daemon_env: Vec<(String, String)>,
}

/// A `[vault]` section: where the Backup Key Vault is, and this device's account.
#[derive(Debug, Clone)]
pub struct VaultSection {
    pub url: String,
    /// Further instances of the vault: with any, the section lists `urls = [url, ...]`.
    pub more_urls: Vec<String>,
    pub server_key: String,
    pub account: String,
    pub credential_file: PathBuf,
    pub ca_cert: PathBuf,
}

impl Setup {
    /// Backs up `store` to `targets`, on request only, with the plugins cargo built.
    pub fn new(store: &Path, targets: Vec<Target>) -> Setup {
        Setup {
            store: Some(store.to_path_buf()),
            schedule: Schedule::Manual,
            plugins_dir: binaries::plugins_dir(),
            targets,
            vault: None,
            retention: None,
            backup: None,
            daemon_env: Vec::new(),
        }
    }

    /// `[retention]` with these lines (`keep_last = 3` ...).
    pub fn retention(mut self, lines: &str) -> Setup {
        self.retention = Some(lines.to_owned());
        self
    }

    /// `[backup]` with these lines (`exclude = ["Media/Video/**"]` ...).
    pub fn backup(mut self, lines: &str) -> Setup {
        self.backup = Some(lines.to_owned());
        self
    }

    /// Starts the daemon with `name=value` in its environment.
    pub fn daemon_env(mut self, name: &str, value: &str) -> Setup {
        self.daemon_env.push((name.to_owned(), value.to_owned()));
        self
    }

    /// A new device that only restores from `targets`: its own store is empty.
    pub fn restoring_from(targets: Vec<Target>) -> Setup {
        Setup {
            store: None,
            ..Setup::new(Path::new("/"), targets)
        }
    }

    pub fn on_change(mut self, debounce: &'static str) -> Setup {
        self.schedule = Schedule::OnChange { debounce };
        self
    }

    pub fn vault(mut self, vault: VaultSection) -> Setup {
        self.vault = Some(vault);
        self
    }

    pub fn plugins_dir(mut self, dir: &Path) -> Setup {
        self.plugins_dir = dir.to_path_buf();
        self
    }

    /// The configuration file, for a device whose own paths are `paths`.
    pub(crate) fn toml(&self, paths: &DevicePaths) -> String {
        let store = self
            .store
            .clone()
            .unwrap_or_else(|| paths.own_store.clone());
        let (mode, debounce) = match self.schedule {
            Schedule::Manual => ("manual", "2s"),
            Schedule::OnChange { debounce } => ("on-change", debounce),
        };
        let mut text = format!(
            "[store]\npath = {}\n\n[state]\ndir = {}\n\n[control]\nsocket = {}\n\n\
             [plugins]\ndir = {}\n\n[schedule]\nmode = {}\ndebounce = {}\n",
            toml_string(&store),
            toml_string(&paths.state_dir),
            toml_string(&paths.socket),
            toml_string(&self.plugins_dir),
            toml_string(mode),
            toml_string(debounce),
        );
        if let Some(v) = &self.vault {
            let address = match v.more_urls.is_empty() {
                true => format!("url = {}", toml_string(&v.url)),
                false => {
                    let urls = std::iter::once(&v.url).chain(&v.more_urls);
                    let urls: Vec<String> = urls.map(toml_string).collect();
                    format!("urls = [{}]", urls.join(", "))
                }
            };
            text += &format!(
                "\n[vault]\n{address}\nserver_key = {}\naccount = {}\ncredential_file = {}\nca_cert = {}\n",
                toml_string(&v.server_key),
                toml_string(&v.account),
                toml_string(&v.credential_file),
                toml_string(&v.ca_cert),
            );
        }
        if let Some(lines) = &self.retention {
            text += &format!("\n[retention]\n{lines}\n");
        }
        if let Some(lines) = &self.backup {
            text += &format!("\n[backup]\n{lines}\n");
        }
        for target in &self.targets {
            text += &format!(
                "\n[[targets]]\nname = {}\nplugin = {}\n",
                toml_string(&target.name),
                toml_string(&target.plugin)
            );
            for (key, value) in &target.settings {
                text += &format!("{key} = {value}\n");
            }
            text += "[targets.options]\n";
            for (key, value) in &target.options {
                // A JSON scalar is also a TOML value.
                text += &format!("{key} = {value}\n");
            }
        }
        text
    }
}

/// A JSON string is a valid TOML basic string.
fn toml_string(value: impl serde::Serialize) -> String {
    serde_json::to_string(&value).expect("a path or a name encodes as JSON")
}
