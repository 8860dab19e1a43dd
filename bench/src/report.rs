//! The results of a run, and how they are shown: a text table per phase as it finishes,
//! the targets, results.json, and one Markdown table to paste into README.md.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::latency::Latency;
use crate::machine::Machine;
use crate::measure::Sample;
use crate::phase::Phase;
use crate::store::StoreParams;
use crate::targets::{TargetResult, Unit};
use crate::verify::Verdict;

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Results {
    pub machine: Machine,
    /// The disk under the run's directory, if it does `O_DIRECT`.
    pub disk: Option<crate::disk::Disk>,
    pub store: StoreSummary,
    /// The tools measured, in the order they ran in every phase.
    pub tools: Vec<String>,
    /// Peers asked for but not run, and why.
    pub skipped: Vec<String>,
    /// How the page cache was treated.
    pub method: Vec<String>,
    /// gen_store.py's summary of each simulated day, by phase key.
    pub days: BTreeMap<String, serde_json::Value>,
    pub phases: Vec<PhaseResult>,
    /// The check of each tool's restore, by tool.
    pub restores: BTreeMap<String, Verdict>,
    /// sealback's commit-to-durable latency in on-change mode, if measured.
    pub latency: Option<Latency>,
    /// The same on a large store, if asked for (`--large-messages`): its full backup,
    /// day 1 and restore, and the targets judged on them.
    pub large: Option<Box<Results>>,
    pub targets: Vec<TargetResult>,
    /// Every tool pruned to its latest snapshot, after the days.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub prune: Vec<crate::prune::PruneResult>,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct StoreSummary {
    #[serde(flatten)]
    pub params: StoreParams,
    pub files: usize,
    pub bytes: u64,
    pub database_bytes: u64,
}

