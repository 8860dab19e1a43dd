//! One benchmark run: the store, the tools, every phase in order, the report.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::Args;
use crate::latency::{self, Latency};
use crate::measure::{Meter, tree_bytes};
use crate::phase::Phase;
use crate::report::{self, PhaseResult, Results, StoreSummary, ToolSample};
use crate::store::{self, Generator};
use crate::targets;
use crate::tools::{self, Borg, Restic, Sealback, SealbackBinaries, Tool};
use crate::verify::Reference;

pub(crate) struct Outcome {
    /// Whether sealback's restore matched the store.
    pub restores_verified: bool,
}

const METHOD_CACHE: &str = "page cache not dropped (that needs root): the store is read once \
                            before each phase so that every tool finds it cached";
const METHOD_SYNC: &str = "sync before each tool's command, so that no tool pays for another's \
                           writeback";
const METHOD_START: &str = "sealback's times leave out its daemon's start-up: a fresh sealbackd \
                            is started for each backup and restore, and the clock starts once it \
                            answers `status` (its executable, configuration, key and plugins \
                            loaded, its socket bound) and stops at sealbackctl's answer, before \
                            the daemon is stopped; they include sealbackctl's own start and the \
                            daemon opening the repository and its catalog, which it does for \
                            every command. restic and borg pay their whole start-up in every \
                            timing";
const METHOD_ORDER: &str = "in each phase every tool runs once, in the order listed, on the \
                            same store state";
const METHOD_LARGE_RESTORE: &str = "large store: each restore is removed once checked, to \
                                    leave room for the next, and the next waits 370 s for \
                                    the freed inodes to age; the peers restore first and \
                                    sealback last";
/// How long a removal is left before the next restore (see [`restore`]).
const REMOVAL_SETTLES: std::time::Duration = std::time::Duration::from_secs(370);
const METHOD_RESTORE: &str = "restore: each tool's repository is dropped from the page cache \
                              first (a restore on a new device reads it from storage, not from \
                              the cache its backups left), and its time includes a sync after \
                              it (a restore is done when it is on disk: sealback syncs before \
                              it answers, restic and borg leave their writes to the kernel)";

