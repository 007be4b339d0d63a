//! The demo's PostgreSQL side: finding (or installing) the server binaries,
//! and describing the test kit's pair to the witnesses as `[[database]]`
//! sections.

use std::path::PathBuf;
use std::process::Stdio;

use anyhow::{bail, Context};
use palisade_testkit::pg::{pg_bin_dir, PgPair};
use tokio::process::Command;

use crate::report::Progress;
use crate::Replication;

/// The Debian package the demo needs, and the command that installs it.
const INSTALL: &str = "apt-get install -y postgresql-15";

/// The directory of `initdb`, `pg_ctl`, `postgres` and `pg_basebackup`.
/// When they are missing: as root, installs Debian's `postgresql-15` (after
/// an `apt-get update` if the first try fails); otherwise fails with the
/// command to run.
pub async fn ensure_binaries(p: &Progress) -> anyhow::Result<PathBuf> {
    if let Some(dir) = pg_bin_dir() {
        return Ok(dir);
    }
    if !nix::unistd::geteuid().is_root() {
        bail!(
            "the PostgreSQL server binaries (initdb, pg_ctl, postgres, pg_basebackup) are neither on PATH nor under /usr/lib/postgresql/*/bin; install them with `sudo {INSTALL}` and run the demo again"
        );
    }
    p.step(format!(
        "PostgreSQL is not installed; running `{INSTALL}` (as root)"
    ));
    apt_install(p, "postgresql-15").await?;
    pg_bin_dir().context(
        "postgresql-15 is installed, yet no server binaries were found on PATH or under /usr/lib/postgresql/*/bin",
    )
}

/// `apt-get install -y PACKAGE`; when that fails, `apt-get update` and
/// the install again. Output goes to stderr (stdout is reserved for the
/// JSON report).
pub(crate) async fn apt_install(p: &Progress, package: &str) -> anyhow::Result<()> {
    if apt(&["install", "-y", package]).await? {
        return Ok(());
    }
    p.step("the install failed; running `apt-get update`, then installing again");
    if !apt(&["update"]).await? {
        bail!("`apt-get update` failed (its output is above)");
    }
    if !apt(&["install", "-y", package]).await? {
        bail!("`apt-get install -y {package}` failed (its output is above)");
    }
    Ok(())
}

/// Runs `apt-get ARGS` non-interactively with its output on stderr (stdout
/// is reserved for the JSON report); true when it succeeded.
async fn apt(args: &[&str]) -> anyhow::Result<bool> {
    let status = Command::new("apt-get")
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdin(Stdio::null())
        .stdout(std::io::stderr())
        .status()
        .await
        .with_context(|| format!("running apt-get {}", args.join(" ")))?;
    Ok(status.success())
}

/// The `[failover]` and `[[database]]` TOML for `pair`: site a's server is
/// the primary, site b's the standby (the test kit's sections, as the
/// end-to-end tests hand a pair to their witnesses). Each names its
/// `replication_conninfo`, so that an old primary rejoins as the new
/// primary's standby on its own (`rejoin = "automatic"`, the default):
/// after the demo's failover, and after every switchover and failback tried
/// on the playground.
///
/// `[failover]` sets only the replication mode; everything else keeps the
/// documented defaults, so the demo shows what a default install does. The
/// test kit's servers use 5 s for both `wal_sender_timeout` and
/// `wal_receiver_timeout`: equal, and longer than the default
/// `sync_degrade_after_ms` (3 s), as docs/operations.md asks, so a sync
/// demo degrades on evidence before either server drops the connection.
pub fn database_sections(pair: &PgPair, mode: Replication) -> String {
    format!(
        "[failover]\nreplication = \"{}\"\n\n{}",
        mode.as_str(),
        palisade_testkit::cluster::database_sections(pair, true)
    )
}
