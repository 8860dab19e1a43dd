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

/// Writes into `dir`: `man/NAME.SECTION` (and `man/NAME-SUB.SECTION` for each subcommand),
/// `completions/NAME.bash`, `completions/_NAME`
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
    // Without the `help` subcommand, which needs no page of its own (clap_mangen's
    // generate_to does the same); the completions keep it.
    let mut pages = command.clone().disable_help_subcommand(true);
    pages.build();
    command.build();
    let mut files = Vec::new();
    write_pages(&pages, section, &man_dir, &mut files)?;
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

/// Writes `command`'s page and one per subcommand, recursively (`NAME-SUB.SECTION`, the
/// names the top page's SUBCOMMANDS section refers to): the top page lists the subcommands
/// without their options, which only their own pages show.
fn write_pages(
    command: &clap::Command,
    section: &str,
    dir: &Path,
    files: &mut Vec<PathBuf>,
) -> std::io::Result<()> {
    let man = clap_mangen::Man::new(command.clone()).section(section);
    let page = dir.join(man.get_filename());
    let mut text = Vec::new();
    man.render(&mut text)?;
    std::fs::write(&page, text)?;
    files.push(page);
    for sub in command.get_subcommands().filter(|s| !s.is_hide_set()) {
        write_pages(sub, section, dir, files)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_subcommand_has_a_page_with_its_options_and_the_top_page_names_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let command = clap::Command::new("demo").subcommand(
            clap::Command::new("restore")
                .about("Restores a snapshot")
                .arg(clap::Arg::new("to").long("to"))
                .subcommand(clap::Command::new("files").arg(clap::Arg::new("glob").long("glob"))),
        );
        let files = generate(command, "1", dir.path()).expect("generate");
        let man = dir.path().join("man");
        let names: Vec<_> = files.iter().filter(|f| f.starts_with(&man)).collect();
        assert_eq!(
            names,
            [
                &man.join("demo.1"),
                &man.join("demo-restore.1"),
                &man.join("demo-restore-files.1")
            ],
            "no page for `help`, one for each other subcommand"
        );
        let top = std::fs::read_to_string(man.join("demo.1")).expect("top page");
        assert!(top.contains("demo\\-restore(1)"), "{top}");
        let restore = std::fs::read_to_string(man.join("demo-restore.1")).expect("page");
        assert!(restore.contains(".TH demo-restore 1"), "{restore}");
        assert!(restore.contains("\\-\\-to"), "{restore}");
        let nested = std::fs::read_to_string(man.join("demo-restore-files.1")).expect("page");
        assert!(nested.contains("\\-\\-glob"), "{nested}");
    }

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
