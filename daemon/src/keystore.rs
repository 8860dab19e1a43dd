//! Where the backup key K lives on the device: a systemd credential when the service has one
//! (`$CREDENTIALS_DIRECTORY/sealback-backup-key`, set up with `LoadCredentialEncrypted=`),
//! otherwise `backup.key` in the state directory, mode 0600, written atomically.
//! Either file holds the 32 bytes of K, or its 64-digit recovery form as text.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use sealback_repo::BackupKey;
use zeroize::Zeroizing;

pub const CREDENTIAL_NAME: &str = "sealback-backup-key";
const KEY_FILE: &str = "backup.key";
/// How the user keeps the key: `recovery-key`, `password` or `device-only`. Absent: a
/// recovery key (what every key was before the vault existed).
const MODE_FILE: &str = "key-mode";
/// The next key while a rotation is under way (32 raw bytes, 0600).
const PENDING_FILE: &str = "rotation.key";
/// The key before the last rotation, sealed under the current one, until its generation
/// is retired.
const PREVIOUS_FILE: &str = "previous.key";

#[derive(Debug, thiserror::Error)]
pub enum KeyStoreError {
    #[error("cannot read the backup key {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("cannot write the backup key {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
    #[error(
        "the backup key {path} is damaged: {detail}; import the recovery key again (sealbackctl key import --replace)"
    )]
    Damaged { path: PathBuf, detail: String },
    #[error(
        "the backup key comes from the systemd credential {path} and cannot be replaced here: change the credential instead"
    )]
    FromCredential { path: PathBuf },
}

#[derive(Debug, Clone)]
pub struct KeyStore {
    file: PathBuf,
    credential: Option<PathBuf>,
}

impl KeyStore {
    /// `credentials_dir` is `$CREDENTIALS_DIRECTORY` when systemd set it.
    pub fn new(state_dir: &Path, credentials_dir: Option<PathBuf>) -> KeyStore {
        let credential = credentials_dir
            .map(|d| d.join(CREDENTIAL_NAME))
            .filter(|p| p.exists());
        KeyStore {
            file: state_dir.join(KEY_FILE),
            credential,
        }
    }

