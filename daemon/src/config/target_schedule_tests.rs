//! A target's own `schedule` key.

use std::time::Duration;

use super::{Config, ConfigError, Schedule};

const GOOD: &str = include_str!("../../../config/sealback.toml");

fn load(text: &str) -> Result<Config, ConfigError> {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("sealback.toml");
    std::fs::write(&path, text).expect("write");
    Config::load_with_env(&path, std::iter::empty())
}

/// GOOD with a second target ("cloud", local plugin) whose schedule is `schedule`.
fn two_targets(schedule: &str) -> String {
    format!(
        "{GOOD}\n[[targets]]\nname = \"cloud\"\nplugin = \"local\"\nschedule = {schedule:?}\n[targets.options]\npath = \"/mnt/cloud\"\n"
    )
}

#[test]
fn a_target_without_schedule_follows_the_global_one() {
    let c = load(GOOD).expect("valid");
    assert_eq!(c.targets[0].schedule, None);
    assert_eq!(c.target_schedule(0), Schedule::OnChange);
}

#[test]
fn a_target_schedule_overrides_the_global_one_for_that_target_only() {
    let c = load(&two_targets("daily")).expect("valid");
    assert_eq!(c.target_schedule(0), Schedule::OnChange);
    assert_eq!(
        c.target_schedule(1),
        Schedule::Interval(Duration::from_secs(86_400))
    );
    for (text, expected) in [
        ("manual", Schedule::Manual),
        ("on-change", Schedule::OnChange),
        ("6h", Schedule::Interval(Duration::from_secs(6 * 3600))),
        (
            "weekly",
            Schedule::Interval(Duration::from_secs(7 * 86_400)),
        ),
    ] {
        assert_eq!(
            load(&two_targets(text)).expect(text).target_schedule(1),
            expected,
            "{text}"
        );
    }
    // The global schedule manual, the disk on change.
    let c = load(&two_targets("on-change").replace("mode = \"on-change\"", "mode = \"manual\""))
        .expect("valid");
    assert_eq!(
        (c.target_schedule(0), c.target_schedule(1)),
        (Schedule::Manual, Schedule::OnChange)
    );
}

#[test]
fn a_bad_target_schedule_names_the_target_key() {
    for bad in ["sometimes", "interval", "0s", ""] {
        let err = load(&two_targets(bad)).expect_err(bad).to_string();
        assert!(
            err.contains("targets[1].schedule") && err.contains(&format!("{bad:?}")),
            "{bad}: {err}"
        );
    }
}
