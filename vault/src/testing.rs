//! A real vault for tests and benchmarks: a fresh SoftHSM2 token, TLS certificates from a
//! throw-away CA, a configuration, `sealback-vault init`, and `sealback-vault serve` as a
//! process on a loopback port, all in one temporary directory.
//!
//! Needs `softhsm2-util` and `openssl` on the PATH and SoftHSM2's module at
//! [`SOFTHSM_MODULE`]. Every process the harness runs gets its own `SOFTHSM2_CONF`, so
//! vaults of parallel tests do not share a token.
//!
//! ```no_run
//! # fn main() -> Result<(), String> {
//! use sealback_vault::testing::TestVault;
//! // In an integration test of this crate: env!("CARGO_BIN_EXE_sealback-vault").
//! let vault = TestVault::start(std::path::Path::new("target/debug/sealback-vault"))?;
//! let credential = vault.add_account("alice")?;
//! let client = sealback_vault_client::Vault::new(vault.client_config("alice", &credential))
//!     .map_err(|e| e.to_string())?;
//! # Ok(()) }
//! ```

use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub mod cluster;
pub mod light_client;
mod peer;

use sealback_vault_client::VaultConfig;
use zeroize::Zeroizing;

/// SoftHSM2's PKCS#11 module (Debian's path).
pub const SOFTHSM_MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
/// The test token's label and user PIN.
pub const TOKEN_LABEL: &str = "sealback-vault-test";
pub const USER_PIN: &str = "87654321";
const SO_PIN: &str = "12345678";
/// The variable [`PinSource::Env`] sets.
const PIN_ENV: &str = "SEALBACK_VAULT_PIN";
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// How to set up a test vault.
#[derive(Debug, Clone)]
pub struct Options {
    pub guess_limit: u32,
    pub login_expiry_secs: u64,
    /// The processes' `RUST_LOG` filter ("warn"; the secrets suite reads it at "trace").
    pub log_filter: String,
    /// Whether `key ceremony generate` makes the token's keys before `init`, so that
    /// [`TestVault::start_peer`] can install them into other tokens.
    pub transportable_keys: bool,
    /// `store = "etcd"` with this `[etcd]` table ([`cluster::EtcdCluster::config`]); `None`:
    /// SQLite.
    pub etcd: Option<crate::config::EtcdConfig>,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            guess_limit: 10,
            login_expiry_secs: 60,
            log_filter: "warn".to_owned(),
            transportable_keys: false,
            etcd: None,
        }
    }
}

/// A vault process and everything it stands on. Stopped (killed) on drop.
pub struct TestVault {
    dir: tempfile::TempDir,
    binary: PathBuf,
    child: Option<Child>,
    /// The SQLite store: `records.db` in [`TestVault::dir`], or a peer's.
    store: PathBuf,
    /// `https://127.0.0.1:PORT`; the port stays the same across [`TestVault::restart`].
    pub url: String,
    /// The server key, as clients pin it.
    pub server_key: String,
    pub options: Options,
    /// Where the vault reads its HSM PIN ([`TestVault::set_pin_source`]).
    pin: PinSource,
}

/// Where a test vault reads its HSM PIN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PinSource {
    /// `pin_file = "pin"`, a 0600 file: how every test vault starts.
    File,
    /// No source in the configuration, so the default: the systemd credential
    /// `sealback-vault-pin`, in a `CREDENTIALS_DIRECTORY` laid out as systemd lays it out for
    /// a service running as its own user (the file 0440 through its ACL).
    Credential,
    /// `pin_env = "SEALBACK_VAULT_PIN"`, set by the service manager.
    Env,
}

impl TestVault {
    /// A vault with [`Options::default`] (guess limit 10), served by `binary` (the
    /// `sealback-vault` executable).
    pub fn start(binary: &Path) -> Result<TestVault, String> {
        TestVault::start_with(binary, Options::default())
    }

    pub fn start_with(binary: &Path, options: Options) -> Result<TestVault, String> {
        let mut vault = TestVault::prepare(binary, options)?;
        vault.make_certificates()?;
        vault.write_config("127.0.0.1:0")?;
        if vault.options.transportable_keys {
            vault.run(&["key", "ceremony", "generate"])?;
        }
        let init = vault.run(&["init"])?;
        vault.server_key = stdout(&init)
            .lines()
            .find_map(|line| line.strip_prefix("server_key = \""))
            .and_then(|rest| rest.strip_suffix('"'))
            .ok_or_else(|| format!("`init` printed no server key: {}", stdout(&init)))?
            .to_string();
        vault.serve_on_new_port()?;
        Ok(vault)
    }

