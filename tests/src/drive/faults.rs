//! Fault injection: rules that a test (or `drive-emulator --fault`) queues, each matching some
//! requests and doing something to the next `count` of them.

use std::fmt;
use std::time::Duration;

use super::errors::DriveError;

/// What kind of request a request is, as the emulator routes it. Counters are kept per kind
/// ([`super::Counters::requests`]) and fault rules can match on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RequestKind {
    /// `POST token_uri` (any grant type).
    Token,
    /// `POST device_auth_uri`.
    DeviceCode,
    /// `GET drive/v3/files` (files.list).
    List,
    /// `GET drive/v3/files/ID` without `alt=media` (files.get, metadata).
    GetMetadata,
    /// `GET drive/v3/files/ID?alt=media` (files.get, content).
    GetMedia,
    /// `DELETE drive/v3/files/ID` (files.delete).
    Delete,
    /// `POST drive/v3/files` (files.create without content).
    CreateMetadata,
    /// `POST upload/drive/v3/files?uploadType=multipart` (or `media`).
    CreateMultipart,
    /// `POST upload/drive/v3/files?uploadType=resumable` (starts a session).
    ResumableStart,
    /// `PUT` (or `POST`) on a session URL with content.
    ResumableChunk,
    /// `PUT` on a session URL with `Content-Range: bytes */N` and no content.
    ResumableStatus,
    /// Anything else (answered 404).
    Other,
}

impl RequestKind {
    /// Parses the names `--fault` takes: `token`, `device-code`, `list`, `get`, `media`,
    /// `delete`, `create`, `multipart`, `resumable-start`, `chunk`, `status`.
    pub fn parse(text: &str) -> Option<RequestKind> {
        Some(match text {
            "token" => RequestKind::Token,
            "device-code" => RequestKind::DeviceCode,
            "list" => RequestKind::List,
            "get" => RequestKind::GetMetadata,
            "media" => RequestKind::GetMedia,
            "delete" => RequestKind::Delete,
            "create" => RequestKind::CreateMetadata,
            "multipart" => RequestKind::CreateMultipart,
            "resumable-start" => RequestKind::ResumableStart,
            "chunk" => RequestKind::ResumableChunk,
            "status" => RequestKind::ResumableStatus,
            _ => return None,
        })
    }
}

/// Which requests a [`Fault`] applies to. Every field that is set must match.
#[derive(Debug, Clone, Default)]
pub struct Matcher {
    pub kind: Option<RequestKind>,
    /// The HTTP method, upper case (`"PUT"`).
    pub method: Option<String>,
    /// A substring of the path and query.
    pub path_contains: Option<String>,
}

impl Matcher {
    /// Every request.
    pub fn any() -> Matcher {
        Matcher::default()
    }

    /// Every request of one kind.
    pub fn kind(kind: RequestKind) -> Matcher {
        Matcher {
            kind: Some(kind),
            ..Matcher::default()
        }
    }

    pub(crate) fn matches(&self, kind: RequestKind, method: &str, path_and_query: &str) -> bool {
        self.kind.is_none_or(|k| k == kind)
            && self
                .method
                .as_deref()
                .is_none_or(|m| m.eq_ignore_ascii_case(method))
            && self
                .path_contains
                .as_deref()
                .is_none_or(|p| path_and_query.contains(p))
    }
}

/// What a [`Fault`] does to a matching request.
#[derive(Debug, Clone)]
pub enum FaultAction {
    /// Answers with this error instead of serving the request (nothing is stored).
    Error(DriveError),
    /// Reads at most this many bytes of the request's body, keeps them (a resumable session
    /// keeps what it received, rounded down to 256 KiB as Google's servers persist it), then
    /// closes the connection without an answer.
    CutBodyAfter(u64),
    /// Serves the request (stores the upload, deletes the file...) and then closes the
    /// connection without an answer: the client cannot know it succeeded. A retried create
    /// then leaves two files with one name, as on the real Drive.
    LoseAnswer,
    /// Waits this long before serving the request.
    Delay(Duration),
    /// Serves a create, then stores a second file with the same name, parents and content, as
    /// when two clients (or a create Drive carried out twice) made one name twice: the name is
    /// duplicated, and the client is not told.
    Duplicate,
}

/// A rule: the next `count` requests that `matcher` matches get `action` (with
/// [`Fault::every`], every n-th of them, `count` times).
#[derive(Debug, Clone)]
pub struct Fault {
    pub matcher: Matcher,
    pub action: FaultAction,
    pub count: u32,
    /// Applies to every `every`-th matching request only (1: each one).
    pub every: u32,
    /// Matching requests seen so far.
    seen: u32,
}

impl Fault {
    pub fn new(matcher: Matcher, action: FaultAction, count: u32) -> Fault {
        Fault {
            matcher,
            action,
            count,
            every: 1,
            seen: 0,
        }
    }

    /// Spreads the faults: only every `n`-th matching request gets the action, so that a
    /// client that retries meets them one at a time, through a whole run.
    pub fn every(mut self, n: u32) -> Fault {
        self.every = n.max(1);
        self
    }

