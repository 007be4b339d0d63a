//! This site's own database, as its agent manages it: a thin adapter over
//! `palisade_actions::postgres::DatabaseControl` (PostgreSQL) or
//! `palisade_actions::mariadb::MariaSite` (a MariaDB master, [`MariaDb`])
//! that turns outcomes into the words recorded in the failover log.
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

use crate::config::{DatabaseConfig, ErrantTransactions};

mod mariadb;

pub use mariadb::MariaDb;

/// The local database of a site agent: PostgreSQL controlled through `D`,
/// or a MariaDB master.
pub struct SiteDb<D: DatabaseControl = PgSite> {
    engine: Engine<D>,
}

enum Engine<D> {
    Postgres(D),
    MariaDb(Box<MariaDb>),
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
    /// Manages the server described by `cfg`: PostgreSQL with its own
    /// tools, or a MariaDB master; `timeout` bounds each step.
    pub fn new(cfg: &DatabaseConfig, timeout: Duration) -> Self {
        if cfg.is_mariadb() {
            return Self {
                engine: Engine::MariaDb(Box::new(MariaDb::new(cfg, timeout))),
            };
        }
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
        Self {
            engine: Engine::Postgres(control),
        }
    }

    /// The MariaDB master, when this is one.
    pub fn mariadb(&self) -> Option<&MariaDb> {
        match &self.engine {
            Engine::MariaDb(m) => Some(m),
            Engine::Postgres(_) => None,
        }
    }

    /// Whether the server's main process (the postmaster, `mariadbd`) runs.
    pub async fn is_running(&self) -> Result<bool, String> {
        match &self.engine {
            Engine::Postgres(c) => c.is_running().await.map_err(|e| e.to_string()),
            Engine::MariaDb(m) => Ok(m.is_running()),
        }
    }

    /// Whether any process of the server runs (cheap: no command, no
    /// connection; both read `/proc`).
    pub fn has_processes(&self) -> bool {
        match &self.engine {
            Engine::Postgres(c) => c.has_server_processes(),
            Engine::MariaDb(m) => m.is_running(),
        }
    }

    /// Stops the server and confirms it cannot take writes. `urgent`: the
    /// lease is gone; kill it at once rather than shut it down politely.
    pub async fn fence(&self, epoch: u64, urgent: bool) -> Result<String, String> {
        let control = match &self.engine {
            Engine::Postgres(c) => c,
            Engine::MariaDb(m) => return m.fence(epoch, urgent).await,
        };
        let outcome = if urgent {
            control.fence_urgently(epoch).await
        } else {
            control.fence(epoch).await
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
        let control = match &self.engine {
            Engine::Postgres(c) => c,
            Engine::MariaDb(m) => return m.fence_for_handover(epoch).await,
        };
        let h = control
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
        let Engine::Postgres(control) = &self.engine else {
            return Err("a MariaDB master rejoins through SiteDb::rejoin_mariadb".into());
        };
        let o = control
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
        let control = match &self.engine {
            Engine::Postgres(c) => c,
            Engine::MariaDb(m) => return m.start(epoch).await,
        };
        match control.start(epoch).await {
            Ok(StartOutcome::AlreadyRunning) => Ok("already running".into()),
            Ok(StartOutcome::Started { elapsed }) => {
                Ok(format!("started in {} ms", elapsed.as_millis()))
            }
            Err(e) => Err(e.to_string()),
        }
    }

    /// Promotes the standby; it checks it is writable and records the epoch.
    /// `planned`: a handover (a MariaDB survivor then keeps replicating
    /// from the old writer, which stays up read-only).
    pub async fn promote(&self, epoch: u64, planned: bool) -> Result<String, String> {
        let control = match &self.engine {
            Engine::Postgres(c) => c,
            Engine::MariaDb(m) => return m.make_writable(epoch, !planned).await,
        };
        let o = control.promote(epoch).await.map_err(|e| e.to_string())?;
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
        let Engine::Postgres(control) = &self.engine else {
            return Err(
                "a MariaDB writer's sync mode is semi-sync (MariaDb::set_semi_sync)".into(),
            );
        };
        control
            .set_synchronous(epoch, names)
            .await
            .map(|o| o.changed)
            .map_err(|e| e.to_string())
    }
}

impl<D: DatabaseControl> SiteDb<D> {
    /// MariaDB: the old writer's return (see [`MariaDb`]'s rejoin); `peer`
    /// is the new writer's database.
    pub async fn rejoin_mariadb(
        &self,
        epoch: u64,
        peer: &DatabaseConfig,
        errant: ErrantTransactions,
    ) -> Result<String, String> {
        match &self.engine {
            Engine::MariaDb(m) => m.rejoin(epoch, peer, errant).await,
            Engine::Postgres(_) => Err("not a MariaDB master".into()),
        }
    }
}
