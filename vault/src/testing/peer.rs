//! Several instances of one vault: each with its own SoftHSM2 token, into which the key
//! ceremony installs the first instance's keys, all on the first instance's store.

use std::fs;

use super::{TestVault, stdout};

/// What a ceremony step printed as `NAME = "VALUE"`.
fn printed(output: &std::process::Output, name: &str) -> Result<String, String> {
    let prefix = format!("{name} = \"");
    stdout(output)
        .lines()
        .find_map(|line| {
            line.strip_prefix(&prefix)?
                .strip_suffix('"')
                .map(str::to_owned)
        })
        .ok_or_else(|| format!("no {name} printed: {}", stdout(output)))
}

impl TestVault {
    /// Another instance of this vault (started with `transportable_keys`): a token of its
    /// own, into which [`TestVault::receive_keys`] installs this vault's keys, this vault's
    /// store, a certificate from this vault's CA, and the same options. Serving.
    pub fn start_peer(&self) -> Result<TestVault, String> {
        let mut peer = self.new_peer()?;
        peer.receive_keys(self)?;
        peer.server_key = self.server_key.clone();
        peer.serve_on_new_port()?;
        Ok(peer)
    }

    /// [`TestVault::start_peer`] without the keys, and not serving: for tests of the
    /// ceremony itself.
    pub fn new_peer(&self) -> Result<TestVault, String> {
        let mut peer = TestVault::prepare(&self.binary, self.options.clone())?;
        peer.store = self.store_path();
        let tls = peer.dir().join("tls");
        fs::create_dir(&tls).map_err(|err| format!("tls/: {err}"))?;
        self.issue_certificate(&tls)?;
        fs::copy(self.ca_cert(), peer.ca_cert()).map_err(|err| format!("ca.pem: {err}"))?;
        peer.write_config("127.0.0.1:0")?;
        Ok(peer)
    }

    /// The key ceremony, from `source`'s token into this vault's: `transport-key` here,
    /// `wrap` there (with its SO PIN), `unwrap` here. The check value both sides printed.
    pub fn receive_keys(&self, source: &TestVault) -> Result<String, String> {
        let wrapped = self.wrapped_keys_from(source)?;
        let path = wrapped.0.to_string_lossy().into_owned();
        let output = self.run(&["key", "ceremony", "unwrap", &path, "--check", &wrapped.1])?;
        let check = printed(&output, "check")?;
        if check != wrapped.1 {
            return Err(format!(
                "unwrap printed check {check}, wrap printed {}",
                wrapped.1
            ));
        }
        Ok(check)
    }

    /// The first two steps of [`TestVault::receive_keys`]: the file of `source`'s keys
    /// wrapped for this vault's new transport key, and the check value `wrap` printed.
    pub fn wrapped_keys_from(
        &self,
        source: &TestVault,
    ) -> Result<(std::path::PathBuf, String), String> {
        let transport = self.dir().join("transport-key.json");
        let wrapped = self.dir().join("wrapped-keys.json");
        let path = |p: &std::path::Path| p.to_string_lossy().into_owned();
        let output = self.run(&[
            "key",
            "ceremony",
            "transport-key",
            "--out",
            &path(&transport),
        ])?;
        let fingerprint = printed(&output, "fingerprint")?;
        let so_pin = path(&source.dir().join("so-pin"));
        let output = source.run(&[
            "key",
            "ceremony",
            "wrap",
            "--for",
            &path(&transport),
            "--fingerprint",
            &fingerprint,
            "--so-pin-file",
            &so_pin,
            "--out",
            &path(&wrapped),
        ])?;
        Ok((wrapped, printed(&output, "check")?))
    }
}
