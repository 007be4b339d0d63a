//! A MariaDB master of the guide's master-master pair, as its site agent
//! manages it (`palisade_actions::mariadb::MariaSite`), with outcomes
//! turned into the words recorded in the failover log.
//!
//! How the PostgreSQL words map (see docs/mariadb.md):
//!
//! * "running": `mariadbd` lives (its pid file names it);
//! * the fence of a failover, and every fence once the lease is gone: the
//!   hard fence (SIGKILL, then its address confirmed refusing). A server
//!   that takes no lease cannot be trusted to stay read-only;
//! * the fence of a planned handover: the soft fence (`read_only = ON`,
//!   every client session killed, both confirmed), then where the fenced
//!   writer's binary log ends; it keeps running, read-only, and keeps
//!   replicating, so the new writer receives the rest;
//! * "start" (only ever for the leased writer): start it `--read-only`,
//!   then make it writable under its epoch;
//! * "promote": make the survivor writable only with proof that it applied
//!   everything it received; after an unplanned failover its replication
//!   from the old writer is stopped, so that the old writer's errant
//!   transactions cannot flow in when it returns;
//! * "rejoin": the old writer comes back `--read-only`; its errant
//!   transactions are counted against the new writer and refused unless
//!   the config allows them; then it replicates from the new writer.

use std::time::Duration;

use palisade_actions::mariadb::{
    ErrantPolicy, FenceWritesOutcome, HardFenceOutcome, MariaSite, PeerAccess, PromotionRequest,
    StartOutcome,
};
use palisade_core::master_master::detector_view::binlog_position;

use crate::config::{DatabaseConfig, ErrantTransactions};

/// `rpl_semi_sync_master_timeout` left behind when a promotion switches
/// semi-sync off (the agent sets its own when it switches it on again).
const SEMI_SYNC_OFF_TIMEOUT_MS: u64 = 10_000;

/// One MariaDB master and what its agent needs to manage it.
pub struct MariaDb {
    site: MariaSite,
}

fn hard(o: &HardFenceOutcome) -> String {
    match o {
        HardFenceOutcome::AlreadyStopped { elapsed } => {
            format!("already stopped (confirmed in {} ms)", elapsed.as_millis())
        }
        HardFenceOutcome::Killed { pid, elapsed } => {
            format!("killed mariadbd pid {pid} in {} ms", elapsed.as_millis())
        }
    }
}

fn soft(o: &FenceWritesOutcome) -> String {
    let mut s = format!(
        "read_only ON{} and {} client session(s) killed in {} ms",
        if o.was_read_only { " (already)" } else { "" },
        o.sessions_killed,
        o.elapsed.as_millis()
    );
    if !o.bypassing_accounts.is_empty() {
        let names: Vec<&str> = o
            .bypassing_accounts
            .iter()
            .map(|a| a.grantee.as_str())
            .collect();
        s.push_str(&format!(
            "; accounts that can write through read_only: {}",
            names.join(", ")
        ));
    }
    s
}

impl MariaDb {
    /// The master `cfg` describes; `timeout` bounds each step.
    pub fn new(cfg: &DatabaseConfig, timeout: Duration) -> Self {
        let files = cfg
            .mariadb
            .as_ref()
            .expect("MariaDb::new is for engine = \"mariadb\"");
        Self {
            site: MariaSite {
                admin_dsn: cfg.admin_dsn.text().to_owned(),
                admin_password: cfg.admin_dsn.password().cloned(),
                mariadbd: files.mariadbd.clone(),
                defaults_file: files.defaults_file.clone(),
                pid_file: files.pid_file.clone(),
                os_user: cfg.os_user.clone(),
                timeout,
                log_file: Some(cfg.log_file.clone()),
            },
        }
    }

    pub fn is_running(&self) -> bool {
        self.site.is_running()
    }

    pub async fn fence(&self, epoch: u64, urgent: bool) -> Result<String, String> {
        if !urgent {
            match self.site.fence_writes(epoch).await {
                Ok(o) => return Ok(soft(&o)),
                Err(e) => {
                    tracing::warn!(error = %e, "soft fence not confirmed; killing the server")
                }
            }
        }
        self.site
            .fence_hard(epoch)
            .await
            .map(|o| hard(&o))
            .map_err(|e| e.to_string())
    }

    /// The soft fence, then the fenced writer's final binary log position
    /// (as a position the detector compares: see `binlog_position`).
    pub async fn fence_for_handover(&self, epoch: u64) -> Result<(String, Option<u64>), String> {
        let fenced = match self.site.fence_writes(epoch).await {
            Ok(o) => soft(&o),
            Err(e) => {
                // Unconfirmed: it must not write, so it is killed; the
                // handover cannot prove its catch-up and aborts.
                let killed = self
                    .site
                    .fence_hard(epoch)
                    .await
                    .map_err(|e| e.to_string())?;
                return Ok((
                    format!(
                        "soft fence failed ({e}); {}; its final binary log position is unknown",
                        hard(&killed)
                    ),
                    None,
                ));
            }
        };
        match self.site.final_position().await {
            Ok(f) => Ok((
                format!(
                    "{fenced}; final binary log position {} (gtid_binlog_pos {:?})",
                    f.binlog, f.gtid_binlog_pos
                ),
                binlog_position(&f.binlog.file, f.binlog.position),
            )),
            Err(e) => Ok((
                format!("{fenced}; final binary log position unreadable: {e}"),
                None,
            )),
        }
    }

