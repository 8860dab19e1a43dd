//! The daemon's state and the control API's implementation: what each route does.

mod auth;
mod browse;
mod errors;
mod handler;
mod held;
mod last_backup;
mod metrics;
mod missing;
mod prune;
mod rotation;
mod status;
mod vault;

pub use handler::DaemonHandle;

use errors::{engine_error, internal, repo_error};

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use sealback_repo::generation;
use sealback_repo::{BackupKey, Repository, StoreErrorKind};
use tokio::sync::{mpsc, oneshot};

use crate::catalog::Catalog;
use crate::config::{Config, TargetConfig};
use crate::control::api::{
    BackupReport, KeyMode, RepairReport, RepairRequest, RestoreReport, RestoreRequest,
    TargetFailure, VerifyReport, VerifyRequest,
};
use crate::control::{ApiError, ProgressSink};
use crate::engine;
use crate::keystore::KeyStore;
use crate::providers::{self, Counters, TargetStore};

/// A request for a backup, sent to the scheduler.
pub struct BackupTicket {
    pub reply: Option<oneshot::Sender<Result<BackupReport, ApiError>>>,
    pub progress: ProgressSink,
}

struct Target {
    config: TargetConfig,
    store: Mutex<Option<Arc<TargetStore>>>,
    last_error: Mutex<Option<String>>,
    counters: Arc<Counters>,
    /// Whether a backup opened a repository through the loaded store: a provider instance
    /// may keep state of the repository it served (the local provider, the folders it made).
    served_a_repository: AtomicBool,
    /// Held by a backup or a prune of this target: both write its catalog.
    work: Mutex<()>,
    /// Its backups since the daemon started, for `/metrics`.
    tally: Mutex<metrics::BackupTally>,
}

#[derive(Default)]
struct Runtime {
    activity_backup: bool,
    restores: u32,
    pending_change: bool,
    last_backup: Option<BackupReport>,
    last_error: Option<String>,
    /// Vault password attempts left, as of the last failed one.
    vault_attempts_left: Option<u32>,
}

pub struct Daemon {
    pub config: Config,
    keystore: KeyStore,
    key: RwLock<Option<Arc<BackupKey>>>,
    targets: Vec<Target>,
    runtime: Mutex<Runtime>,
    backups: mpsc::Sender<BackupTicket>,
    host: String,
    /// Set on shutdown; a running backup stops at the next chunk, a restore at the next pack.
    pub cancel: AtomicBool,
    /// Ends the providers' waits on shutdown (see [`providers::Stop`]).
    stop: providers::Stop,
    /// When the scheduler plans each target's next backup (Unix ms), by target order.
    next_backups: Mutex<Vec<Option<i64>>>,
    /// Targets just authorized (`sealbackctl target auth`), by index, for the scheduler to
    /// end their wait after failures; it takes the receiver ([`Daemon::take_authorized`]).
    authorized: mpsc::UnboundedSender<usize>,
    authorized_rx: Mutex<Option<mpsc::UnboundedReceiver<usize>>>,
}

