//! Secrets stay secret: the whole key life cycle (key generate, backups to a local and a
//! WebDAV target, set-password, change-password, recover on a new device with a wrong and
//! the right password, import on another, restores, disable) against a real vault, every
//! daemon and the vault at TRACE logging. Afterwards no form of the recovery key, no
//! password, no vault credential and no WebDAV password appears in any daemon's log, the
//! vault's log or audit log, a daemon's state files (but the key file), or what sealbackctl
//! printed (but the recovery key `key generate` shows); nor in the argv or environment of
//! any daemon or process a daemon started. And sealbackctl takes no secret on its command
//! line: it refuses one there, and offers no option for one.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use sealback_tests::store::{check_restored, walk};
use sealback_tests::webdav_servers::{USER, WebDavServer};
use sealback_tests::{Ctl, Device, Setup, Target};

use sealback_vault::testing::Options;

use crate::vault::World;

/// The backup key's file in a daemon's state directory: the one place the key is kept.
const KEY_FILE: &str = "backup.key";
const PASSWORD: &str = "first vault passphrase 9141";
const NEW_PASSWORD: &str = "a different, longer secret 2077";
const WRONG_PASSWORD: &str = "not the passphrase 5310";
/// The shortest piece of a secret that counts as a leak: 8 bytes of the key (16 hex
/// digits), 16 characters of a credential.
const PIECE: usize = 16;

/// A secret and the byte strings that would give it away.
struct Secret {
    name: &'static str,
    forms: Vec<(String, Vec<u8>)>,
}

impl Secret {
    /// A text secret: the text itself, its base64 (as in a Basic or Bearer header) and its
    /// hex, and every [`PIECE`]-character piece of it.
    fn text(name: &'static str, text: &str) -> Secret {
        let mut forms = vec![
            ("as is".to_owned(), text.as_bytes().to_vec()),
            ("base64".to_owned(), base64(text.as_bytes()).into_bytes()),
            ("hex".to_owned(), hex(text.as_bytes()).into_bytes()),
        ];
        forms.extend(pieces("a piece", text.as_bytes(), PIECE));
        Secret { name, forms }
    }

    /// The recovery key as `key generate` shows it, and the 32 bytes it stands for: as
    /// shown, in hex of either case, raw, base64, and as a Rust byte-array Debug; and every
    /// piece of 8 bytes of each.
    fn recovery_key(shown: &str) -> Secret {
        let digits: String = shown.chars().filter(char::is_ascii_hexdigit).collect();
        assert_eq!(digits.len(), 64, "a recovery key has 64 digits: {shown:?}");
        let bytes: Vec<u8> = (0..32)
            .map(|i| u8::from_str_radix(&digits[2 * i..2 * i + 2], 16).expect("hex digits"))
            .collect();
        let mut forms = vec![("as shown".to_owned(), shown.trim().as_bytes().to_vec())];
        forms.extend(pieces("hex", digits.to_lowercase().as_bytes(), 16));
        forms.extend(pieces("HEX", digits.to_uppercase().as_bytes(), 16));
        forms.extend(pieces("raw bytes", &bytes, 8));
        // Groups of four digits as shown: any four groups in a row.
        let groups: Vec<&str> = shown.split_whitespace().collect();
        for (i, four) in groups.windows(4).enumerate() {
            forms.push((format!("groups {i}.."), four.join(" ").into_bytes()));
        }
        for skip in 0..3 {
            let encoded = base64(&bytes[skip..]);
            forms.extend(pieces(
                &format!("base64 from byte {skip}"),
                encoded.as_bytes(),
                12,
            ));
        }
        let debug: Vec<String> = bytes.iter().map(u8::to_string).collect();
        for (i, eight) in debug.windows(8).enumerate() {
            forms.push((format!("Debug bytes {i}.."), eight.join(", ").into_bytes()));
        }
        Secret {
            name: "the recovery key",
            forms,
        }
    }

    /// Where in `haystack` a form of this secret occurs, described for a failure message.
    fn found_in(&self, haystack: &[u8], place: &str) -> Option<String> {
        self.forms.iter().find_map(|(form, needle)| {
            let at = haystack
                .windows(needle.len())
                .position(|window| window == needle.as_slice())?;
            let line = haystack[..at].iter().filter(|&&b| b == b'\n').count() + 1;
            Some(format!("{} ({form}) in {place}, line {line}", self.name))
        })
    }
}

