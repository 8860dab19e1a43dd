//! Man pages (clap_mangen) and shell completions (clap_complete) generated from a program's
//! own command-line definition, so they cannot drift from it. The Debian package's build
//! (scripts/deb) runs each program with `SEALBACK_GENERATE_DOCS=DIR` set; nothing else sets
//! that variable.

use std::path::{Path, PathBuf};

use clap_complete::Shell;

/// The variable that asks a program to write its documentation instead of running.
pub const GENERATE_VAR: &str = "SEALBACK_GENERATE_DOCS";

/// If `SEALBACK_GENERATE_DOCS` names a directory, writes `command`'s man page (section
/// `section`) and its bash, zsh and fish completions there, then exits: 0 on success, 1 with
/// the error on stderr.
pub fn generate_if_asked(command: impl FnOnce() -> clap::Command, section: &str) {
    let Some(dir) = std::env::var_os(GENERATE_VAR) else {
        return;
    };
    let command = command();
    let name = command.get_name().to_owned();
    match generate(command, section, Path::new(&dir)) {
        Ok(files) => {
            for file in files {
                println!("{}", file.display());
            }
            std::process::exit(0);
        }
        Err(err) => {
            eprintln!(
                "{name}: cannot write its documentation to {}: {err}",
                Path::new(&dir).display()
            );
            std::process::exit(1);
        }
    }
}

/// Writes into `dir`: `man/NAME.SECTION`, `completions/NAME.bash`, `completions/_NAME`
/// (zsh) and `completions/NAME.fish`. Returns the files written.
pub fn generate(
    mut command: clap::Command,
    section: &str,
    dir: &Path,
) -> std::io::Result<Vec<PathBuf>> {
    let name = command.get_name().to_owned();
    let (man_dir, completions) = (dir.join("man"), dir.join("completions"));
    std::fs::create_dir_all(&man_dir)?;
    std::fs::create_dir_all(&completions)?;
    command.build();
    let page = man_dir.join(format!("{name}.{section}"));
    let mut text = Vec::new();
    clap_mangen::Man::new(command.clone())
        .section(section)
        .render(&mut text)?;
    std::fs::write(&page, text)?;
    let mut files = vec![page];
    for (shell, file) in [
        (Shell::Bash, format!("{name}.bash")),
        (Shell::Zsh, format!("_{name}")),
        (Shell::Fish, format!("{name}.fish")),
    ] {
        let mut text = Vec::new();
        clap_complete::generate(shell, &mut command, &name, &mut text);
        let path = completions.join(file);
        std::fs::write(&path, text)?;
        files.push(path);
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_a_man_page_and_three_completions_naming_the_options() {
        let dir = tempfile::tempdir().expect("tempdir");
        let command = clap::Command::new("demo")
            .about("A demo")
            .arg(clap::Arg::new("config").long("config"));
        let files = generate(command, "8", dir.path()).expect("generate");
        assert_eq!(files.len(), 4);
        let page = std::fs::read_to_string(dir.path().join("man/demo.8")).expect("man page");
        assert!(page.contains(".TH demo 8"), "{page}");
        assert!(page.contains("config"), "{page}");
        for file in ["demo.bash", "_demo", "demo.fish"] {
            let text = std::fs::read_to_string(dir.path().join("completions").join(file))
                .expect("completion");
            assert!(text.contains("config"), "{file}: {text}");
        }
    }
}
