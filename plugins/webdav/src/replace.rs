//! How a put replaces an object atomically on this server: PUT to a temporary name then MOVE
//! over the object, or PUT straight to the object. Which one is atomic depends on the server,
//! as the end-to-end tests observe on the two they run:
//!
//! | server | direct PUT over an object | MOVE over an object |
//! |---|---|---|
//! | Apache mod_dav_fs | writes a temporary file and renames it into place | deletes, then renames: readers get 403 in between, a concurrent MOVE 404 |
//! | rclone (x/net/webdav) | rewrites the file in place: readers get it cut short | deletes, then renames: readers get 404 in between, a concurrent MOVE 423 |
//!
//! (On both, a GET that races a replacement can still be cut to the old length; `get.rs`
//! checks for that.)
//!
//! So `atomic_replace: "auto"` asks the server once, with OPTIONS on the base collection,
//! before the first put: mod_dav_fs announces itself with the compliance class
//! `<http://apache.org/dav/propset/fs/1>` in its `DAV` header, and gets direct PUTs;
//! every other server gets PUT then MOVE. A server that refuses MOVE (405 Method Not Allowed
//! or 501 Not Implemented; any other failure is just a failure) gets direct PUTs from then on.
//! `"move"` and `"direct"` choose without asking.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

use reqwest::Method as HttpMethod;
use sealback_plugin_api::ProviderError;

use crate::answer::{self, Request};
use crate::options::AtomicReplace;
use crate::server::Server;

/// The compliance class Apache's mod_dav_fs adds to its `DAV` header.
const MOD_DAV_FS: &str = "<http://apache.org/dav/propset/fs/1>";

/// How a put stores an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Method {
    /// PUT to a temporary name, then MOVE over the object.
    Move,
    /// PUT to the object's name.
    Direct,
}

/// The setting, and what `auto` has found out.
#[derive(Debug)]
pub(crate) struct Replace {
    setting: AtomicReplace,
    /// `auto`: what the server's OPTIONS said.
    found: OnceLock<Method>,
    /// `auto`: the server refused a MOVE.
    move_refused: AtomicBool,
}

impl Replace {
    pub(crate) fn new(setting: AtomicReplace) -> Self {
        Self {
            setting,
            found: OnceLock::new(),
            move_refused: AtomicBool::new(false),
        }
    }

    pub(crate) fn setting(&self) -> AtomicReplace {
        self.setting
    }

    /// The method for the next put; in `auto` mode, the first call asks the server.
    pub(crate) fn method(&self, server: &Server) -> Result<Method, ProviderError> {
        match self.setting {
            AtomicReplace::Move => Ok(Method::Move),
            AtomicReplace::Direct => Ok(Method::Direct),
            AtomicReplace::Auto if self.move_refused.load(Ordering::Relaxed) => Ok(Method::Direct),
            AtomicReplace::Auto => match self.found.get() {
                Some(method) => Ok(*method),
                None => {
                    let method = ask(server)?;
                    Ok(*self.found.get_or_init(|| method))
                }
            },
        }
    }

    /// Whether puts may be replacing objects with MOVE (also when `auto` has not asked yet),
    /// so that a reader can meet the moment an object is deleted before the MOVE.
    pub(crate) fn may_move(&self) -> bool {
        match self.setting {
            AtomicReplace::Move => true,
            AtomicReplace::Direct => false,
            AtomicReplace::Auto => {
                !self.move_refused.load(Ordering::Relaxed)
                    && self.found.get() != Some(&Method::Direct)
            }
        }
    }

    /// Records that the server refused a MOVE; in `auto` mode, returns true: use direct PUTs.
    pub(crate) fn move_was_refused(&self) -> bool {
        if self.setting == AtomicReplace::Auto {
            self.move_refused.store(true, Ordering::Relaxed);
            true
        } else {
            false
        }
    }
}

/// OPTIONS on the base collection: direct PUTs for mod_dav_fs, PUT then MOVE otherwise.
fn ask(server: &Server) -> Result<Method, ProviderError> {
    let url = server.base();
    let answer = server.send(&HttpMethod::OPTIONS, url, |b| b)?;
    let status = answer.response.status();
    if matches!(status.as_u16(), 401 | 403) || answer::is_retryable(status) {
        let request = Request {
            method: &HttpMethod::OPTIONS,
            url,
        };
        return Err(answer::unexpected(&request, &answer, server.credentials()));
    }
    if !status.is_success() {
        // No answer about the server: PUT then MOVE is right on most servers.
        return Ok(Method::Move);
    }
    let mod_dav_fs = answer
        .response
        .headers()
        .get_all("DAV")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .any(|value| value.contains(MOD_DAV_FS));
    Ok(if mod_dav_fs {
        Method::Direct
    } else {
        Method::Move
    })
}
