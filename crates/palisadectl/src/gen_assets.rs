//! `generate-assets DIR` (a hidden subcommand): this binary's man pages and
//! shell completions, generated from its clap definition, so that they never
//! drift from `--help`. The Debian package's build runs it into
//! `target/deb-assets/` before `cargo deb`, whose assets list that
//! directory (`.ci/deb-test`; docs/deployment.md, "Installing from the Debian
//! package").

use std::fs;
use std::path::Path;

use clap_complete::Shell;

/// Writes `DIR/man/<bin>.1` and one page per visible subcommand
/// (`<bin>-<sub>.1`, nested ones too), and `DIR/completions/<bin>.bash`,
/// `_<bin>` (zsh) and `<bin>.fish`. Fails with a message naming the path.
pub fn generate(cmd: clap::Command, dir: &Path) -> Result<(), String> {
    let name = cmd.get_name().to_owned();
    let man = dir.join("man");
    let completions = dir.join("completions");
    for d in [&man, &completions] {
        fs::create_dir_all(d).map_err(|e| format!("creating {}: {e}", d.display()))?;
    }
    clap_mangen::generate_to(cmd.clone(), &man)
        .map_err(|e| format!("writing the man pages into {}: {e}", man.display()))?;
    let mut cmd = cmd;
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        clap_complete::generate_to(shell, &mut cmd, &name, &completions).map_err(|e| {
            format!(
                "writing the {shell} completions into {}: {e}",
                completions.display()
            )
        })?;
    }
    Ok(())
}
