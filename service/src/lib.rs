//! What sealback's programs (sealbackd, sealbackctl, sealback-vault) need to run as
//! services: [`logging`] to the journal or to stderr, and [`docs`], their man pages and shell
//! completions generated from their command-line definitions.
#![forbid(unsafe_code)]

pub mod docs;
pub mod logging;
