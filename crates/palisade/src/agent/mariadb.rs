//! What a MariaDB master's agent does beyond PostgreSQL's decisions. Both
//! masters of the guide's pair run all the time; `read_only` alone tells
//! the writer from the other one. So, for the core's decisions, "running"
//! means "running and possibly writable": a master confirmed read-only
//! counts as stopped (fenced), and:
//!
//! * the writer (desired primary, leased) found read-only is made
//!   writable (`Start`: started if need be, then `read_only = OFF` with
//!   proof and the test write), and resumes replicating from the other
//!   master once that one is the standby again;
//! * the other master (desired standby) found writable is made read-only
//!   again (the soft fence), its client sessions killed;
//! * a planned handover's fence is the soft one and the fenced writer
//!   keeps running read-only, without a lease, like a standby;
//! * the old writer's rejoin after a failover checks for errant
//!   transactions before it replicates again (`SiteDb::rejoin_mariadb`).

use palisade_actions::postgres::DatabaseControl;
use palisade_core::{ClusterState, DesiredRole};

use super::{Agent, REJOIN_RETRY};
use crate::clock::mono_ms;
use crate::config::{RejoinPolicy, SyncStandbyDown};
use crate::site_db::SiteDb;

/// `rpl_semi_sync_master_timeout` with `sync_standby_down = "block"`: the
/// largest MariaDB takes (about 49 days): commits wait for the other
/// master's acknowledgement.
const SEMI_SYNC_BLOCK_MS: u64 = u32::MAX as u64;

/// What this agent itself last made of `read_only`, and when (mono ms):
/// newer than the latest probe, it wins over it.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct ReadOnlyMark {
    read_only: bool,
    at_ms: u64,
}