    /// The key, if this device has one.
    pub fn load(&self) -> Result<Option<BackupKey>, KeyStoreError> {
        let path = self.credential.as_ref().unwrap_or(&self.file);
        let bytes = match fs::read(path) {
            Ok(b) => Zeroizing::new(b),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(KeyStoreError::Read {
                    path: path.clone(),
                    source,
                });
            }
        };
        if bytes.len() == 32 {
            let mut raw = Zeroizing::new([0u8; 32]);
            raw.copy_from_slice(&bytes);
            return Ok(Some(BackupKey::from_bytes(&mut raw)));
        }
        let text = std::str::from_utf8(&bytes).map_err(|_| KeyStoreError::Damaged {
            path: path.clone(),
            detail: format!(
                "{} bytes that are neither a raw key nor a recovery key",
                bytes.len()
            ),
        })?;
        BackupKey::from_recovery_key(text)
            .map(Some)
            .map_err(|e| KeyStoreError::Damaged {
                path: path.clone(),
                detail: e.to_string(),
            })
    }

    /// Stores the key, replacing any: temporary file created 0600, fsync, rename, fsync dir.
    pub fn save(&self, key: &BackupKey) -> Result<(), KeyStoreError> {
        if let Some(path) = &self.credential {
            return Err(KeyStoreError::FromCredential { path: path.clone() });
        }
        write_durably(&self.file, key.expose_secret())
    }

    /// How the user keeps the key (see [`MODE_FILE`]).
    pub fn mode(&self) -> String {
        let path = self.file.with_file_name(MODE_FILE);
        fs::read_to_string(path)
            .map(|m| m.trim().to_owned())
            .unwrap_or_else(|_| "recovery-key".to_owned())
    }

    pub fn set_mode(&self, mode: &str) -> Result<(), KeyStoreError> {
        let path = self.file.with_file_name(MODE_FILE);
        fs::write(&path, format!("{mode}\n"))
            .map_err(|source| KeyStoreError::Write { path, source })
    }

    pub fn from_credential(&self) -> bool {
        self.credential.is_some()
    }

    /// The next key of a rotation under way (`rotation.key`), if there is one.
    pub fn pending(&self) -> Result<Option<BackupKey>, KeyStoreError> {
        let path = self.file.with_file_name(PENDING_FILE);
        let Some(bytes) = read_if_present(&path)? else {
            return Ok(None);
        };
        let mut raw = Zeroizing::new([0u8; 32]);
        if bytes.len() != 32 {
            return Err(KeyStoreError::Damaged {
                path,
                detail: format!("{} bytes, a key is 32", bytes.len()),
            });
        }
        raw.copy_from_slice(&bytes);
        Ok(Some(BackupKey::from_bytes(&mut raw)))
    }

    /// Keeps the next key of a rotation until the rotation is committed.
    pub fn save_pending(&self, next: &BackupKey) -> Result<(), KeyStoreError> {
        if let Some(path) = &self.credential {
            return Err(KeyStoreError::FromCredential { path: path.clone() });
        }
        write_durably(
            &self.file.with_file_name(PENDING_FILE),
            next.expose_secret(),
        )
    }

    /// Makes the pending key the key: first the current key, sealed under the next, goes to
    /// `previous.key`, then `rotation.key` is renamed over `backup.key`. A crash between the
    /// two leaves the current key in place and a `previous.key` it cannot open, which
    /// [`KeyStore::previous`] ignores while the rotation is pending.
    pub fn commit_rotation(
        &self,
        current: &BackupKey,
        next: &BackupKey,
    ) -> Result<(), KeyStoreError> {
        let sealed = sealback_repo::generation::seal_previous(next, current);
        write_durably(&self.file.with_file_name(PREVIOUS_FILE), &sealed)?;
        let pending = self.file.with_file_name(PENDING_FILE);
        let write_err = |source| KeyStoreError::Write {
            path: self.file.clone(),
            source,
        };
        fs::rename(&pending, &self.file).map_err(write_err)?;
        sync_dir(&self.file).map_err(write_err)
    }

    /// The key before the last rotation, kept sealed under `current` until its generation
    /// is retired.
    pub fn previous(&self, current: &BackupKey) -> Result<Option<BackupKey>, KeyStoreError> {
        let path = self.file.with_file_name(PREVIOUS_FILE);
        let Some(sealed) = read_if_present(&path)? else {
            return Ok(None);
        };
        match sealback_repo::generation::open_previous(current, &sealed) {
            Some(key) => Ok(Some(key)),
            // Written by a commit that did not finish: the rotation is still pending.
            None if self.pending()?.is_some() => Ok(None),
            None => Err(KeyStoreError::Damaged {
                path,
                detail: "the previous key does not open under the current key".into(),
            }),
        }
    }

    /// Forgets the previous key: its generation is retired everywhere.
    pub fn forget_previous(&self) -> Result<(), KeyStoreError> {
        let path = self.file.with_file_name(PREVIOUS_FILE);
        match fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                Err(KeyStoreError::Write { path, source: e })
            }
            _ => sync_dir(&self.file).map_err(|source| KeyStoreError::Write { path, source }),
        }
    }

    /// Whether a rotation is under way or not finished (its old key still kept).
    pub fn rotating(&self) -> bool {
        [PENDING_FILE, PREVIOUS_FILE]
            .iter()
            .any(|f| self.file.with_file_name(f).exists())
    }

    /// The key file's mode, for a warning when it is readable by others.
    pub fn file_mode(&self) -> Option<u32> {
        fs::metadata(&self.file)
            .ok()
            .map(|m| m.permissions().mode() & 0o777)
    }
}

