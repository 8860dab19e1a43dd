//! Key rotation (DESIGN.md §3.11): a new key, a new repository generation on every target
//! with a full backup in it, the new key shown (or given to the vault), and only then the
//! switch; the old generation stays restorable, its key kept sealed beside the new one,
//! until its retirement removes both: marked by `key rotate --finish` or any prune, then
//! removed once the grace period of DESIGN §12 has passed since the mark.
//!
//! Every step can be cut short (kill -9, a target failing) without harm: before the switch
//! the device backs up with the old key and the next `key rotate` resumes with the same new
//! key; after it, with the new one, and the old snapshots still restore.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use sealback_repo::generation::{self, Layout};
use sealback_repo::{BackupKey, Repository, StoreErrorKind};

use super::vault::{MODE_DEVICE_ONLY, MODE_PASSWORD};
use super::{Daemon, Target, engine_error, internal, lock, repo_error};
use crate::catalog::Catalog;
use crate::control::ApiError;
use crate::control::api::{KeyRotateRequest, KeyRotated, RetiredGeneration};
use crate::engine;
use crate::providers::TargetStore;

/// One rotation or retirement at a time.
static ROTATING: Mutex<()> = Mutex::new(());

/// The refusal of a key change while a rotation is not finished.
pub(super) fn unfinished_rotation() -> ApiError {
    ApiError::new(
        409,
        "conflict",
        "a key rotation is not finished: the device holds two keys",
    )
    .with_hint(
        "run `sealbackctl key rotate` to complete it, then `sealbackctl key rotate --finish`",
    )
}

fn busy() -> ApiError {
    ApiError::new(409, "busy", "a key rotation is already running")
        .with_hint("wait for it to finish, then run the command again")
}

impl Daemon {
    /// The catalog of the repository the current key opens on `target`: its generation's
    /// once a sync or a rotation made it, the root's otherwise.
    pub(super) fn catalog_path(&self, target: &str) -> PathBuf {
        if let Ok(key) = self.key() {
            let own = self.catalog_path_for(target, &Layout::of_rotated(&key));
            if own.exists() {
                return own;
            }
        }
        self.catalog_path_for(target, &Layout::Root)
    }

    /// The target's store for a check before a key change; its error says that nothing
    /// was changed.
    pub(super) fn store_to_check(
        &self,
        target: &Target,
        what: &str,
    ) -> Result<Arc<TargetStore>, ApiError> {
        self.store(target).map_err(|e| {
            let name = &target.config.name;
            ApiError::new(
                502,
                "target-failed",
                format!("cannot {what} target {name:?}: {e}"),
            )
            .with_hint("nothing was changed; try again when the target is reachable")
        })
    }

    /// The catalog of `target`'s repository in `layout`: each generation has its own, so
    /// that neither sees the other's snapshots as missing.
    pub(super) fn catalog_path_for(&self, target: &str, layout: &Layout) -> PathBuf {
        let file = match layout {
            Layout::Root => format!("{target}.db"),
            Layout::Generation(g) => format!("{target}.g-{g}.db"),
        };
        self.config.state_dir.join("catalog").join(file)
    }

    /// The key before the last rotation, while its generation is kept.
    pub(super) fn previous_key(&self) -> Result<Option<BackupKey>, ApiError> {
        let key = self.key()?;
        self.keystore.previous(&key).map_err(internal)
    }

    /// For a restore of `wanted` that the current generation does not hold: the previous
    /// generation's repository and catalog, if the snapshot is there.
    pub(super) fn in_previous_generation(
        &self,
        target: &Target,
        catalog: &Catalog,
        wanted: &str,
    ) -> Result<Option<(Repository, Catalog)>, ApiError> {
        if wanted == "latest"
            || !matches!(
                engine::restore::resolve(catalog, wanted),
                Err(engine::EngineError::NoSuchSnapshot(_))
            )
        {
            return Ok(None);
        }
        let Some(previous) = self.previous_key()? else {
            return Ok(None);
        };
        let (repo, older, _) = self.synced(target, &previous)?;
        let found = engine::restore::resolve(&older, wanted).is_ok();
        Ok(found.then_some((repo, older)))
    }

    /// The snapshots of the previous generation on `target`, while it is kept (none if it
    /// cannot be read now: the listing says so in the log).
    pub(super) fn previous_snapshots(&self, target: &Target) -> Vec<crate::catalog::SnapshotRow> {
        let Ok(Some(previous)) = self.previous_key() else {
            return Vec::new();
        };
        match self.synced(target, &previous) {
            Ok((_, older, _)) => older.snapshots().unwrap_or_default(),
            Err(e) => {
                tracing::warn!(target = %target.config.name, error = %e, "cannot list the previous generation's snapshots");
                Vec::new()
            }
        }
    }

