//! The prune phase, after the benchmark's days: every tool keeps only its latest snapshot
//! and reclaims what nothing kept needs, side by side on the same data. restic runs
//! `forget --keep-last 1 --prune`; sealback runs `sealbackctl prune` with `keep_last = 1`
//! once with `--now` (no grace period: one device, nothing running beside it), so that the
//! one run marks what nothing kept needs and sweeps it (DESIGN §12.1), as restic's one
//! command does.

use anyhow::{Context, Result};
use serde::Serialize;

use crate::measure::{Sample, tree_bytes};
use crate::report::{bytes, seconds};
use crate::tools::Tool;

#[derive(Debug, Clone, Serialize)]
pub(crate) struct PruneResult {
    pub tool: String,
    pub sample: Sample,
    pub bytes_before: u64,
    pub bytes_left: u64,
}

pub(crate) fn run(tools: &mut [Box<dyn Tool>]) -> Result<Vec<PruneResult>> {
    let mut results = Vec::new();
    for tool in tools.iter_mut() {
        let bytes_before = tree_bytes(tool.repository())?;
        let Some(sample) = tool
            .prune()
            .with_context(|| format!("{}: prune", tool.name()))?
        else {
            continue;
        };
        results.push(PruneResult {
            tool: tool.name().to_owned(),
            sample,
            bytes_before,
            bytes_left: tree_bytes(tool.repository())?,
        });
    }
    Ok(results)
}

pub(crate) fn table(results: &[PruneResult]) -> String {
    let restic = results.iter().find(|r| r.tool == "restic");
    let mut out = String::from(
        "\nprune (keep the latest snapshot only)\n| tool | time | peak memory | bytes before | bytes left | time / restic | bytes left / restic |\n|---|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in results {
        let ratio = |mine: f64, theirs: Option<f64>| match theirs {
            Some(t) if t > 0.0 => format!("{:.3}", mine / t),
            _ => "-".to_owned(),
        };
        out += &format!(
            "| {} | {} | {} | {} | {} | {} | {} |\n",
            r.tool,
            seconds(r.sample.wall_s),
            r.sample.peak_rss.map_or("-".to_owned(), bytes),
            bytes(r.bytes_before),
            bytes(r.bytes_left),
            ratio(r.sample.wall_s, restic.map(|x| x.sample.wall_s)),
            ratio(r.bytes_left as f64, restic.map(|x| x.bytes_left as f64)),
        );
    }
    out
}
