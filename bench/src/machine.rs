//! The machine a run was measured on: figures are only comparable side by side on one.

use std::fs;

use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Machine {
    pub cpus: usize,
    pub cpu_model: String,
    pub memory_bytes: Option<u64>,
    pub kernel: String,
    /// "name version" of every tool measured.
    pub tools: Vec<String>,
}

impl Machine {
    pub(crate) fn describe(tools: Vec<String>) -> Machine {
        let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find_map(|line| {
                let (key, value) = line.split_once(':')?;
                (key.trim() == "model name").then(|| value.trim().to_owned())
            })
            .unwrap_or_else(|| "unknown CPU".to_owned());
        let memory_bytes = fs::read_to_string("/proc/meminfo").ok().and_then(|text| {
            text.lines().find_map(|line| {
                let kib = line.strip_prefix("MemTotal:")?.split_whitespace().next()?;
                kib.parse::<u64>().ok().map(|k| k * 1024)
            })
        });
        let kernel = fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|k| k.trim().to_owned())
            .unwrap_or_else(|_| "unknown".to_owned());
        Machine {
            cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
            cpu_model,
            memory_bytes,
            kernel,
            tools,
        }
    }

    /// One line: "2 CPUs (AMD EPYC), 23.4 GiB RAM, Linux 6.1; sealbackd 0.1.0, restic 0.14.0".
    pub(crate) fn line(&self) -> String {
        let memory = self.memory_bytes.map_or_else(
            || "? GiB".to_owned(),
            |b| format!("{:.1} GiB", b as f64 / (1u64 << 30) as f64),
        );
        format!(
            "{} CPUs ({}), {memory} RAM, Linux {}; {}",
            self.cpus,
            self.cpu_model,
            self.kernel,
            self.tools.join(", ")
        )
    }
}
