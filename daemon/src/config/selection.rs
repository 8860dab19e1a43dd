//! Which of the store's files a backup takes, and which of a snapshot's files a restore
//! brings back: `include` and `exclude` globs, relative to the store.
//!
//! A pattern is a glob in which `*` and `?` stay within one folder and `**` crosses
//! folders (`Media/Video/**`, `**/*.tmp`); a pattern that names a folder takes or leaves
//! everything in it (`Media/Video` is `Media/Video` and `Media/Video/**`). With `include`
//! rules only the files they take are kept; `exclude` then leaves out what it matches.
//! The database is never subject to a backup's rules: it is captured on its own, always.

use globset::{Glob, GlobBuilder, GlobSet, GlobSetBuilder};

/// A set of include and exclude rules; the default takes every file.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// `None`: every file is included.
    include: Option<Rules>,
    exclude: Option<Rules>,
}

/// Patterns as written, and compiled.
#[derive(Debug, Clone)]
struct Rules {
    patterns: Vec<String>,
    set: GlobSet,
    /// The folders a `X/**` pattern leaves out whole (as `X`): a walk need not enter them.
    folders: GlobSet,
}

impl PartialEq for Selection {
    fn eq(&self, other: &Self) -> bool {
        self.include() == other.include() && self.exclude() == other.exclude()
    }
}

impl Eq for Selection {}

impl Selection {
    /// The rules `include` (empty: every file) and `exclude`; `key` names them in errors,
    /// e.g. `backup` gives `backup.exclude[2]`.
    pub fn new(include: &[String], exclude: &[String], key: &str) -> Result<Selection, Invalid> {
        let rules = |patterns: &[String], name: &str| -> Result<Option<Rules>, Invalid> {
            if patterns.is_empty() {
                return Ok(None);
            }
            Rules::compile(patterns, &format!("{key}.{name}")).map(Some)
        };
        Ok(Selection {
            include: rules(include, "include")?,
            exclude: rules(exclude, "exclude")?,
        })
    }

    /// Only the files `include` takes (`restore --include`); `key` names them in errors
    /// (`--include` gives `--include[0]`).
    pub fn only(include: &[String], key: &str) -> Result<Selection, Invalid> {
        let include = match include.is_empty() {
            true => None,
            false => Some(Rules::compile(include, key)?),
        };
        Ok(Selection {
            include,
            exclude: None,
        })
    }

    /// True when it takes every file.
    pub fn is_everything(&self) -> bool {
        self.include.is_none() && self.exclude.is_none()
    }

    pub fn include(&self) -> &[String] {
        self.include.as_ref().map_or(&[], |r| &r.patterns)
    }

    pub fn exclude(&self) -> &[String] {
        self.exclude.as_ref().map_or(&[], |r| &r.patterns)
    }

    /// Whether the file at `path` (relative, `/`-separated) is taken.
    pub fn takes(&self, path: &str) -> bool {
        let included = self.include.as_ref().is_none_or(|r| r.matches(path));
        included && !self.exclude.as_ref().is_some_and(|r| r.matches(path))
    }

    /// Whether nothing in the folder at `path` can be taken: a walk skips it.
    pub fn leaves_out_folder(&self, path: &str) -> bool {
        self.exclude
            .as_ref()
            .is_some_and(|r| r.set.is_match(path) || r.folders.is_match(path))
    }
}

impl Rules {
    fn compile(patterns: &[String], key: &str) -> Result<Rules, Invalid> {
        let mut set = GlobSetBuilder::new();
        let mut folders = GlobSetBuilder::new();
        for (i, pattern) in patterns.iter().enumerate() {
            let invalid = |message: String| Invalid {
                key: format!("{key}[{i}]"),
                message,
            };
            let trimmed = pattern.trim_end_matches('/');
            if trimmed.is_empty() {
                return Err(invalid(format!(
                    "{pattern:?} is empty: write a path relative to the store, e.g. \"Media/Video/**\""
                )));
            }
            if trimmed.starts_with('/') {
                return Err(invalid(format!(
                    "{pattern:?} starts with '/': patterns are relative to the store, e.g. \"Media/Video/**\""
                )));
            }
            if trimmed
                .split('/')
                .any(|c| c.is_empty() || c == "." || c == "..")
            {
                return Err(invalid(format!(
                    "{pattern:?} has an empty, '.' or '..' folder: write the path as the store has it, e.g. \"Media/Video/**\""
                )));
            }
            set.add(glob(trimmed).map_err(|e| invalid(format!("{pattern:?} is not a glob: {e}")))?);
            if let Some(folder) = trimmed.strip_suffix("/**") {
                folders.add(glob(folder).map_err(|e| invalid(format!("{pattern:?}: {e}")))?);
            }
        }
        let build = |b: GlobSetBuilder| {
            b.build().map_err(|e| Invalid {
                key: key.to_owned(),
                message: e.to_string(),
            })
        };
        Ok(Rules {
            patterns: patterns.to_vec(),
            set: build(set)?,
            folders: build(folders)?,
        })
    }