impl<D: DatabaseControl + 'static> Agent<D> {
    /// Whether this MariaDB master is known to be read-only: by this
    /// agent's own last action or by the latest probe, whichever is newer.
    /// Unknown (no probe answered since) counts as writable.
    pub(super) fn mariadb_read_only(&self) -> bool {
        let mark = *self.read_only_mark.lock().expect("read_only lock poisoned");
        // A probe counts from when it began: one that read `read_only`
        // before this agent's fence and came back after it is older news
        // (a soft-fenced old writer was killed on that stale "writable").
        let probed = self.latest.observation_at(&self.site).and_then(|(o, at)| {
            (o.reachability.is_up() && o.in_recovery.is_some())
                .then(|| (o.in_recovery == Some(true), at.saturating_sub(o.latency_ms)))
        });
        match (mark, probed) {
            (Some(m), Some((ro, at))) if at > m.at_ms => ro,
            (Some(m), _) => m.read_only,
            (None, Some((ro, _))) => ro,
            (None, None) => false,
        }
    }

    pub(super) fn mark_read_only(&self, read_only: bool) {
        *self.read_only_mark.lock().expect("read_only lock poisoned") = Some(ReadOnlyMark {
            read_only,
            at_ms: mono_ms(),
        });
    }

    /// The writer under its lease: keeps semi-sync as `sync` mode says,
    /// and replicates from the other master again once that one is the
    /// standby (after an unplanned failover its promotion stopped that
    /// direction until the old writer's rejoin has checked for errant
    /// transactions).
    pub(super) async fn serve_mariadb(&self, db: &SiteDb<D>, state: &ClusterState, epoch: u64) {
        let Some(m) = db.mariadb() else { return };
        self.manage_semi_sync(db, state, epoch).await;
        let other_is_standby = state
            .db
            .as_ref()
            .is_some_and(|d| state.desired_role(&d.standby) == Some(DesiredRole::Standby));
        if !other_is_standby || state.failover.is_some() {
            return;
        }
        // Both threads stopped: as the promotion left them. A thread that
        // stopped on an error of its own is started again at most every
        // REJOIN_RETRY, so a conflict that stops it at once is logged, not
        // spun on.
        let stopped = self
            .latest
            .mariadb(&self.site)
            .and_then(|o| o.replica)
            .is_some_and(|r| r.io_running == "No" || !r.sql_running);
        if !stopped {
            return;
        }
        let now = mono_ms();
        {
            let mut next = self.maria_resume_at.lock().expect("resume lock poisoned");
            if now < *next {
                return;
            }
            *next = now + REJOIN_RETRY.as_millis() as u64;
        }
        match m.resume_replication().await {
            Ok(true) => tracing::info!(
                epoch,
                "the other master is the standby again: replicating from it (both directions)"
            ),
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(error = %e, "could not resume replication from the other master")
            }
        }
    }

    /// What a promotion of this master may have lost, for its step record
    /// (`palisade_core::master_master::promotion::LostBound`): nothing on
    /// a planned handover (the old writer's final position was executed
    /// first); in `sync` mode nothing acknowledged (semi-sync; with
    /// `degrade`, unless it had fallen back, which status and the writer's
    /// log show); otherwise what the old writer never sent, unknown until
    /// it returns and its errant transactions are counted.
    pub(super) fn loss_bound(&self, planned: bool) -> &'static str {
        use palisade_core::detector::ReplicationMode;
        if planned {
            "nothing lost: the old writer's final position was executed first"
        } else if self.settings.detector.replication == ReplicationMode::Sync {
            match self.settings.sync_standby_down {
                SyncStandbyDown::Block => {
                    "no acknowledged write lost: semi-sync was in force on the old writer"
                }
                SyncStandbyDown::Degrade => {
                    "no acknowledged write lost unless semi-sync had fallen back to async on the old writer (its log and status show when)"
                }
            }
        } else {
            "may have lost what the old writer committed and never sent (asynchronous): counted as errant transactions when it returns"
        }
    }

    /// The other master (desired standby) must not take writes: made
    /// read-only again when found writable.
    pub(super) async fn keep_read_only(&self, db: &SiteDb<D>, epoch: u64) {
        let Some(m) = db.mariadb() else { return };
        tracing::warn!(
            epoch,
            "this master is not the writer but takes writes (read_only OFF): fencing its writes"
        );
        match m.keep_read_only(epoch).await {
            Ok(detail) => {
                self.mark_read_only(true);
                tracing::warn!(%detail, "read-only again");
            }
            Err(e) => {
                tracing::error!(error = %e, "could not make it read-only; killing it");
                self.fence_now(db, epoch).await;
            }
        }
    }

    /// `sync` mode on a MariaDB writer: semi-synchronous replication, with
    /// `rpl_semi_sync_master_timeout` = `sync_degrade_after_ms` (at least a
    /// lease) under `degrade` (MariaDB falls back to asynchronous
    /// replication after that wait, and back to semi-sync once the other
    /// master catches up) or practically forever under `block`.
    async fn manage_semi_sync(&self, db: &SiteDb<D>, state: &ClusterState, epoch: u64) {
        use palisade_core::detector::ReplicationMode;
        let Some(m) = db.mariadb() else { return };
        if self.settings.detector.replication != ReplicationMode::Sync {
            return;
        }
        // MariaDB gives up waiting on its own, lease or no lease. An
        // isolated writer must be frozen by its lease guard (at most
        // `ttl × (1 − 1/4)` after its last renewal, so after any commit
        // that waits on the cut) before it gives up, or it acknowledges
        // writes the other master never gets and the failover loses them
        // (chaos: 4-13 per isolation with a 1 s timeout under a 1.5 s
        // lease). So never shorter than a whole lease.
        let lease_ms =
            (self.settings.lease.ttl_ms as f64 * (1.0 + self.settings.lease.drift)).ceil() as u64;
        let timeout_ms = match self.settings.sync_standby_down {
            SyncStandbyDown::Degrade => self.settings.sync_degrade_after_ms.max(lease_ms),
            SyncStandbyDown::Block => SEMI_SYNC_BLOCK_MS,
        };
        let in_force = match self.latest.mariadb(&self.site).and_then(|o| o.semi_sync) {
            Some(s) if s.master_enabled && s.master_active => format!(
                "semi-sync ({} acknowledging, timeout {} ms)",
                s.master_clients, s.master_timeout_ms
            ),
            Some(s) if s.master_enabled => format!(
                "async (semi-sync waiting timed out after {} ms; back once the other master acknowledges)",
                s.master_timeout_ms
            ),
            Some(_) => "async (semi-sync off)".to_owned(),
            None => "unknown (semi-sync variables unreadable)".to_owned(),
        };
        // `degrade`: semi-sync only while the other master is the standby
        // (rejoined, replicating): after an unplanned failover nobody can
        // acknowledge, and every commit would wait out the timeout first.
        // `block` keeps it on: commits wait until the other master is back.
        let other_is_standby = state
            .db
            .as_ref()
            .is_some_and(|d| state.desired_role(&d.standby) == Some(DesiredRole::Standby));
        let enabled = self.settings.sync_standby_down == SyncStandbyDown::Block || other_is_standby;
        let in_force = if enabled {
            in_force
        } else {
            "async (degraded: the other master has not rejoined)".to_owned()
        };
        *self.in_force.lock().expect("sync lock poisoned") = in_force;
        let want = Some(format!("{epoch}:{enabled}:{timeout_ms}"));
        if *self.sync_names.lock().expect("sync lock poisoned") == Some(want.clone()) {
            return;
        }
        match m.set_semi_sync(epoch, enabled, timeout_ms).await {
            Ok(changed) => {
                match (changed, enabled) {
                    (true, true) => tracing::info!(timeout_ms, "semi-synchronous replication on"),
                    (true, false) => tracing::warn!(
                        "semi-synchronous replication OFF until the other master rejoins (sync_standby_down = \"degrade\"); a failover now may lose what it did not receive"
                    ),
                    _ => {}
                }
                *self.sync_names.lock().expect("sync lock poisoned") = Some(want);
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not switch semi-synchronous replication on")
            }
        }
    }

    /// The old writer after a failover (see the module doc).
    pub(super) async fn rejoin_mariadb(
        &self,
        db: &SiteDb<D>,
        state: &ClusterState,
        epoch: u64,
        alive: bool,
    ) {
        let read_only = self.mariadb_read_only();
        if alive && !read_only {
            tracing::warn!(
                epoch,
                "this site must be fenced (the old writer, until it rejoins read-only): killing its server"
            );
            self.fence_now(db, epoch).await;
        }
        let rejoined = *self.maria_rejoined.lock().expect("rejoin lock poisoned") == Some(epoch);
        // A read-only master runs without a lease, like a standby.
        self.st().standby();
        self.stop_guard().await;
        if rejoined && alive {
            return;
        }
        if self.settings.rejoin == RejoinPolicy::Manual || !self.st().may_rejoin(mono_ms()) {
            return;
        }
        let Some(writer) = state
            .db
            .as_ref()
            .and_then(|d| self.settings.at(&d.primary.0))
        else {
            return;
        };
        match db
            .rejoin_mariadb(epoch, writer, self.settings.errant_transactions)
            .await
        {
            Ok(detail) => {
                tracing::info!(%detail, writer = %writer.site, "rejoined the pair");
                self.mark_read_only(true);
                *self.maria_rejoined.lock().expect("rejoin lock poisoned") = Some(epoch);
                self.st().rejoined();
            }
            Err(e) => {
                tracing::error!(error = %e, "rejoin refused or failed; retrying in {} s", REJOIN_RETRY.as_secs());
                self.st()
                    .rejoin_failed(mono_ms() + REJOIN_RETRY.as_millis() as u64);
            }
        }
    }
}