    /// `key generate --replace` and the like: refused while a target holds backups the
    /// current key opens, or while a rotation is not finished.
    pub(super) fn refuse_replacing_a_used_key(&self) -> Result<(), ApiError> {
        let Ok(key) = self.key() else {
            return Ok(());
        };
        if self.keystore.rotating() {
            return Err(unfinished_rotation());
        }
        for target in &self.targets {
            let name = &target.config.name;
            let store = self.store_to_check(target, "look for backups under the current key on")?;
            let snapshots = match generation::open(store, &key) {
                Ok((repo, _)) => repo.list_snapshots().map_err(|e| repo_error(name, e))?,
                Err(sealback_repo::Error::Store(e)) if e.kind == StoreErrorKind::NotFound => {
                    continue;
                }
                Err(sealback_repo::Error::Authentication { .. }) => continue,
                Err(e) => return Err(repo_error(name, e)),
            };
            if !snapshots.is_empty() {
                return Err(ApiError::new(
                    409,
                    "key-in-use",
                    format!(
                        "target {name:?} holds {} backup(s) made with the current key: a new key would not open them, and the next backups would fail",
                        snapshots.len()
                    ),
                )
                .with_hint("nothing was changed; to change the key, run `sealbackctl key rotate`: it moves the backups to a new key without losing any"));
            }
        }
        Ok(())
    }

