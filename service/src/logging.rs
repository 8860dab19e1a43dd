//! Logging: structured fields to journald when standard error is the journal (systemd says
//! so in `JOURNAL_STREAM`, the device and inode of the stream it connected to stderr);
//! otherwise plain text on stderr, coloured only when stderr is a terminal.

use std::io::IsTerminal as _;
use std::os::fd::AsFd as _;
use std::os::unix::fs::MetadataExt as _;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

/// Where the log goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destination {
    /// journald's native protocol, each event's fields as journal fields.
    Journal,
    /// Text on stderr, without timestamps or colour (the journal took stderr but its native
    /// socket cannot be reached; it adds its own timestamps).
    JournalStream,
    /// Text on stderr with timestamps; ANSI colour only on a terminal.
    Stderr { ansi: bool },
}

/// Installs the global subscriber. The filter is the first of `filter_vars` that is set and
/// valid (`tracing_subscriber`'s `EnvFilter` syntax, e.g. `info,sealback_daemon=debug`),
/// else `info`; a variable set to something that is not a filter is warned about, naming
/// it, once the log is up. Returns where the log goes.
pub fn init(filter_vars: &[&str]) -> Destination {
    let (filter, refused) = choose_filter(filter_vars, |var| std::env::var(var).ok());
    let destination = install(filter);
    for (var, error) in refused {
        tracing::warn!(
            "{var} is not a log filter ({error}); it is ignored: give a level (error, warn, info, debug, trace) or directives such as info,sealback_daemon=debug"
        );
    }
    destination
}

/// The first of `vars` that holds a valid filter (else `info`), and those before it that
/// are set to something else, with why; `value` reads a variable.
fn choose_filter(
    vars: &[&str],
    value: impl Fn(&str) -> Option<String>,
) -> (EnvFilter, Vec<(String, String)>) {
    let mut refused = Vec::new();
    for var in vars {
        let Some(value) = value(var) else {
            continue;
        };
        match EnvFilter::try_new(&value) {
            Ok(filter) => return (filter, refused),
            Err(e) => refused.push(((*var).to_owned(), e.to_string())),
        }
    }
    (EnvFilter::new("info"), refused)
}

fn install(filter: EnvFilter) -> Destination {
    if stderr_is_journal() {
        match tracing_journald::layer() {
            Ok(journal) => {
                tracing_subscriber::registry()
                    .with(filter)
                    .with(journal)
                    .init();
                return Destination::Journal;
            }
            Err(err) => {
                tracing_subscriber::fmt()
                    .with_env_filter(filter)
                    .with_writer(std::io::stderr)
                    .with_ansi(false)
                    .without_time()
                    .init();
                tracing::warn!(error = %err, "stderr is the journal but its socket cannot be reached; logging plain text to stderr");
                return Destination::JournalStream;
            }
        }
    }
    let ansi = std::io::stderr().is_terminal();
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .init();
    Destination::Stderr { ansi }
}

/// True when `JOURNAL_STREAM` names the device and inode of this process's stderr (a child
/// that inherited the variable but not the stream gets plain text).
pub fn stderr_is_journal() -> bool {
    let Ok(stream) = std::env::var("JOURNAL_STREAM") else {
        return false;
    };
    let Ok(fd) = std::io::stderr().as_fd().try_clone_to_owned() else {
        return false;
    };
    match std::fs::File::from(fd).metadata() {
        Ok(meta) => names_stream(&stream, meta.dev(), meta.ino()),
        Err(_) => false,
    }
}

/// Whether `journal_stream` ("DEVICE:INODE", both decimal) names `dev` and `ino`.
fn names_stream(journal_stream: &str, dev: u64, ino: u64) -> bool {
    let Some((d, i)) = journal_stream.trim().split_once(':') else {
        return false;
    };
    d.parse::<u64>() == Ok(dev) && i.parse::<u64>() == Ok(ino)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_stream_must_name_both_device_and_inode() {
        assert!(names_stream("8:1234", 8, 1234));
        assert!(names_stream("8:1234\n", 8, 1234));
        assert!(!names_stream("8:1235", 8, 1234));
        assert!(!names_stream("9:1234", 8, 1234));
        assert!(!names_stream("8", 8, 1234));
        assert!(!names_stream("x:1234", 8, 1234));
        assert!(!names_stream("", 8, 1234));
    }

    #[test]
    fn a_variable_that_is_no_filter_is_named_and_the_next_one_is_used() {
        let env = |var: &str| match var {
            "SEALBACK_LOG" => Some("bogus[[".to_owned()),
            "RUST_LOG" => Some("debug".to_owned()),
            _ => None,
        };
        let (filter, refused) = choose_filter(&["UNSET", "SEALBACK_LOG", "RUST_LOG"], env);
        assert_eq!(filter.to_string(), "debug");
        assert_eq!(refused.len(), 1, "{refused:?}");
        assert_eq!(refused[0].0, "SEALBACK_LOG");
        let (filter, refused) = choose_filter(&["UNSET"], env);
        assert_eq!((filter.to_string(), refused.len()), ("info".to_owned(), 0));
    }
}
