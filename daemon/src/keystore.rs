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
        let write_err = |source| KeyStoreError::Write {
            path: self.file.clone(),
            source,
        };
        let dir = self.file.parent().unwrap_or(Path::new("/"));
        fs::create_dir_all(dir).map_err(write_err)?;
        let tmp = dir.join(format!(".{KEY_FILE}.tmp"));
        let _ = fs::remove_file(&tmp);
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(write_err)?;
        f.write_all(key.expose_secret()).map_err(write_err)?;
        f.sync_all().map_err(write_err)?;
        drop(f);
        fs::rename(&tmp, &self.file).map_err(write_err)?;
        fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(write_err)?;
        Ok(())
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

    /// The key file's mode, for a warning when it is readable by others.
    pub fn file_mode(&self) -> Option<u32> {
        fs::metadata(&self.file)
            .ok()
            .map(|m| m.permissions().mode() & 0o777)
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
}
