//! What a run found: one [`CaseResult`] per case, gathered in a [`Report`].

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::ser::{Serialize, SerializeStruct, Serializer};

/// How one case ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The provider did what the contract says.
    Passed,
    /// It did not; the reason names the call, the object and what was wrong.
    Failed(String),
    /// The case could not run; the reason says why (an earlier failure, a missing setting).
    Skipped(String),
}

/// One case of a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseResult {
    /// The case, e.g. `round_trip_large`.
    pub name: &'static str,
    /// How it ended.
    pub outcome: Outcome,
    /// How long it took, including the kit's check and clean-up after it.
    pub duration: Duration,
}

impl CaseResult {
    /// Whether the case passed.
    pub fn passed(&self) -> bool {
        self.outcome == Outcome::Passed
    }
}

/// `PASS name (12 ms)`, `FAIL name: reason` or `SKIP name: reason`.
impl fmt::Display for CaseResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.outcome {
            Outcome::Passed => write!(f, "PASS {} ({} ms)", self.name, self.duration.as_millis()),
            Outcome::Failed(reason) => write!(f, "FAIL {}: {reason}", self.name),
            Outcome::Skipped(reason) => write!(f, "SKIP {}: {reason}", self.name),
        }
    }
}

/// The plugin a run checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginInfo {
    /// The provider's name, from its table.
    pub name: String,
    /// The provider's version, from its table.
    pub version: String,
    /// The ABI version it was built for.
    pub abi_version: u32,
    /// The file it was loaded from.
    pub path: PathBuf,
}

/// Every case of a run, in the order they ran.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The plugin that was checked.
    pub plugin: PluginInfo,
    /// The cases, in order.
    pub cases: Vec<CaseResult>,
    /// Why the plugin refused the given options when opened (an invalid-configuration
    /// error): then the options are at fault, not the plugin, and no other case ran.
    pub options_refused: Option<String>,
}

impl Report {
    /// How many cases passed.
    pub fn passed(&self) -> usize {
        self.count(|outcome| matches!(outcome, Outcome::Passed))
    }

    /// How many cases failed.
    pub fn failed(&self) -> usize {
        self.count(|outcome| matches!(outcome, Outcome::Failed(_)))
    }

    /// How many cases were skipped.
    pub fn skipped(&self) -> usize {
        self.count(|outcome| matches!(outcome, Outcome::Skipped(_)))
    }

    /// The names of the skipped cases, in run order.
    pub fn skipped_names(&self) -> Vec<&'static str> {
        self.cases
            .iter()
            .filter(|case| matches!(case.outcome, Outcome::Skipped(_)))
            .map(|case| case.name)
            .collect()
    }

    /// Whether the provider passed: no case failed (skipped cases do not count against it).
    pub fn is_success(&self) -> bool {
        self.failed() == 0
    }

    /// The case called `name`, if the run has one.
    pub fn case(&self, name: &str) -> Option<&CaseResult> {
        self.cases.iter().find(|case| case.name == name)
    }

    fn count(&self, which: impl Fn(&Outcome) -> bool) -> usize {
        self.cases
            .iter()
            .filter(|case| which(&case.outcome))
            .count()
    }
}

/// `12 passed, 1 failed, 1 skipped`.
impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} passed, {} failed, {} skipped",
            self.passed(),
            self.failed(),
            self.skipped()
        )
    }
}

/// `{"name", "outcome": "passed"|"failed"|"skipped", "reason"?, "duration_ms"}`.
impl Serialize for CaseResult {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let (outcome, reason) = match &self.outcome {
            Outcome::Passed => ("passed", None),
            Outcome::Failed(reason) => ("failed", Some(reason)),
            Outcome::Skipped(reason) => ("skipped", Some(reason)),
        };
        let mut case = serializer.serialize_struct("CaseResult", 4)?;
        case.serialize_field("name", self.name)?;
        case.serialize_field("outcome", outcome)?;
        match reason {
            Some(reason) => case.serialize_field("reason", reason)?,
            None => case.skip_field("reason")?,
        }
        let ms = u64::try_from(self.duration.as_millis()).unwrap_or(u64::MAX);
        case.serialize_field("duration_ms", &ms)?;
        case.end()
    }
}

/// `{"plugin": {"name", "version", "abi_version", "path"}, "passed", "failed", "skipped",
/// "cases": [...]}`.
impl Serialize for Report {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let plugin = serde_json::json!({
            "name": self.plugin.name,
            "version": self.plugin.version,
            "abi_version": self.plugin.abi_version,
            "path": self.plugin.path.to_string_lossy(),
        });
        let mut report = serializer.serialize_struct("Report", 6)?;
        report.serialize_field("plugin", &plugin)?;
        report.serialize_field("passed", &self.passed())?;
        report.serialize_field("failed", &self.failed())?;
        report.serialize_field("skipped", &self.skipped())?;
        report.serialize_field("cases", &self.cases)?;
        match &self.options_refused {
            Some(reason) => report.serialize_field("options_refused", reason)?,
            None => report.skip_field("options_refused")?,
        }
        report.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> Report {
        let case = |name, outcome| CaseResult {
            name,
            outcome,
            duration: Duration::from_millis(12),
        };
        Report {
            plugin: PluginInfo {
                name: "local".into(),
                version: "0.1.0".into(),
                abi_version: 1,
                path: "/p/libsealback_local.so".into(),
            },
            cases: vec![
                case("open", Outcome::Passed),
                case(
                    "round_trip_large",
                    Outcome::Failed("get returned 3 bytes".into()),
                ),
                case(
                    "failed_put_keeps_old_object",
                    Outcome::Skipped("no options".into()),
                ),
            ],
            options_refused: None,
        }
    }

    #[test]
    fn cases_print_as_one_line_each() {
        let lines: Vec<String> = report().cases.iter().map(ToString::to_string).collect();
        assert_eq!(
            lines,
            [
                "PASS open (12 ms)",
                "FAIL round_trip_large: get returned 3 bytes",
                "SKIP failed_put_keeps_old_object: no options",
            ]
        );
        assert_eq!(report().to_string(), "1 passed, 1 failed, 1 skipped");
        assert!(!report().is_success());
    }

    #[test]
    fn the_report_serializes_with_counts_and_reasons() {
        let json = serde_json::to_value(report()).expect("serializes");
        assert_eq!(json["plugin"]["name"], "local");
        assert_eq!(json["failed"], 1);
        assert_eq!(
            json["cases"][0],
            serde_json::json!({
                "name": "open", "outcome": "passed", "duration_ms": 12
            })
        );
        assert_eq!(json["cases"][1]["reason"], "get returned 3 bytes");
    }
}
