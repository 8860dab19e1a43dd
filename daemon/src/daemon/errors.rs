//! How the daemon's failures read on the control API: an HTTP status, a stable code, and a
//! hint where there is something to do.

use sealback_repo::StoreErrorKind;

use crate::control::ApiError;
use crate::engine::EngineError;

pub(super) fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(500, "internal", e.to_string())
}

pub(super) fn repo_error(target: &str, e: sealback_repo::Error) -> ApiError {
    match e {
        sealback_repo::Error::Authentication { ref name } if name == sealback_repo::repository::CONFIG_NAME => {
            ApiError::new(403, "wrong-key", format!("the backup key does not open the repository on target {target:?}"))
                .with_hint("the target holds backups made with another key: import that key (sealbackctl key import --replace) or point the target elsewhere")
        }
        sealback_repo::Error::Store(s) if s.kind == StoreErrorKind::NotFound => {
            ApiError::new(404, "not-found", s.message).with_hint("the target has no backup repository yet, or an object was deleted; is the target's disk mounted, its path or bucket right?")
        }
        sealback_repo::Error::Store(s) => ApiError::new(502, "target-failed", s.message),
        other => ApiError::new(500, "integrity", other.to_string())
            .with_hint("run `sealbackctl verify` to list every damaged object"),
    }
}

pub(super) fn engine_error(target: &str, e: EngineError) -> ApiError {
    match e {
        EngineError::Repo(r) => repo_error(target, r),
        EngineError::Catalog(crate::catalog::CatalogError::Repo(r)) => repo_error(target, r),
        EngineError::NoSuchSnapshot(_)
        | EngineError::AmbiguousSnapshot(_)
        | EngineError::NoSnapshots => ApiError::new(404, "not-found", e.to_string()),
        EngineError::NoDatabase { .. } => ApiError::new(409, "no-database", e.to_string()),
        EngineError::NotEmpty(_)
        | EngineError::InTheWay(_)
        | EngineError::RestoreDirIsLink(_)
        | EngineError::Changing(_)
        | EngineError::CannotGiveOwner { .. }
        | EngineError::DatabaseUnchecked { .. }
        | EngineError::Retiring { .. }
        | EngineError::SharedTarget { .. } => ApiError::new(409, "conflict", e.to_string()),
        EngineError::Cancelled => ApiError::new(503, "shutting-down", e.to_string()),
        EngineError::NothingSelected { .. } => ApiError::new(404, "not-found", e.to_string()),
        EngineError::UnsafePath { .. }
        | EngineError::SizeMismatch { .. }
        | EngineError::DatabaseUnsound { .. } => ApiError::new(500, "integrity", e.to_string()),
        other => ApiError::new(500, "internal", other.to_string()),
    }
}