    /// `key rotate` and `key rotate --finish`.
    pub(super) fn key_rotate(&self, request: &KeyRotateRequest) -> Result<KeyRotated, ApiError> {
        let _one = ROTATING.try_lock().map_err(|_| busy())?;
        if request.finish {
            return self.retire_previous();
        }
        let current = self.key()?;
        if self.keystore.from_credential() {
            return Err(ApiError::new(
                409,
                "conflict",
                "the backup key comes from a systemd credential and cannot be rotated here",
            )
            .with_hint("change the credential instead"));
        }
        let mode = self.keystore.mode();
        if mode == MODE_PASSWORD && request.password.is_none() {
            return Err(ApiError::bad_request(
                "the key is kept in the vault: the rotation needs your password",
            ));
        }
        if self.previous_key()?.is_some() {
            // Done already (perhaps its answer was lost): show the new key again.
            return Ok(self.rotated(&current, &mode, "the rotation is done; the old backups stay readable until `sealbackctl key rotate --finish`"));
        }
        let next = match self.keystore.pending().map_err(internal)? {
            Some(next) => next,
            None => {
                let next = BackupKey::generate();
                self.keystore.save_pending(&next).map_err(internal)?;
                next
            }
        };
        // The password is checked before the long part, and used after it.
        let vault = match &request.password {
            Some(password) => Some(self.vault_holding(password, &current, &next)?),
            None => None,
        };
        let layout = Layout::of_rotated(&next);
        for target in &self.targets {
            self.back_up_into(target, &next, &layout)?;
        }
        if let Some((vault, password)) = vault {
            vault
                .register(&password, next.expose_secret())
                .map_err(|e| self.vault_error(e))?;
        }
        self.keystore
            .commit_rotation(&current, &next)
            .map_err(internal)?;
        let answer = self.rotated(&next, &mode, "the key was rotated; the old backups stay readable until `sealbackctl key rotate --finish`");
        *self.key.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(next));
        tracing::info!(generation = %layout.label(), "the backup key was rotated");
        Ok(answer)
    }

    fn rotated(&self, key: &BackupKey, mode: &str, message: &str) -> KeyRotated {
        let shown = !matches!(mode, MODE_PASSWORD | MODE_DEVICE_ONLY);
        KeyRotated {
            key_mode: self.key_mode(),
            recovery_key: shown.then(|| key.to_recovery_key()),
            generation: generation::name_of(key),
            targets: self.targets.iter().map(|t| t.config.name.clone()).collect(),
            removed_objects: 0,
            removed_bytes: 0,
            message: message.to_owned(),
        }
    }

    /// A full backup of the store into `layout`'s generation under `next`, with a catalog
    /// and a spool of its own (a scheduled backup under the current key may run beside it).
    fn back_up_into(
        &self,
        target: &Target,
        next: &BackupKey,
        layout: &Layout,
    ) -> Result<(), ApiError> {
        let name = &target.config.name;
        let store = self
            .store(target)
            .map_err(|e| ApiError::new(502, "target-failed", e))?;
        let store = generation::store_for(store, layout);
        let now = engine::backup::now_unix_ms();
        let (repo, _) =
            Repository::open_or_init(store, next, now).map_err(|e| repo_error(name, e))?;
        let mut catalog = Catalog::open(&self.catalog_path_for(name, layout)).map_err(internal)?;
        let input = engine::backup::BackupInput {
            store: &self.config.store,
            database: &self.config.database,
            host: &self.host,
            target: name,
            spool_dir: &self.config.state_dir.join("spool-rotation"),
            progress: &|_, _| {},
            cancel: &self.cancel,
            selection: &target.config.selection,
        };
        let report =
            engine::backup::run(&repo, &mut catalog, &input).map_err(|e| engine_error(name, e))?;
        tracing::info!(target = %name, snapshot = %report.snapshot, generation = %layout.label(), "backup under the new key finished");
        Ok(())
    }

    /// The vault and the password, once the password is shown to hold `current` (or
    /// `next`, when a rotation cut short after its registration is resumed).
    fn vault_holding(
        &self,
        password: &str,
        current: &BackupKey,
        next: &BackupKey,
    ) -> Result<
        (
            sealback_vault_client::Vault,
            sealback_vault_client::Password,
        ),
        ApiError,
    > {
        let vault = self.vault()?;
        let password = sealback_vault_client::Password::new(password.to_owned());
        let held = vault.recover(&password).map_err(|e| self.vault_error(e))?;
        lock(&self.runtime).vault_attempts_left = None;
        if *held != *current.expose_secret() && *held != *next.expose_secret() {
            return Err(ApiError::new(
                409,
                "conflict",
                "the vault holds another key than this device's",
            )
            .with_hint("nothing was changed; run `sealbackctl key set-password` first"));
        }
        Ok((vault, password))
    }

    /// After a prune of `targets` (any: `sealbackctl prune`, with or without `--target`,
    /// and the daemon's own): a step of the previous generation's retirement on each
    /// ([`Daemon::retire_on`]). A retirement that must wait or fails is logged; the prune
    /// stands.
    pub(super) fn retire_after_prune(&self, targets: &[&Target]) -> Option<RetiredGeneration> {
        let previous = self.previous_key().ok().flatten()?;
        let current = self.key().ok()?;
        let _one = ROTATING.try_lock().ok()?;
        let mut removed: Option<RetiredGeneration> = None;
        let mut gone_here = true;
        for target in targets {
            match self.retire_on(target, &current, &previous) {
                Ok(Retirement::Removed(r)) => {
                    let sum = removed.get_or_insert_with(RetiredGeneration::default);
                    sum.objects += r.objects;
                    sum.bytes += r.bytes;
                }
                Ok(Retirement::Gone) => {}
                Ok(Retirement::Waiting { until_unix_ms }) => {
                    gone_here = false;
                    tracing::info!(target = %target.config.name, until_unix_ms, "the previous key's generation is marked for retirement and goes after the grace period");
                }
                Err(e) => {
                    gone_here = false;
                    tracing::warn!(target = %target.config.name, error = %e, "the previous key's generation is kept for now");
                }
            }
        }
        // The other targets are looked at only once it is gone from these.
        if gone_here && let Err(e) = self.forget_previous_once_retired(&previous) {
            tracing::warn!(error = %e, "cannot tell whether the previous key's generation is gone from every target");
        }
        removed
    }

    /// `key rotate --finish`: a step of the retirement on every target; the previous key is
    /// forgotten once its generation is gone from all of them. Run again after an
    /// interruption, it finishes the work.
    pub(super) fn retire_previous(&self) -> Result<KeyRotated, ApiError> {
        let current = self.key()?;
        let Some(previous) = self.previous_key()? else {
            return Err(ApiError::new(409, "conflict", "no key rotation to finish")
                .with_hint("run `sealbackctl key rotate` first"));
        };
        if lock(&self.runtime).activity_backup {
            return Err(ApiError::new(409, "busy", "a backup is running")
                .with_hint("run `sealbackctl key rotate --finish` again once it has finished"));
        }
        let mut done = self.rotated(&current, MODE_DEVICE_ONLY, "");
        let mut waiting: Option<i64> = None;
        for target in &self.targets {
            match self.retire_on(target, &current, &previous)? {
                Retirement::Removed(r) => {
                    done.removed_objects += r.objects;
                    done.removed_bytes += r.bytes;
                }
                Retirement::Waiting { until_unix_ms } => {
                    waiting = waiting.max(Some(until_unix_ms));
                }
                Retirement::Gone => {}
            }
        }
        if let Some(until) = waiting {
            let left = until.saturating_sub(engine::backup::now_unix_ms()).max(0) as u64;
            done.message = format!(
                "the old generation is marked for removal; it goes in {} (the grace period, so that a backup still running under the old key finishes first): run `sealbackctl key rotate --finish` again then, or let the next prune do it",
                humantime::format_duration(std::time::Duration::from_secs(left.div_ceil(1000)))
            );
            return Ok(done);
        }
        self.keystore.forget_previous().map_err(internal)?;
        done.message =
            "the old generation is removed from every target; the old key opens nothing any more"
                .into();
        Ok(done)
    }

    /// One step of retiring the previous generation on `target` (DESIGN §3.11): once the
    /// current generation there holds a snapshot that reads, the previous one is marked as
    /// retiring (from then on its backups refuse to start); once the grace period has
    /// passed since the mark, it is removed with its catalog.
    fn retire_on(
        &self,
        target: &Target,
        current: &BackupKey,
        previous: &BackupKey,
    ) -> Result<Retirement, ApiError> {
        let name = &target.config.name;
        let store = self
            .store(target)
            .map_err(|e| ApiError::new(502, "target-failed", e))?;
        let Some((old, layout)) = previous_generation(store.clone(), previous, name)? else {
            return Ok(Retirement::Gone);
        };
        let (repo, _) =
            generation::open(store.clone(), current).map_err(|e| repo_error(name, e))?;
        complete_snapshot(&repo, name)?;
        let now = engine::backup::now_unix_ms();
        let marked = generation::mark_retiring(&old, now).map_err(|e| repo_error(name, e))?;
        let until_unix_ms = marked.saturating_add(engine::prune::grace_ms());
        if now < until_unix_ms {
            return Ok(Retirement::Waiting { until_unix_ms });
        }
        let retired =
            generation::retire(store.as_ref(), &layout, &old).map_err(|e| repo_error(name, e))?;
        tracing::info!(target = %name, generation = %layout.label(), objects = retired.objects, bytes = retired.bytes, "old generation retired");
        self.remove_catalog(name, &layout)?;
        Ok(Retirement::Removed(retired))
    }

    /// Forgets the previous key once it opens nothing on any target.
    fn forget_previous_once_retired(&self, previous: &BackupKey) -> Result<(), ApiError> {
        for target in &self.targets {
            let store = self
                .store(target)
                .map_err(|e| ApiError::new(502, "target-failed", e))?;
            if previous_generation(store, previous, &target.config.name)?.is_some() {
                return Ok(());
            }
        }
        self.keystore.forget_previous().map_err(internal)
    }

    /// Deletes the catalog of a retired generation and the files beside it.
    fn remove_catalog(&self, target: &str, layout: &Layout) -> Result<(), ApiError> {
        let path = self.catalog_path_for(target, layout);
        let mut family: Vec<PathBuf> = ["", "-wal", "-shm", "-journal"]
            .iter()
            .map(|suffix| {
                let mut name = path.as_os_str().to_owned();
                name.push(suffix);
                PathBuf::from(name)
            })
            .collect();
        family.extend(["baseline", "remembered"].map(|e| path.with_extension(e)));
        for file in family {
            match std::fs::remove_file(&file) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(internal(format!("cannot remove {}: {e}", file.display())));
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// What one step of the retirement left of the previous generation on a target.
enum Retirement {
    /// The previous key opens nothing there (retired before, or never written there).
    Gone,
    /// Marked as retiring; removed once the grace period has passed, at this time.
    Waiting {
        until_unix_ms: i64,
    },
    Removed(generation::Retired),
}

/// The previous key's repository on `store` and its layout, unless it opens nothing there.
fn previous_generation(
    store: Arc<TargetStore>,
    previous: &BackupKey,
    target: &str,
) -> Result<Option<(Repository, Layout)>, ApiError> {
    match generation::open(store, previous) {
        Ok(found) => Ok(Some(found)),
        Err(sealback_repo::Error::Store(e)) if e.kind == StoreErrorKind::NotFound => Ok(None),
        Err(sealback_repo::Error::Authentication { .. }) => Ok(None),
        Err(e) => Err(repo_error(target, e)),
    }
}

/// Refuses the retirement on `target` unless its current generation holds a snapshot that
/// reads (written after the proof of §3.8, so it restores).
fn complete_snapshot(repo: &Repository, target: &str) -> Result<(), ApiError> {
    let snapshots = repo.list_snapshots().map_err(|e| repo_error(target, e))?;
    if snapshots
        .iter()
        .rev()
        .any(|s| repo.read_snapshot(s).is_ok())
    {
        return Ok(());
    }
    Err(ApiError::new(
        409,
        "conflict",
        format!("target {target:?} holds no complete backup under the new key yet; the old generation is kept"),
    )
    .with_hint("run `sealbackctl key rotate` (or `sealbackctl backup --wait`) and then `sealbackctl key rotate --finish` again"))
}