    /// Starts the leased writer (read-only, as every start), then makes
    /// it writable under `epoch`.
    pub async fn start(&self, epoch: u64) -> Result<String, String> {
        let started = match self.site.start(epoch).await.map_err(|e| e.to_string())? {
            StartOutcome::AlreadyRunning => "already running".to_owned(),
            StartOutcome::Started { elapsed } => {
                format!("started read-only in {} ms", elapsed.as_millis())
            }
        };
        let writable = self.make_writable(epoch, false).await?;
        Ok(format!("{started}; {writable}"))
    }

    /// `read_only = OFF` with proof and the test write (`promote`).
    pub async fn make_writable(
        &self,
        epoch: u64,
        stop_replication: bool,
    ) -> Result<String, String> {
        if stop_replication {
            // An unplanned failover: the only master that could acknowledge
            // a semi-synchronous commit is the fenced old writer, so the
            // test write would wait out the whole timeout. The writer's
            // agent switches semi-sync on again as `sync` mode says.
            if let Err(e) = self
                .site
                .set_semi_sync(epoch, false, SEMI_SYNC_OFF_TIMEOUT_MS)
                .await
            {
                tracing::warn!(error = %e, "could not switch semi-sync off before the promotion's test write");
            }
        }
        let o = self
            .site
            .promote(
                epoch,
                PromotionRequest {
                    stop_replication,
                    ..PromotionRequest::default()
                },
            )
            .await
            .map_err(|e| e.to_string())?;
        let mut s = format!(
            "{} (executed {} of the other master's binary log, received {}; gtid_slave_pos {:?}, own history from {:?}; caught up in {} ms, {} ms in all)",
            if o.already_writer {
                "already writable"
            } else {
                "writable"
            },
            o.executed
                .as_ref()
                .map(|p| p.to_string())
                .unwrap_or_else(|| "none".into()),
            o.read
                .as_ref()
                .map(|p| p.to_string())
                .unwrap_or_else(|| "none".into()),
            o.gtid_slave_pos,
            o.gtid_binlog_pos,
            o.caught_up_in.as_millis(),
            o.elapsed.as_millis()
        );
        if o.replication_stopped {
            s.push_str("; replication from the old writer stopped until it rejoins");
        }
        Ok(s)
    }

    /// The soft fence of a master that must not write (the other master
    /// found writable).
    pub async fn keep_read_only(&self, epoch: u64) -> Result<String, String> {
        self.site
            .fence_writes(epoch)
            .await
            .map(|o| soft(&o))
            .map_err(|e| e.to_string())
    }

    /// The writer resumes replicating from the other master once that one
    /// has rejoined: `START SLAVE` (nothing when it runs).
    pub async fn resume_replication(&self) -> Result<bool, String> {
        self.site
            .start_replication()
            .await
            .map_err(|e| e.to_string())
    }

    /// The old writer's return; `peer` is the new writer's probe DSN.
    pub async fn rejoin(
        &self,
        epoch: u64,
        peer: &DatabaseConfig,
        errant: ErrantTransactions,
    ) -> Result<String, String> {
        let access = PeerAccess {
            dsn: peer.dsn.text().to_owned(),
            password: peer.dsn.password().cloned(),
        };
        let policy = match errant {
            ErrantTransactions::Refuse => ErrantPolicy::Refuse,
            ErrantTransactions::Replicate => ErrantPolicy::Replicate,
        };
        let o = self
            .site
            .rejoin(epoch, &access, policy)
            .await
            .map_err(|e| e.to_string())?;
        let mut s = format!(
            "rejoined read-only{}, replicating from the new writer, fork at {:?}, in {} ms",
            if o.started { " (started)" } else { "" },
            o.fork,
            o.elapsed.as_millis()
        );
        if !o.errant.is_empty() {
            s.push_str(&format!(
                "; {} errant transaction(s) replicate to the new writer (errant_transactions = \"replicate\")",
                o.errant.len()
            ));
        }
        Ok(s)
    }

    /// Semi-synchronous replication on the writer, with commits waiting
    /// up to `timeout_ms` for the other master's acknowledgement.
    pub async fn set_semi_sync(
        &self,
        epoch: u64,
        enabled: bool,
        timeout_ms: u64,
    ) -> Result<bool, String> {
        self.site
            .set_semi_sync(epoch, enabled, timeout_ms)
            .await
            .map_err(|e| e.to_string())
    }
}
