//! Real WebDAV servers for the tests of the `webdav` provider, started on loopback ports and
//! stopped on drop: `rclone serve webdav` and Apache httpd with mod_dav (Debian packages
//! `rclone` and `apache2`; `scripts/test` installs them).
//!
//! Each [`WebDavServer`] lives in a temporary directory of its own: the served files under
//! `data/`, a random password in `password` (mode 0600) and its bcrypt hash in `htpasswd`
//! (made with `htpasswd` from apache2-utils, the password on its standard input), the
//! server's configuration and its log. The provider's base collection is
//! `<server>/sealback backups/`, which does not exist until the provider creates it, and
//! whose name needs percent-encoding.
//!
//! rclone picks its own port (`--addr 127.0.0.1:0`) and logs it. Apache cannot, so it gets a
//! port that was free a moment ago, and another one if it loses that port to someone else.
//!
//! [`WebDavServer::apache_https`] serves over TLS with a certificate for `127.0.0.1` from a
//! private CA made for it (`ca.pem`), which the provider trusts through its `ca_file` option.

use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tempfile::TempDir;

use crate::device::signal;
use crate::wait;

/// The user the provider authenticates as.
pub const USER: &str = "sealback";
/// The base collection, relative to the server's root, percent-encoded.
const BASE: &str = "sealback%20backups/";
/// How long a server may take to answer after being started, or to exit after SIGTERM.
const DEADLINE: Duration = Duration::from_secs(20);
/// Ports tried for Apache before giving up.
const APACHE_PORT_TRIES: usize = 5;
/// Lines of a server's log quoted in failure messages.
const LOG_TAIL_LINES: usize = 30;

/// Which server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Rclone,
    Apache,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Rclone => "rclone",
            Kind::Apache => "apache",
        }
    }
}

/// A WebDAV server running on a loopback port, serving a temporary directory.
pub struct WebDavServer {
    kind: Kind,
    dir: TempDir,
    /// `http://127.0.0.1:<port>/`.
    root: String,
    process: Option<Child>,
}

impl WebDavServer {
    /// Starts the server `kind`.
    pub fn start(kind: Kind) -> WebDavServer {
        match kind {
            Kind::Rclone => WebDavServer::rclone(),
            Kind::Apache => WebDavServer::apache(),
        }
    }

