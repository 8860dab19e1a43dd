//! What sealbackctl reads from its user: recovery keys and passwords, from the terminal or
//! standard input, never from the arguments (where other users could read them in the process
//! list and the shell would keep them in its history).

use std::io::{self, BufRead, IsTerminal, Read, Write};

use anyhow::Context;
use zeroize::Zeroizing;

use crate::failure::UsageError;

/// A recovery key on standard input is far shorter than this.
const MAX_RECOVERY_KEY_INPUT: u64 = 4096;

/// Reads the recovery key from standard input, never from the arguments (where other users
/// could read it in the process list and the shell would keep it in its history).
pub(crate) fn read_recovery_key() -> anyhow::Result<Zeroizing<String>> {
    let stdin = io::stdin();
    // Allocated once at its final size, so that no copy is left behind by a reallocation.
    let mut input = Zeroizing::new(String::with_capacity(MAX_RECOVERY_KEY_INPUT as usize));
    if stdin.is_terminal() {
        eprint!("Recovery key: ");
        io::stderr().flush().context("cannot write the prompt")?;
        stdin
            .lock()
            .take(MAX_RECOVERY_KEY_INPUT)
            .read_line(&mut input)
            .context("cannot read the recovery key from the terminal")?;
    } else {
        stdin
            .lock()
            .take(MAX_RECOVERY_KEY_INPUT)
            .read_to_string(&mut input)
            .context("cannot read the recovery key from standard input")?;
    }
    let key = input.trim();
    if key.is_empty() {
        return Err(UsageError {
            message: "no recovery key on standard input".to_owned(),
            hint: "type it when asked, or pipe it in: sealbackctl key import < recovery-key.txt",
        }
        .into());
    }
    Ok(Zeroizing::new(key.to_owned()))
}

/// Where passwords come from: the terminal, without echo; or, when standard input is not a
/// terminal, its lines (one per password asked). Never the command line.
pub(crate) struct PasswordInput {
    lines: Option<std::vec::IntoIter<Zeroizing<String>>>,
}

impl PasswordInput {
    pub(crate) fn new() -> anyhow::Result<PasswordInput> {
        let stdin = io::stdin();
        if stdin.is_terminal() {
            return Ok(PasswordInput { lines: None });
        }
        let mut all = Zeroizing::new(String::with_capacity(MAX_RECOVERY_KEY_INPUT as usize));
        stdin
            .lock()
            .take(MAX_RECOVERY_KEY_INPUT)
            .read_to_string(&mut all)
            .context("cannot read the password from standard input")?;
        let lines: Vec<Zeroizing<String>> = all
            .lines()
            .map(|l| Zeroizing::new(l.trim_end_matches('\r').to_owned()))
            .collect();
        Ok(PasswordInput {
            lines: Some(lines.into_iter()),
        })
    }

    pub(crate) fn password(&mut self, prompt: &str) -> anyhow::Result<Zeroizing<String>> {
        let password = match &mut self.lines {
            Some(lines) => lines.next().unwrap_or_default(),
            None => Zeroizing::new(
                rpassword::prompt_password(format!("{prompt}: "))
                    .context("cannot read the password from the terminal")?,
            ),
        };
        if password.is_empty() {
            return Err(UsageError {
                message: format!("no password given ({prompt})"),
                hint: "type it when asked, or give it as a line of standard input (never as an argument)",
            }
            .into());
        }
        Ok(password)
    }

    /// A new password: on the terminal, asked twice.
    pub(crate) fn new_password(&mut self, prompt: &str) -> anyhow::Result<Zeroizing<String>> {
        let first = self.password(prompt)?;
        if self.lines.is_none() && *self.password("Repeat it")? != *first {
            return Err(UsageError {
                message: "the two passwords differ".to_owned(),
                hint: "run the command again",
            }
            .into());
        }
        Ok(first)
    }
}
