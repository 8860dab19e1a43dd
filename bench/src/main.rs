//! `sealback-bench`: backs up one generated message store with sealback and, when they are
//! installed, with restic and borg, side by side in one run on the same data, and prints
//! wall time, bytes read, bytes added to the target and peak RSS for every phase, then the
//! ratios against restic and the targets of issues #2 and #5.
//!
//! The flow: `store` generates (or reuses) a pristine store and copies it for the run; each
//! `phase` first changes the store once (`gen_store.py --mutate`), then every `tools::Tool`
//! backs it up in turn, `measure` timing each; after the last backup every tool restores its
//! latest snapshot and `verify` checks the result against the store; `report` prints it all.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

mod disk;
mod latency;
mod machine;
mod measure;
mod phase;
mod prune;
mod report;
mod run;
mod store;
mod targets;
mod tools;
mod verify;

/// Benchmark sealback against restic and borg on a generated message store.
#[derive(Debug, Parser)]
#[command(
    version,
    after_help = "\
Examples:
  sealback-bench                                   # the medium store: 300k messages, 1 GB media
  sealback-bench --messages 20000 --media-mb 50    # a quick run
  sealback-bench --peers restic                    # leave borg out
  sealback-bench --large-messages 1500000 --large-media-mb 5120 --large-peers none
                                                   # also a large store, sealback only

Build first: cargo build --release -p sealback-daemon -p sealback-local -p sealback-bench"
)]
pub(crate) struct Args {
    /// Messages in the generated store
    #[arg(long, default_value_t = 300_000)]
    pub messages: u64,
    /// Megabytes of media in the generated store
    #[arg(long, default_value_t = 1024)]
    pub media_mb: u64,
    /// Seed of the store generator (the same seed gives byte-identical data)
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Work directory: generated stores (kept for reuse), repositories, restores, results.json
    /// [default: target/sealback-bench in the workspace]
    #[arg(long, value_name = "DIR")]
    pub work: Option<PathBuf>,
    /// Keep the run's store copy, repositories and restores (else removed after a good run)
    #[arg(long)]
    pub keep: bool,
    /// The peers to measure beside sealback, comma-separated ("none" for none)
    #[arg(long, default_value = "restic,borg", value_name = "LIST")]
    pub peers: String,
    /// Where sealbackd, sealbackctl and libsealback_local.so are [default: this executable's
    /// directory]
    #[arg(long, value_name = "DIR")]
    pub bin_dir: Option<PathBuf>,
    /// Commits in the latency phase (sealback in on-change mode, debounce 1 s; 0 skips it)
    #[arg(long, default_value_t = 20, value_name = "N")]
    pub latency_commits: usize,
    /// Also generate a large store of this many messages: back it up, run its day-1
    /// incremental (compared with the medium store's in the growth table), restore it, and
    /// judge the targets on it too
    #[arg(long, value_name = "N")]
    pub large_messages: Option<u64>,
    /// Megabytes of media in the large store (with --large-messages)
    #[arg(long, default_value_t = 5120, value_name = "M")]
    pub large_media_mb: u64,
    /// The peers to measure on the large store ("none" for none) [default: --peers]
    #[arg(long, value_name = "LIST")]
    pub large_peers: Option<String>,
    /// The store generator [default: gen_store.py beside this crate's sources]
    #[arg(long, value_name = "PATH")]
    pub generator: Option<PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run::run(&args) {
        Ok(outcome) if outcome.restores_verified => ExitCode::SUCCESS,
        Ok(_) => {
            eprintln!("sealback-bench: sealback's restore did not match the store (see above)");
            ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("sealback-bench: {error:#}");
            ExitCode::FAILURE
        }
    }
}
