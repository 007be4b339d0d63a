//! The workspace's binaries (`palisade`, `palisadectl`, `palisade-demo`)
//! as a test, a bench or chaos-tests finds them: in the build directory of
//! the running executable.
//!
//! Cargo builds a package's own binaries before its integration tests and
//! benches, but not another package's: a test that runs one of those needs
//! it built first (`scripts/test` builds them), and fails saying so.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

/// `target/<profile>` of this build, where cargo puts the binaries: found
/// from the running executable (`target/debug/deps/x` for a test or a
/// bench, `target/debug/x` for a binary). When no `palisade` is there,
/// `$CARGO_TARGET_DIR/debug` if that has one.
pub fn build_dir() -> PathBuf {
    let mut dir = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("."));
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir.pop();
    }
    if dir.join("palisade").is_file() {
        return dir;
    }
    if let Ok(t) = std::env::var("CARGO_TARGET_DIR") {
        let d = PathBuf::from(t).join("debug");
        if d.join("palisade").is_file() {
            return d;
        }
    }
    dir
}

/// The binary `name` of the package of the same name, in [`build_dir`];
/// fails naming the command that builds it when it is not there.
pub fn binary(name: &str) -> Result<PathBuf> {
    let dir = build_dir();
    let path = dir.join(name);
    if !path.is_file() {
        bail!(
            "{} is missing: build it first with `{}` (`./scripts/test` does)",
            path.display(),
            build_command(&dir, &[name])
        );
    }
    Ok(path)
}

/// `cargo build [--release] -p P ...`: the command that builds `packages`
/// into `dir`, a `target/<profile>` directory (`--release` when its name
/// is `release`).
pub fn build_command(dir: &Path, packages: &[&str]) -> String {
    let mut cmd = String::from("cargo build");
    if dir.file_name().is_some_and(|n| n == "release") {
        cmd.push_str(" --release");
    }
    for p in packages {
        cmd.push_str(" -p ");
        cmd.push_str(p);
    }
    cmd
}
