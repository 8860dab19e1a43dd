//! Everything sealbackctl writes to standard output goes through [`line`]: a reader that goes
//! away early (`sealbackctl status | head -1`) ends the program quietly instead of the panic
//! `println!` raises on a broken pipe, and `--quiet` is honoured in one place.

use std::fmt;
use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};

/// `--quiet`: the text reports are not printed (errors, `--json` documents and the recovery
/// key still are).
static QUIET: AtomicBool = AtomicBool::new(false);

/// `println!` for standard output, through [`line`].
macro_rules! outln {
    () => {
        $crate::out::line(format_args!(""))
    };
    ($($arg:tt)*) => {
        $crate::out::line(format_args!($($arg)*))
    };
}

/// `outln!` for progress (a line a command prints as it works, not its report): nothing
/// with `--quiet`.
macro_rules! progressln {
    ($($arg:tt)*) => {
        if !$crate::out::quiet() {
            $crate::out::line(format_args!($($arg)*))
        }
    };
}

pub(crate) fn set_quiet(quiet: bool) {
    QUIET.store(quiet, Ordering::Relaxed);
}

pub(crate) fn quiet() -> bool {
    QUIET.load(Ordering::Relaxed)
}

/// Writes one line to standard output. When the reader has gone (a broken pipe), the program
/// ends here with status 0, as `head` expects of what it reads from; any other write error
/// ends it with status 1 and a message.
pub(crate) fn line(args: fmt::Arguments<'_>) {
    let mut stdout = io::stdout().lock();
    if let Err(e) = writeln!(stdout, "{args}").and_then(|()| stdout.flush()) {
        if e.kind() == io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: cannot write to standard output: {e}");
        std::process::exit(1);
    }
}
