//! Finding a snapshot by what the user typed, and looking into it without restoring:
//! `ls` and `diff`.

use sealback_repo::Repository;
use sealback_repo::snapshot::Snapshot;

use super::{Daemon, Target, engine_error, internal, missing};
use crate::catalog::{Catalog, SnapshotRow};
use crate::control::ApiError;
use crate::control::api::{DiffRequest, Listing, LsRequest, SnapshotDiff};
use crate::engine::{self, EngineError};

/// A snapshot found on a target: its repository (the current key's, or the previous one's
/// after a rotation), that repository's catalog and the snapshot's row.
pub(super) struct Found {
    pub repo: Repository,
    pub catalog: Catalog,
    pub row: SnapshotRow,
}

impl Daemon {
    /// The snapshot `spec` names on target `name` (default: the first): `latest`, an id or
    /// an unambiguous prefix. `latest` is refused while the target hides a newer snapshot
    /// than it lists (DESIGN §6.1); a snapshot the target holds but cannot be read is named
    /// with what is wrong with it.
    pub(super) fn find_snapshot(&self, name: Option<&str>, spec: &str) -> Result<Found, ApiError> {
        let key = self.key()?;
        let target: &Target = self.target(name)?;
        let name = &target.config.name;
        let (mut repo, mut catalog, sync) = self.synced(target, &key)?;
        if let Some(older) = self.in_previous_generation(target, &catalog, spec)? {
            (repo, catalog) = older;
        }
        if spec == "latest" {
            let hidden = catalog.missing().map_err(internal)?;
            let latest = catalog.snapshots().map_err(internal)?.pop();
            if let Some(refused) = missing::latest_refused(&hidden, latest.as_ref(), name) {
                return Err(refused);
            }
        }
        let row = match engine::restore::resolve(&catalog, spec) {
            Ok(row) => row,
            // A snapshot left out of the catalog because it cannot be read: say why.
            Err(e @ EngineError::NoSuchSnapshot(_)) => {
                let wanted = spec.trim_start_matches("snapshots/");
                let damaged = sync.damaged.iter().find(|(object, _)| {
                    object.starts_with("snapshots/")
                        && object["snapshots/".len()..].starts_with(wanted)
                });
                return Err(match damaged {
                    Some((_, problem)) => ApiError::new(500, "integrity", problem.clone())
                        .with_hint("run `sealbackctl verify` to list every damaged object"),
                    None => engine_error(name, e),
                });
            }
            Err(e) => return Err(engine_error(name, e)),
        };
        Ok(Found { repo, catalog, row })
    }

    /// A snapshot's manifest, read from the target (authenticated on the way).
    fn manifest(
        &self,
        name: Option<&str>,
        spec: &str,
    ) -> Result<(Snapshot, SnapshotRow), ApiError> {
        let found = self.find_snapshot(name, spec)?;
        let target = self.target(name)?.config.name.clone();
        let snapshot = found
            .repo
            .read_snapshot(&found.row.name)
            .map_err(|e| engine_error(&target, e.into()))?;
        Ok((snapshot, found.row))
    }

    pub(super) fn ls_blocking(&self, request: LsRequest) -> Result<Listing, ApiError> {
        let target = request.target.as_deref();
        let (snapshot, row) = self.manifest(target, &request.snapshot)?;
        let files = engine::listing::list(&snapshot, request.path.as_deref()).ok_or_else(|| {
            ApiError::new(
                404,
                "not-found",
                format!(
                    "snapshot {} has no file or folder {:?}",
                    row.id(),
                    request.path.as_deref().unwrap_or_default()
                ),
            )
            .with_hint("paths are relative to the store, e.g. Media/Images; `sealbackctl ls SNAPSHOT` lists them all")
        })?;
        Ok(Listing {
            snapshot: row.id().to_owned(),
            target: self.target(target)?.config.name.clone(),
            time_unix_ms: row.time_unix_ms,
            files,
        })
    }

    pub(super) fn diff_blocking(&self, request: DiffRequest) -> Result<SnapshotDiff, ApiError> {
        let target = request.target.as_deref();
        let (from, from_row) = self.manifest(target, &request.from)?;
        let (to, to_row) = self.manifest(target, &request.to)?;
        let changes = engine::listing::diff(&from, &to);
        Ok(SnapshotDiff {
            from: from_row.id().to_owned(),
            to: to_row.id().to_owned(),
            target: self.target(target)?.config.name.clone(),
            added: changes.added,
            removed: changes.removed,
            changed: changes.changed,
            database: changes.database,
        })
    }
}