/// One target's part of a backup run: its index in the configuration and how it went.
pub type TargetResult = (usize, Result<BackupReport, ApiError>);

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Daemon {
    /// Loads the key and the targets' plugins. A target whose plugin is missing or refuses
    /// its options stops start-up with a [`crate::config::ConfigError`] naming the key; one
    /// that fails otherwise is kept with its error, and the daemon runs regardless.
    pub fn new(config: Config, backups: mpsc::Sender<BackupTicket>) -> anyhow::Result<Daemon> {
        let keystore = KeyStore::new(
            &config.state_dir,
            std::env::var_os("CREDENTIALS_DIRECTORY").map(PathBuf::from),
        );
        let key = keystore.load()?.map(Arc::new);
        if key.is_none() {
            tracing::warn!(
                "no backup key on this device yet: run `sealbackctl key generate` (new user) or `sealbackctl key import` (restoring)"
            );
        }
        if let Some(mode) = keystore.file_mode().filter(|m| m & 0o077 != 0) {
            tracing::warn!(
                mode = format!("{mode:o}"),
                "the backup key file is readable by others: chmod 600 it"
            );
        }
        let stop = providers::Stop::default();
        let mut targets = Vec::with_capacity(config.targets.len());
        for (i, t) in config.targets.iter().enumerate() {
            let counters = Arc::new(Counters::default());
            let (store, error) =
                match providers::open_target(&config.plugins_dir, t, counters.clone(), &stop) {
                    Ok(s) => (Some(s), None),
                    Err(providers::OpenError {
                        wrong_key: Some(key),
                        message,
                    }) => {
                        return Err(crate::config::ConfigError::target(
                            &config.origin,
                            i,
                            key,
                            message,
                        )
                        .into());
                    }
                    Err(e) => {
                        tracing::error!(target = %t.name, error = %e, "storage target unavailable");
                        (None, Some(e.to_string()))
                    }
                };
            targets.push(Target {
                config: t.clone(),
                store: Mutex::new(store),
                last_error: Mutex::new(error),
                counters,
                served_a_repository: AtomicBool::new(false),
                work: Mutex::new(()),
                tally: Mutex::default(),
            });
        }
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .unwrap_or_else(|_| "unknown".into());
        let last_backup = last_backup::load(&config.state_dir);
        let (authorized, authorized_rx) = mpsc::unbounded_channel();
        Ok(Daemon {
            config,
            keystore,
            key: RwLock::new(key),
            targets,
            runtime: Mutex::new(Runtime {
                last_backup,
                ..Runtime::default()
            }),
            backups,
            host,
            cancel: AtomicBool::new(false),
            stop,
            next_backups: Mutex::new(Vec::new()),
            authorized,
            authorized_rx: Mutex::new(Some(authorized_rx)),
        })
    }

    /// Opens every target's catalog once, before the daemon says it is ready: a catalog that
    /// cannot be opened (its folder unwritable, say) stops start-up here, with its path,
    /// instead of failing every backup of a daemon systemd believes healthy. A damaged one is
    /// moved aside and started afresh, as at any open.
    pub fn open_catalogs(&self) -> anyhow::Result<()> {
        for target in &self.targets {
            let name = &target.config.name;
            let path = self.catalog_path(name);
            let _turn = lock(&target.work);
            Catalog::open(&path).map_err(|e| {
                anyhow::anyhow!(
                    "cannot open the local catalog of target {name:?}, {}: {e}; sealbackd does not start without it: make {} a folder the daemon may write, or move the catalog away",
                    path.display(),
                    path.parent().unwrap_or(&self.config.state_dir).display(),
                )
            })?;
        }
        Ok(())
    }

    /// Shutdown: a running backup or restore stops at its next chunk or pack, and a provider
    /// call waiting for a retry or for a provider that hangs gives up at once.
    pub fn begin_stop(&self) {
        self.cancel.store(true, Ordering::Relaxed);
        self.stop.stop();
    }

    fn has_key(&self) -> bool {
        self.key.read().unwrap_or_else(|p| p.into_inner()).is_some()
    }

    /// How the user keeps the key, for `status`.
    fn key_mode(&self) -> KeyMode {
        if !self.has_key() {
            return KeyMode::None;
        }
        match self.keystore.mode().as_str() {
            vault::MODE_PASSWORD => KeyMode::Password,
            vault::MODE_DEVICE_ONLY => KeyMode::DeviceOnly,
            _ => KeyMode::RecoveryKey,
        }
    }

    fn key(&self) -> Result<Arc<BackupKey>, ApiError> {
        self.key
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or_else(|| {
                ApiError::new(409, "no-key", "this device has no backup key yet").with_hint(
                    "run `sealbackctl key generate` to make one, or `sealbackctl key import` to use the recovery key of an existing backup",
                )
            })
    }

    /// The target's store, loading its plugin again if it failed before.
    fn store(&self, target: &Target) -> Result<Arc<TargetStore>, String> {
        let mut slot = lock(&target.store);
        if let Some(s) = slot.as_ref() {
            return Ok(s.clone());
        }
        let store = providers::open_target(
            &self.config.plugins_dir,
            &target.config,
            target.counters.clone(),
            &self.stop,
        )
        .map_err(|e| e.to_string())?;
        *slot = Some(store.clone());
        Ok(store)
    }

    fn target(&self, name: Option<&str>) -> Result<&Target, ApiError> {
        match name {
            None => self
                .targets
                .first()
                .ok_or_else(|| ApiError::new(500, "internal", "no targets configured")),
            Some(n) => self
                .targets
                .iter()
                .find(|t| t.config.name == n)
                .ok_or_else(|| {
                    let names: Vec<&str> = self
                        .targets
                        .iter()
                        .map(|t| t.config.name.as_str())
                        .collect();
                    ApiError::new(404, "not-found", format!("no target named {n:?}"))
                        .with_hint(format!("configured targets: {}", names.join(", ")))
                }),
        }
    }

    /// The time of the newest snapshot target `i`'s catalog knows.
    pub fn newest_snapshot_unix_ms_of(&self, i: usize) -> Option<i64> {
        self.targets
            .get(i)
            .and_then(|t| self.target_status(t).last_snapshot_unix_ms)
    }

    pub fn note_change(&self) {
        lock(&self.runtime).pending_change = true;
    }

    /// The scheduler's plan, for `status`: each target's next backup (Unix ms).
    pub fn set_next_backups(&self, next: Vec<Option<i64>>) {
        *lock(&self.next_backups) = next;
    }

    /// Runs one backup to the targets `which` (indices into the configuration's targets;
    /// blocking), each target's result beside the first report or error. Called by the
    /// scheduler only, so never two at once.
    pub fn run_backup(
        &self,
        which: &[usize],
        progress: &(dyn Fn(u64, u64) + Sync),
    ) -> (Result<BackupReport, ApiError>, Vec<TargetResult>) {
        let key = match self.key() {
            Ok(k) => k,
            Err(e) => {
                let each = which.iter().map(|&i| (i, Err(e.clone()))).collect();
                return (Err(e), each);
            }
        };
        let chosen: Vec<(usize, &Target)> = which
            .iter()
            .filter_map(|&i| self.targets.get(i).map(|t| (i, t)))
            .collect();
        {
            let mut rt = lock(&self.runtime);
            rt.activity_backup = true;
            rt.pending_change = false;
        }
        // Every chosen target at once, each its own repository: a slow or failing target
        // neither delays nor fails the others. Progress is the sum over the targets.
        let parts: Vec<(AtomicU64, AtomicU64)> = chosen
            .iter()
            .map(|_| (AtomicU64::new(0), AtomicU64::new(0)))
            .collect();
        let results: Vec<Result<BackupReport, ApiError>> = std::thread::scope(|scope| {
            let handles: Vec<_> = chosen
                .iter()
                .enumerate()
                .map(|(i, (_, target))| {
                    let (key, parts) = (&key, &parts);
                    scope.spawn(move || {
                        let report_progress = |done: u64, total: u64| {
                            parts[i].0.store(done, Ordering::Relaxed);
                            parts[i].1.store(total, Ordering::Relaxed);
                            let sum =
                                |f: fn(&(AtomicU64, AtomicU64)) -> u64| parts.iter().map(f).sum();
                            progress(
                                sum(|p| p.0.load(Ordering::Relaxed)),
                                sum(|p| p.1.load(Ordering::Relaxed)),
                            );
                        };
                        self.backup_to(target, key, &report_progress)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(internal("the backup thread panicked")))
                })
                .collect()
        });
        let mut first: Option<BackupReport> = None;
        let mut failures = Vec::new();
        for ((_, target), result) in chosen.iter().zip(&results) {
            lock(&target.tally).record(result);
            match result {
                Ok(report) => {
                    tracing::info!(
                        target = %report.target, snapshot = %report.snapshot, bytes_read = report.bytes_read,
                        bytes_written = report.bytes_written, chunks_new = report.chunks_new,
                        duration_ms = report.duration_ms, "backup finished"
                    );
                    *lock(&target.last_error) = None;
                    first.get_or_insert(report.clone());
                }
                Err(e) => {
                    tracing::error!(target = %target.config.name, error = %e, "backup failed");
                    *lock(&target.last_error) = Some(e.to_string());
                    failures.push(e.clone());
                }
            }
        }
        let each: Vec<TargetResult> = chosen.iter().map(|(i, _)| *i).zip(results).collect();
        // The targets that failed, named: in the report, or in the error if none succeeded.
        let failed: Vec<TargetFailure> = each
            .iter()
            .filter_map(|(i, result)| {
                let error = result.as_ref().err()?;
                Some(TargetFailure {
                    target: self.targets[*i].config.name.clone(),
                    error: error.body.clone(),
                })
            })
            .collect();
        let mut rt = lock(&self.runtime);
        rt.activity_backup = false;
        let overall = match (failures.into_iter().next(), first) {
            (None, Some(report)) => {
                rt.last_error = None;
                Ok(report)
            }
            // Some targets have their snapshot: the report says so, and names the others.
            (Some(e), Some(mut report)) => {
                rt.last_error = Some(e.to_string());
                report.failed = failed;
                Ok(report)
            }
            // Every target failed: the first's error, naming each of them.
            (Some(mut e), None) => {
                if failed.len() > 1 {
                    let each_failure: Vec<String> = failed
                        .iter()
                        .map(|f| format!("{}: {}", f.target, f.error.message))
                        .collect();
                    e.body.message = format!(
                        "the backup failed on every target: {}",
                        each_failure.join("; ")
                    );
                }
                rt.last_error = Some(e.to_string());
                Err(e)
            }
            (None, None) => Err(ApiError::new(500, "internal", "no targets configured")),
        };
        if let Ok(report) = &overall {
            rt.last_backup = Some(report.clone());
            last_backup::save(&self.config.state_dir, report);
        }
        (overall, each)
    }

    fn backup_to(
        &self,
        target: &Target,
        key: &BackupKey,
        progress: &(dyn Fn(u64, u64) + Sync),
    ) -> Result<BackupReport, ApiError> {
        let name = &target.config.name;
        let store = self
            .store(target)
            .map_err(|e| ApiError::new(502, "target-failed", e))?;
        // A new repository where another was served: on a provider instance of its own.
        let fresh = || {
            if target.served_a_repository.load(Ordering::Relaxed) {
                lock(&target.store).take();
            }
            self.store(target)
                .map(|s| s as Arc<dyn sealback_repo::ObjectStore>)
                .map_err(|e| ApiError::new(502, "target-failed", e))
        };
        let (repo, layout) = held::open_for_backup(
            store,
            fresh,
            key,
            &self.config.state_dir,
            name,
            engine::backup::now_unix_ms(),
        )?;
        target.served_a_repository.store(true, Ordering::Relaxed);
        let _turn = lock(&target.work);
        let mut catalog = Catalog::open(&self.catalog_path_for(name, &layout)).map_err(internal)?;
        let input = engine::backup::BackupInput {
            store: &self.config.store,
            database: &self.config.database,
            host: &self.host,
            target: name,
            spool_dir: &self.config.state_dir.join("spool"),
            progress,
            cancel: &self.cancel,
            selection: &target.config.selection,
        };
        let report =
            engine::backup::run(&repo, &mut catalog, &input).map_err(|e| engine_error(name, e))?;
        self.prune_if_due(target, &repo, &mut catalog);
        Ok(report)
    }

    fn restore_blocking(
        &self,
        request: RestoreRequest,
        progress: ProgressSink,
    ) -> Result<RestoreReport, ApiError> {
        let to = PathBuf::from(&request.to);
        if !to.is_absolute() {
            return Err(ApiError::bad_request(format!(
                "restore target {:?} is not an absolute path",
                request.to
            )));
        }
        if request.to.contains('\0') {
            return Err(ApiError::bad_request(format!(
                "restore target {:?} holds a NUL character, which no path can",
                request.to
            )));
        }
        let selection = crate::config::Selection::only(&request.include, "--include")
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        let browse::Found { repo, catalog, row } =
            self.find_snapshot(request.target.as_deref(), &request.snapshot)?;
        let name = &self.target(request.target.as_deref())?.config.name;
        let input = engine::restore::RestoreInput {
            snapshot: &row,
            target: name,
            to: &to,
            force: request.force,
            owner: self.config.restore_owner,
            progress: &|done, total| progress.set(done, total),
            database_ready: &|ms| progress.database_ready(ms),
            cancel: &self.cancel,
            selection: &selection,
        };
        let report =
            engine::restore::run(&repo, &catalog, &input).map_err(|e| engine_error(name, e))?;
        tracing::info!(snapshot = %report.snapshot, to = %report.to, files = report.files, bytes = report.bytes, "restore finished");
        Ok(report)
    }

    /// The target's repository, and its catalog brought up to date with it.
    fn synced(
        &self,
        target: &Target,
        key: &BackupKey,
    ) -> Result<(Repository, Catalog, crate::catalog::SyncReport), ApiError> {
        let name = &target.config.name;
        let store = self
            .store(target)
            .map_err(|e| ApiError::new(502, "target-failed", e))?;
        let (repo, layout) = generation::open(store, key).map_err(|e| repo_error(name, e))?;
        let mut catalog = Catalog::open(&self.catalog_path_for(name, &layout)).map_err(internal)?;
        let report = catalog
            .sync(&repo, crate::catalog::Packs::List)
            .map_err(|e| engine_error(name, e.into()))?;
        Ok((repo, catalog, report))
    }

    fn verify_blocking(
        &self,
        request: VerifyRequest,
        progress: ProgressSink,
    ) -> Result<VerifyReport, ApiError> {
        let key = self.key()?;
        let target = self.target(request.target.as_deref())?;
        let name = &target.config.name;
        let store = self
            .store(target)
            .map_err(|e| ApiError::new(502, "target-failed", e))?;
        let (repo, _) = generation::open(store, &key).map_err(|e| repo_error(name, e))?;
        let report = engine::verify::run(&repo, name, &|done, total| progress.set(done, total))
            .map_err(|e| repo_error(name, e))?;
        tracing::info!(target = %name, packs = report.packs, problems = report.problems.len(), "verify finished");
        Ok(report)
    }

    /// Removes the target's damaged index and snapshot objects (every sync leaves them out of
    /// the catalog already); not while a backup runs.
    fn repair_blocking(&self, request: RepairRequest) -> Result<RepairReport, ApiError> {
        let key = self.key()?;
        let target = self.target(request.target.as_deref())?;
        if lock(&self.runtime).activity_backup {
            return Err(ApiError::new(409, "busy", "a backup is running")
                .with_hint("run `sealbackctl repair` again once it has finished"));
        }
        let name = &target.config.name;
        let store = self
            .store(target)
            .map_err(|e| ApiError::new(502, "target-failed", e))?;
        let (repo, _) = generation::open(store, &key).map_err(|e| repo_error(name, e))?;
        let report = engine::repair::run(&repo, name).map_err(|e| repo_error(name, e))?;
        tracing::info!(target = %name, removed = report.removed.len(), kept = report.kept.len(), "repair finished");
        Ok(report)
    }

    /// Checks a key against every target's repository; a target with no repository yet
    /// accepts any key.
    fn check_key(&self, key: &BackupKey) -> Result<Vec<String>, ApiError> {
        let mut verified = Vec::new();
        for target in &self.targets {
            let name = &target.config.name;
            let store = self.store_to_check(target, "check the key against")?;
            match generation::open(store, key) {
                Ok(_) => verified.push(name.clone()),
                Err(sealback_repo::Error::Store(e)) if e.kind == StoreErrorKind::NotFound => {}
                Err(sealback_repo::Error::Authentication { .. }) => {
                    return Err(ApiError::new(
                        400,
                        "wrong-key",
                        format!("this recovery key does not open the backup on target {name:?}"),
                    )
                    .with_hint("check each group of four digits against what you wrote down; nothing was changed"));
                }
                Err(e) => return Err(repo_error(name, e)),
            }
        }
        Ok(verified)
    }

    fn install_key(&self, key: BackupKey, replace: bool) -> Result<(), ApiError> {
        let mut slot = self.key.write().unwrap_or_else(|p| p.into_inner());
        if slot.is_some() && !replace {
            return Err(ApiError::new(409, "conflict", "this device already has a backup key")
                .with_hint("pass --replace to replace it; backups made with the old key stay readable only with the old key"));
        }
        if slot.is_some() && self.keystore.rotating() {
            return Err(rotation::unfinished_rotation());
        }
        self.keystore.save(&key).map_err(internal)?;
        *slot = Some(Arc::new(key));
        Ok(())
    }
}