pub(crate) fn run(args: &Args) -> Result<Outcome> {
    let work = args
        .work
        .clone()
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/sealback-bench"));
    fs::create_dir_all(&work).with_context(|| format!("cannot create {}", work.display()))?;
    let work = work
        .canonicalize()
        .with_context(|| format!("cannot resolve {}", work.display()))?;
    let bin_dir = match &args.bin_dir {
        Some(dir) => dir.clone(),
        None => std::env::current_exe()
            .context("cannot find this executable's path")?
            .parent()
            .context("this executable has no directory")?
            .to_path_buf(),
    };
    let binaries = SealbackBinaries::in_dir(&bin_dir)?;
    // Checked before the long medium run, not after it.
    if let Some(peers) = &args.large_peers {
        parse_peers(peers)?;
    }
    let meter = Meter::new();

    let generator = Generator {
        script: args
            .generator
            .clone()
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("gen_store.py")),
    };
    let params = generator.params(args.seed, args.messages, args.media_mb)?;
    let pristine = generator.pristine(&work, &params)?;

    let run_dir = work.join("run");
    // The last run's files are moved aside and removed only after this run: on ext4
    // without a journal, file creation skips inodes freed in the last minutes, one by one,
    // and a restore's 2,400 files after a removal of thousands cost seconds of kernel time.
    let previous = work.join("run.previous");
    store::remove_dir_if_exists(&previous)?;
    if run_dir.exists() {
        fs::rename(&run_dir, &previous)
            .with_context(|| format!("cannot move {} aside", run_dir.display()))?;
    }
    fs::create_dir_all(&run_dir).with_context(|| format!("cannot create {}", run_dir.display()))?;
    let live = run_dir.join("store");
    store::copy(&pristine, &live)?;
    let listing = store::scan(&live)?;

    let (mut tools, skipped) =
        select_tools(&args.peers, binaries.clone(), &run_dir, &live, &meter)?;
    for tool in tools.iter_mut() {
        tool.init()
            .with_context(|| format!("cannot set up {}", tool.name()))?;
    }
    let mut method = vec![
        METHOD_CACHE,
        METHOD_SYNC,
        METHOD_ORDER,
        METHOD_START,
        METHOD_RESTORE,
    ]
    .into_iter()
    .map(String::from)
    .collect::<Vec<_>>();
    if !meter.has_gnu_time() {
        method.push("/usr/bin/time missing: the peers' peak RSS and CPU are not measured".into());
    }
    let mut results = Results::new(
        StoreSummary::of(params, &listing),
        tools.iter().map(|t| t.name().to_owned()).collect(),
        tools.iter().map(|t| t.version().to_owned()).collect(),
        skipped,
        method,
    );
    results.disk = crate::disk::Disk::measure(&run_dir)?;
    println!("machine: {}", results.machine.line());
    match &results.disk {
        Some(disk) => println!("disk: {}", disk.line()),
        None => println!("disk: not measured (the file system refuses O_DIRECT)"),
    }
    println!("store: {}", results.store_line());
    for line in results.skipped.iter().chain(&results.method) {
        println!("note: {line}");
    }

    for phase in Phase::ALL {
        if let Some(mutation) = phase.mutation() {
            let day = generator.mutate(&live, args.seed, mutation)?;
            println!("\nday {}: {day}", mutation.day);
            results.days.insert(phase.key().to_owned(), day);
        }
        store::warm(&live)?;
        let samples = if phase.is_backup() {
            back_up(&mut tools, phase, &live)?
        } else {
            let reference = Reference::of_store(&live, &run_dir.join("reference"))?;
            restore(
                &mut tools,
                &run_dir,
                &reference,
                &mut results.restores,
                results.disk.as_ref(),
                false,
            )?
        };
        let result = PhaseResult {
            phase,
            title: phase.title(),
            samples,
        };
        print!("{}", report::phase_table(&result, &results.restores));
        results.phases.push(result);
    }

    // Every tool keeps its latest snapshot and reclaims the rest, on the same data.
    results.prune = crate::prune::run(&mut tools)?;
    print!("{}", crate::prune::table(&results.prune));

    // After the restore, which checked the store as the backups left it: the commits of
    // this phase change it.
    if args.latency_commits > 0 {
        let sealback = tools
            .iter()
            .find_map(|t| t.as_sealback())
            .context("sealback is not among the tools")?;
        println!(
            "\nlatency: {} commits, {} apart, sealbackd on-change with debounce {:?} ...",
            args.latency_commits,
            report::seconds(latency::SPACING.as_secs_f64()),
            latency::DEBOUNCE
        );
        let samples =
            sealback.commit_latency(args.latency_commits, latency::SPACING, latency::DEBOUNCE)?;
        let measured = Latency::of(&samples).context("no latency measured")?;
        print!("{}", measured.table());
        results.latency = Some(measured);
    }

    results.targets = targets::evaluate(&results);
    print!("{}", report::targets_table(&results, "medium"));

    if let Some(messages) = args.large_messages {
        if !args.keep && results.restore_verified("sealback") {
            // Room for the large store's copy, two repositories and a restore: the medium
            // run's files are done with.
            for tool in &results.tools {
                store::remove_dir_if_exists(&run_dir.join(tool))?;
            }
            store::remove_dir_if_exists(&live)?;
            // Written out now, so that the freed inodes age (see [`REMOVAL_SETTLES`]) while
            // the large store is copied, before anything measured creates files.
            sync()?;
        }
        let peers = args.large_peers.as_deref().unwrap_or(&args.peers);
        let mut large = large_store(
            args,
            &generator,
            &binaries,
            &meter,
            &run_dir,
            messages,
            peers,
            &results.method,
            results.disk,
        )?;
        large.targets = targets::evaluate(&large);
        results.large = Some(Box::new(large));
        print!("{}", report::growth_table(&results));
        if let Some(large) = &results.large {
            print!("{}", report::targets_table(large, "large"));
        }
    }
    let json = work.join("results.json");
    let text = serde_json::to_string_pretty(&results).context("cannot encode the results")?;
    fs::write(&json, text).with_context(|| format!("cannot write {}", json.display()))?;
    println!("\nresults: {}", json.display());
    println!("\n{}", report::markdown(&results));

    let restores_verified = results.restore_verified("sealback")
        && results
            .large
            .as_ref()
            .is_none_or(|large| large.restore_verified("sealback"));
    if args.keep || !restores_verified {
        println!("kept the run's files in {}", run_dir.display());
    } else {
        store::remove_dir_if_exists(&run_dir)?;
    }
    store::remove_dir_if_exists(&previous)?;
    Ok(Outcome { restores_verified })
}

