//! Which plugin files the daemon loads: a plugin runs inside a process that holds the backup
//! key, so loading a file is trusting whoever can write it. Only files that nobody but root
//! (or the daemon's own user) can change are loaded: the file itself, and every directory on
//! the way to it, must be owned by root or the daemon's user and writable by nobody else.
//! A sticky directory writable by all (`/tmp`) is allowed on the way, since nobody can
//! replace an entry there that they do not own.

use std::os::unix::fs::MetadataExt as _;
use std::path::Path;

/// Checks that `path` (a plugin file) can be changed only by root or this process's user.
pub fn check(path: &Path) -> Result<(), String> {
    let real = path
        .canonicalize()
        .map_err(|e| format!("cannot resolve plugin {}: {e}", path.display()))?;
    let euid = nix::unistd::geteuid().as_raw();
    let file = std::fs::metadata(&real)
        .map_err(|e| format!("cannot read plugin {}: {e}", real.display()))?;
    if !file.is_file() {
        return Err(format!("plugin {} is not a regular file", real.display()));
    }
    refuse_if_open(&real, &file, euid, false, path)?;
    for dir in real.ancestors().skip(1) {
        let meta = std::fs::metadata(dir).map_err(|e| {
            format!(
                "cannot read {} (on the way to plugin {}): {e}",
                dir.display(),
                path.display()
            )
        })?;
        refuse_if_open(dir, &meta, euid, true, path)?;
    }
    Ok(())
}

/// Refuses `at` if someone other than root or `euid` owns it or may write to it.
fn refuse_if_open(
    at: &Path,
    meta: &std::fs::Metadata,
    euid: u32,
    is_dir: bool,
    plugin: &Path,
) -> Result<(), String> {
    let what = if is_dir {
        format!(
            "the directory {} (on the way to plugin {})",
            at.display(),
            plugin.display()
        )
    } else {
        format!("plugin {}", at.display())
    };
    if meta.uid() != 0 && meta.uid() != euid {
        return Err(format!(
            "refusing to load {what}: it is owned by uid {}, not by root or the daemon's user \
             (uid {euid}), and whoever can change a plugin can read the backup key; install \
             plugins as root (e.g. in /usr/lib/sealback/plugins)",
            meta.uid()
        ));
    }
    let sticky = is_dir && meta.mode() & 0o1000 != 0 && meta.mode() & 0o002 != 0;
    if meta.mode() & 0o022 != 0 && !sticky {
        return Err(format!(
            "refusing to load {what}: its mode {:o} lets others than its owner write to it, \
             and whoever can change a plugin can read the backup key; run `chmod go-w {}`",
            meta.mode() & 0o7777,
            at.display()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    fn chmod(path: &Path, mode: u32) {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
    }

    /// A plugin file in a private directory of its own.
    fn plugin() -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().expect("tempdir");
        chmod(dir.path(), 0o755);
        let file = dir.path().join("libsealback_x.so");
        std::fs::write(&file, b"not really").expect("write");
        chmod(&file, 0o755);
        (dir, file)
    }

    #[test]
    fn a_plugin_only_its_owner_can_change_is_loaded() {
        let (_dir, file) = plugin();
        check(&file).expect("trusted");
    }

    #[test]
    fn a_plugin_others_can_write_is_refused() {
        let (_dir, file) = plugin();
        for mode in [0o775, 0o757, 0o777] {
            chmod(&file, mode);
            let err = check(&file).expect_err("writable by others");
            assert!(
                err.contains(&format!("its mode {mode:o} lets others")),
                "{err}"
            );
            assert!(err.contains("chmod go-w"), "{err}");
        }
    }

    #[test]
    fn a_plugin_in_a_directory_others_can_write_is_refused() {
        let (dir, file) = plugin();
        chmod(dir.path(), 0o777);
        let err = check(&file).expect_err("directory writable by others");
        assert!(
            err.contains(&format!("the directory {}", dir.path().display())),
            "{err}"
        );
        // Sticky, like /tmp: nobody can replace what they do not own.
        chmod(dir.path(), 0o1777);
        check(&file).expect("a sticky directory is fine");
    }

    #[test]
    fn a_plugin_reached_through_a_link_is_judged_where_it_lives() {
        let (dir, file) = plugin();
        let open = tempfile::tempdir().expect("tempdir");
        chmod(open.path(), 0o777);
        let moved = open.path().join("real.so");
        std::fs::rename(&file, &moved).expect("move");
        std::os::unix::fs::symlink(&moved, &file).expect("link");
        let err = check(&file).expect_err("the real file's directory is open");
        assert!(err.contains(&open.path().display().to_string()), "{err}");
        drop(dir);
    }

    #[test]
    fn a_plugin_owned_by_another_user_is_refused() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: changing a file's owner needs root");
            return;
        }
        let (_dir, file) = plugin();
        nix::unistd::chown(&file, Some(nix::unistd::Uid::from_raw(65534)), None).expect("chown");
        let err = check(&file).expect_err("owned by nobody");
        assert!(err.contains("owned by uid 65534"), "{err}");
    }
}