    /// `rclone serve webdav` on a port of its choosing.
    pub fn rclone() -> WebDavServer {
        let dir = server_dir("rclone");
        let config = dir.path().join("rclone.conf");
        fs::write(&config, "").expect("write an empty rclone configuration");
        let log = dir.path().join("server.log");
        let log_file = fs::File::create(&log).expect("create the rclone log");
        let mut command = Command::new(program("rclone", &["/usr/bin/rclone"], "rclone"));
        command
            .args(["serve", "webdav"])
            .arg(dir.path().join("data"))
            .args(["--addr", "127.0.0.1:0", "--htpasswd"])
            .arg(dir.path().join("htpasswd"))
            .arg("--config")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file);
        let mut child = command.spawn().expect("start rclone serve webdav");
        let started = wait::poll(DEADLINE, || {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(Err(status));
            }
            let text = fs::read_to_string(&log).unwrap_or_default();
            started_url(&text).map(Ok)
        });
        let root = match started {
            Some(Ok(root)) => root,
            Some(Err(status)) => panic!(
                "rclone serve webdav exited with {status} before it served{}",
                tail(&log)
            ),
            None => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "rclone serve webdav did not say where it serves within {DEADLINE:?}{}",
                    tail(&log)
                )
            }
        };
        WebDavServer {
            kind: Kind::Rclone,
            dir,
            root,
            process: Some(child),
        }
    }

    /// Apache httpd with mod_dav_fs, on a free port.
    pub fn apache() -> WebDavServer {
        WebDavServer::apache_with(false)
    }

    /// Apache httpd with mod_dav_fs over https, with a certificate from a private CA
    /// ([`ca_file`](WebDavServer::ca_file)).
    pub fn apache_https() -> WebDavServer {
        WebDavServer::apache_with(true)
    }

    fn apache_with(tls: bool) -> WebDavServer {
        let dir = server_dir("apache");
        if tls {
            write_certificates(dir.path());
        }
        let httpd = program(
            "apache2",
            &["/usr/sbin/apache2", "/usr/sbin/httpd"],
            "apache2",
        );
        let modules = ["/usr/lib/apache2/modules", "/usr/lib64/httpd/modules"]
            .into_iter()
            .map(Path::new)
            .find(|dir| dir.join("mod_dav_fs.so").is_file())
            .expect("the Apache modules directory with mod_dav_fs.so: install apache2");
        let run_as = apache_user(dir.path());
        let log = dir.path().join("stderr.log");
        for _ in 0..APACHE_PORT_TRIES {
            let port = free_port();
            let config = dir.path().join("httpd.conf");
            fs::write(
                &config,
                apache_config(dir.path(), modules, port, run_as.as_deref(), tls),
            )
            .expect("write the Apache configuration");
            // Errors before the error log is open (a port in use) go to standard error.
            let stderr = fs::File::create(dir.path().join("stderr.log")).expect("create a log");
            let mut child = Command::new(&httpd)
                .arg("-f")
                .arg(&config)
                .arg("-DFOREGROUND")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(stderr)
                .spawn()
                .expect("start apache2");
            let ready = wait::poll(DEADLINE, || {
                if let Ok(Some(status)) = child.try_wait() {
                    return Some(Err(status));
                }
                // Over TLS, a plain request gets no answer: accepting connections will do.
                let ready = if tls {
                    TcpStream::connect(("127.0.0.1", port)).is_ok()
                } else {
                    answers_http(port)
                };
                ready.then_some(Ok(()))
            });
            match ready {
                Some(Ok(())) => {
                    return WebDavServer {
                        kind: Kind::Apache,
                        dir,
                        root: format!("{}://127.0.0.1:{port}/", if tls { "https" } else { "http" }),
                        process: Some(child),
                    };
                }
                Some(Err(_)) if lost_the_port(dir.path()) => continue,
                Some(Err(status)) => panic!(
                    "apache2 exited with {status} before it served{}{}",
                    tail(&log),
                    tail(&dir.path().join("error.log"))
                ),
                None => {
                    stop_child(&mut child);
                    panic!(
                        "apache2 did not answer on port {port} within {DEADLINE:?}{}",
                        tail(&log)
                    )
                }
            }
        }
        panic!(
            "apache2 lost its port to another process {APACHE_PORT_TRIES} times{}",
            tail(&log)
        )
    }

    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The provider's base collection: `http://127.0.0.1:<port>/sealback%20backups/`.
    pub fn url(&self) -> String {
        format!("{}{BASE}", self.root)
    }

    /// The directory the server serves; the base collection is `sealback backups/` in it.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The file holding the password of [`USER`].
    pub fn password_file(&self) -> PathBuf {
        self.dir.path().join("password")
    }

    /// The private CA's certificate of an https server.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// The `webdav` provider's options for this server (with `ca_file` for https).
    pub fn options(&self) -> serde_json::Value {
        let mut options = serde_json::json!({
            "url": self.url(),
            "username": USER,
            "password_file": self.password_file(),
        });
        if self.root.starts_with("https:") {
            options["ca_file"] = serde_json::json!(self.ca_file());
        }
        options
    }

    /// Options with a wrong password (kept in a file of its own).
    pub fn options_with_wrong_password(&self) -> serde_json::Value {
        let file = self.dir.path().join("wrong-password");
        write_secret(&file, "not-the-password");
        let mut options = self.options();
        options["password_file"] = serde_json::json!(file);
        options
    }

    /// Stops the server (SIGTERM, then SIGKILL if it does not exit in time); the port
    /// refuses connections afterwards.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.process.take() {
            stop_child(&mut child);
        }
    }

    /// The last lines of the server's log, formatted to end a failure message.
    pub fn log_tail(&self) -> String {
        let log = match self.kind {
            Kind::Rclone => "server.log",
            Kind::Apache => "error.log",
        };
        tail(&self.dir.path().join(log))
    }
}