impl StoreSummary {
    /// The store generated with `params`, as `listing` found it.
    pub(crate) fn of(params: StoreParams, listing: &crate::store::Listing) -> StoreSummary {
        StoreSummary {
            params,
            files: listing.files.len(),
            bytes: listing.bytes(),
            database_bytes: listing.files.get("msgstore.db").map_or(0, |f| f.size),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct PhaseResult {
    pub phase: Phase,
    pub title: &'static str,
    pub samples: Vec<ToolSample>,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct ToolSample {
    pub tool: String,
    #[serde(flatten)]
    pub sample: Sample,
}

impl Results {
    /// A run of `tools` on `store`, before its phases.
    pub(crate) fn new(
        store: StoreSummary,
        tools: Vec<String>,
        versions: Vec<String>,
        skipped: Vec<String>,
        method: Vec<String>,
    ) -> Results {
        Results {
            machine: Machine::describe(versions),
            disk: None,
            store,
            tools,
            skipped,
            method,
            days: BTreeMap::new(),
            phases: Vec::new(),
            restores: BTreeMap::new(),
            latency: None,
            large: None,
            targets: Vec::new(),
            prune: Vec::new(),
        }
    }

    pub(crate) fn sample(&self, phase: Phase, tool: &str) -> Option<&Sample> {
        self.phases
            .iter()
            .find(|p| p.phase == phase)?
            .samples
            .iter()
            .find(|s| s.tool == tool)
            .map(|s| &s.sample)
    }

    /// The highest idle RSS `tool` showed after start-up over the backup phases.
    pub(crate) fn idle_rss(&self, tool: &str) -> Option<u64> {
        Phase::ALL
            .iter()
            .filter(|p| p.is_backup())
            .filter_map(|p| self.sample(*p, tool)?.idle_rss)
            .max()
    }

    pub(crate) fn restore_verified(&self, tool: &str) -> bool {
        self.restores.get(tool).is_some_and(|v| v.ok)
    }

    pub(crate) fn store_line(&self) -> String {
        self.store.line()
    }
}

impl StoreSummary {
    pub(crate) fn line(&self) -> String {
        let s = self;
        format!(
            "seed {}, {} messages, {} MB media requested: {} files, {} (msgstore.db {})",
            s.params.seed,
            s.params.messages,
            s.params.media_mb,
            s.files,
            bytes(s.bytes),
            bytes(s.database_bytes)
        )
    }
}

/// A figure in `unit`, for tables.
pub(crate) fn show(value: f64, unit: Unit) -> String {
    match unit {
        Unit::Seconds => seconds(value),
        Unit::Bytes => bytes(value as u64),
        Unit::Rss => rss(value as u64),
    }
}

pub(crate) fn seconds(s: f64) -> String {
    if s < 10.0 {
        format!("{s:.2} s")
    } else {
        format!("{s:.1} s")
    }
}

/// Decimal units, as du and the peers print sizes.
pub(crate) fn bytes(b: u64) -> String {
    let b = b as f64;
    if b >= 1e9 {
        format!("{:.2} GB", b / 1e9)
    } else if b >= 1e8 {
        format!("{:.0} MB", b / 1e6)
    } else if b >= 1e6 {
        format!("{:.1} MB", b / 1e6)
    } else if b >= 1e3 {
        format!("{:.1} kB", b / 1e3)
    } else {
        format!("{b} B")
    }
}

/// Binary units, as RSS is usually given.
pub(crate) fn rss(b: u64) -> String {
    format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64)
}

fn or_dash<T>(value: Option<T>, show: impl Fn(T) -> String) -> String {
    value.map_or_else(|| "-".to_owned(), show)
}

/// The text table of one phase.
pub(crate) fn phase_table(phase: &PhaseResult, verdicts: &BTreeMap<String, Verdict>) -> String {
    let written = if phase.phase == Phase::Restore {
        "restored"
    } else {
        "added"
    };
    let mut rows = vec![[
        "tool".to_owned(),
        "wall".to_owned(),
        "cpu".to_owned(),
        "read".to_owned(),
        written.to_owned(),
        "peak RSS".to_owned(),
        "idle RSS".to_owned(),
        "RSS after".to_owned(),
    ]];
    for s in &phase.samples {
        let m = &s.sample;
        rows.push([
            s.tool.clone(),
            seconds(m.wall_s),
            or_dash(m.cpu_s, seconds),
            or_dash(m.bytes_read, bytes),
            or_dash(m.bytes_written, bytes),
            or_dash(m.peak_rss, rss),
            or_dash(m.idle_rss, rss),
            or_dash(m.rss_after, rss),
        ]);
    }
    let mut text = format!("\n== {} ==\n", phase.title);
    text.push_str(&align(&rows));
    for s in &phase.samples {
        if let Some(note) = &s.sample.note {
            let _ = writeln!(text, "  {}: {note}", s.tool);
        }
        if let Some(messages) = s
            .sample
            .messages_s
            .filter(|_| phase.phase == Phase::Restore)
        {
            let _ = writeln!(
                text,
                "  {}: time to messages (database usable) {} of {} for the full restore",
                s.tool,
                seconds(messages),
                seconds(s.sample.wall_s)
            );
        }
        if let Some(floor) = s
            .sample
            .disk_floor_s
            .filter(|_| phase.phase == Phase::Restore)
        {
            let _ = writeln!(
                text,
                "  {}: the disk's floor for this restore (its repository read and its files \
                 written at the disk's rate both ways at once) {}; it took {:.2}x that",
                s.tool,
                seconds(floor),
                s.sample.wall_s / floor
            );
        }
        if let Some(p) = &s.sample.status_peaks {
            let _ = writeln!(
                text,
                "  {}: memory at its highest: anonymous {}, file-backed {}; up to {} threads",
                s.tool,
                rss(p.rss_anon),
                rss(p.rss_file),
                p.threads
            );
        }
        if let Some(verdict) = verdicts
            .get(&s.tool)
            .filter(|_| phase.phase == Phase::Restore)
        {
            let mark = if verdict.ok { "verified" } else { "FAILED" };
            let _ = writeln!(text, "  {} restore {mark}: {}", s.tool, verdict.detail);
        }
    }
    text
}

/// The day-1 incremental on the medium and the large store side by side: time and bytes
/// should stay flat as the store grows.
pub(crate) fn growth_table(results: &Results) -> String {
    let Some(large) = &results.large else {
        return String::new();
    };
    let ratio = |medium: Option<f64>, large: Option<f64>| {
        medium
            .zip(large)
            .filter(|(m, _)| *m > 0.0)
            .map_or_else(|| "-".to_owned(), |(m, l)| format!("×{:.2}", l / m))
    };
    let mut rows = vec![[
        "tool".to_owned(),
        "wall medium".to_owned(),
        "wall large".to_owned(),
        "".to_owned(),
        "read medium".to_owned(),
        "read large".to_owned(),
        "".to_owned(),
        "added medium".to_owned(),
        "added large".to_owned(),
        "".to_owned(),
    ]];
    for tool in &large.tools {
        let (medium, large) = (
            results.sample(Phase::Day1, tool),
            large.sample(Phase::Day1, tool),
        );
        let wall = |s: Option<&Sample>| s.map(|s| s.wall_s);
        let read = |s: Option<&Sample>| s.and_then(|s| s.bytes_read);
        let added = |s: Option<&Sample>| s.and_then(|s| s.bytes_written);
        rows.push([
            tool.clone(),
            or_dash(wall(medium), seconds),
            or_dash(wall(large), seconds),
            ratio(wall(medium), wall(large)),
            or_dash(read(medium), bytes),
            or_dash(read(large), bytes),
            ratio(
                read(medium).map(|b| b as f64),
                read(large).map(|b| b as f64),
            ),
            or_dash(added(medium), bytes),
            or_dash(added(large), bytes),
            ratio(
                added(medium).map(|b| b as f64),
                added(large).map(|b| b as f64),
            ),
        ]);
    }
    let day = |d: Option<&serde_json::Value>| {
        let field = |name: &str| {
            d.and_then(|d| d.get(name))
                .and_then(serde_json::Value::as_u64)
        };
        format!(
            "{} messages, {} new media, {} -wal",
            or_dash(field("inserted"), |n| n.to_string()),
            or_dash(field("media_bytes_added"), bytes),
            or_dash(field("wal_bytes"), bytes)
        )
    };
    format!(
        "\n== day-1 incremental, medium vs large store (should stay flat) ==\n\
         medium: {}\n  day 1: {}\nlarge:  {}\n  day 1: {}\n{}",
        results.store.line(),
        day(results.days.get(Phase::Day1.key())),
        large.store.line(),
        day(large.days.get(Phase::Day1.key())),
        align(&rows)
    )
}

/// The targets judged on `results`, under a heading naming `store`.
pub(crate) fn targets_table(results: &Results, store: &str) -> String {
    let mut rows = vec![[
        "target".to_owned(),
        "sealback".to_owned(),
        "restic".to_owned(),
        "ratio".to_owned(),
        "goal".to_owned(),
        "result".to_owned(),
    ]];
    for t in &results.targets {
        rows.push([
            format!("{} (#{})", t.label, t.issue),
            or_dash(t.sealback, |v| show(v, t.unit)),
            or_dash(t.restic, |v| show(v, t.unit)),
            or_dash(t.ratio, |r| format!("{r:.3}")),
            t.goal.clone(),
            t.result.clone(),
        ]);
    }
    format!(
        "\n== targets, {store} store (sealback against restic, side by side in this run) ==\n{}",
        align(&rows)
    )
}

/// Left-aligned columns separated by two spaces.
fn align<const N: usize>(rows: &[[String; N]]) -> String {
    let mut widths = [0; N];
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut text = String::new();
    for row in rows {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        let _ = writeln!(text, "{}", line.join("  ").trim_end());
    }
    text
}

/// The Markdown for README.md: the run's conditions, every phase, then the targets.
pub(crate) fn markdown(results: &Results) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "Machine: {}  ", results.machine.line());
    if let Some(disk) = &results.disk {
        let _ = writeln!(md, "Disk: {}  ", disk.line());
    }
    let _ = writeln!(md, "Store: {}  ", results.store_line());
    let _ = writeln!(md, "Method: {}  ", results.method.join("; "));
    if !results.skipped.is_empty() {
        let _ = writeln!(md, "Skipped: {}  ", results.skipped.join("; "));
    }
    let _ = writeln!(md);
    md.push_str(&phases_markdown(results));
    let _ = writeln!(md);
    let _ = writeln!(
        md,
        "Cells: wall time (sealback's without its daemon's start-up, which restic and borg \
         pay in theirs), bytes read (sealback's backups: its own report; else rchar), bytes \
         added to the repository (restore: bytes restored), peak RSS."
    );
    if let Some(l) = &results.latency {
        let _ = writeln!(md);
        let _ = writeln!(
            md,
            "Commit to durable copy, on-change with debounce {} ({} commits): p50 {}, p90 {}, \
             p99 {}, max {}.",
            seconds(l.debounce_s),
            l.samples_s.len(),
            seconds(l.p50_s),
            seconds(l.p90_s),
            seconds(l.p99_s),
            seconds(l.max_s)
        );
    }
    if let Some(large) = &results.large {
        let _ = writeln!(md);
        let _ = writeln!(md, "```text{}```", growth_table(results));
        let _ = writeln!(md);
        let _ = writeln!(md, "Large store: {}  ", large.store_line());
        let _ = writeln!(md);
        md.push_str(&phases_markdown(large));
    }
    md.push_str(&targets_markdown(results, "medium"));
    if let Some(large) = &results.large {
        md.push_str(&targets_markdown(large, "large"));
    }
    md
}

/// Every phase of `results` as a Markdown table, a column per tool.
fn phases_markdown(results: &Results) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "| run | {} |", results.tools.join(" | "));
    let _ = writeln!(md, "|---|{}", "---|".repeat(results.tools.len()));
    for phase in &results.phases {
        let mut title = phase.title.to_owned();
        if let Some(day) = results.days.get(phase.phase.key()) {
            let new_media = day.get("media_bytes_added").and_then(|v| v.as_u64());
            let wal = day.get("wal_bytes").and_then(|v| v.as_u64());
            if let (Some(m), Some(w)) = (new_media, wal) {
                let day = format!("{} new media, {} -wal", bytes(m), bytes(w));
                title = match title.strip_suffix(')') {
                    Some(open) => format!("{open}; {day})"),
                    None => format!("{title} ({day})"),
                };
            }
        }
        let cells: Vec<String> = results
            .tools
            .iter()
            .map(|tool| {
                let Some(s) = phase.samples.iter().find(|s| &s.tool == tool) else {
                    return "-".to_owned();
                };
                let m = &s.sample;
                let mut cell = format!(
                    "{}, read {}, {}, {}",
                    seconds(m.wall_s),
                    or_dash(m.bytes_read, bytes),
                    match (phase.phase, m.bytes_written) {
                        (Phase::Restore, w) => format!("{} restored", or_dash(w, bytes)),
                        (_, w) => format!("+{}", or_dash(w, bytes)),
                    },
                    or_dash(m.peak_rss, rss),
                );
                if phase.phase == Phase::Restore {
                    let ok = results.restore_verified(tool);
                    cell.push_str(if ok {
                        ", verified"
                    } else {
                        ", **FAILED check**"
                    });
                    if let Some(floor) = m.disk_floor_s {
                        let _ = write!(cell, ", {:.2}x the disk's floor", m.wall_s / floor);
                    }
                }
                cell
            })
            .collect();
        let _ = writeln!(md, "| {title} | {} |", cells.join(" | "));
    }
    if let Some(idle) = results.idle_rss("sealback") {
        let mut cells = vec![rss(idle)];
        cells.resize(results.tools.len(), "-".to_owned());
        let _ = writeln!(
            md,
            "| sealbackd idle RSS after start-up | {} |",
            cells.join(" | ")
        );
    }
    md
}

/// The targets judged on `results` as a Markdown table.
fn targets_markdown(results: &Results, store: &str) -> String {
    let mut md = String::new();
    let _ = writeln!(md);
    let _ = writeln!(
        md,
        "| target, {store} store | sealback | restic | ratio | goal | result |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|");
    for t in &results.targets {
        let _ = writeln!(
            md,
            "| {} (#{}) | {} | {} | {} | {} | {} |",
            t.label,
            t.issue,
            or_dash(t.sealback, |v| show(v, t.unit)),
            or_dash(t.restic, |v| show(v, t.unit)),
            or_dash(t.ratio, |r| format!("{r:.3}")),
            t.goal,
            t.result
        );
    }
    md
}