type Tools = Vec<Box<dyn Tool>>;

const KNOWN_PEERS: [&str; 2] = ["restic", "borg"];

/// The large store: generated (or reused), copied, backed up in full, then its day 1, then
/// restored and checked.
#[allow(clippy::too_many_arguments)]
fn large_store(
    args: &Args,
    generator: &Generator,
    binaries: &SealbackBinaries,
    meter: &Meter,
    run_dir: &Path,
    messages: u64,
    peers: &str,
    method: &[String],
    disk: Option<crate::disk::Disk>,
) -> Result<Results> {
    println!(
        "\n== large store: {messages} messages, {} MB media ==",
        args.large_media_mb
    );
    let work = run_dir
        .parent()
        .context("the run directory has no parent")?;
    let params = generator.params(args.seed, messages, args.large_media_mb)?;
    let pristine = generator.pristine(work, &params)?;
    let dir = run_dir.join("large");
    store::remove_dir_if_exists(&dir)?;
    fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let live = dir.join("store");
    store::copy(&pristine, &live)?;
    let listing = store::scan(&live)?;
    let summary = StoreSummary::of(params, &listing);
    println!("large store: {}", summary.line());
    let (mut tools, skipped) = select_tools(peers, binaries.clone(), &dir, &live, meter)?;
    for line in &skipped {
        println!("note: large store: {line}");
    }
    for tool in tools.iter_mut() {
        tool.init()
            .with_context(|| format!("cannot set up {} for the large store", tool.name()))?;
    }
    let method = method
        .iter()
        .cloned()
        .chain([METHOD_LARGE_RESTORE.to_owned()])
        .collect();
    let mut results = Results::new(
        summary,
        tools.iter().map(|t| t.name().to_owned()).collect(),
        tools.iter().map(|t| t.version().to_owned()).collect(),
        skipped,
        method,
    );
    results.disk = disk;
    for phase in [Phase::Full, Phase::Day1, Phase::Restore] {
        if let Some(mutation) = phase.mutation() {
            let day = generator.mutate(&live, args.seed, mutation)?;
            println!("\nlarge store, day {}: {day}", mutation.day);
            results.days.insert(phase.key().to_owned(), day);
        }
        store::warm(&live)?;
        let samples = if phase.is_backup() {
            back_up(&mut tools, phase, &live)?
        } else {
            let reference = Reference::of_store(&live, &dir.join("reference"))?;
            // Peers first: each checked restore is removed to leave room for the next (see
            // `restore`), and whatever a removal still costs the one after, sealback pays.
            tools.reverse();
            let samples = restore(
                &mut tools,
                &dir,
                &reference,
                &mut results.restores,
                disk.as_ref(),
                !args.keep,
            );
            tools.reverse();
            samples?
        };
        let result = PhaseResult {
            phase,
            title: phase.title(),
            samples,
        };
        print!(
            "{}",
            report::phase_table(&result, &results.restores).replacen("== ", "== large store: ", 1)
        );
        results.phases.push(result);
    }
    Ok(results)
}

/// The peers named in a --peers list.
fn parse_peers(list: &str) -> Result<Vec<&str>> {
    let peers: Vec<&str> = list
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty() && *p != "none")
        .collect();
    if let Some(unknown) = peers.iter().find(|p| !KNOWN_PEERS.contains(p)) {
        bail!(
            "unknown peer {unknown:?}: known are {}",
            KNOWN_PEERS.join(", ")
        );
    }
    Ok(peers)
}

/// sealback, then the peers asked for that are installed; and a line for each one skipped.
fn select_tools(
    peers: &str,
    binaries: SealbackBinaries,
    run_dir: &Path,
    store: &Path,
    meter: &Meter,
) -> Result<(Tools, Vec<String>)> {
    let mut selected: Tools = vec![Box::new(Sealback::new(
        binaries,
        &run_dir.join("sealback"),
        store,
    )?)];
    let mut skipped = Vec::new();
    for peer in parse_peers(peers)? {
        let Some(program) = tools::on_path(peer) else {
            skipped.push(format!("{peer}: not installed, skipped"));
            continue;
        };
        let dir: PathBuf = run_dir.join(peer);
        let tool: Box<dyn Tool> = match peer {
            "restic" => Box::new(Restic::new(program, &dir, store, meter.clone())?),
            "borg" => Box::new(Borg::new(program, &dir, store, meter.clone())?),
            other => bail!(
                "unknown peer {other:?} in --peers: known are {}",
                KNOWN_PEERS.join(", ")
            ),
        };
        selected.push(tool);
    }
    Ok((selected, skipped))
}