    /// The path, or a folder it is in, matches a pattern.
    fn matches(&self, path: &str) -> bool {
        let folders = path.match_indices('/').map(|(at, _)| &path[..at]);
        self.set.is_match(path) || folders.into_iter().any(|f| self.set.is_match(f))
    }
}

/// `*` within one folder, `**` across folders, `\` escapes; case matters.
fn glob(pattern: &str) -> Result<Glob, globset::Error> {
    GlobBuilder::new(pattern)
        .literal_separator(true)
        .backslash_escape(true)
        .build()
}

/// A pattern that is not one: the key it is at (`targets[0].exclude[1]`) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub key: String,
    pub message: String,
}

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// `[backup]`'s rules, or a target's own: each of its keys, when given, replaces
/// `[backup]`'s.
pub(super) fn for_target(
    base: (&Option<Vec<String>>, &Option<Vec<String>>),
    own: (&Option<Vec<String>>, &Option<Vec<String>>),
    target: usize,
) -> Result<Selection, Invalid> {
    let include = own.0.as_ref().or(base.0.as_ref());
    let exclude = own.1.as_ref().or(base.1.as_ref());
    // Errors name the key where the pattern was written.
    let key = |own: bool| {
        if own {
            format!("targets[{target}]")
        } else {
            "backup".to_owned()
        }
    };
    let empty = Vec::new();
    let include_rules = Selection::new(include.unwrap_or(&empty), &[], &key(own.0.is_some()))?;
    let exclude_rules = Selection::new(&[], exclude.unwrap_or(&empty), &key(own.1.is_some()))?;
    Ok(Selection {
        include: include_rules.include,
        exclude: exclude_rules.exclude,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn selection(include: &[&str], exclude: &[&str]) -> Selection {
        Selection::new(&strings(include), &strings(exclude), "backup").expect("valid")
    }

    #[test]
    fn the_default_takes_everything() {
        let s = Selection::default();
        assert!(s.is_everything());
        assert!(s.takes("Media/Video/a.mp4"));
        assert!(!s.leaves_out_folder("Media"));
    }

    #[test]
    fn an_excluded_folder_and_everything_in_it_is_left_out() {
        for pattern in ["Media/Video/**", "Media/Video", "Media/Video/"] {
            let s = selection(&[], &[pattern]);
            assert!(!s.takes("Media/Video/a.mp4"), "{pattern}");
            assert!(!s.takes("Media/Video/2024/b.mp4"), "{pattern}");
            assert!(s.takes("Media/Images/a.jpg"), "{pattern}");
            assert!(s.takes("Media/Videos/a.mp4"), "{pattern}: another folder");
            assert!(s.leaves_out_folder("Media/Video"), "{pattern}");
            assert!(!s.leaves_out_folder("Media"), "{pattern}");
        }
    }

    #[test]
    fn a_star_stays_within_its_folder_and_two_cross_them() {
        let s = selection(&[], &["Media/*.tmp"]);
        assert!(!s.takes("Media/a.tmp"));
        assert!(s.takes("Media/sub/a.tmp"));
        let s = selection(&[], &["**/*.tmp"]);
        assert!(!s.takes("a.tmp"));
        assert!(!s.takes("Media/sub/a.tmp"));
        assert!(s.takes("Media/sub/a.jpg"));
        assert!(!s.leaves_out_folder("Media/sub"));
    }

    #[test]
    fn include_keeps_only_what_it_names_and_exclude_applies_after() {
        let s = selection(&["Media/Images", "notes.txt"], &["**/*.gif"]);
        assert!(s.takes("Media/Images/a.jpg"));
        assert!(s.takes("notes.txt"));
        assert!(!s.takes("Media/Images/a.gif"));
        assert!(!s.takes("Media/Video/a.mp4"));
        assert!(!s.takes("Media/Images2/a.jpg"));
    }

    #[test]
    fn bad_patterns_are_refused_naming_their_key() {
        for bad in [
            "",
            "/etc/**",
            "Media/../etc",
            "./Media",
            "Media//x",
            "Media/[a",
        ] {
            let err = Selection::new(&[], &strings(&["ok/**", bad]), "targets[1]").expect_err(bad);
            assert_eq!(err.key, "targets[1].exclude[1]", "{bad}");
            assert!(err.message.contains(&format!("{bad:?}")), "{bad}: {err}");
        }
        let err = Selection::only(&strings(&["/Media"]), "--include").expect_err("absolute");
        assert_eq!(err.to_string().split(':').next(), Some("--include[0]"));
    }

    #[test]
    fn a_targets_own_keys_replace_the_backup_sections_one_by_one() {
        let base_include = Some(strings(&["Media/**"]));
        let base_exclude = Some(strings(&["Media/Video/**"]));
        let own_exclude = Some(strings(&["Media/Images/**"]));
        let s =
            for_target((&base_include, &base_exclude), (&None, &own_exclude), 0).expect("valid");
        assert_eq!(s.include(), ["Media/**"]);
        assert_eq!(s.exclude(), ["Media/Images/**"]);
        assert!(s.takes("Media/Video/a.mp4"));
        assert!(!s.takes("notes.txt"));
        let none = Some(Vec::new());
        let s = for_target((&base_include, &base_exclude), (&none, &none), 0).expect("valid");
        assert!(
            s.is_everything(),
            "an empty list of its own takes every file"
        );
        let err =
            for_target((&None, &Some(strings(&["/x"]))), (&None, &None), 3).expect_err("invalid");
        assert_eq!(err.key, "backup.exclude[0]");
        let err =
            for_target((&None, &None), (&None, &Some(strings(&["/x"]))), 3).expect_err("invalid");
        assert_eq!(err.key, "targets[3].exclude[0]");
    }

    /// Through the configuration file, as a user writes it.
    mod configured {
        use crate::config::tests::{GOOD, load as load_with};
        use crate::config::{Config, ConfigError};

        fn load(text: &str) -> Result<Config, ConfigError> {
            load_with(text, &[])
        }

        /// GOOD with `[backup]`'s keys set, and a second target with `own` lines.
        fn with(backup: &str, own: &str) -> String {
            let good = GOOD.replace("include = []\nexclude = []\n", backup);
            format!(
                "{good}\n[[targets]]\nname = \"cloud\"\nplugin = \"local\"\n{own}\n[targets.options]\npath = \"/mnt/cloud\"\n"
            )
        }

        #[test]
        fn the_example_backs_up_everything_at_full_speed() {
            let c = load(GOOD).expect("valid");
            assert!(c.targets[0].selection.is_everything());
            assert_eq!(c.targets[0].bandwidth, None);
        }

        #[test]
        fn a_target_keeps_its_own_rules_and_bandwidth() {
            let c = load(&with(
                "exclude = [\"*.tmp\"]\n",
                "exclude = [\"Media/Video/**\"]\nbandwidth = \"2MiB/s\"",
            ))
            .expect("valid");
            assert_eq!(c.targets[0].selection.exclude(), ["*.tmp"]);
            assert_eq!(c.targets[1].selection.exclude(), ["Media/Video/**"]);
            assert!(c.targets[1].selection.takes("a.tmp"));
            assert!(!c.targets[1].selection.takes("Media/Video/a.mp4"));
            assert_eq!(c.targets[1].bandwidth, Some(2 << 20));
            assert_eq!(c.targets[0].bandwidth, None);
        }

        #[test]
        fn bad_rules_and_rates_stop_start_up_naming_the_key() {
            let err = |text: String| load(&text).expect_err("invalid").to_string();
            let e = err(with("exclude = [\"/Media\"]\n", ""));
            assert!(
                e.contains("`backup.exclude[0]`") && e.contains("relative"),
                "{e}"
            );
            let e = err(with("", "include = [\"Media/[x\"]"));
            assert!(e.contains("`targets[1].include[0]`"), "{e}");
            let e = err(with("", "bandwidth = \"fast\""));
            assert!(
                e.contains("`targets[1].bandwidth`") && e.contains("2MiB/s"),
                "{e}"
            );
            let e = err(with("exclude = \"Media\"\n", ""));
            assert!(e.contains("exclude"), "{e}");
        }
    }
}