impl Drop for WebDavServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A temporary directory with `data/`, a fresh password and its htpasswd line.
fn server_dir(kind: &str) -> TempDir {
    let dir = tempfile::Builder::new()
        .prefix(&format!("sealback-{kind}-"))
        .tempdir()
        .expect("a temporary directory for the server");
    fs::create_dir(dir.path().join("data")).expect("create the served directory");
    let password = format!("pw-{:016x}", rand::random::<u64>());
    write_secret(&dir.path().join("password"), &format!("{password}\n"));
    let line = htpasswd_line(USER, &password);
    fs::write(dir.path().join("htpasswd"), line).expect("write htpasswd");
    dir
}

fn write_secret(path: &Path, content: &str) {
    fs::write(path, content).expect("write a password file");
    fs::set_permissions(path, fs::Permissions::from_mode(0o600)).expect("chmod 600");
}

/// `user:<bcrypt hash>\n`, from `htpasswd -niB`, which reads the password on its standard
/// input (never from the command line).
fn htpasswd_line(user: &str, password: &str) -> String {
    let htpasswd = program("htpasswd", &["/usr/bin/htpasswd"], "apache2-utils");
    let mut child = Command::new(htpasswd)
        // Cost 4, the lowest: Apache checks the hash on every request.
        .args(["-niBC", "4", user])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run htpasswd");
    child
        .stdin
        .take()
        .expect("htpasswd's stdin")
        .write_all(password.as_bytes())
        .expect("give htpasswd the password");
    let output = child.wait_with_output().expect("wait for htpasswd");
    assert!(
        output.status.success(),
        "htpasswd failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).expect("htpasswd prints text");
    let line = text.lines().next().unwrap_or_default();
    assert!(
        line.starts_with(&format!("{user}:$2")),
        "htpasswd printed {text:?}"
    );
    format!("{line}\n")
}

/// A private CA (`ca.pem`) and a certificate it issued for `127.0.0.1` and `localhost`
/// (`server.pem`, key in `server.key`).
fn write_certificates(dir: &Path) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().expect("a CA key");
    let mut ca = CertificateParams::new(Vec::new()).expect("CA parameters");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "sealback tests private CA");
    let ca_pem = ca.self_signed(&ca_key).expect("sign the CA").pem();
    let issuer = Issuer::new(ca, ca_key);
    let server_key = KeyPair::generate().expect("a server key");
    let server = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
        .expect("server parameters")
        .signed_by(&server_key, &issuer)
        .expect("issue the server certificate");
    fs::write(dir.join("ca.pem"), ca_pem).expect("write ca.pem");
    fs::write(dir.join("server.pem"), server.pem()).expect("write server.pem");
    write_secret(&dir.join("server.key"), &server_key.serialize_pem());
}

/// A program on the `PATH` or at one of `paths`; panics saying which package to install.
fn program(name: &str, paths: &[&str], package: &str) -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .map(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join(name))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    on_path
        .into_iter()
        .chain(paths.iter().map(PathBuf::from))
        .find(|path| path.is_file())
        .unwrap_or_else(|| {
            panic!(
                "{name} is not installed: `apt-get install {package}` (scripts/test installs \
                 what the tests need)"
            )
        })
}

/// The URL in rclone's "WebDav Server started on http://127.0.0.1:PORT/" (newer versions
/// put it in brackets).
fn started_url(log: &str) -> Option<String> {
    let line = log
        .lines()
        .find(|line| line.contains("Server started on"))?;
    let start = line.find("http://")?;
    let url: String = line[start..]
        .chars()
        .take_while(|c| !c.is_whitespace() && *c != ']')
        .collect();
    Some(if url.ends_with('/') { url } else { url + "/" })
}

/// A loopback port that was free when asked.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("bind a loopback port")
        .port()
}