    /// Serves on a port of the system's choice, then keeps that port for restarts.
    fn serve_on_new_port(&mut self) -> Result<(), String> {
        self.serve()?;
        let address = self.url.trim_start_matches("https://").to_string();
        self.write_config(&address)
    }

    /// A directory with a new token (and the SO PIN in `so-pin`), not yet configured.
    fn prepare(binary: &Path, options: Options) -> Result<TestVault, String> {
        if !binary.is_file() {
            return Err(format!(
                "{} is missing: build it first (`cargo build -p sealback-vault`)",
                binary.display()
            ));
        }
        let dir = tempfile::Builder::new()
            .prefix("sealback-vault-test")
            .tempdir()
            .map_err(|err| format!("temporary directory: {err}"))?;
        let store = dir.path().join("records.db");
        let vault = TestVault {
            dir,
            binary: binary.to_path_buf(),
            child: None,
            store,
            url: String::new(),
            server_key: String::new(),
            options,
            pin: PinSource::File,
        };
        vault.make_token()?;
        Ok(vault)
    }

    /// The temporary directory: `vault.toml`, `records.db`, `audit.log`, `vault.log` (the
    /// server's standard error), `tls/ca.pem`, `tokens/`.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir().join("vault.toml")
    }

    pub fn store_path(&self) -> PathBuf {
        self.store.clone()
    }

    pub fn audit_path(&self) -> PathBuf {
        self.dir().join("audit.log")
    }

    /// The CA certificate that signed the vault's TLS certificate.
    pub fn ca_cert(&self) -> PathBuf {
        self.dir().join("tls/ca.pem")
    }

    /// What the server wrote to its standard error so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir().join("vault.log")).unwrap_or_default()
    }

    /// Creates `account`; its credential.
    pub fn add_account(&self, account: &str) -> Result<Zeroizing<String>, String> {
        self.credential_of(&["account", "add", account])
    }

    /// A new credential for `account`.
    pub fn reissue(&self, account: &str) -> Result<Zeroizing<String>, String> {
        self.credential_of(&["account", "reissue", account])
    }

    fn credential_of(&self, args: &[&str]) -> Result<Zeroizing<String>, String> {
        let output = self.run(args)?;
        let credential = Zeroizing::new(stdout(&output).trim().to_string());
        if credential.is_empty() {
            return Err("no credential printed".into());
        }
        Ok(credential)
    }

    /// A client configuration for `account`, pinned to this vault's key.
    pub fn client_config(&self, account: &str, credential: &str) -> VaultConfig {
        VaultConfig {
            urls: vec![self.url.clone()],
            server_key: self.server_key.clone(),
            account: account.to_string(),
            credential: Zeroizing::new(credential.to_string()),
            ca_cert: Some(self.ca_cert()),
        }
    }

    /// `sealback-vault ARGS --config <this vault's>` with this vault's token; fails unless it
    /// exits 0.
    pub fn run(&self, args: &[&str]) -> Result<Output, String> {
        let output = self
            .command(args)
            .output()
            .map_err(|err| format!("cannot run {}: {err}", self.binary.display()))?;
        if !output.status.success() {
            return Err(format!(
                "sealback-vault {}: {}{}",
                args.join(" "),
                stdout(&output),
                String::from_utf8_lossy(&output.stderr)
            ));
        }
        Ok(output)
    }

    /// The command [`TestVault::run`] runs, to run it otherwise.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(&self.binary);
        command
            .args(args)
            .arg("--config")
            .arg(self.config_path())
            .env("SOFTHSM2_CONF", self.dir().join("softhsm2.conf"))
            .env("RUST_LOG", &self.options.log_filter)
            .env_remove("CREDENTIALS_DIRECTORY")
            .env_remove(PIN_ENV)
            .stdin(Stdio::null());
        match self.pin {
            PinSource::File => {}
            PinSource::Credential => {
                command.env("CREDENTIALS_DIRECTORY", self.dir().join("credentials"));
            }
            PinSource::Env => {
                command.env(PIN_ENV, USER_PIN);
            }
        }
        command
    }

    /// Serves again with the PIN from `source`.
    pub fn set_pin_source(&mut self, source: PinSource) -> Result<(), String> {
        use std::os::unix::fs::PermissionsExt as _;
        if source == PinSource::Credential {
            let dir = self.dir().join("credentials");
            let file = dir.join(crate::config::DEFAULT_PIN_CREDENTIAL);
            let mode = |path: &Path, mode| {
                fs::set_permissions(path, fs::Permissions::from_mode(mode))
                    .map_err(|err| format!("{}: {err}", path.display()))
            };
            fs::create_dir_all(&dir).map_err(|err| format!("{}: {err}", dir.display()))?;
            mode(&dir, 0o700)?;
            fs::write(&file, USER_PIN).map_err(|err| format!("{}: {err}", file.display()))?;
            mode(&file, 0o440)?;
        }
        self.stop();
        self.pin = source;
        let address = self.url.trim_start_matches("https://").to_string();
        self.write_config(&address)?;
        self.serve()
    }

    /// Stops the server with SIGTERM (it syncs its audit log), or kills it after 10 s.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// The serving process's id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Kills the server at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the server and starts it again on the same port, store, token and log.
    pub fn restart(&mut self) -> Result<(), String> {
        self.stop();
        self.serve()
    }

    fn serve(&mut self) -> Result<(), String> {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir().join("vault.log"))
            .map_err(|err| format!("vault.log: {err}"))?;
        let mut child = self
            .command(&["serve"])
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .map_err(|err| format!("cannot start {}: {err}", self.binary.display()))?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let (send, receive) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout);
            let mut first = String::new();
            let _ = lines.read_line(&mut first);
            let _ = send.send(first);
            // Drain whatever else comes, so the server never blocks on a full pipe.
            let _ = lines.read_to_end(&mut Vec::new());
        });
        let first = receive.recv_timeout(START_TIMEOUT).unwrap_or_default();
        self.child = Some(child);
        match first.trim().strip_prefix("listening on ") {
            Some(url) => {
                self.url = url.to_string();
                Ok(())
            }
            None => {
                self.kill();
                Err(format!("the vault did not start: {}", self.log()))
            }
        }
    }

    fn make_token(&self) -> Result<(), String> {
        let tokens = self.dir().join("tokens");
        fs::create_dir(&tokens).map_err(|err| format!("tokens/: {err}"))?;
        fs::write(
            self.dir().join("softhsm2.conf"),
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n\
                 slots.removable = false\n",
                tokens.display()
            ),
        )
        .map_err(|err| format!("softhsm2.conf: {err}"))?;
        let output = Command::new("softhsm2-util")
            .args(["--init-token", "--free", "--label", TOKEN_LABEL])
            .args(["--pin", USER_PIN, "--so-pin", SO_PIN])
            .env("SOFTHSM2_CONF", self.dir().join("softhsm2.conf"))
            .output()
            .map_err(|err| format!("cannot run softhsm2-util (install softhsm2): {err}"))?;
        if !output.status.success() {
            return Err(format!(
                "softhsm2-util --init-token: {}",
                String::from_utf8_lossy(&output.stderr)
            ));
        }
        for (name, pin) in [("pin", USER_PIN), ("so-pin", SO_PIN)] {
            let path = self.dir().join(name);
            fs::write(&path, pin).map_err(|err| format!("{name}: {err}"))?;
            fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
                .map_err(|err| format!("{name}: {err}"))?;
        }
        Ok(())
    }

    fn make_certificates(&self) -> Result<(), String> {
        let tls = self.dir().join("tls");
        fs::create_dir(&tls).map_err(|err| format!("tls/: {err}"))?;
        fs::write(
            tls.join("leaf.ext"),
            "subjectAltName = DNS:localhost, IP:127.0.0.1\nbasicConstraints = critical, CA:FALSE\n\
             keyUsage = critical, digitalSignature\nextendedKeyUsage = serverAuth\n",
        )
        .map_err(|err| format!("leaf.ext: {err}"))?;
        make_ca(&tls)?;
        self.issue_certificate(&tls)
    }

    /// Writes `key.pem` and `cert.pem` for `localhost` into `dir`, signed by this vault's own
    /// CA (which clients trust): the vault's certificate, or a misissued one for a test's
    /// false vault.
    pub fn issue_certificate(&self, dir: &Path) -> Result<(), String> {
        let ca = self.dir().join("tls");
        issue_certificate(dir, &ca, &ca.join("leaf.ext"), "/CN=localhost", "")
    }

    fn write_config(&self, listen: &str) -> Result<(), String> {
        let (store, etcd) = match &self.options.etcd {
            None => (self.store.display().to_string(), String::new()),
            Some(etcd) => ("etcd".to_string(), etcd_table(etcd)),
        };
        let text = format!(
            "listen = \"{listen}\"\n\
             tls_cert = \"tls/cert.pem\"\n\
             tls_key = \"tls/key.pem\"\n\
             store = \"{}\"\n\
             audit_log = \"audit.log\"\n\
             guess_limit = {}\n\
             login_expiry_secs = {}\n\
             \n\
             [hsm]\n\
             module = \"{SOFTHSM_MODULE}\"\n\
             token_label = \"{TOKEN_LABEL}\"\n\
             {}{etcd}",
            store,
            self.options.guess_limit,
            self.options.login_expiry_secs,
            match self.pin {
                PinSource::File => "pin_file = \"pin\"\n".to_string(),
                PinSource::Credential => String::new(),
                PinSource::Env => format!("pin_env = \"{PIN_ENV}\"\n"),
            }
        );
        fs::write(self.config_path(), text).map_err(|err| format!("vault.toml: {err}"))
    }
}