/// Every tool backs up the store as it is; none may change it.
fn back_up(tools: &mut [Box<dyn Tool>], phase: Phase, store: &Path) -> Result<Vec<ToolSample>> {
    let before = store::scan(store)?;
    let mut samples = Vec::new();
    for tool in tools.iter_mut() {
        sync()?;
        let repository_before = tree_bytes(tool.repository())?;
        let mut sample = tool
            .backup(phase.key())
            .with_context(|| format!("{}: {}", tool.name(), phase.title()))?;
        sample.bytes_written =
            Some(tree_bytes(tool.repository())?.saturating_sub(repository_before));
        let changes = store::scan(store)?.changes_since(&before);
        if !changes.is_empty() {
            bail!(
                "{} changed the store during its {}, so the tools after it would not see the \
                 same data: {}",
                tool.name(),
                phase.title(),
                changes.join("; ")
            );
        }
        samples.push(ToolSample {
            tool: tool.name().to_owned(),
            sample,
        });
    }
    Ok(samples)
}

/// Restores every tool's latest snapshot and checks it against `reference`; a restore that
/// passed is removed if `remove_checked` (the large store's would not leave room for the
/// next).
fn restore(
    tools: &mut [Box<dyn Tool>],
    run_dir: &Path,
    reference: &Reference,
    verdicts: &mut BTreeMap<String, crate::verify::Verdict>,
    disk: Option<&crate::disk::Disk>,
    remove_checked: bool,
) -> Result<Vec<ToolSample>> {
    let mut samples = Vec::new();
    let mut removed = false;
    for tool in tools.iter_mut() {
        if removed {
            // ext4 without a journal will not reuse an inode freed in the last minute (six
            // while its inode table block is dirty): this restore's thousands of files would
            // each search past the last one's, seconds of kernel time (measured: 3 s of a
            // 9 s restore, and a minute after a sync was not enough).
            std::thread::sleep(REMOVAL_SETTLES);
        }
        let into = run_dir.join(tool.name()).join("restored");
        store::remove_dir_if_exists(&into)?;
        sync()?;
        store::evict(tool.repository())?;
        let repository = tree_bytes(tool.repository())?;
        let (mut sample, root) = tool
            .restore(&into)
            .with_context(|| format!("{}: restore", tool.name()))?;
        let syncing = std::time::Instant::now();
        sync()?;
        sample.wall_s += syncing.elapsed().as_secs_f64();
        let restored = tree_bytes(&into)?;
        sample.bytes_written = Some(restored);
        sample.disk_floor_s = disk.map(|d| d.floor_s(repository, restored));
        if sample.messages_s.is_none() {
            sample.messages_s = time_to_messages(tool.as_mut(), run_dir)?;
        }
        let verdict = reference.check(&root);
        if verdict.ok && remove_checked {
            store::remove_dir_if_exists(&into)?;
            sync()?;
            removed = true;
        }
        verdicts.insert(tool.name().to_owned(), verdict);
        samples.push(ToolSample {
            tool: tool.name().to_owned(),
            sample,
        });
    }
    Ok(samples)
}

/// A restore of the database alone, from a cold page cache as the full restore was: the
/// time to messages of a tool that cannot tell it during its full restore.
fn time_to_messages(tool: &mut dyn Tool, run_dir: &Path) -> Result<Option<f64>> {
    let into = run_dir.join(tool.name()).join("restored-database");
    store::remove_dir_if_exists(&into)?;
    sync()?;
    store::evict(tool.repository())?;
    let took = tool
        .restore_database(&into)
        .with_context(|| format!("{}: restore of the database alone", tool.name()))?;
    store::remove_dir_if_exists(&into)?;
    Ok(took)
}

fn sync() -> Result<()> {
    let status = Command::new("sync").status().context("cannot run sync")?;
    if !status.success() {
        bail!("sync failed ({status})");
    }
    Ok(())
}
