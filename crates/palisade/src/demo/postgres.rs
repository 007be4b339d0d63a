//! The demo's PostgreSQL side: finding (or installing) the server binaries,
//! and describing the test kit's pair to the witnesses as `[[database]]`
//! sections.

use std::path::PathBuf;
use std::process::Stdio;

use anyhow::{bail, Context};
use palisade_testkit::pg::{pg_bin_dir, PgPair, PgServer};
use serde::Serialize;
use tokio::process::Command;

use super::report::Progress;
use super::Replication;

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
    if !apt(&["install", "-y", "postgresql-15"]).await? {
        p.step("the install failed; running `apt-get update`, then installing again");
        if !apt(&["update"]).await? {
            bail!("`apt-get update` failed (its output is above)");
        }
        if !apt(&["install", "-y", "postgresql-15"]).await? {
            bail!("`{INSTALL}` failed (its output is above)");
        }
    }
    pg_bin_dir().context(
        "postgresql-15 is installed, yet no server binaries were found on PATH or under /usr/lib/postgresql/*/bin",
    )
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

/// The sections appended to every witness's config.
#[derive(Serialize)]
struct Sections {
    failover: Failover,
    database: Vec<Database>,
}

/// `[failover]`: only the replication mode; everything else keeps the
/// documented defaults, so the demo shows what a default install does. The
/// test kit's servers use 5 s for both `wal_sender_timeout` and
/// `wal_receiver_timeout`: equal, and longer than the default
/// `sync_degrade_after_ms` (3 s), as docs/operations.md asks, so a sync
/// demo degrades on evidence before either server drops the connection.
#[derive(Serialize)]
struct Failover {
    replication: &'static str,
}

/// One `[[database]]` (docs/configuration.md).
#[derive(Serialize)]
struct Database {
    site: &'static str,
    role: &'static str,
    dsn: String,
    data_dir: PathBuf,
    bin_dir: PathBuf,
    log_file: PathBuf,
    /// The name this server streams under as a standby: what
    /// `synchronous_standby_names` must name in `sync` mode. The test kit
    /// names the servers `primary` and `standby`.
    application_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    os_user: Option<String>,
}

impl Database {
    fn of(site: &'static str, role: &'static str, s: &PgServer) -> Database {
        Database {
            site,
            role,
            dsn: s.dsn(),
            data_dir: s.data_dir().to_path_buf(),
            bin_dir: s.bin_dir().to_path_buf(),
            log_file: s.log_file().to_path_buf(),
            application_name: s.name().to_string(),
            os_user: s.os_user().map(str::to_string),
        }
    }
}

/// The `[failover]` and `[[database]]` TOML for `pair`: site a's server is
/// the primary, site b's the standby.
pub fn database_sections(pair: &PgPair, mode: Replication) -> anyhow::Result<String> {
    let sections = Sections {
        failover: Failover {
            replication: mode.as_str(),
        },
        database: vec![
            Database::of("a", "primary", &pair.primary),
            Database::of("b", "standby", &pair.standby),
        ],
    };
    toml::to_string(&sections).context("writing the [[database]] sections")
}
