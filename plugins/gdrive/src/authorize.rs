//! Signing in on a device without a browser: the OAuth 2.0 device authorization grant
//! (RFC 8628), run by `sealbackctl target auth NAME` through the plugin ABI's `authorize`.
//!
//! 1. POST `device_auth_uri` with the client id and the `drive.appdata` scope; Google answers
//!    a device code, a user code, a verification URL, a lifetime and a polling interval.
//! 2. The person is shown the URL and the user code (through the host's prompt callback).
//! 3. The token endpoint is polled at the interval: `authorization_pending` means wait,
//!    `slow_down` means wait 5 s longer from now on, `access_denied` and `expired_token` end it.
//! 4. The refresh token is written to `refresh_token_file`, mode 0600, through a new file
//!    (`O_CREAT|O_EXCL`, so never through a symlink) renamed over the old one.
//!
//! Tokens and the device code never reach a message.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use sealback_plugin_api::ProviderError;
use serde::Deserialize;
use zeroize::Zeroizing;

use crate::http;
use crate::provider::GoogleDrive;
use crate::token::{TokenAnswer, post_form};

/// The only scope asked for: the app's own hidden folder, nothing else of the user's Drive.
pub(crate) const SCOPE: &str = "https://www.googleapis.com/auth/drive.appdata";
const DEVICE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";
/// How often a waiting poll looks whether the host cancelled the authorization.
const CANCEL_CHECK: Duration = Duration::from_millis(200);

#[derive(Deserialize)]
struct DeviceAnswer {
    device_code: Zeroizing<String>,
    user_code: String,
    /// Google's name; RFC 8628 says `verification_uri`.
    verification_url: Option<String>,
    verification_uri: Option<String>,
    expires_in: Option<u64>,
    interval: Option<u64>,
}

impl GoogleDrive {
    /// Runs the device flow: `prompt` shows a person what to do, `cancelled` says when the host
    /// gave up waiting.
    pub fn run_device_flow(
        &self,
        prompt: &mut dyn FnMut(&str),
        cancelled: &dyn Fn() -> bool,
    ) -> Result<(), ProviderError> {
        self.runtime
            .block_on(self.authorize_async(prompt, cancelled))
    }

    async fn authorize_async(
        &self,
        prompt: &mut dyn FnMut(&str),
        cancelled: &dyn Fn() -> bool,
    ) -> Result<(), ProviderError> {
        let oauth = self.drive.tokens.oauth().clone();
        let what = format!("asking {} for a device code", self.device_auth_uri);
        let body = Zeroizing::new(http::form(&[
            ("client_id", &oauth.client_id),
            ("scope", SCOPE),
        ]));
        let answer = post_form(&oauth, &what, &self.device_auth_uri, body).await?;
        if answer.status != 200 {
            let text =
                String::from_utf8_lossy(&answer.body[..answer.body.len().min(300)]).into_owned();
            return Err(ProviderError::auth(format!(
                "{what}: HTTP {}: {text}: check `client_id` and `client_secret` (an OAuth client of \
                 type \"TVs and Limited Input devices\")",
                answer.status
            )));
        }
        let device: DeviceAnswer = serde_json::from_slice(&answer.body)
            .map_err(|err| ProviderError::permanent(format!("{what}: unexpected answer: {err}")))?;
        let url = device
            .verification_url
            .or(device.verification_uri)
            .ok_or_else(|| {
                ProviderError::permanent(format!("{what}: the answer has no verification URL"))
            })?;
        let lifetime = Duration::from_secs(device.expires_in.unwrap_or(1800));
        let deadline = Instant::now() + lifetime;
        let mut interval = Duration::from_secs(device.interval.unwrap_or(5).max(1));
        prompt(&format!(
            "To let sealback keep backups in your Google Drive, open {url} in a browser and enter \
             the code {} (within {} minutes). Waiting...",
            device.user_code,
            lifetime.as_secs().div_ceil(60)
        ));

        let what = format!("waiting for the authorization at {}", oauth.token_uri);
        loop {
            wait(interval, cancelled).await?;
            if Instant::now() >= deadline {
                return Err(ProviderError::auth(format!(
                    "{what}: the code expired before it was entered: run `sealbackctl target auth` again"
                )));
            }
            let body = Zeroizing::new(http::form(&[
                ("grant_type", DEVICE_GRANT),
                ("device_code", &device.device_code),
                ("client_id", &oauth.client_id),
                ("client_secret", &oauth.client_secret),
            ]));
            let answer = match post_form(&oauth, &what, &oauth.token_uri, body).await {
                Ok(answer) => answer,
                // A network failure while the person types: poll again at the next interval.
                Err(err) if err.kind().is_transient() => continue,
                Err(err) => return Err(err),
            };
            let parsed: Option<TokenAnswer> = serde_json::from_slice(&answer.body).ok();
            let Some(parsed) = parsed else {
                if answer.status >= 500 {
                    continue;
                }
                return Err(ProviderError::permanent(format!(
                    "{what}: HTTP {}: not a token answer",
                    answer.status
                )));
            };
            match (answer.status, parsed.error.as_deref()) {
                (200, _) => {
                    let refresh = parsed.refresh_token.ok_or_else(|| {
                        ProviderError::permanent(format!(
                            "{what}: Google granted access but sent no refresh token"
                        ))
                    })?;
                    write_token_file(&oauth.refresh_token_file, &refresh)?;
                    self.host.log(
                        sealback_plugin_api::sdk::Level::Info,
                        &format!(
                            "authorized: refresh token written to {}",
                            oauth.refresh_token_file.display()
                        ),
                    );
                    if let Some(access) = parsed.access_token {
                        self.drive.tokens.set(access, parsed.expires_in).await;
                    }
                    return Ok(());
                }
                (_, Some("authorization_pending")) => {}
                (_, Some("slow_down")) => {
                    interval = parsed
                        .interval
                        .map(Duration::from_secs)
                        .unwrap_or(interval + Duration::from_secs(5));
                }
                (_, Some("access_denied")) => {
                    return Err(ProviderError::auth(format!(
                        "{what}: the person refused the access"
                    )));
                }
                (_, Some("expired_token")) => {
                    return Err(ProviderError::auth(format!(
                        "{what}: the code expired before it was entered: run `sealbackctl target auth` again"
                    )));
                }
                (status, error) if status >= 500 || status == 429 => {
                    let _ = error;
                }
                (status, error) => {
                    return Err(ProviderError::auth(format!(
                        "{what}: HTTP {status} {}: check `client_id` and `client_secret`",
                        error.unwrap_or("")
                    )));
                }
            }
        }
    }
}