/// `bytes` at `path`: a temporary file created 0600, fsync, rename, fsync of the directory.
fn write_durably(path: &Path, bytes: &[u8]) -> Result<(), KeyStoreError> {
    let write_err = |source| KeyStoreError::Write {
        path: path.to_owned(),
        source,
    };
    let dir = path.parent().unwrap_or(Path::new("/"));
    fs::create_dir_all(dir).map_err(write_err)?;
    let file_name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = dir.join(format!(".{file_name}.tmp"));
    let _ = fs::remove_file(&tmp);
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(write_err)?;
    f.write_all(bytes).map_err(write_err)?;
    f.sync_all().map_err(write_err)?;
    drop(f);
    fs::rename(&tmp, path).map_err(write_err)?;
    sync_dir(path).map_err(write_err)
}

fn sync_dir(file: &Path) -> io::Result<()> {
    fs::File::open(file.parent().unwrap_or(Path::new("/"))).and_then(|d| d.sync_all())
}

fn read_if_present(path: &Path) -> Result<Option<Zeroizing<Vec<u8>>>, KeyStoreError> {
    match fs::read(path) {
        Ok(b) => Ok(Some(Zeroizing::new(b))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(KeyStoreError::Read {
            path: path.to_owned(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saves_0600_and_loads_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = KeyStore::new(dir.path(), None);
        assert!(store.load().expect("no error").is_none());
        let key = BackupKey::generate();
        store.save(&key).expect("saved");
        assert_eq!(store.file_mode(), Some(0o600));
        let back = store.load().expect("ok").expect("present");
        assert_eq!(back.expose_secret(), key.expose_secret());
    }

    #[test]
    fn a_credential_wins_and_may_hold_the_recovery_form() {
        let dir = tempfile::tempdir().expect("tempdir");
        let creds = dir.path().join("creds");
        fs::create_dir(&creds).expect("mkdir");
        let key = BackupKey::generate();
        fs::write(
            creds.join(CREDENTIAL_NAME),
            key.to_recovery_key().as_bytes(),
        )
        .expect("write");
        let store = KeyStore::new(dir.path(), Some(creds));
        let back = store.load().expect("ok").expect("present");
        assert_eq!(back.expose_secret(), key.expose_secret());
        assert!(matches!(
            store.save(&key),
            Err(KeyStoreError::FromCredential { .. })
        ));
    }

    #[test]
    fn a_damaged_key_file_is_reported() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::write(dir.path().join(KEY_FILE), b"not a key").expect("write");
        let err = KeyStore::new(dir.path(), None)
            .load()
            .err()
            .expect("damaged");
        assert!(err.to_string().contains("key import --replace"));
    }

    #[test]
    fn a_rotation_keeps_the_old_key_sealed_until_it_is_forgotten() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = KeyStore::new(dir.path(), None);
        let (old, new) = (BackupKey::generate(), BackupKey::generate());
        store.save(&old).expect("saved");
        assert!(!store.rotating());
        store.save_pending(&new).expect("pending");
        assert!(store.rotating());
        assert_eq!(
            store
                .pending()
                .expect("ok")
                .expect("pending")
                .expose_secret(),
            new.expose_secret()
        );
        // A commit cut after `previous.key`: the old key is still the key, nothing is lost.
        write_durably(
            &dir.path().join(PREVIOUS_FILE),
            &sealback_repo::generation::seal_previous(&new, &old),
        )
        .expect("write");
        let key = store.load().expect("ok").expect("key");
        assert_eq!(key.expose_secret(), old.expose_secret());
        assert!(store.previous(&key).expect("ok").is_none());

        store.commit_rotation(&old, &new).expect("commit");
        let key = store.load().expect("ok").expect("key");
        assert_eq!(key.expose_secret(), new.expose_secret());
        assert!(store.pending().expect("ok").is_none());
        let previous = store.previous(&key).expect("ok").expect("kept");
        assert_eq!(previous.expose_secret(), old.expose_secret());
        let sealed = fs::read(dir.path().join(PREVIOUS_FILE)).expect("read");
        assert!(
            !sealed
                .windows(32)
                .any(|w| w == old.expose_secret().as_slice())
        );
        assert!(store.rotating());
        store.forget_previous().expect("forget");
        assert!(store.previous(&key).expect("ok").is_none());
        assert!(!store.rotating());
    }
}
