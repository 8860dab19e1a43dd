//! `drive-emulator`: the Google Drive v3 emulator of sealback's tests as a program, for trying
//! the `gdrive` provider by hand. It prints the provider options that point at it, then serves
//! until it is killed. Everything it stores is in memory. See `sealback_tests::drive`.

use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use sealback_tests::drive::{DriveEmulator, Fault, Options, SCOPE_APPDATA};

/// A Google Drive v3 emulator on a loopback port (in memory, plain HTTP).
#[derive(Debug, Parser)]
#[command(name = "drive-emulator")]
struct Args {
    /// Address to listen on (port 0: any free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// The OAuth client id the token endpoints accept.
    #[arg(long)]
    client_id: Option<String>,
    /// Read the OAuth client secret from this file (default: a fixed test secret).
    #[arg(long)]
    client_secret_file: Option<PathBuf>,
    /// Storage quota in bytes; uploads past it get 403 storageQuotaExceeded.
    #[arg(long)]
    quota: Option<u64>,
    /// The most files one files.list page returns.
    #[arg(long, default_value_t = 1000)]
    max_page_size: u32,
    /// Access-token lifetime in seconds.
    #[arg(long, default_value_t = 3600)]
    access_token_lifetime: u64,
    /// The device flow's polling interval in seconds.
    #[arg(long, default_value_t = 5)]
    device_interval: u64,
    /// Sign a user in at start: write a refresh token (scope drive.appdata) to this file, mode
    /// 0600, for the provider's `refresh_token_file`.
    #[arg(long)]
    refresh_token_file: Option<PathBuf>,
    /// A fault rule KIND:ACTION[:COUNT[:EVERY]], repeatable. KIND: any, token, device-code,
    /// list, get, media, delete, create, multipart, resumable-start, chunk, status. ACTION:
    /// rate-limit, user-rate-limit, 429, 429/SECS, 500, 503, quota, 401, cut/BYTES,
    /// lose-answer, duplicate, delay/MILLIS. COUNT: how many matching requests (default 1).
    /// EVERY: only every n-th matching request (default 1).
    #[arg(long)]
    fault: Vec<String>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let faults = args
        .fault
        .iter()
        .map(|f| Fault::parse(f))
        .collect::<Result<Vec<_>, _>>()
        .map_err(anyhow::Error::msg)?;
    let mut options = Options {
        listen: args.listen,
        quota: args.quota,
        max_page_size: args.max_page_size,
        access_token_lifetime: Duration::from_secs(args.access_token_lifetime),
        device_poll_interval: Duration::from_secs(args.device_interval),
        ..Options::default()
    };
    if let Some(id) = args.client_id {
        options.client_id = id;
    }
    if let Some(path) = &args.client_secret_file {
        let secret = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("reading --client-secret-file {}: {e}", path.display()))?;
        options.client_secret = secret.trim().to_string();
    }
    let drive = DriveEmulator::start(options)?;
    for fault in faults {
        drive.inject(fault);
    }
    if let Some(path) = &args.refresh_token_file {
        let token = drive.issue_refresh_token(SCOPE_APPDATA);
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| anyhow::anyhow!("writing --refresh-token-file {}: {e}", path.display()))?;
        file.write_all(token.as_bytes())?;
    }
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "# Drive v3 emulator on {} — provider options:",
        drive.addr()
    )?;
    writeln!(out, "api_root = \"{}\"", drive.api_root())?;
    writeln!(out, "token_uri = \"{}\"", drive.token_uri())?;
    writeln!(out, "device_auth_uri = \"{}\"", drive.device_auth_uri())?;
    writeln!(out, "client_id = \"{}\"", drive.options().client_id)?;
    if args.client_secret_file.is_none() {
        writeln!(out, "client_secret = \"{}\"", drive.options().client_secret)?;
    }
    writeln!(
        out,
        "# approve a device sign-in: {}device?user_code=CODE",
        drive.api_root()
    )?;
    writeln!(
        out,
        "# counters: {}emulator/counters   files: {}emulator/files",
        drive.api_root(),
        drive.api_root()
    )?;
    out.flush()?;
    drop(out);
    loop {
        std::thread::park();
    }
}