/// Whether something on `port` answers an HTTP request.
fn answers_http(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    if stream
        .write_all(b"OPTIONS / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.")
}

fn lost_the_port(dir: &Path) -> bool {
    ["error.log", "stderr.log"].iter().any(|log| {
        fs::read_to_string(dir.join(log)).is_ok_and(|text| text.contains("Address already in use"))
    })
}

/// Apache refuses to serve as root: when the tests run as root it runs as `www-data`, which
/// must own what it writes (the served files, the lock database) and reach the rest.
/// Returns that user, or `None` when the tests do not run as root (Apache stays the user).
fn apache_user(dir: &Path) -> Option<String> {
    let running_as = fs::metadata(dir.join("password")).expect("stat").uid();
    fs::create_dir(dir.join("lock")).expect("create the lock directory");
    if running_as != 0 {
        return None;
    }
    let passwd = fs::read_to_string("/etc/passwd").expect("read /etc/passwd");
    let (uid, gid) = passwd
        .lines()
        .map(|line| line.split(':').collect::<Vec<_>>())
        .find(|fields| fields.first() == Some(&"www-data"))
        .and_then(|fields| Some((fields.get(2)?.parse().ok()?, fields.get(3)?.parse().ok()?)))
        .expect("the user www-data, which Apache runs as when started by root");
    for owned in ["data", "lock"] {
        std::os::unix::fs::chown(dir.join(owned), Some(uid), Some(gid)).expect("chown");
    }
    fs::set_permissions(dir, fs::Permissions::from_mode(0o755)).expect("chmod the server dir");
    fs::set_permissions(dir.join("htpasswd"), fs::Permissions::from_mode(0o644))
        .expect("chmod htpasswd");
    Some("www-data".into())
}

/// A configuration with nothing but what WebDAV with basic authentication needs.
fn apache_config(dir: &Path, modules: &Path, port: u16, user: Option<&str>, tls: bool) -> String {
    let dir = dir.display();
    let modules = modules.display();
    let mut text = format!(
        r#"ServerRoot "{dir}"
ServerName 127.0.0.1
Listen 127.0.0.1:{port}
PidFile "{dir}/httpd.pid"
DefaultRuntimeDir "{dir}"
ErrorLog "{dir}/error.log"
LogLevel warn
"#
    );
    for module in [
        "mpm_event",
        "authz_core",
        "authn_core",
        "auth_basic",
        "authn_file",
        "authz_user",
        "dav",
        "dav_fs",
    ] {
        text += &format!("LoadModule {module}_module \"{modules}/mod_{module}.so\"\n");
    }
    if tls {
        for module in ["socache_shmcb", "ssl"] {
            text += &format!("LoadModule {module}_module \"{modules}/mod_{module}.so\"\n");
        }
        text += &format!(
            "SSLEngine on\nSSLCertificateFile \"{dir}/server.pem\"\n\
             SSLCertificateKeyFile \"{dir}/server.key\"\n\
             SSLSessionCache \"shmcb:{dir}/ssl_scache(512000)\"\n"
        );
    }
    if let Some(user) = user {
        text += &format!("User {user}\nGroup {user}\n");
    }
    text += &format!(
        r#"DocumentRoot "{dir}/data"
DavLockDB "{dir}/lock/DavLock"
<Directory "{dir}/data">
    Dav On
    AuthType Basic
    AuthName "sealback tests"
    AuthUserFile "{dir}/htpasswd"
    Require valid-user
</Directory>
"#
    );
    text
}

/// SIGTERM (Apache's parent then stops its children), then SIGKILL after [`DEADLINE`].
fn stop_child(child: &mut Child) {
    signal(child.id(), "TERM");
    if wait::poll(DEADLINE, || child.try_wait().ok().flatten()).is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
}

fn tail(log: &Path) -> String {
    let text = fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n");
    format!(
        "\n--- {} (last {LOG_TAIL_LINES} lines) ---\n{tail}",
        log.display()
    )
}
