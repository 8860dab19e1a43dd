//! What sealback's programs (sealbackd, sealbackctl, sealback-vault) need to run as
//! services: [`logging`] to the journal or to stderr, [`notify`], systemd's readiness and
//! status notifications, [`signals`], the signals they stop on (SIGHUP ignored), [`limits`], the open files they may hold, and [`docs`], their man pages and shell completions generated from
//! their command-line definitions.
#![forbid(unsafe_code)]

pub mod docs;
pub mod limits;
pub mod logging;
pub mod notify;
pub mod signals;