    /// Parses `--fault KIND:ACTION[:COUNT[:EVERY]]`, where KIND is a [`RequestKind::parse`]
    /// name or `any`, and ACTION one of `rate-limit`, `user-rate-limit`, `429`, `429/SECS`
    /// (with Retry-After), `500`, `503`, `quota`, `401`, `cut/BYTES`, `lose-answer`,
    /// `duplicate`, `delay/MILLIS`; EVERY as [`Fault::every`].
    pub fn parse(text: &str) -> Result<Fault, String> {
        let mut parts = text.split(':');
        let kind = parts.next().unwrap_or_default();
        let action = parts
            .next()
            .ok_or_else(|| format!("--fault {text}: expected KIND:ACTION[:COUNT]"))?;
        let count = match parts.next() {
            Some(n) => n
                .parse()
                .map_err(|_| format!("--fault {text}: COUNT {n:?} is not a number"))?,
            None => 1,
        };
        let every = match parts.next() {
            Some(n) => n
                .parse()
                .map_err(|_| format!("--fault {text}: EVERY {n:?} is not a number"))?,
            None => 1,
        };
        let matcher = if kind == "any" {
            Matcher::any()
        } else {
            Matcher::kind(
                RequestKind::parse(kind)
                    .ok_or_else(|| format!("--fault {text}: unknown request kind {kind:?}"))?,
            )
        };
        let number = |s: &str| -> Result<u64, String> {
            s.parse()
                .map_err(|_| format!("--fault {text}: {s:?} is not a number"))
        };
        let action = match action.split_once('/') {
            Some(("429", secs)) => FaultAction::Error(DriveError::too_many_requests(Some(
                Duration::from_secs(number(secs)?),
            ))),
            Some(("cut", bytes)) => FaultAction::CutBodyAfter(number(bytes)?),
            Some(("delay", ms)) => FaultAction::Delay(Duration::from_millis(number(ms)?)),
            _ => match action {
                "rate-limit" => FaultAction::Error(DriveError::rate_limit_exceeded()),
                "user-rate-limit" => FaultAction::Error(DriveError::user_rate_limit_exceeded()),
                "429" => FaultAction::Error(DriveError::too_many_requests(None)),
                "500" => FaultAction::Error(DriveError::backend_error()),
                "503" => FaultAction::Error(DriveError::service_unavailable()),
                "quota" => FaultAction::Error(DriveError::storage_quota_exceeded()),
                "401" => FaultAction::Error(DriveError::auth_error()),
                "lose-answer" => FaultAction::LoseAnswer,
                "duplicate" => FaultAction::Duplicate,
                _ => return Err(format!("--fault {text}: unknown action {action:?}")),
            },
        };
        Ok(Fault::new(matcher, action, count).every(every))
    }
}

impl fmt::Display for RequestKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// The queue of rules; the first rule that matches a request applies to it.
#[derive(Debug, Default)]
pub(crate) struct Faults {
    rules: Vec<Fault>,
}

impl Faults {
    pub(crate) fn push(&mut self, fault: Fault) {
        if fault.count > 0 {
            self.rules.push(fault);
        }
    }

    pub(crate) fn clear(&mut self) {
        self.rules.clear();
    }

    /// Takes one use of the first rule matching this request whose turn it is (see
    /// [`Fault::every`]).
    pub(crate) fn take(
        &mut self,
        kind: RequestKind,
        method: &str,
        path_and_query: &str,
    ) -> Option<FaultAction> {
        let index = self.rules.iter_mut().position(|f| {
            if !f.matcher.matches(kind, method, path_and_query) {
                return false;
            }
            f.seen += 1;
            f.seen.is_multiple_of(f.every)
        })?;
        let rule = &mut self.rules[index];
        let action = rule.action.clone();
        rule.count -= 1;
        if rule.count == 0 {
            self.rules.remove(index);
        }
        Some(action)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_fault_specs() {
        let f = Fault::parse("chunk:cut/300000:2").expect("parse");
        assert!(matches!(f.action, FaultAction::CutBodyAfter(300000)));
        assert_eq!(f.count, 2);
        assert_eq!(f.matcher.kind, Some(RequestKind::ResumableChunk));
        let f = Fault::parse("any:429/3").expect("parse");
        assert!(
            matches!(f.action, FaultAction::Error(ref e) if e.status == 429 && e.retry_after == Some(Duration::from_secs(3)))
        );
        assert!(Fault::parse("list").is_err());
        assert!(Fault::parse("lists:500").is_err());
        assert!(Fault::parse("list:501").is_err());
    }

    #[test]
    fn rules_are_used_up_in_order() {
        let mut faults = Faults::default();
        faults.push(Fault::new(
            Matcher::kind(RequestKind::List),
            FaultAction::LoseAnswer,
            2,
        ));
        assert!(faults.take(RequestKind::Delete, "DELETE", "/x").is_none());
        assert!(faults.take(RequestKind::List, "GET", "/x").is_some());
        assert!(faults.take(RequestKind::List, "GET", "/x").is_some());
        assert!(faults.take(RequestKind::List, "GET", "/x").is_none());
    }

    #[test]
    fn a_spread_rule_applies_to_every_nth_matching_request() {
        let mut faults = Faults::default();
        faults.push(Fault::parse("list:duplicate:2:3").expect("parse"));
        let hits: Vec<bool> = (0..9)
            .map(|_| faults.take(RequestKind::List, "GET", "/x").is_some())
            .collect();
        assert_eq!(
            hits,
            [false, false, true, false, false, true, false, false, false]
        );
    }
}