/// Every `len`-byte piece of `bytes`, named `name` and its offset.
fn pieces(name: &str, bytes: &[u8], len: usize) -> Vec<(String, Vec<u8>)> {
    bytes
        .windows(len.min(bytes.len()))
        .enumerate()
        .map(|(at, piece)| (format!("{name} at {at}"), piece.to_vec()))
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Standard base64 without padding (a padded encoding starts with the same characters).
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for group in bytes.chunks(3) {
        let n = group
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..=group.len() {
            out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
        }
    }
    out
}

/// A process's command line and environment, as /proc shows them.
struct ProcessView {
    cmdline: Vec<u8>,
    environ: Option<Vec<u8>>,
}

fn process_view(pid: u32) -> Option<ProcessView> {
    let proc = Path::new("/proc").join(pid.to_string());
    Some(ProcessView {
        cmdline: fs::read(proc.join("cmdline")).ok()?,
        environ: fs::read(proc.join("environ")).ok(),
    })
}

/// The children of `pid` (of all its threads), from /proc.
fn children(pid: u32) -> Vec<u32> {
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|task| fs::read_to_string(task.path().join("children")).ok())
        .flat_map(|list| {
            list.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect()
}

/// Samples, until stopped, the processes every watched daemon has started (and theirs):
/// their command line and environment, read while they run.
#[derive(Default)]
struct ChildWatch {
    daemons: Mutex<Vec<u32>>,
    seen: Mutex<BTreeMap<u32, ProcessView>>,
    stop: AtomicBool,
}

impl ChildWatch {
    fn start() -> (Arc<ChildWatch>, JoinHandle<()>) {
        let watch = Arc::new(ChildWatch::default());
        let sampler = watch.clone();
        let thread = std::thread::spawn(move || {
            while !sampler.stop.load(Ordering::Relaxed) {
                sampler.sample();
                // A sampling period, not a synchronisation: short-lived children are
                // caught when they live longer than this.
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        (watch, thread)
    }

    fn watch(&self, device: &Device) {
        let pid = device.pid().expect("the daemon runs");
        self.daemons.lock().expect("daemons").push(pid);
    }

    fn sample(&self) {
        let mut pending: Vec<u32> = self.daemons.lock().expect("daemons").clone();
        let mut descendants = Vec::new();
        while let Some(pid) = pending.pop() {
            for child in children(pid) {
                descendants.push(child);
                pending.push(child);
            }
        }
        let mut seen = self.seen.lock().expect("seen");
        for pid in descendants {
            if let Some(view) = process_view(pid) {
                seen.entry(pid).or_insert(view);
            }
        }
    }
}

/// Collects what the life cycle left to search: (where, bytes).
#[derive(Default)]
struct Evidence {
    places: Vec<(String, Vec<u8>)>,
}

impl Evidence {
    /// A sealbackctl command's output; `shows_key`: its standard output is the recovery
    /// key shown to the user on purpose (`key generate`).
    fn ctl(&mut self, ctl: &Ctl, shows_key: bool) {
        if !shows_key {
            self.add(&format!("stdout of `{}`", ctl.command), &ctl.stdout);
        }
        self.add(&format!("stderr of `{}`", ctl.command), &ctl.stderr);
    }

    fn add(&mut self, place: &str, text: &str) {
        self.places
            .push((place.to_owned(), text.as_bytes().to_vec()));
    }

    fn file(&mut self, place: &str, path: &Path) {
        let bytes = fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        self.places.push((place.to_owned(), bytes));
    }

    /// Every file a daemon keeps in its state directory but the key file itself (the
    /// catalogs, the key mode, the spool): the key has no business in them.
    fn state_files(&mut self, dir: &Path) {
        for name in walk(dir).unwrap_or_else(|e| panic!("list {}: {e}", dir.display())) {
            if name != KEY_FILE {
                self.file(&format!("the state file {name}"), &dir.join(&name));
            }
        }
    }

    fn process(&mut self, what: &str, pid: u32, view: &ProcessView) {
        let args = format!("the argv of {what} (pid {pid})");
        self.places.push((args, view.cmdline.clone()));
        if let Some(environ) = &view.environ {
            let env = format!("the environment of {what} (pid {pid})");
            self.places.push((env, environ.clone()));
        }
    }

    /// Every place a secret shows in.
    fn leaks(&self, secrets: &[Secret]) -> Vec<String> {
        self.places
            .iter()
            .flat_map(|(place, bytes)| secrets.iter().filter_map(|s| s.found_in(bytes, place)))
            .collect()
    }
}

/// A device with its daemon at TRACE, watched for children.
fn traced(setup: Setup, children: &ChildWatch) -> Device {
    let mut device = Device::new(setup);
    device.log_filter("trace");
    device.start();
    children.watch(&device);
    device
}

/// Runs `args` with `input` on `device`, which must succeed; keeps its output.
#[track_caller]
fn ok(device: &Device, evidence: &mut Evidence, args: &[&str], input: &str) -> Ctl {
    let ctl = device.ctl_stdin(args, input);
    assert_eq!(ctl.code, Some(0), "{ctl}{}", device.log_tail());
    evidence.ctl(&ctl, false);
    ctl
}

/// Restores the latest snapshot on `device` into `to`, which must hold `messages`.
#[track_caller]
fn restores_all(device: &Device, evidence: &mut Evidence, to: &Path, messages: i64) {
    let to_arg = to.to_str().expect("temporary paths are UTF-8");
    ok(device, evidence, &["restore", "latest", "--to", to_arg], "");
    let restored = check_restored(to).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(restored.messages, messages, "{}", device.log_tail());
}

#[test]
fn no_key_password_or_credential_in_any_log_argv_or_environment() {
    let world = World::with_vault(Options {
        log_filter: "trace".to_owned(),
        ..Options::default()
    });
    let dav = WebDavServer::rclone();
    let (watch, sampler) = ChildWatch::start();
    let mut evidence = Evidence::default();
    let targets = vec![
        Target::local("disk", &world.target),
        Target::new("dav", "webdav", dav.options()),
    ];

    // The phone: a key, backups to both targets, then the key kept behind a password.
    let mut phone = traced(
        Setup::new(world.store.dir(), targets).vault(world.section.clone()),
        &watch,
    );
    let generate = phone.ctl(&["--json", "key", "generate"]);
    assert_eq!(generate.code, Some(0), "{generate}{}", phone.log_tail());
    evidence.ctl(&generate, true);
    let shown = serde_json::from_str::<serde_json::Value>(&generate.stdout)
        .expect("key generate prints JSON")["recovery_key"]
        .as_str()
        .expect("a recovery_key string")
        .to_owned();
    ok(&phone, &mut evidence, &["backup", "--wait"], "");
    world.store.append(5);
    ok(&phone, &mut evidence, &["backup", "--wait"], "");
    let password_input = format!("{PASSWORD}\n");
    ok(
        &phone,
        &mut evidence,
        &["key", "set-password"],
        &password_input,
    );
    let change = format!("{PASSWORD}\n{NEW_PASSWORD}\n");
    ok(&phone, &mut evidence, &["key", "change-password"], &change);
    ok(&phone, &mut evidence, &["--json", "status"], "");

    // A new phone gets the key from the vault: a wrong password, then the right one.
    let from_disk = || Setup::restoring_from(vec![Target::local("disk", &world.target)]);
    let mut recovered = traced(from_disk().vault(world.section.clone()), &watch);
    let wrong = recovered.ctl_stdin(&["key", "recover"], &format!("{WRONG_PASSWORD}\n"));
    assert_eq!(wrong.code, Some(1), "{wrong}");
    evidence.ctl(&wrong, false);
    let new_password_input = format!("{NEW_PASSWORD}\n");
    ok(
        &recovered,
        &mut evidence,
        &["key", "recover"],
        &new_password_input,
    );
    let committed = world.store.committed();
    let to = world.dir.path().join("recovered");
    restores_all(&recovered, &mut evidence, &to, committed);

    // Another gets it from the recovery key.
    let mut imported = traced(from_disk(), &watch);
    ok(&imported, &mut evidence, &["key", "import"], &shown);
    let to = world.dir.path().join("imported");
    restores_all(&imported, &mut evidence, &to, committed);

    // The phone turns the vault off and backs up again.
    ok(
        &phone,
        &mut evidence,
        &["key", "disable"],
        &new_password_input,
    );
    world.store.append(3);
    ok(&phone, &mut evidence, &["backup", "--wait"], "");

    // sealbackctl refuses a secret on its command line and has no option for one.
    for args in [
        vec!["key", "import", shown.as_str()],
        vec!["key", "set-password", PASSWORD],
        vec!["key", "recover", NEW_PASSWORD],
        vec!["key", "change-password", PASSWORD, NEW_PASSWORD],
        vec!["key", "disable", NEW_PASSWORD],
    ] {
        let refused = phone.ctl(&args);
        assert_eq!(
            refused.code,
            Some(2),
            "a secret accepted in argv: {refused}"
        );
        assert!(refused.stderr.contains("unexpected argument"), "{refused}");
        // Its error names the argument the user typed: not evidence of a leak.
    }
    for command in [
        "import",
        "set-password",
        "recover",
        "change-password",
        "disable",
    ] {
        let help = phone.ctl(&["key", command, "--help"]);
        assert_eq!(help.code, Some(0), "{help}");
        let options: Vec<&str> = help
            .stdout
            .split_whitespace()
            .filter(|word| word.starts_with("--"))
            .collect();
        assert!(
            options.iter().all(|o| {
                [
                    "--replace",
                    "--socket",
                    "--json",
                    "--verbose",
                    "--quiet",
                    "--help",
                ]
                .contains(o)
            }),
            "`key {command}` takes an option that could carry a secret: {options:?}"
        );
    }

    // What the processes show, then what the logs say.
    for (what, device) in [
        ("the phone's sealbackd", &phone),
        ("the recovering sealbackd", &recovered),
        ("the importing sealbackd", &imported),
    ] {
        let pid = device.pid().expect("running");
        let view = process_view(pid).expect("the daemon's /proc entry");
        assert!(view.environ.is_some(), "cannot read /proc/{pid}/environ");
        evidence.process(what, pid, &view);
    }
    watch.stop.store(true, Ordering::Relaxed);
    sampler.join().expect("the child sampler");
    let seen = watch.seen.lock().expect("seen");
    for (pid, view) in seen.iter() {
        evidence.process("a process a daemon started", *pid, view);
    }
    for device in [&mut phone, &mut recovered, &mut imported] {
        device.stop();
    }
    let mut traces = 0;
    for (what, device) in [
        ("the phone's daemon log", &phone),
        ("the recovering daemon's log", &recovered),
        ("the importing daemon's log", &imported),
    ] {
        let log = fs::read_to_string(device.log_path()).expect("the daemon's log");
        traces += log.lines().filter(|line| line.contains("TRACE")).count();
        evidence.file(what, &device.log_path());
    }
    assert!(
        traces > 0,
        "no TRACE line: the daemons did not log at TRACE"
    );
    // The vault logs nothing below INFO; INFO lines show its filter is not the default
    // ("warn").
    let vault_log = world.vault.log();
    assert!(
        vault_log.contains("INFO"),
        "the vault's log has no INFO line: it did not run at TRACE:\n{vault_log}"
    );
    evidence.add("the vault's log", &vault_log);
    evidence.file("the vault's audit log", &world.vault.audit_path());
    for device in [&phone, &recovered, &imported] {
        evidence.state_files(&device.state_dir());
    }

    let webdav_password =
        fs::read_to_string(dav.password_file()).expect("the WebDAV password file");
    let credential = fs::read_to_string(world.section.credential_file.as_path())
        .expect("the vault credential file");
    let secrets = [
        Secret::recovery_key(&shown),
        Secret::text("the first password", PASSWORD),
        Secret::text("the new password", NEW_PASSWORD),
        Secret::text("the wrong password", WRONG_PASSWORD),
        Secret::text("the vault credential", credential.trim()),
        Secret::text("the WebDAV password", webdav_password.trim()),
        Secret::text(
            "the WebDAV Basic credentials",
            &format!("{USER}:{}", webdav_password.trim()),
        ),
    ];
    let leaks = evidence.leaks(&secrets);
    assert!(
        leaks.is_empty(),
        "secrets leaked ({} processes started by the daemons seen, {traces} TRACE lines):\n{}",
        seen.len(),
        leaks.join("\n")
    );
    eprintln!(
        "secrets: {} places searched ({traces} TRACE lines), {} processes started by the daemons, no leak",
        evidence.places.len(),
        seen.len()
    );
}

/// The mode bits of `path`.
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

#[test]
fn the_daemon_holding_the_key_dumps_no_core_and_keeps_its_state_to_itself() {
    use std::os::unix::fs::PermissionsExt as _;
    let mut fixture = crate::fixtures::BackedUp::new(20, 5);
    fixture.device.stop();
    // A state directory and catalog left open by an older version, or a loose umask.
    let state = fixture.device.state_dir();
    let catalog = state.join("catalog");
    fs::set_permissions(&state, fs::Permissions::from_mode(0o755)).expect("chmod");
    for entry in fs::read_dir(&catalog).expect("catalog") {
        let path = entry.expect("entry").path();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).expect("chmod");
    }
    fixture.device.start();
    fixture.add_and_back_up(5);

    let pid = fixture.device.pid().expect("running");
    sealback_vault::testing::core_dumps_off(pid).unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(mode(&state), 0o700, "state.dir is open to others");
    let mut files = walk(&state).expect("state files");
    files.retain(|f| !f.ends_with(".sock"));
    assert!(!files.is_empty());
    for file in files {
        let path = state.join(&file);
        assert_eq!(
            mode(&path) & 0o077,
            0,
            "{} has mode {:o}: open to others",
            path.display(),
            mode(&path)
        );
    }
}