impl Drop for TestVault {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `[etcd]` of a test vault's configuration (its files are absolute paths).
fn etcd_table(etcd: &crate::config::EtcdConfig) -> String {
    let mut table = format!(
        "\n[etcd]\nendpoints = {:?}\nprefix = {:?}\n",
        etcd.endpoints, etcd.prefix
    );
    for (name, file) in [
        ("ca_cert", &etcd.ca_cert),
        ("cert", &etcd.cert),
        ("key", &etcd.key),
        ("password_file", &etcd.password_file),
    ] {
        if let Some(file) = file {
            table += &format!("{name} = {:?}\n", file.display().to_string());
        }
    }
    if let Some(user) = &etcd.username {
        table += &format!("username = {user:?}\n");
    }
    table
}

/// A new P-256 key, unencrypted, for `openssl req`.
const EC_KEY: [&str; 5] = [
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:prime256v1",
    "-nodes",
];

/// Whether the process `pid` can dump core: `Err` with its core-size limit unless that is 0,
/// soft and hard (a process holding secrets sets it so, and clears its dumpable flag).
pub fn core_dumps_off(pid: u32) -> Result<(), String> {
    let limits = fs::read_to_string(format!("/proc/{pid}/limits"))
        .map_err(|err| format!("/proc/{pid}/limits: {err}"))?;
    let core = limits
        .lines()
        .find(|line| line.starts_with("Max core file size"))
        .ok_or_else(|| format!("no core limit in /proc/{pid}/limits"))?;
    match core.split_whitespace().collect::<Vec<_>>()[..] {
        [.., "0", "0", "bytes"] => Ok(()),
        _ => Err(format!("process {pid} may dump core: {core}")),
    }
}

/// A throw-away CA in `dir`: `ca.pem` and `ca.key`, valid for two days.
fn make_ca(dir: &Path) -> Result<(), String> {
    openssl(
        dir,
        &[
            &["req", "-x509"],
            &EC_KEY[..],
            &[
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-days",
                "2",
                "-subj",
                "/CN=sealback test CA",
            ],
        ],
    )
}

/// Writes `{name}key.pem` and `{name}cert.pem` for `subject` into `dir`, signed by the CA
/// of `ca_dir` ([`make_ca`]) with the extensions of the file `ext`.
fn issue_certificate(
    dir: &Path,
    ca_dir: &Path,
    ext: &Path,
    subject: &str,
    name: &str,
) -> Result<(), String> {
    let path = |name: &str| ca_dir.join(name).to_string_lossy().into_owned();
    let (ca_pem, ca_key) = (path("ca.pem"), path("ca.key"));
    let ext = ext.to_string_lossy().into_owned();
    let (key, csr, cert) = (
        format!("{name}key.pem"),
        format!("{name}leaf.csr"),
        format!("{name}cert.pem"),
    );
    openssl(
        dir,
        &[
            &["req"],
            &EC_KEY[..],
            &["-keyout", &key, "-out", &csr, "-subj", subject],
        ],
    )?;
    openssl(
        dir,
        &[&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &ca_pem,
            "-CAkey",
            &ca_key,
            "-CAcreateserial",
            "-out",
            &cert,
            "-days",
            "2",
            "-extfile",
            &ext,
        ]],
    )
}

fn openssl(dir: &Path, args: &[&[&str]]) -> Result<(), String> {
    let args: Vec<&str> = args.concat();
    let output = Command::new("openssl")
        .args(&args)
        .current_dir(dir)
        .output()
        .map_err(|err| format!("cannot run openssl (install openssl): {err}"))?;
    if !output.status.success() {
        return Err(format!(
            "openssl {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok(())
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}