/// Waits `interval`, or less if the host cancels.
async fn wait(interval: Duration, cancelled: &dyn Fn() -> bool) -> Result<(), ProviderError> {
    let until = Instant::now() + interval;
    loop {
        if cancelled() {
            return Err(ProviderError::transient(
                "the authorization was cancelled before it completed",
            ));
        }
        let now = Instant::now();
        if now >= until {
            return Ok(());
        }
        tokio::time::sleep((until - now).min(CANCEL_CHECK)).await;
    }
}

/// Writes the refresh token to `path`, mode 0600: a new file created exclusively (so no
/// symlink is followed and nobody else's file is written), synced, then renamed over `path`.
pub(crate) fn write_token_file(path: &Path, token: &str) -> Result<(), ProviderError> {
    let fail = |what: &str, err: std::io::Error| {
        ProviderError::permanent(format!(
            "`refresh_token_file` {}: {what}: {err}",
            path.display()
        ))
    };
    let dir = path.parent().ok_or_else(|| {
        fail(
            "no directory",
            std::io::Error::other("the path has no parent"),
        )
    })?;
    let file_name = path.file_name().ok_or_else(|| {
        fail(
            "no file name",
            std::io::Error::other("the path has no file name"),
        )
    })?;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let temp = dir.join(format!(
        ".{}.tmp-{}-{nanos}",
        file_name.to_string_lossy(),
        std::process::id()
    ));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&temp)
        .map_err(|err| fail(&format!("creating {}", temp.display()), err))?;
    let written = file
        .write_all(token.as_bytes())
        .and_then(|()| file.write_all(b"\n"))
        .and_then(|()| file.sync_all())
        .and_then(|()| std::fs::rename(&temp, path))
        .and_then(|()| std::fs::File::open(dir)?.sync_all());
    if let Err(err) = written {
        let _ = std::fs::remove_file(&temp);
        return Err(fail("writing it", err));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{MetadataExt, symlink};

    use super::*;

    #[test]
    fn token_file_is_private_and_replaces_a_symlink_instead_of_following_it() {
        let dir = tempfile::tempdir().expect("test setup");
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "keep").expect("test setup");
        let path = dir.path().join("drive.token");
        symlink(&victim, &path).expect("test setup");
        write_token_file(&path, "1//refresh").expect("test setup");
        assert_eq!(
            std::fs::read_to_string(&victim).expect("test setup"),
            "keep"
        );
        let meta = std::fs::symlink_metadata(&path).expect("test setup");
        assert!(meta.is_file());
        assert_eq!(meta.mode() & 0o777, 0o600);
        assert_eq!(
            std::fs::read_to_string(&path).expect("test setup"),
            "1//refresh\n"
        );
        write_token_file(&path, "1//second").expect("test setup");
        assert_eq!(
            std::fs::read_to_string(&path).expect("test setup"),
            "1//second\n"
        );
        assert_eq!(
            std::fs::read_dir(dir.path()).expect("test setup").count(),
            2,
            "no temporary file left"
        );
    }
}
