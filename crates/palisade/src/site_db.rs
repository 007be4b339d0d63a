//! This site's own database, as its agent manages it: a thin adapter over
//! `palisade_actions::postgres::DatabaseControl` that turns outcomes into
//! the words recorded in the failover log.
//!
//! It is generic over the trait, defaulting to PostgreSQL managed with its
//! own tools (`PgSite`), so that the agent runtime can run against an
//! in-memory fake database in its tests, and so that another manager
//! (systemd units, a cloud API) can stand in for `pg_ctl` by implementing
//! the trait.

use std::time::Duration;

use palisade_actions::postgres::{
    DatabaseControl, FenceOutcome, FinalPosition, PgSite, StartOutcome,
};
use palisade_core::observe::format_lsn;
use palisade_core::ConnString;

use crate::config::DatabaseConfig;

/// The local database of a site agent, controlled through `D`.
pub struct SiteDb<D: DatabaseControl = PgSite> {
    control: D,
}

fn fenced(o: &FenceOutcome) -> String {
    match o {
        FenceOutcome::AlreadyStopped { elapsed } => {
            format!("already stopped (confirmed in {} ms)", elapsed.as_millis())
        }
        FenceOutcome::ShutDown { mode, elapsed } => {
            format!("stopped ({mode:?} shutdown) in {} ms", elapsed.as_millis()).to_lowercase()
        }
        FenceOutcome::Killed { pids, elapsed } => {
            format!("killed pids {pids:?} in {} ms", elapsed.as_millis())
        }
    }
}

impl SiteDb<PgSite> {
    /// Manages the PostgreSQL server described by `cfg` with its own tools;
    /// `timeout` bounds each step.
    pub fn new(cfg: &DatabaseConfig, timeout: Duration) -> Self {
        let site = PgSite {
            bin_dir: cfg.bin_dir.clone(),
            data_dir: cfg.data_dir.clone(),
            os_user: cfg.os_user.clone(),
            admin_dsn: cfg.admin_dsn.text().to_owned(),
            admin_password: cfg.admin_dsn.password().cloned(),
            timeout,
            transfer_timeout: Duration::from_secs(3600),
            log_file: Some(cfg.log_file.clone()),
        };
        Self::with_control(site)
    }
}

impl<D: DatabaseControl> SiteDb<D> {
    /// Manages the database that `control` controls.
    pub fn with_control(control: D) -> Self {
        Self { control }
    }

    /// Whether the server's main process (the postmaster) runs.
    pub async fn is_running(&self) -> Result<bool, String> {
        self.control.is_running().await.map_err(|e| e.to_string())
    }

    /// Whether any process of the server runs (cheap: no command, no
    /// connection; `PgSite` reads `/proc`).
    pub fn has_processes(&self) -> bool {
        self.control.has_server_processes()
    }

    /// Stops the server and confirms it cannot take writes. `urgent`: the
    /// lease is gone; kill it at once rather than shut it down politely.
    pub async fn fence(&self, epoch: u64, urgent: bool) -> Result<String, String> {
        let outcome = if urgent {
            self.control.fence_urgently(epoch).await
        } else {
            self.control.fence(epoch).await
        };
        outcome.map(|o| fenced(&o)).map_err(|e| e.to_string())
    }

    /// The fence of a planned handover: a clean fast shutdown (the WAL
    /// senders ship everything, the final checkpoint included, before the
    /// server exits), then where its WAL ends (for PostgreSQL, the final
    /// checkpoint's position from the control file). `None` when the server did not shut down cleanly (it had to be
    /// killed, or was already down after a crash): then where its WAL ends
    /// is unknown here and no catch-up can be proven.
    pub async fn fence_for_handover(&self, epoch: u64) -> Result<(String, Option<u64>), String> {
        let h = self
            .control
            .fence_for_handover(epoch)
            .await
            .map_err(|e| e.to_string())?;
        let detail = fenced(&h.outcome);
        let lsn = h.final_position.lsn();
        let detail = match &h.final_position {
            FinalPosition::Known { lsn } => {
                format!("{detail}; final checkpoint at {}", format_lsn(*lsn))
            }
            FinalPosition::Unclean => {
                format!("{detail}; NOT shut down cleanly: its final WAL position is unknown")
            }
            FinalPosition::Unreadable { reason } => {
                format!("{detail}; control file unreadable ({reason}): final WAL position unknown")
            }
        };
        Ok((detail, lsn))
    }

    /// Rebuilds this (fenced, former primary) server as a standby of the
    /// server at `upstream_conninfo`: `pg_rewind`, else a fresh base backup;
    /// then starts it and waits until it streams, as `application_name`.
    /// The conninfo's password (held apart) goes back into it only here,
    /// where `primary_conninfo` is written.
    pub async fn rejoin(
        &self,
        epoch: u64,
        upstream_conninfo: impl Into<ConnString>,
        application_name: &str,
    ) -> Result<String, String> {
        let upstream: ConnString = upstream_conninfo.into();
        // The name it streams under must be its own (sync mode names it in
        // synchronous_standby_names; the leader recognises the rejoin by
        // it), whatever the shared conninfo says.
        let mut conninfo: Vec<&str> = upstream
            .text()
            .split_whitespace()
            .filter(|kv| !kv.starts_with("application_name="))
            .collect();
        let name = format!("application_name={application_name}");
        conninfo.push(&name);
        let conninfo = upstream.with_text(conninfo.join(" ")).libpq();
        let o = self
            .control
            .rejoin_as_standby(epoch, conninfo.expose())
            .await
            .map_err(|e| e.to_string())?;
        use palisade_actions::postgres::RejoinMethod;
        let how = match o.method {
            RejoinMethod::AlreadyStreaming => "nothing to do (already streaming)",
            RejoinMethod::NoRewindNeeded => "pg_rewind (nothing to undo)",
            RejoinMethod::Rewind => "pg_rewind",
            RejoinMethod::BaseBackup => "pg_basebackup",
        };
        let mut detail = format!("rejoined by {how} in {} ms", o.elapsed.as_millis());
        if let Some(why) = &o.rewind_failure {
            detail.push_str(&format!(" (pg_rewind failed: {why})"));
        }
        Ok(detail)
    }

    /// Starts the server in the role its data directory says.
    pub async fn start(&self, epoch: u64) -> Result<String, String> {
        match self.control.start(epoch).await {
            Ok(StartOutcome::AlreadyRunning) => Ok("already running".into()),
            Ok(StartOutcome::Started { elapsed }) => {
                Ok(format!("started in {} ms", elapsed.as_millis()))
            }
            Err(e) => Err(e.to_string()),
        }
    }

    /// Promotes the standby; it checks it is writable and records the epoch.
    pub async fn promote(&self, epoch: u64) -> Result<String, String> {
        let o = self
            .control
            .promote(epoch)
            .await
            .map_err(|e| e.to_string())?;
        Ok(format!(
            "{} at {} on timeline {} (out of recovery in {} ms, test write done in {} ms)",
            if o.already_primary {
                "already promoted"
            } else {
                "promoted"
            },
            format_lsn(o.lsn),
            o.timeline,
            o.promoted_in.as_millis(),
            o.elapsed.as_millis()
        ))
    }

    /// Sets or clears `synchronous_standby_names`; true when it changed.
    pub async fn set_synchronous(&self, epoch: u64, names: Option<&str>) -> Result<bool, String> {
        self.control
            .set_synchronous(epoch, names)
            .await
            .map(|o| o.changed)
            .map_err(|e| e.to_string())
    }
}
